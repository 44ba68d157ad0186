"""The hot reads (balance, tier, benefits, rewards) at the speed of the database.

Each answers from one or two Core statements, authenticates from the key cache without a
connection of its own, and ends without a rollback (on PostgreSQL it opens no transaction at
all, so psycopg's prepared statements survive). Statements are counted on the real engine
(``before_cursor_execute``); the transaction control SQLite's driver sends through a cursor
(``BEGIN``/``COMMIT``) is not a statement of the read. The figures are checked against sums
made here, in Python, over the rows the engine wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select, text

from lealta.apikeys.cache import KeyCache, verify, verify_cached
from lealta.app import create_app
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.money import exponent
from lealta.models import LedgerEntry, Member, Order, PointLot
from lealta.programme.schema import Programme
from lealta.tiers import maths
from tests.factories import order_paid
from tests.test_programme_engine import START, no_pending, post, use
from tests.test_rules_engine import DEMO

HOT_READS = ("balance", "tier", "benefits", "rewards")
CONTROL = ("BEGIN", "BEGIN IMMEDIATE", "COMMIT")


@contextmanager
def recording(db: Database) -> Iterator[dict[str, list[str]]]:
    """Statements, COMMITs, ROLLBACKs and pool checkouts on ``db``'s engine meanwhile."""
    seen: dict[str, list[str]] = {"statements": [], "commits": [], "rollbacks": [], "checkouts": []}

    def statement(_c: Any, _cur: Any, sql: str, *_: Any) -> None:
        if sql.strip().upper() not in CONTROL:
            seen["statements"].append(sql)

    def commit(_conn: Any) -> None:
        seen["commits"].append("commit")

    def rollback(_conn: Any) -> None:
        seen["rollbacks"].append("rollback")

    def checkout(*_: Any) -> None:
        seen["checkouts"].append("checkout")

    listeners: list[tuple[Any, str, Callable[..., None]]] = [
        listener
        for engine in db.engines
        for listener in (
            (engine, "before_cursor_execute", statement),
            (engine, "commit", commit),
            (engine, "rollback", rollback),
            (engine.pool, "checkout", checkout),
        )
    ]

    def hot(sql: str) -> None:  # the balance read on the event loop (PostgreSQL): its
        seen["checkouts"].append("checkout")  # pool's connection, and its statement
        seen["statements"].append(sql)

    for target, name, fn in listeners:
        event.listen(target, name, fn)
    if db.hot_reads is not None:
        db.hot_reads.observers.append(hot)
    try:
        yield seen
    finally:
        for target, name, fn in listeners:
            event.remove(target, name, fn)
        if db.hot_reads is not None:
            db.hot_reads.observers.remove(hot)


def with_tiers(programme: Programme, **tiers: Any) -> Programme:
    assert programme.tiers is not None
    return programme.model_copy(update={"tiers": programme.tiers.model_copy(update=tiers)})


def with_warn_days(programme: Programme, days: int) -> Programme:
    return programme.model_copy(
        update={"expiry": programme.expiry.model_copy(update={"warn_days": days})}
    )


def shop(client: TestClient, clock: FixedClock, customer: str = "ana") -> datetime:
    """Orders of one customer over a year and a half; returns the moment of reading."""
    for n, (days, total) in enumerate([(0, "300.00"), (120, "80.50"), (250, "1200.00")]):
        at = START + timedelta(days=days)
        post(client, clock, order_paid(f"{customer}-e{n}", customer, f"{customer}-O{n}", total, at))
    clock.set(START + timedelta(days=430))
    return clock.now()


# --- how many statements, connections and transactions ---------------------------------------


@pytest.mark.parametrize("path", HOT_READS)
def test_a_hot_read_takes_at_most_two_statements_and_one_connection(
    db: Database, client: TestClient, clock: FixedClock, path: str
) -> None:
    use(db, no_pending(DEMO))
    shop(client, clock)
    warm = client.get(f"/v1/members/ana/{path}")
    assert warm.status_code == 200, warm.text
    with recording(db) as seen:
        again = client.get(f"/v1/members/ana/{path}")
    assert again.content == warm.content
    assert len(seen["statements"]) <= 2, seen["statements"]
    assert not any("api_keys" in s for s in seen["statements"])
    # The key came from the cache: the read's own connection is the only one taken.
    assert len(seen["checkouts"]) == 1
    assert seen["rollbacks"] == []


