"""Time-based workflow triggers found set-wise on a real database (SQLite and PostgreSQL).

Each test builds a small population with known birthdays, timezones, enrolment dates, last
orders, lots, balances and qualifying values, and checks exactly who
:func:`lealta.workflows.finders.due` finds, with which occurrence, and that looking again finds
the same occurrences (which is what makes starting runs idempotent).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from lealta.kit.db import Database
from lealta.models import Account, LedgerEntry, Member, MemberErasure, Order, PointLot
from lealta.programme.schema import Programme
from lealta.workflows import finders
from lealta.workflows import triggers as t

NOW = datetime(2027, 2, 28, 11, 30, tzinfo=UTC)  # 2027 has no 29 February
ADAPTER: TypeAdapter[t.TimeTrigger] = TypeAdapter(t.TimeTrigger)

_members = cast(Table, Member.__table__)
_accounts = cast(Table, Account.__table__)
_lots = cast(Table, PointLot.__table__)
_entries = cast(Table, LedgerEntry.__table__)
_orders = cast(Table, Order.__table__)
_erasures = cast(Table, MemberErasure.__table__)


def programme(**extra: Any) -> Programme:
    doc: dict[str, Any] = {
        "name": "Test",
        "timezone": "Europe/Madrid",
        "tiers": {
            "levels": [
                {"id": "basico", "name": {"es": "Básico"}, "threshold": 0},
                {"id": "plata", "name": {"es": "Plata"}, "threshold": 500},
                {"id": "oro", "name": {"es": "Oro"}, "threshold": 1000},
            ]
        },
        "rewards": [
            {"id": "cafe", "type": "product", "name": {"es": "Café"}, "cost": 100},
            {"id": "cena", "type": "experience", "name": {"es": "Cena"}, "cost": 500,
             "tiers": ["oro"]},
            {"id": "gratis", "type": "product", "name": {"es": "Gratis"}, "cost": 0},
            {"id": "futuro", "type": "product", "name": {"es": "Futuro"}, "cost": 90,
             "available_from": "2027-06-01T00:00:00Z"},
        ],
    }  # fmt: skip
    for key, value in extra.items():
        if key == "tiers":
            doc["tiers"] = {**doc["tiers"], **value}
        else:
            doc[key] = value
    return Programme.model_validate(doc)


class Population:
    """Rows written straight with Core: the finders read tables, not services."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ids: dict[str, int] = {}
        self.names: dict[int, str] = {}

    def member(
        self,
        name: str,
        *,
        tz: str = "Europe/Madrid",
        birthday: date | None = None,
        enrolled: datetime = datetime(2026, 6, 15, 10, tzinfo=UTC),
        account: dict[str, Any] | None = None,
        erased: bool = False,
    ) -> int:
        member_id = self.session.execute(
            insert(_members)
            .values(
                external_id=name,
                timezone=tz,
                birthday=birthday,
                enrolled_at=enrolled,
                created_at=enrolled,
                updated_at=enrolled,
            )
            .returning(_members.c.id)
        ).scalar_one()
        if account is not None:
            self.session.execute(
                insert(_accounts).values(member_id=member_id, updated_at=NOW, **account)
            )
        if erased:
            self.session.execute(
                insert(_erasures).values(
                    member_id=member_id,
                    pseudonym=f"erased-{name}",
                    subject_hash="x" * 64,
                    mode="erase",
                    channel="api",
                    actor="test",
                    status="completed",
                    requested_at=NOW,
                )
            )
        self.ids[name] = member_id
        self.names[member_id] = name
        return member_id

    def entry(self, name: str, entry_type: str, points: int, at: datetime) -> int:
        return self.session.execute(
            insert(_entries)
            .values(
                member_id=self.ids[name],
                entry_type=entry_type,
                points=points,
                balance_after=0,
                reason="test",
                source_type="test",
                actor="test",
                occurred_at=at,
                recorded_at=at,
            )
            .returning(_entries.c.id)
        ).scalar_one()

    def lot(
        self,
        name: str,
        points: int,
        *,
        earned: datetime,
        expires: datetime | None,
        remaining: int | None = None,
        pending: bool = False,
    ) -> None:
        entry_id = self.entry(name, "earn", points, earned)
        self.session.execute(
            insert(_lots).values(
                member_id=self.ids[name],
                entry_id=entry_id,
                points=points,
                remaining=points if remaining is None else remaining,
                earned_at=earned,
                expires_at=expires,
                pending=pending,
            )
        )

    def order(self, name: str, total_minor: int, at: datetime, refunded_minor: int = 0) -> None:
        self.session.execute(
            insert(_orders).values(
                member_id=self.ids[name],
                external_id=f"o-{name}-{at.isoformat()}-{total_minor}",
                total_minor=total_minor,
                refunded_minor=refunded_minor,
                currency="EUR",
                status="paid",
                occurred_at=at,
                recorded_at=at,
            )
        )

    def due(
        self, trigger: dict[str, Any], *, now: datetime = NOW, prog: Programme | None = None
    ) -> dict[str, str]:
        """Who is due (by name) and for which occurrence; asserts a second look agrees."""
        stmt = finders.due(ADAPTER.validate_python(trigger), programme=prog or programme(), now=now)
        first = self.session.execute(stmt).all()
        again = self.session.execute(stmt).all()
        assert sorted(first) == sorted(again)
        found = {self.names[member_id]: occurrence for member_id, occurrence in first}
        assert len(found) == len(first), "a member is due at most once per look"
        return found


