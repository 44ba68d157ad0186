"""The pure engine steps of bulk operations and migrations (no database), and the schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from lealta.bulk import ops
from lealta.engine.state import MemberState
from lealta.events import store
from lealta.kit.db import Base, Database
from lealta.kit.errors import LealtaError
from lealta.kit.migrate import alembic_config, upgrade
from lealta.members import service as members
from lealta.programme.schema import Programme

AT = datetime(2026, 3, 1, 12, tzinfo=UTC)
PROGRAMME = Programme.model_validate(
    {
        "name": "Ops",
        "tiers": {
            "period": "calendar_year",
            "grace_days": 10,
            "levels": [
                {"id": "bronce", "name": {"es": "Bronce"}, "threshold": 0},
                {"id": "plata", "name": {"es": "Plata"}, "threshold": 100},
                {"id": "oro", "name": {"es": "Oro"}, "threshold": 1000},
            ],
        },
        "expiry": {"months": 12},
    }
)


def fresh() -> MemberState:
    member = members.new_member("ana", None, channel="test", at=AT, now=AT)
    return store.new_state(1, member, PROGRAMME, orders={})


def points(state: MemberState, n: int, **kw: Any) -> Any:
    return ops.points(
        PROGRAMME, state, points=n, reason="r", actor="t", at=AT, operation_id=7, line=3, **kw
    )


def test_credit_then_debit_and_overdraft_refused() -> None:
    credit = points(fresh(), 50)
    (entry,) = credit.entries
    assert (entry.entry_type, entry.source_type, entry.source_ref) == ("adjust", "bulk", "7")
    assert entry.details == {"bulk_operation": 7, "line": 3}
    assert credit.state.figures.points_available == 50
    debit = points(credit.state, -20)
    assert debit.state.figures.points_available == 30 and debit.points_delta == -20
    with pytest.raises(LealtaError) as refused:
        points(debit.state, -31)
    assert refused.value.code == "insufficient_points"
    with pytest.raises(LealtaError) as zero:
        points(fresh(), 0)
    assert zero.value.code == "zero_points"


def test_tier_moves_up_down_and_unchanged() -> None:
    up = ops.move_tier(PROGRAMME, fresh(), tier_id="oro", reason="VIP", at=AT)
    (move,) = up.tier_moves
    assert (move.to_tier, move.reason) == ("oro", "VIP")
    fig = up.state.figures
    # Held to the end of the calendar year plus 10 days of grace.
    assert fig.tier_id == "oro" and fig.tier_held_until is not None
    assert fig.tier_held_until.date() == datetime(2027, 1, 10).date()
    down = ops.move_tier(PROGRAMME, up.state, tier_id="bronce", reason="fix", at=AT)
    assert down.tier_moves[0].direction == "downgrade"
    assert down.state.figures.tier_held_until is None
    with pytest.raises(LealtaError) as same:
        ops.move_tier(PROGRAMME, up.state, tier_id="oro", reason="again", at=AT)
    assert same.value.code == "tier_unchanged"
    with pytest.raises(LealtaError) as unknown:
        ops.move_tier(PROGRAMME, fresh(), tier_id="diamante", reason="x", at=AT)
    assert unknown.value.code == "unknown_tier"


def test_opening_balance_with_expiry_and_tier_reached_earlier() -> None:
    reached = AT - timedelta(days=200)
    out = ops.opening_balance(
        PROGRAMME, fresh(), points=800, expires_at=AT + timedelta(days=30), tier_id="plata",
        tier_reached_at=reached, source_system="old", actor="t", at=AT,
    )  # fmt: skip
    (entry,) = out.entries
    assert (entry.source_type, entry.source_ref, entry.points) == ("migration", "old", 800)
    (lot,) = out.lots
    assert lot.expires_at == AT + timedelta(days=30)
    (move,) = out.tier_moves
    assert (move.to_tier, move.occurred_at) == ("plata", reached)
    assert out.state.figures.tier_since == reached
    # Reached in 2025 but kept through the migration's year plus grace, then reviewed.
    held = out.state.figures.tier_held_until
    assert held is not None and held.date() == datetime(2027, 1, 10).date()
    no_date = ops.opening_balance(
        PROGRAMME, fresh(), points=10, expires_at=None, tier_id=None, tier_reached_at=None,
        source_system="old", actor="t", at=AT,
    )  # fmt: skip
    assert no_date.lots[0].expires_at is not None and no_date.lots[0].expires_at > AT
    for kwargs, code in (
        ({"points": -1}, "negative_points"),
        ({"expires_at": AT}, "already_expired"),
        ({"tier_id": "plata", "tier_reached_at": AT + timedelta(days=1)}, "tier_reached_in_future"),
        ({"tier_id": "diamante"}, "unknown_tier"),
    ):
        base: dict[str, Any] = {
            "points": 5, "expires_at": None, "tier_id": None, "tier_reached_at": None,
            "source_system": "old", "actor": "t", "at": AT,
        }  # fmt: skip
        with pytest.raises(LealtaError) as refused:
            ops.opening_balance(PROGRAMME, fresh(), **{**base, **kwargs})
        assert refused.value.code == code


# --- the schema ------------------------------------------------------------------------------


def test_the_bulk_tables_match_their_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "bulk_operation" in repr(d)] == []


def test_the_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrations.db'}"
    upgrade(url, "0017")
    engine = create_engine(url)
    try:
        assert "bulk_operation_rows" in inspect(engine).get_table_names()
        command.downgrade(alembic_config(url), "0016")
        engine.dispose()
        assert "bulk_operations" not in inspect(engine).get_table_names()
        upgrade(url, "0017")
        engine.dispose()
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("bulk_operation_rows")}
        assert "ix_bulk_operation_rows_status" in indexes
    finally:
        engine.dispose()