def test_the_balance_takes_one_statement_once_the_warning_window_is_known(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    shop(client, clock)
    client.get("/v1/members/ana/balance")
    with recording(db) as seen:
        assert client.get("/v1/members/ana/balance").status_code == 200
    assert len(seen["statements"]) == 1, seen["statements"]


def test_reads_end_without_a_rollback_even_when_refused(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    shop(client, clock)
    client.get("/v1/members/ana/balance")  # the key is in the cache from here on
    with recording(db) as seen:
        for path in (*HOT_READS, "orders", "redemptions"):
            assert client.get(f"/v1/members/ana/{path}").status_code == 200
            assert client.get(f"/v1/members/nobody/{path}").status_code == 404
        assert client.get("/v1/members/ana").status_code == 200
    assert seen["rollbacks"] == []
    if db.dialect == "sqlite":  # on PostgreSQL these reads open no transaction to end
        assert len(seen["commits"]) == 2 * 6 + 1


def test_a_read_never_writes_what_its_objects_were_given(db: Database, client: TestClient) -> None:
    assert client.post("/v1/members", json={"external_id": "ana", "name": "Ana"}).status_code == 201
    with recording(db) as seen, db.unit_of_work(write=False) as session:
        member = session.scalars(select(Member).where(Member.external_id == "ana")).one()
        member.name = "Changed in a read"
    assert member.name == "Changed in a read"  # the caller keeps its (detached) object
    assert seen["commits"] and not seen["rollbacks"]
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(Member.name).where(Member.external_id == "ana")) == "Ana"


def test_autocommit_is_for_reads_only(db: Database) -> None:
    with pytest.raises(ValueError, match="reading"), db.unit_of_work(autocommit=True):
        pass


@pytest.mark.postgres_only
def test_prepared_statements_survive_reads_and_refusals(
    database_url: str, db: Database, client: TestClient, clock: FixedClock, server_key: str
) -> None:
    use(db, no_pending(DEMO))
    shop(client, clock)
    # One pooled connection, so that every read below runs on the one we inspect.
    single = Database(database_url, pool_size=1, max_overflow=0)
    try:
        app = create_app(
            Settings(database_url=database_url, env="test", log_level="WARNING"),
            db=single,
            clock=clock,
        )
        with TestClient(app) as one:
            one.headers["Authorization"] = f"Bearer {server_key}"
            for _ in range(6):  # psycopg prepares a statement on its fifth run
                for path in HOT_READS:
                    assert one.get(f"/v1/members/ana/{path}").status_code == 200
            before = _prepared(single) | _prepared_hot(one, single)
            # Each read's statement, the balance's on the event loop's pool (and the
            # listing's own there, prepared to run it).
            assert len(before) >= len(HOT_READS) + 1
            assert any(where == "hot" for where, _ in before)
            for path in HOT_READS:
                assert one.get(f"/v1/members/nobody/{path}").status_code == 404
                assert one.get(f"/v1/members/ana/{path}").status_code == 200
            assert _prepared(single) | _prepared_hot(one, single) >= before
    finally:
        single.dispose()


def _prepared(db: Database) -> set[tuple[str, str]]:
    with db.read_engine.connect() as conn:
        names = set(conn.scalars(text("SELECT name FROM pg_prepared_statements")))
        conn.commit()
    return {("thread", name) for name in names}


def _prepared_hot(client: TestClient, db: Database) -> set[tuple[str, str]]:
    """The prepared statements of the balance's event-loop pool (one connection here)."""
    assert db.hot_reads is not None and client.portal is not None
    listing = text("SELECT name FROM pg_prepared_statements")
    rows = client.portal.call(db.hot_reads.rows, listing, {})
    assert rows is not None
    return {("hot", name) for (name,) in rows}


# --- authentication from the cache -------------------------------------------------------------


def test_a_cached_key_is_answered_without_the_database(db: Database, server_key: str) -> None:
    cache = KeyCache(5)
    assert verify_cached(cache, server_key) is None  # not seen yet: the database must say
    principal = verify(db, cache, server_key)
    with recording(db) as seen:
        assert verify_cached(cache, server_key) == principal
        assert verify(db, cache, server_key) == principal
    assert seen["checkouts"] == [] and seen["statements"] == []


# --- the figures ------------------------------------------------------------------------------


def _open_lots(db: Database, customer: str, now: datetime) -> list[tuple[datetime, int]]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(PointLot.expires_at, PointLot.remaining)
            .join(Member, Member.id == PointLot.member_id)
            .where(Member.external_id == customer, PointLot.remaining > 0)
        ).all()
    return [(at, points) for at, points in rows if at is not None and at > now]


@pytest.mark.parametrize("warn_days", [30, 200, 0])
def test_the_balance_says_what_expires_within_the_programmes_window(
    db: Database, client: TestClient, clock: FixedClock, warn_days: int
) -> None:
    use(db, no_pending(DEMO))
    now = shop(client, clock)
    lots = _open_lots(db, "ana", now)
    assert len({at for at, _ in lots}) >= 2  # lots expiring on different dates
    client.get("/v1/members/ana/balance")  # read once under the demo's 30 days
    use(db, no_pending(with_warn_days(DEMO, warn_days)), at=START)
    for _ in range(2):  # the read after a change of window, then the usual one-statement read
        body = client.get("/v1/members/ana/balance").json()
        horizon = now + timedelta(days=warn_days)
        assert body["expiring_soon"] == sum(p for at, p in lots if at <= horizon)
        soonest = min(at for at, _ in lots)
        assert datetime.fromisoformat(body["next_expiry"]["at"]) == soonest
        assert body["next_expiry"]["points"] == sum(p for at, p in lots if at == soonest)
        assert body["available"] == sum(p for _, p in lots)