@pytest.fixture
def pop(db: Database) -> Any:
    with db.unit_of_work() as session:
        yield Population(session)


def test_birthdays_in_each_members_timezone(pop: Population) -> None:
    pop.member("ana", birthday=date(1990, 2, 28))
    pop.member("leap", birthday=date(1992, 2, 29))
    pop.member("kiwi", tz="Pacific/Auckland", birthday=date(1985, 3, 1))
    pop.member("kiwi_yesterday", tz="Pacific/Auckland", birthday=date(1985, 2, 28))
    pop.member("kiwi_leap", tz="Pacific/Auckland", birthday=date(1988, 2, 29))
    pop.member("angel", tz="America/Los_Angeles", birthday=date(1970, 2, 28))
    pop.member("angel_tomorrow", tz="America/Los_Angeles", birthday=date(1970, 3, 1))
    pop.member("nowhere", tz="Mars/Base", birthday=date(2000, 2, 28))
    pop.member("gone", birthday=date(1990, 2, 28), erased=True)
    pop.member("unknown_birthday")
    pop.member("other_day", birthday=date(1990, 7, 14))

    # 11:30 UTC: 12:30 in Madrid, 03:30 in Los Angeles, already 00:30 on 1 March in Auckland.
    assert pop.due({"kind": "birthday"}) == {
        "ana": "2027-02-28",
        "leap": "2027-02-28",
        "kiwi": "2027-03-01",
        "angel": "2027-02-28",
        "nowhere": "2027-02-28",  # an unknown zone falls back to the programme's
    }
    # One minute before midnight in Auckland, 28 February is still theirs.
    assert pop.due({"kind": "birthday"}, now=datetime(2027, 2, 28, 10, 59, tzinfo=UTC)) == {
        "ana": "2027-02-28",
        "leap": "2027-02-28",
        "kiwi_yesterday": "2027-02-28",
        "kiwi_leap": "2027-02-28",
        "angel": "2027-02-28",
        "nowhere": "2027-02-28",
    }
    # 08:30 UTC on 1 March: midnight has passed in Los Angeles only later (00:30 PST).
    assert pop.due({"kind": "birthday"}, now=datetime(2027, 3, 1, 8, 30, tzinfo=UTC)) == {
        "kiwi": "2027-03-01",
        "angel_tomorrow": "2027-03-01",
    }
    # A day ahead: the occurrence is the birthday being celebrated.
    assert pop.due({"kind": "birthday", "days_before": 1}, now=NOW - timedelta(days=1)) == {
        "ana": "2027-02-28",
        "leap": "2027-02-28",
        "kiwi": "2027-03-01",
        "angel": "2027-02-28",
        "nowhere": "2027-02-28",
    }


def test_29_february_birthdays_in_a_leap_year(pop: Population) -> None:
    pop.member("ana", birthday=date(1990, 2, 28))
    pop.member("leap", birthday=date(1992, 2, 29))
    assert pop.due({"kind": "birthday"}, now=datetime(2028, 2, 28, 12, tzinfo=UTC)) == {
        "ana": "2028-02-28"
    }
    assert pop.due({"kind": "birthday"}, now=datetime(2028, 2, 29, 12, tzinfo=UTC)) == {
        "leap": "2028-02-29"
    }


