"""The programme engine end to end on a real database: tiers, earning, pending, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.events import service as events
from lealta.events.schemas import EventIn
from lealta.jobs.service import run_due
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.models import Account, LedgerEntry, Member, OutboxMessage, TierChange
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from tests.factories import order_paid, order_refunded
from tests.test_rules_engine import DEMO

START = datetime(2025, 1, 10, 10, 0, tzinfo=UTC)


def use(db: Database, programme: Programme, at: datetime = START - timedelta(days=30)) -> None:
    with db.unit_of_work() as session:
        programmes.apply(session, programme, actor="test", now=at)


def post(client: TestClient, clock: FixedClock, payload: dict[str, Any]) -> dict[str, Any]:
    """Deliver an event live: the clock reads the event's own time."""
    clock.set(datetime.fromisoformat(payload["occurred_at"]))
    response = client.post("/v1/events", json=payload)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def no_pending(programme: Programme) -> Programme:
    return programme.model_copy(
        update={"pending": programme.pending.model_copy(update={"days": 0})}
    )


def test_seed_000_upgrades_and_earns_at_the_tier_held_when_the_order_occurs(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    first = post(client, clock, order_paid("e1", "maria", "O1", "1200.00", START))
    # Básico when the order occurred: 1 pt/€; the order's spend then lifts her to Plata.
    assert first["points_delta"] == 1200
    second = post(
        client, clock, order_paid("e2", "maria", "O2", "100.00", START + timedelta(days=1))
    )
    assert second["points_delta"] == 150
    third = post(
        client, clock, order_paid("e3", "maria", "O3", "3700.00", START + timedelta(days=2))
    )
    assert third["points_delta"] == 5550  # 3.700 € at Plata (x1.5); total now 5.000 € -> Oro
    fourth = post(
        client, clock, order_paid("e4", "maria", "O4", "10.00", START + timedelta(days=3))
    )
    assert fourth["points_delta"] == 20
    big = post(
        client, clock, order_paid("e5", "maria", "O5", "10000.00", START + timedelta(days=4))
    )
    assert big["points_delta"] == 20000
    tier = client.get("/v1/members/maria/tier").json()
    assert tier["tier"]["id"] == "platino"
    assert tier["next_tier"] is None
    history = [(h["from_tier"], h["to_tier"]) for h in reversed(tier["history"])]
    assert history == [(None, "basico"), ("basico", "plata"), ("plata", "oro"), ("oro", "platino")]


def test_a_single_large_order_skips_tiers(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    post(client, clock, order_paid("e1", "luis", "O1", "6000.00", START))
    tier = client.get("/v1/members/luis/tier").json()
    assert tier["tier"]["id"] == "oro"


def test_maria_progress_line_from_the_api(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    for month in range(6):
        at = START + timedelta(days=30 * month)
        post(client, clock, order_paid(f"m{month}", "maria", f"M{month}", "500.00", at))
    clock.set(START + timedelta(days=180))
    tier = client.get("/v1/members/maria/tier").json()
    assert tier["tier"]["id"] == "plata"
    assert Decimal(tier["qualifying_value"]) == Decimal(3000)
    assert tier["next_tier"]["id"] == "oro"
    assert Decimal(tier["progress_percent"]) == Decimal(60)
    assert Decimal(tier["amount_needed"]) == Decimal(2000)
    # 3.000 € over 180 days is 16.67 €/day: 2.000 € more takes 120 days.
    expected = (START + timedelta(days=180 + 120)).date().isoformat()
    assert tier["estimated_date"] == expected
    benefits = client.get("/v1/members/maria/benefits").json()
    assert benefits["tier"] == "plata"
    assert Decimal(benefits["benefits"]["discount_percent"]) == Decimal(10)
    assert benefits["benefits"]["free_shipping"] is True


def test_order_points_wait_out_the_return_window(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, DEMO)
    post(client, clock, order_paid("e1", "ana", "O1", "200.00", START))
    balance = client.get("/v1/members/ana/balance").json()
    assert (balance["available"], balance["pending"]) == (0, 200)
    spend = client.post(
        "/v1/members/ana/spend", json={"points": 50}, headers={"Idempotency-Key": "s1"}
    )
    assert spend.status_code == 409
    # a refund inside the window takes back the pending points themselves
    post(
        client, clock, order_refunded("r1", "ana", "O1", START + timedelta(days=3), amount="50.00")
    )
    balance = client.get("/v1/members/ana/balance").json()
    assert (balance["available"], balance["pending"], balance["shortfall"]) == (0, 150, 0)
    report = run_due(db, now=START + timedelta(days=15))
    assert report.released == 150
    clock.set(START + timedelta(days=15))
    balance = client.get("/v1/members/ana/balance").json()
    assert (balance["available"], balance["pending"]) == (150, 0)
    again = run_due(db, now=START + timedelta(days=15))
    assert again.released == 0 and again.members == 0
    _consistent(db)


def test_points_expire_at_the_quarter_end_after_12_months_and_are_shown_before(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    post(client, clock, order_paid("e1", "eva", "O1", "300.00", START))  # 10 Jan 2025
    expiry = datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=UTC)
    clock.set(expiry - timedelta(days=10))
    balance = client.get("/v1/members/eva/balance").json()
    assert balance["expiring_soon"] == 300
    assert balance["next_expiry"]["points"] == 300
    assert datetime.fromisoformat(balance["next_expiry"]["at"]) == expiry
    assert run_due(db, now=expiry - timedelta(seconds=1)).expired == 0
    assert run_due(db, now=expiry + timedelta(seconds=1)).expired == 300
    assert run_due(db, now=expiry + timedelta(days=1)).expired == 0  # safe to run twice
    clock.set(expiry + timedelta(days=1))
    balance = client.get("/v1/members/eva/balance").json()
    assert (balance["available"], balance["expired"]) == (0, 300)
    with db.unit_of_work(write=False) as session:
        entry = session.scalars(select(LedgerEntry).where(LedgerEntry.entry_type == "expire")).one()
    assert entry.occurred_at == expiry and entry.points == -300
    _consistent(db)


def test_spend_consumes_the_soonest_expiring_points_first(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    post(client, clock, order_paid("e1", "sol", "O1", "100.00", START))
    post(client, clock, order_paid("e2", "sol", "O2", "100.00", START + timedelta(days=120)))
    clock.set(START + timedelta(days=130))
    r = client.post("/v1/members/sol/spend", json={"points": 150}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 201
    report = run_due(db, now=datetime(2026, 4, 1, tzinfo=UTC))  # first lot's expiry passed
    assert report.expired == 0  # it was fully spent
    report = run_due(db, now=datetime(2026, 7, 1, tzinfo=UTC))
    assert report.expired == 50


ROLLING = Programme.model_validate(
    {
        "name": "Rolling",
        "currency": "EUR",
        "tiers": {
            "basis": "spend",
            "period": "rolling",
            "rolling_months": 3,
            "grace_days": 5,
            "levels": [
                {"id": "bronze", "name": {"es": "Bronce"}, "threshold": 0},
                {"id": "silver", "name": {"es": "Plata"}, "threshold": 500, "multiplier": 2},
            ],
        },
        "pending": {"days": 10},
        "expiry": {"months": 2, "round_to": "month_end"},
    }
)


def test_rolling_window_tier_is_kept_to_period_end_plus_grace_then_reviewed(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, ROLLING)
    post(client, clock, order_paid("e1", "rita", "O1", "600.00", datetime(2025, 1, 15, tzinfo=UTC)))
    assert client.get("/v1/members/rita/tier").json()["tier"]["id"] == "silver"
    # Reviewed at 31 Jan + 5 days: Nov-Jan spend is 600 €, so silver is kept.
    assert run_due(db, now=datetime(2025, 2, 6, tzinfo=UTC)).tier_changes == 0
    # At 28 Feb + 5 days the window Dec-Feb still holds the January order: kept.
    assert run_due(db, now=datetime(2025, 3, 6, tzinfo=UTC)).tier_changes == 0
    # By the 30 Apr review (+5 days) the 3-month window (Feb-Apr) is empty: down to bronze.
    report = run_due(db, now=datetime(2025, 5, 6, tzinfo=UTC))
    assert report.tier_changes == 1
    clock.set(datetime(2025, 5, 6, tzinfo=UTC))
    tier = client.get("/v1/members/rita/tier").json()
    assert tier["tier"]["id"] == "bronze"
    assert tier["history"][0]["direction"] == "downgrade"


def _history() -> list[dict[str, Any]]:
    at = datetime(2025, 1, 3, 9, 0, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(14):
        at += timedelta(days=9 + (i % 4) * 5)
        customer = ("ines", "jon", "kai")[i % 3]
        out.append(order_paid(f"h{i}", customer, f"H{i}", f"{120 + 37 * i}.50", at))
        if i % 5 == 2:
            out.append(
                order_refunded(f"r{i}", customer, f"H{i}", at + timedelta(days=4), amount="60.00")
            )
    return sorted(out, key=lambda e: e["occurred_at"])


def _state(db: Database) -> dict[str, Any]:
    with db.unit_of_work(write=False) as session:
        entries = session.execute(
            select(
                LedgerEntry.member_id,
                LedgerEntry.entry_type,
                LedgerEntry.points,
                LedgerEntry.occurred_at,
                LedgerEntry.rule_id,
            ).order_by(LedgerEntry.occurred_at, LedgerEntry.entry_type, LedgerEntry.points)
        ).all()
        tiers = session.execute(
            select(TierChange.member_id, TierChange.to_tier, TierChange.occurred_at).order_by(
                TierChange.occurred_at, TierChange.member_id
            )
        ).all()

        accounts = session.execute(
            select(
                Account.member_id,
                Account.points_available,
                Account.points_pending,
                Account.points_expired,
                Account.lifetime_earned,
                Account.tier_id,
                Account.qualifying_spend_minor,
            ).order_by(Account.member_id)
        ).all()
        names = {row[0]: row[1] for row in session.execute(select(Member.id, Member.external_id))}
    # Compare by the shop's ids: database ids differ between the two runs on PostgreSQL.
    return {
        "entries": [(names[e[0]], *e[1:]) for e in entries],
        "tiers": [(names[t[0]], *t[1:]) for t in tiers],
        "accounts": sorted((names[a[0]], *a[1:]) for a in accounts),
    }


def test_imported_history_gives_the_same_state_as_live_ingestion(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    history = _history()
    end = datetime(2026, 2, 1, tzinfo=UTC)
    # Live: each event arrives at its time, and the daily job runs in between.
    use(db, ROLLING)
    day = datetime.fromisoformat(history[0]["occurred_at"])
    for payload in history:
        at = datetime.fromisoformat(payload["occurred_at"])
        while day < at:
            run_due(db, now=day)
            day += timedelta(days=1)
        post(client, clock, payload)
    while day <= end:
        run_due(db, now=day)
        day += timedelta(days=1)
    live = _state(db)
    _consistent(db)

    # Imported later: the same events, in event-time order, all received on one day.
    db_reset(db)
    use(db, ROLLING)
    clock.set(end)
    with db.unit_of_work() as session:
        ctx = events.IngestContext(programme=ROLLING, now=end, actor="import")
        for payload in history:
            events.ingest(session, EventIn.model_validate(payload), ctx, key=None)
    run_due(db, now=end)
    imported = _state(db)
    assert imported["accounts"] == live["accounts"]
    assert imported["entries"] == live["entries"]
    assert imported["tiers"] == live["tiers"]
    assert any(e[1] == "expire" for e in live["entries"])


def test_every_500_spent_records_a_threshold_once_even_after_refund_and_rebuy(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    post(client, clock, order_paid("e1", "teo", "O1", "450.00", START))
    post(client, clock, order_paid("e2", "teo", "O2", "100.00", START + timedelta(days=1)))
    post(client, clock, order_refunded("r2", "teo", "O2", START + timedelta(days=2)))
    post(client, clock, order_paid("e3", "teo", "O3", "100.00", START + timedelta(days=3)))
    post(client, clock, order_paid("e4", "teo", "O4", "1000.00", START + timedelta(days=4)))
    with db.unit_of_work(write=False) as session:
        crossings = session.scalars(
            select(OutboxMessage.payload).where(OutboxMessage.topic == "threshold.reached")
        ).all()
    assert [c["crossed"] for c in crossings] == ["500.00", "1000.00", "1500.00"]


def test_review_rule_capped_once_a_day_through_ingestion(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    at = START
    review = {"type": "review.posted", "customer_id": "uma", "properties": {"stars": 5}}
    first = post(client, clock, {**review, "id": "v1", "occurred_at": at.isoformat()})
    second = post(
        client, clock, {**review, "id": "v2", "occurred_at": (at + timedelta(hours=2)).isoformat()}
    )
    third = post(
        client, clock, {**review, "id": "v3", "occurred_at": (at + timedelta(days=1)).isoformat()}
    )
    assert [first["points_delta"], second["points_delta"], third["points_delta"]] == [50, 0, 50]


def db_reset(db: Database) -> None:
    from sqlalchemy import text

    from lealta.kit.db import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name != "api_keys"]
    with db.engine.begin() as conn:
        for name in tables:
            conn.execute(text(f"DELETE FROM {name}"))


def _consistent(db: Database) -> None:
    with db.unit_of_work(write=False) as session:
        checked, problems = ledger.verify(session)
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) is not None
    assert checked > 0 and problems == []


def test_jobs_cli_processes_due_work_at_a_given_time_and_refuses_bad_options(
    db: Database,
    client: TestClient,
    clock: FixedClock,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from lealta.cli import app as cli_app
    from lealta.config import get_settings

    use(db, DEMO)  # 14-day return window
    post(client, clock, order_paid("e1", "iker", "O1", "80.00", START))
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        when = (START + timedelta(days=15)).isoformat()
        result = runner.invoke(cli_app, ["jobs", "run", "--at", when])
        assert result.exit_code == 0, result.output
        assert "released 80 pts" in result.output
        assert runner.invoke(cli_app, ["jobs", "run", "--at", "soon"]).exit_code == 2
        both = runner.invoke(cli_app, ["jobs", "run", "--at", when, "--every", "60"])
        assert both.exit_code == 2
    finally:
        get_settings.cache_clear()
    clock.set(START + timedelta(days=15))
    assert client.get("/v1/members/iker/balance").json()["available"] == 80


def test_tiers_refresh_after_an_edit_upgrades_who_now_qualifies_and_never_downgrades(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    from lealta.tiers.service import refresh_all

    use(db, no_pending(DEMO))
    post(client, clock, order_paid("e1", "nora", "O1", "800.00", START))
    post(client, clock, order_paid("e2", "olga", "O2", "1200.00", START))
    assert DEMO.tiers is not None
    levels = [t.model_copy() for t in DEMO.tiers.levels]
    easier = [*levels[:1], levels[1].model_copy(update={"threshold": Decimal(500)}), *levels[2:]]
    edited = no_pending(DEMO).model_copy(
        update={"tiers": DEMO.tiers.model_copy(update={"levels": easier})}
    )
    use(db, edited, at=START + timedelta(days=1))
    now = START + timedelta(days=2)
    assert refresh_all(db, edited, now=now) == 1  # nora: 800 € now reaches Plata
    assert refresh_all(db, edited, now=now) == 0  # safe to run twice
    clock.set(now)
    assert client.get("/v1/members/nora/tier").json()["tier"]["id"] == "plata"
    harder = [*levels[:1], levels[1].model_copy(update={"threshold": Decimal(3000)}), *levels[2:]]
    stricter = no_pending(DEMO).model_copy(
        update={"tiers": DEMO.tiers.model_copy(update={"levels": harder})}
    )
    use(db, stricter, at=START + timedelta(days=3))
    assert refresh_all(db, stricter, now=START + timedelta(days=4)) == 0
    clock.set(START + timedelta(days=4))
    assert client.get("/v1/members/olga/tier").json()["tier"]["id"] == "plata"  # kept


def test_entry_points_are_paid_for_every_tier_reached_or_skipped_once(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    assert DEMO.tiers is not None
    bonus = {"basico": 0, "plata": 100, "oro": 250, "platino": 500}
    levels = [t.model_copy(update={"entry_points": bonus[t.id]}) for t in DEMO.tiers.levels]
    programme = no_pending(DEMO).model_copy(
        update={"tiers": DEMO.tiers.model_copy(update={"levels": levels})}
    )
    use(db, programme)
    # 6.000 € at once: Básico -> Oro, skipping Plata: welcome points for Plata and Oro.
    big = post(client, clock, order_paid("e1", "pau", "O1", "6000.00", START))
    welcome = {p["rule_id"]: p["points"] for p in big["postings"] if p["rule_id"] != "base"}
    assert welcome == {"tier-entry:plata": 100, "tier-entry:oro": 250}
    assert big["points_delta"] == 6000 + 350
    # A full refund reverses what the order earned, not the welcome points.
    refund = post(client, clock, order_refunded("r1", "pau", "O1", START + timedelta(days=1)))
    assert refund["points_delta"] == -6000
    # Back in Básico (as after a period review), climbing again pays nothing twice.
    with db.unit_of_work() as session:
        member = session.scalars(select(Member).where(Member.external_id == "pau")).one()
        account = session.get(Account, member.id)
        assert account is not None
        account.tier_id = "basico"
    again = post(client, clock, order_paid("e2", "pau", "O2", "5500.00", START + timedelta(days=2)))
    assert client.get("/v1/members/pau/tier").json()["tier"]["id"] == "oro"
    assert all(not (p["rule_id"] or "").startswith("tier-entry") for p in again["postings"])