def test_a_balance_without_expiring_points_has_no_next_expiry(
    client: TestClient, clock: FixedClock
) -> None:
    shop(client, clock)  # the default rules: points never expire
    body = client.get("/v1/members/ana/balance").json()
    assert body["expiring_soon"] == 0 and body["next_expiry"] is None
    assert body["available"] > 0


TIER_SHAPES: dict[str, dict[str, Any]] = {
    "lifetime spend (from the account row)": {},
    "rolling spend": {"period": "rolling", "rolling_months": 12},
    "calendar-year points": {"basis": "points", "period": "calendar_year"},
    "lifetime points": {"basis": "points"},
}


@pytest.mark.parametrize("shape", TIER_SHAPES)
def test_tier_progress_matches_sums_over_the_rows(
    db: Database, client: TestClient, clock: FixedClock, shape: str
) -> None:
    programme = no_pending(with_tiers(DEMO, **TIER_SHAPES[shape]))
    use(db, programme)
    now = shop(client, clock)
    tiers = programme.tiers
    assert tiers is not None
    value, last_year, first = _reference(db, programme, "ana", now)
    body = client.get("/v1/members/ana/tier").json()
    assert Decimal(body["qualifying_value"]) == value
    rate = maths.spending_rate(last_year, (now - first).days)
    expected = maths.progress(tiers, body["tier"]["id"], value, rate_per_day=rate, today=now.date())
    assert body["estimated_date"] == (
        expected.estimated_date.isoformat() if expected.estimated_date else None
    )
    moments = [h["occurred_at"] for h in body["history"]]
    assert moments == sorted(moments, reverse=True) and body["history"]
    assert body["history"][-1]["from_tier"] is None  # the entry placement comes last


def _reference(
    db: Database, programme: Programme, customer: str, now: datetime
) -> tuple[Decimal, Decimal, datetime]:
    """Qualifying value, last year's value and the start of the member's rate, from rows."""
    tiers = programme.tiers
    assert tiers is not None
    start = maths.window_start(tiers, now)
    year_ago = now - timedelta(days=365)
    with db.unit_of_work(write=False) as session:
        member = session.scalars(select(Member).where(Member.external_id == customer)).one()
        if tiers.basis == "spend":
            moments = [
                (o.occurred_at, Decimal(o.total_minor - o.refunded_minor))
                for o in session.scalars(select(Order).where(Order.member_id == member.id))
            ]
            scale = -exponent(programme.currency)
            first = min(at for at, _ in moments)
        else:
            moments = [
                (e.occurred_at, Decimal(e.points))
                for e in session.scalars(
                    select(LedgerEntry).where(
                        LedgerEntry.member_id == member.id,
                        LedgerEntry.entry_type.in_(("earn", "reverse")),
                    )
                )
            ]
            scale = 0
            first = member.enrolled_at

    def between(begin: datetime | None) -> Decimal:
        total = sum(
            (v for at, v in moments if at <= now and (begin is None or at > begin)), Decimal(0)
        )
        return total.scaleb(scale)

    return between(start), between(year_ago), first


def test_benefits_and_rewards_follow_the_tier_and_the_points(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    shop(client, clock)
    tier = client.get("/v1/members/ana/tier").json()["tier"]["id"]
    assert client.get("/v1/members/ana/benefits").json()["tier"] == tier
    balance = client.get("/v1/members/ana/balance").json()
    rewards = client.get("/v1/members/ana/rewards").json()
    assert rewards["tier"] == tier
    assert rewards["points_available"] == balance["available"]
    for item in rewards["items"]:
        codes = {lock["code"] for lock in item["locked_reasons"]}
        assert ("insufficient_points" in codes) == (item["cost"] > balance["available"])


def test_a_redemption_counts_in_the_members_catalogue_at_once(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    shop(client, clock)
    before = {r["id"]: r for r in client.get("/v1/members/ana/rewards").json()["items"]}
    reward = next(r for r in before.values() if r["redeemable"])
    made = client.post(
        "/v1/members/ana/redemptions",
        json={"reward_id": reward["id"]},
        headers={"Idempotency-Key": "r1"},
    )
    assert made.status_code == 201, made.text
    after = {r["id"]: r for r in client.get("/v1/members/ana/rewards").json()["items"]}
    assert after[reward["id"]]["redeemed_by_member"] == reward["redeemed_by_member"] + 1
    if reward["stock_left"] is not None:
        assert after[reward["id"]]["stock_left"] == reward["stock_left"] - 1


def test_an_unknown_member_is_404_on_every_hot_read(client: TestClient) -> None:
    for path in HOT_READS:
        r = client.get(f"/v1/members/nobody/{path}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "member_not_found"


def test_the_programme_in_force_is_read_with_the_member(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db, no_pending(DEMO))
    shop(client, clock)
    assert client.get("/v1/members/ana/balance").json()["currency"] == "EUR"
    later = datetime.now(UTC) + timedelta(days=1)
    use(db, no_pending(DEMO.model_copy(update={"currency": "USD"})), at=later)
    assert client.get("/v1/members/ana/balance").json()["currency"] == "EUR"  # not yet
