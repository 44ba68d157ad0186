"""The segment condition language without a database: validation, the CEL subset, windows,
and the SQL the compiler writes for "days since" and for aggregates of nothing; and (with
one) the tables against their migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import column, select
from sqlalchemy.dialects import postgresql, sqlite

from lealta.kit.db import Base, Database
from lealta.programme import service as programmes
from lealta.segments import compiler
from lealta.segments.cel_subset import translate
from lealta.segments.schema import Condition, Group, Segment, is_population_relative, walk
from lealta.web.admin.routes_segments import sparkline

NOW = datetime(2026, 6, 15, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"field": "nope", "op": "eq", "value": 1}, "unknown field"),
        ({"field": "orders", "op": "has", "value": 1}, "does not apply"),
        ({"field": "orders", "op": "gte", "value": "x"}, "compares numbers"),
        ({"field": "orders", "op": "between", "value": [1]}, "[low, high]"),
        ({"field": "attribute", "op": "eq", "value": "x"}, "needs a 'key'"),
        ({"field": "tier", "op": "eq", "value": "oro", "days": 30}, "takes no window"),
        ({"field": "activity", "op": "eq", "value": "asleep"}, "activity is one of"),
        (
            {"field": "orders", "op": "gte", "value": 1, "days": 30, "period": "this_year"},
            "not both",
        ),
        ({"field": "rfm_r", "op": "eq", "value": 5, "period": "this_year"}, "'days' only"),
        ({"field": "tier", "op": "is_set", "value": "x"}, "takes no value"),
        ({"field": "consent", "key": "email", "op": "eq", "value": "yes"}, "true or false"),
    ],
)
def test_conditions_that_do_not_fit_their_field_are_refused(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[")):
        Condition.model_validate(data)


def test_a_segment_has_exactly_one_form() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        Segment.model_validate({"id": "x"})
    with pytest.raises(ValidationError, match="exactly one"):
        Segment.model_validate({"id": "x", "cel": 'member.tier == "oro"', "all": []})
    with pytest.raises(ValidationError, match="no conditions"):
        Segment.model_validate({"id": "x", "kind": "static", "all": []})
    assert Segment.model_validate({"id": "x", "kind": "static"}).group() is None


def test_the_cel_subset_translates_to_the_same_conditions() -> None:
    got = translate('member.tier == "oro" && metrics.orders_365d >= 3')
    assert got == Group(
        all=[
            Condition(field="tier", op="eq", value="oro"),
            Condition(field="orders", op="gte", value=3, days=365),
        ]
    )
    nested = translate(
        '("vip" in member.tags || member.attributes.city in ["Sevilla", "Bilbao"])'
        " && metrics.rfm_r >= 4 && member.consent.email == true"
    )
    assert nested.all is not None and isinstance(nested.all[0], Group)
    assert [c.field for c in walk(nested)] == ["tag", "attribute", "rfm_r", "consent"]
    assert is_population_relative(nested)
    assert not is_population_relative(translate("metrics.points_expiring_30d > 100"))


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("member.tier.size() > 1", "unsupported operator"),
        ("metrics.lifetime == 3", "unknown path"),
        ("member.tier ==", "expected"),
        ('member.tier == "oro" ;', "unexpected"),
        ("!(member.tier == 'oro')", "unexpected"),
        ('"vip" in member.attributes', "only"),
    ],
)
def test_cel_outside_the_subset_is_refused_with_the_reason(source: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        translate(source)


def test_the_demo_programme_ships_the_key_segments() -> None:
    demo = programmes.validate(
        programmes.parse_text(
            Path(__file__).parents[1].joinpath("src/lealta/demo/programme.yaml").read_text()
        )
    )
    ids = {s.id for s in demo.segments}
    assert {"tier-oro", "active", "at-risk", "inactive", "top-spenders", "frequent"} <= ids
    broken = demo.model_dump(mode="json", exclude_none=True)
    broken["segments"].append({"id": "x", "all": [{"field": "tier", "value": "diamante"}]})
    with pytest.raises(programmes.ProgrammeInvalid, match="unknown tier 'diamante'"):
        programmes.validate(broken)


def test_windows_are_last_days_or_calendar_periods() -> None:
    def bounds(**kw: object) -> tuple[datetime, datetime | None]:
        return compiler.window_bounds(
            Condition.model_validate({"field": "orders", "op": "gte", "value": 1, **kw}), NOW
        )

    assert bounds() == (NOW - timedelta(days=365), None)
    assert bounds(days=30) == (NOW - timedelta(days=30), None)
    assert bounds(period="this_month") == (datetime(2026, 6, 1, tzinfo=UTC), None)
    assert bounds(period="last_month") == (
        datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC),
    )  # fmt: skip
    assert bounds(period="last_year") == (
        datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip


@given(
    elapsed=st.integers(min_value=0, max_value=60 * 24 * 40),
    n=st.integers(min_value=0, max_value=40),
    op=st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
)
def test_days_since_compares_timestamps_like_whole_days(elapsed: int, n: int, op: str) -> None:
    """``days_since(at) <op> n`` written as timestamp comparisons agrees with whole days."""
    at = NOW - timedelta(minutes=elapsed)
    days = elapsed // (60 * 24)
    expected = {
        "eq": days == n, "ne": days != n, "gt": days > n, "gte": days >= n, "lt": days < n,
        "lte": days <= n,
    }[op]  # fmt: skip
    clause = compiler._days_since(column("at"), op, n, NOW)
    compiled = clause.compile(dialect=sqlite.dialect())
    # Evaluate the comparison in Python from its bound values.
    assert _evaluate(clause, at) == expected, str(compiled)


def _evaluate(clause: object, at: datetime) -> bool:
    """A tiny interpreter of the boolean clauses _days_since builds."""
    from sqlalchemy.sql import operators
    from sqlalchemy.sql.elements import (
        BinaryExpression,
        BooleanClauseList,
        Grouping,
        UnaryExpression,
    )

    if isinstance(clause, Grouping):
        return _evaluate(clause.element, at)
    if isinstance(clause, BooleanClauseList):
        parts = [_evaluate(c, at) for c in clause.clauses]
        return all(parts) if clause.operator is operators.and_ else any(parts)
    if isinstance(clause, UnaryExpression):
        return not _evaluate(clause.element, at)
    assert isinstance(clause, BinaryExpression)
    value = clause.right.value  # type: ignore[attr-defined]
    op = clause.operator
    if op is operators.le:
        return at <= value  # type: ignore[no-any-return]
    if op is operators.lt:
        return at < value  # type: ignore[no-any-return]
    if op is operators.gt:
        return at > value  # type: ignore[no-any-return]
    if op is operators.ge:
        return at >= value  # type: ignore[no-any-return]
    raise AssertionError(op)


def test_aggregates_of_nothing_count_as_zero_only_when_zero_can_match() -> None:
    def sql(op: str, value: object) -> str:
        c = Condition.model_validate({"field": "orders", "op": op, "value": value})
        stmt = compiler.compile_group(Group(all=[c]), dialect="postgresql", now=NOW, currency="EUR")
        return str(stmt.compile(dialect=postgresql.dialect()))

    assert "coalesce" not in sql("gte", 3)
    assert "coalesce" in sql("lt", 2)
    assert "coalesce" in sql("eq", 0)
    tier_only = str(
        compiler.compile_group(
            Group(all=[Condition(field="tier", value="oro")]), dialect="sqlite", now=NOW,
            currency="EUR",
        ).compile(dialect=sqlite.dialect())
    )  # fmt: skip
    assert "members" not in tier_only and "accounts.tier_id" in tier_only
    assert select(column("x")) is not None


def test_sparkline_scales_counts_into_the_box() -> None:
    assert sparkline([5]) == ""
    points = sparkline([0, 10, 5], width=100, height=20)
    assert points == "0.0,18.0 50.0,2.0 100.0,10.0"


def test_the_segment_tables_match_their_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "segment" in repr(d)] == []