def test_enrolment_anniversaries(pop: Population) -> None:
    pop.member("one_year", enrolled=datetime(2026, 2, 28, 9, tzinfo=UTC))
    pop.member(
        "two_years_kiwi", tz="Pacific/Auckland", enrolled=datetime(2025, 3, 1, 8, tzinfo=UTC)
    )
    pop.member("leap_day", enrolled=datetime(2024, 2, 29, 18, tzinfo=UTC))
    pop.member("today", enrolled=datetime(2027, 2, 28, 9, tzinfo=UTC))
    pop.member("other", enrolled=datetime(2026, 2, 27, 9, tzinfo=UTC))
    pop.member("gone", enrolled=datetime(2026, 2, 28, 9, tzinfo=UTC), erased=True)
    assert pop.due({"kind": "anniversary"}) == {
        "one_year": "2027-02-28",
        "two_years_kiwi": "2027-03-01",
        "leap_day": "2027-02-28",
    }


def test_inactivity_once_per_spell(pop: Population) -> None:
    pop.member("lapsed", account={"last_order_at": NOW - timedelta(days=100), "orders_count": 3})
    pop.member("exactly", account={"last_order_at": NOW - timedelta(days=90)})
    pop.member("recent", account={"last_order_at": NOW - timedelta(days=10)})
    pop.member("never", enrolled=NOW - timedelta(days=120), account={})
    pop.member("new", enrolled=NOW - timedelta(days=30), account={})
    pop.member("no_account", enrolled=NOW - timedelta(days=200))
    pop.member("gone", account={"last_order_at": NOW - timedelta(days=300)}, erased=True)
    trigger = {"kind": "inactivity", "days": 90}
    assert pop.due(trigger) == {
        "lapsed": "2026-11-20",
        "exactly": "2026-11-30",
        "never": "2026-10-31",
        "no_account": "2026-08-12",
    }
    # A day later the same spells are found with the same occurrences (so nothing new
    # starts); "new" is still too recent.
    assert pop.due(trigger, now=NOW + timedelta(days=1)) == pop.due(trigger)
    # "lapsed" orders again, then lapses again: a new spell, a new occurrence.
    pop.session.execute(
        update(_accounts)
        .where(_accounts.c.member_id == pop.ids["lapsed"])
        .values(last_order_at=NOW + timedelta(days=5))
    )
    later = pop.due(trigger, now=NOW + timedelta(days=95))
    assert later["lapsed"] == "2027-03-05"
    assert later["new"] == "2027-01-29"


def test_points_expiring_within_days(pop: Population) -> None:
    for name in ("soon", "far", "used", "few", "pending", "past", "gone"):
        pop.member(name, account={}, erased=name == "gone")
    e = NOW - timedelta(days=300)
    pop.lot("soon", 5, earned=e, expires=NOW + timedelta(days=10))
    pop.lot("soon", 20, earned=e, expires=NOW + timedelta(days=20))
    pop.lot("soon", 40, earned=e, expires=NOW + timedelta(days=45))
    pop.lot("far", 50, earned=e, expires=NOW + timedelta(days=40))
    pop.lot("used", 50, earned=e, expires=NOW + timedelta(days=5), remaining=0)
    pop.lot("few", 8, earned=e, expires=NOW + timedelta(days=3))
    pop.lot("pending", 50, earned=e, expires=NOW + timedelta(days=5), pending=True)
    pop.lot("past", 50, earned=e, expires=NOW - timedelta(days=1))
    pop.lot("gone", 50, earned=e, expires=NOW + timedelta(days=5))
    trigger = {"kind": "points_expiring", "within_days": 30, "min_points": 10}
    assert pop.due(trigger) == {"soon": "2027-03-10"}
    assert pop.due({**trigger, "min_points": 1}) == {"soon": "2027-03-10", "few": "2027-03-03"}
    # Once the first lot has expired, the next expiry date is a new occurrence.
    assert pop.due(trigger, now=NOW + timedelta(days=11)) == {
        "soon": "2027-03-20",
        "far": "2027-04-09",
    }


def test_unused_points(pop: Population) -> None:
    enrolled = datetime(2026, 6, 15, 10, tzinfo=UTC)
    for name, available in (("idle", 150), ("redeemed", 150), ("long_ago", 150),
                            ("fresh", 150), ("small", 50), ("gone", 150)):  # fmt: skip
        pop.member(name, account={"points_available": available}, erased=name == "gone")
    old = NOW - timedelta(days=90)
    for name in ("idle", "redeemed", "long_ago", "gone"):
        pop.lot(name, 150, earned=old, expires=NOW + timedelta(days=200))
    pop.lot("fresh", 150, earned=NOW - timedelta(days=10), expires=None)
    pop.lot("small", 50, earned=old, expires=None)
    pop.entry("redeemed", "redeem", -10, NOW - timedelta(days=30))
    pop.entry("long_ago", "redeem", -10, NOW - timedelta(days=100))
    trigger = {"kind": "unused_points", "older_than_days": 60, "min_points": 100}
    assert pop.due(trigger) == {
        "idle": enrolled.date().isoformat(),
        "long_ago": "2026-11-20",
    }


def test_near_the_next_tier_on_lifetime_spend(pop: Population) -> None:
    for name, tier, spend in (
        ("basico_350", "basico", 35_000),
        ("basico_300", "basico", 30_000),
        ("basico_29999", "basico", 29_999),
        ("plata_850", "plata", 85_000),
        ("plata_900", "plata", 90_000),
        ("plata_not_upgraded", "plata", 100_000),
        ("oro_top", "oro", 99_000),
        ("no_tier_400", None, 40_000),
        ("gone", "basico", 40_000),
    ):
        pop.member(name, account={"tier_id": tier, "qualifying_spend_minor": spend},
                   erased=name == "gone")  # fmt: skip
    pop.member("no_account")
    assert pop.due({"kind": "near_tier", "within_amount": "200"}) == {
        "basico_350": "plata",
        "basico_300": "plata",
        "plata_850": "oro",
        "plata_900": "oro",
        "no_tier_400": "plata",
    }
    assert pop.due({"kind": "near_tier", "within_percent": "10"}) == {"plata_900": "oro"}
    assert pop.due({"kind": "near_tier", "within_percent": "100"})["no_account"] == "plata"


def test_near_the_next_tier_over_a_calendar_year_and_on_points(pop: Population) -> None:
    yearly = programme(tiers={"period": "calendar_year"})
    pop.member("this_year", account={"tier_id": "basico", "qualifying_spend_minor": 140_000})
    pop.order("this_year", 140_000, datetime(2026, 12, 30, tzinfo=UTC))
    pop.order("this_year", 30_000, datetime(2027, 1, 10, tzinfo=UTC))
    pop.order("this_year", 20_000, datetime(2027, 2, 10, tzinfo=UTC), refunded_minor=5_000)
    pop.order("this_year", 90_000, NOW + timedelta(days=1))  # not yet
    pop.member("nothing_this_year", account={"tier_id": "basico"})
    pop.order("nothing_this_year", 45_000, datetime(2026, 6, 1, tzinfo=UTC))
    assert pop.due({"kind": "near_tier", "within_amount": 200}, prog=yearly) == {
        "this_year": "plata:2027"  # 300 + 200 - 50 = 450 € this year
    }

    on_points = programme(tiers={"basis": "points"})
    pop.member("pointy", account={"tier_id": "basico"})
    pop.entry("pointy", "earn", 480, NOW - timedelta(days=400))
    pop.entry("pointy", "reverse", -30, NOW - timedelta(days=300))
    pop.entry("pointy", "redeem", -400, NOW - timedelta(days=200))  # spending doesn't count
    assert pop.due({"kind": "near_tier", "within_amount": 50}, prog=on_points) == {
        "pointy": "plata"
    }


def test_near_the_next_tier_over_a_rolling_window(pop: Population) -> None:
    """Once per target tier per stay in the current tier (its start names the occurrence)."""
    rolling = programme(tiers={"period": "rolling", "rolling_months": 12})
    since = datetime(2026, 9, 1, 8, tzinfo=UTC)
    pop.member("recent", account={"tier_id": "plata", "tier_since": since})
    pop.order("recent", 60_000, datetime(2025, 12, 1, tzinfo=UTC))  # outside the window
    pop.order("recent", 85_000, datetime(2026, 10, 1, tzinfo=UTC))
    pop.member("never_moved", enrolled=datetime(2026, 5, 2, 9, tzinfo=UTC), account={})
    pop.order("never_moved", 40_000, datetime(2026, 6, 1, tzinfo=UTC))
    assert pop.due({"kind": "near_tier", "within_amount": 200}, prog=rolling) == {
        "recent": "oro:2026-09-01",
        "never_moved": "plata:2026-05-02",
    }


def test_near_a_reward(pop: Population) -> None:
    for name, points, tier, spent in (
        ("near_cafe", 85, "basico", 0),
        ("too_far", 79, "basico", 0),
        ("affords", 100, "basico", 0),
        ("plata_490", 490, "plata", 0),
        ("oro_490", 490, "oro", 0),
        ("spent_before", 95, "basico", 300),
        ("gone", 95, "basico", 0),
    ):
        pop.member(name, account={"points_available": points, "tier_id": tier,
                                  "lifetime_spent": spent}, erased=name == "gone")  # fmt: skip
    trigger = {"kind": "near_reward", "within_points": 20}
    # "futuro" (90 points) isn't available until June: 85 is not near it yet.
    assert pop.due(trigger) == {
        "near_cafe": "cafe:0",
        "oro_490": "cena:0",
        "spent_before": "cafe:300",
    }
    assert pop.due({**trigger, "reward": "cena"}) == {"oro_490": "cena:0"}
    assert pop.due({**trigger, "reward": "gratis"}) == {}


def test_schedule_ticks_in_the_programme_timezone(pop: Population) -> None:
    pop.member("ana")
    pop.member("kiwi", tz="Pacific/Auckland")
    pop.member("gone", erased=True)
    trigger = {"kind": "schedule", "cron": "0 9 * * *"}
    # 12:30 in Madrid: the latest tick was 09:00 Madrid, 08:00 UTC.
    assert pop.due(trigger) == {
        "ana": "2027-02-28T08:00:00+00:00",
        "kiwi": "2027-02-28T08:00:00+00:00",
    }
    assert pop.due(trigger, now=NOW + timedelta(hours=3)) == pop.due(trigger)
    assert set(pop.due(trigger, now=NOW + timedelta(days=1)).values()) == {
        "2027-03-01T08:00:00+00:00"
    }


def test_due_feeds_an_insert_select_that_starts_each_occurrence_once(pop: Population) -> None:
    """The SELECT (with its zone table) works inside INSERT … SELECT on both engines; a
    unique (member, occurrence) key makes a second pass insert nothing."""
    pop.member("ana", birthday=date(1990, 2, 28))
    pop.member("kiwi", tz="Pacific/Auckland", birthday=date(1985, 3, 1))
    pop.member("other", birthday=date(1985, 7, 1))
    scratch = Table(
        "wft_scratch_runs",
        MetaData(),
        Column("member_id", BigInteger, nullable=False),
        Column("occurrence", String(64), nullable=False),
        UniqueConstraint("member_id", "occurrence"),
    )
    connection = pop.session.connection()
    scratch.create(connection)
    try:
        stmt = finders.due(t.BirthdayTrigger(), programme=programme(), now=NOW).subquery("due")
        for _ in range(2):
            fresh = select(stmt.c.member_id, stmt.c.occurrence).where(
                ~select(scratch.c.member_id)
                .where(
                    scratch.c.member_id == stmt.c.member_id,
                    scratch.c.occurrence == stmt.c.occurrence,
                )
                .exists()
            )
            connection.execute(insert(scratch).from_select(["member_id", "occurrence"], fresh))
        rows = connection.execute(select(scratch.c.member_id, scratch.c.occurrence)).all()
        assert sorted(rows) == sorted(
            [(pop.ids["ana"], "2027-02-28"), (pop.ids["kiwi"], "2027-03-01")]
        )
    finally:
        scratch.drop(connection)


def test_the_birthday_finder_can_use_the_month_day_index(pop: Population) -> None:
    """Migration 0021's expression index matches the finder's expression on each engine."""
    pop.member("ana", birthday=date(1990, 2, 28))
    stmt = finders.due(t.BirthdayTrigger(), programme=programme(), now=NOW)
    connection = pop.session.connection()
    sql = str(stmt.compile(connection, compile_kwargs={"literal_binds": True}))
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = connection.execute(text(f"EXPLAIN {sql}")).scalars().all()
    else:
        plan = [row[-1] for row in connection.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
    assert any("ix_members_birthday_month_day" in line for line in plan), plan
