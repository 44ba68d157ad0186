"""Badges, challenges, streaks and leaderboards on the configured database (SQLite or
PostgreSQL), driven through the events API and the real jobs worker with a fixed clock."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import SAWarning
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import Settings, get_settings
from lealta.gamification import privacy, service
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Base, Database
from lealta.kit.errors import LealtaError
from lealta.models import (
    Account,
    Coupon,
    Event,
    LedgerEntry,
    Member,
    MemberBadge,
    OutboxMessage,
    StreakRung,
    StreakState,
)
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from tests.conftest import app_for
from tests.factories import PASSWORD, add_member, create_staff, order_paid
from tests.i18n_leaks import english_leaks, spanish_leaks
from tests.test_cockpit import cockpit_settings, mail, mailbox, sign_in  # noqa: F401
from tests.test_rewards import DEMO, use

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TABLES = (
    "member_badges",
    "challenge_progress",
    "gamification_applied",
    "streak_states",
    "streak_rungs",
    "leaderboard_profiles",
)


@pytest.fixture
def quick(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, env="test", log_level="WARNING", worker_poll_seconds=0.01
    )


@pytest.fixture
def api(db: Database, clock: FixedClock, quick: Settings, server_key: str) -> Iterator[TestClient]:
    use(db, DEMO)
    app = app_for(quick, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


def drain(db: Database, clock: FixedClock, settings: Settings) -> None:
    Worker(db, clock=clock, settings=settings, name="gamification-test", schedule=False).run(
        until_idle=True
    )


def post(client: TestClient, clock: FixedClock, payload: dict[str, Any]) -> None:
    clock.set(datetime.fromisoformat(payload["occurred_at"]))
    r = client.post("/v1/events", json=payload)
    assert r.status_code in (200, 201), r.text


def order(
    client: TestClient, clock: FixedClock, n: str, customer: str, at: datetime, total: str = "20"
) -> None:
    post(client, clock, order_paid(f"e-{n}", customer, f"o-{n}", total, at))


def review(client: TestClient, clock: FixedClock, n: str, customer: str, at: datetime) -> None:
    post(
        client,
        clock,
        {
            "id": f"r-{n}",
            "type": "review.posted",
            "customer_id": customer,
            "occurred_at": at.isoformat(),
            "properties": {"stars": 5},
        },
    )


def scalar(db: Database, stmt: Any) -> Any:
    with db.unit_of_work(write=False) as session:
        return session.scalar(stmt)


def points_from(db: Database, member_id: int, source_type: str) -> list[int]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(LedgerEntry.points)
                .where(LedgerEntry.member_id == member_id, LedgerEntry.source_type == source_type)
                .order_by(LedgerEntry.id)
            )
        )


def badges(db: Database, member_id: int) -> dict[str, int]:
    with db.unit_of_work(write=False) as session:
        return {b: r.points for b, r in service.badges_of(session, member_id).items()}


def redeliver_all(db: Database, clock: FixedClock) -> None:
    """Run every stored event through gamification again, as a re-delivery would."""
    with db.unit_of_work() as session:
        programme = programmes.current(session, now=clock.now())
        rows = session.execute(
            select(OutboxMessage.topic, OutboxMessage.payload, OutboxMessage.member_id).where(
                OutboxMessage.topic.in_(("order.paid", "review.posted"))
            )
        ).all()
        for topic, payload, member_id in rows:
            happened = service.happened(
                session, topic, payload["event_id"], clock.now(), backfill=False
            )
            service.process(session, programme, member_id, happened, now=clock.now())


def test_the_gamification_tables_match_their_migration(db: Database) -> None:
    # Other tables' expression indexes cannot be reflected (a warning): only ours matter.
    with db.engine.connect() as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if any(t in repr(d) for t in TABLES)] == []


def test_badges_are_awarded_once_with_their_points_once(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    ana = add_member(db, "ana", "ana@example.com")
    start = datetime(2026, 2, 2, 10, tzinfo=UTC)
    order(api, clock, "1", "ana", start)
    for i in range(3):
        review(api, clock, str(i), "ana", start + timedelta(days=i + 1))
    drain(db, clock, quick)
    assert badges(db, ana) == {"first-order": 0, "reviewer": 50}
    assert points_from(db, ana, "badge") == [50]
    topics = scalar(db, select(func.count()).where(OutboxMessage.topic == "badge.awarded"))
    assert topics == 2

    redeliver_all(db, clock)
    drain(db, clock, quick)
    assert badges(db, ana) == {"first-order": 0, "reviewer": 50}
    assert points_from(db, ana, "badge") == [50]
    assert scalar(db, select(func.count()).where(OutboxMessage.topic == "badge.awarded")) == 2


def test_a_tier_badge_and_the_setwise_backfill_for_a_new_badge(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    ids = [add_member(db, f"m{i}", None) for i in range(3)]
    at = datetime(2026, 2, 2, 10, tzinfo=UTC)
    for i in range(2):
        order(api, clock, f"a{i}", "m0", at + timedelta(hours=i))
    order(api, clock, "b0", "m1", at)
    drain(db, clock, quick)
    with db.unit_of_work() as session:
        account = session.get(Account, ids[2])
        assert account is not None
        account.tier_id = "platino"
    # A new badge, added after the orders: two orders, 40 points.
    document = DEMO.model_dump(mode="json", exclude_none=True)
    document["badges"].append(
        {"id": "two-orders", "name": "Two", "condition": {"metric": "orders", "at_least": 2},
         "points": 40}
    )  # fmt: skip
    bigger = Programme.model_validate(document)
    with db.unit_of_work() as session:
        first = service.backfill_badges(session, bigger, now=clock.now())
        again = service.backfill_badges(session, bigger, now=clock.now())
    assert first["two-orders"] == 1 and first["gold"] == 1 and first["first-order"] == 0
    assert all(n == 0 for n in again.values())
    assert badges(db, ids[0]) == {"first-order": 0, "two-orders": 40}
    assert badges(db, ids[2]) == {"gold": 0}
    assert points_from(db, ids[0], "badge") == [40]


def test_imported_history_earns_the_badge_but_no_points(db: Database, clock: FixedClock) -> None:
    use(db, DEMO)
    bea = add_member(db, "bea", None)
    with db.unit_of_work() as session:
        member = session.get(Member, bea)
        assert member is not None
        for i in range(3):
            session.add(
                Event(
                    idempotency_key=f"imp-{i}", external_id=f"imp-{i}",
                    event_type="review.posted", member_id=bea,
                    payload={"properties": {"stars": 4}}, occurred_at=clock.now(),
                    received_at=clock.now(),
                )
            )  # fmt: skip
        session.flush()
        happened = service.happened(session, "review.posted", "imp-2", clock.now(), backfill=True)
        service.process(session, DEMO, bea, happened, now=clock.now())
    assert badges(db, bea) == {"reviewer": 0}
    assert points_from(db, bea, "badge") == []


def test_a_challenge_counts_in_the_members_month_and_rewards_once(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    cris = add_member(db, "cris", None)  # Europe/Madrid by default
    # 23:30 UTC on 31 October is 00:30 on 1 November in Madrid: a November order.
    times = [
        datetime(2026, 10, 30, 10, tzinfo=UTC),
        datetime(2026, 10, 31, 23, 30, tzinfo=UTC),
        datetime(2026, 11, 15, 9, tzinfo=UTC),
    ]
    for i, at in enumerate(times):
        order(api, clock, f"c{i}", "cris", at)
    drain(db, clock, quick)
    with db.unit_of_work(write=False) as session:
        progress = service.progress_of(session, cris)
    october = progress[("three-orders-month", "2026-10")]
    november = progress[("three-orders-month", "2026-11")]
    assert (october.value, october.completed_at) == (1, None)
    assert november.value == 2 and november.completed_at is None

    order(api, clock, "c3", "cris", datetime(2026, 11, 30, 22, 59, tzinfo=UTC))
    order(api, clock, "c4", "cris", datetime(2026, 11, 30, 23, 30, tzinfo=UTC))  # December
    drain(db, clock, quick)
    redeliver_all(db, clock)
    drain(db, clock, quick)
    with db.unit_of_work(write=False) as session:
        progress = service.progress_of(session, cris)
    november = progress[("three-orders-month", "2026-11")]
    assert november.value == 3 and november.completed_at is not None
    assert november.points == 150
    assert progress[("three-orders-month", "2026-12")].value == 1
    assert points_from(db, cris, "challenge") == [150]
    assert scalar(db, select(func.count()).where(OutboxMessage.topic == "challenge.completed")) == 1


def test_a_filtered_challenge_only_counts_matching_events(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    dani = add_member(db, "dani", None)
    at = datetime(2026, 3, 3, 10, tzinfo=UTC)
    review(api, clock, "x1", "dani", at)
    post(
        api,
        clock,
        {"id": "r-nostars", "type": "review.posted", "customer_id": "dani",
         "occurred_at": (at + timedelta(hours=1)).isoformat(), "properties": {}},
    )  # fmt: skip
    drain(db, clock, quick)
    with db.unit_of_work(write=False) as session:
        row = service.progress_of(session, dani)[("two-reviews-month", "2026-03")]
    assert row.value == 1 and row.completed_at is None
    review(api, clock, "x2", "dani", at + timedelta(days=2))
    drain(db, clock, quick)
    assert points_from(db, dani, "challenge") == [60]


def test_a_streak_pays_each_rung_once_and_a_missed_month_resets(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    eva = add_member(db, "eva", None)
    # Madrid months: Jan, Feb (31 Jan 23:30 UTC is 1 Feb), Mar, Mar again, May, Jun, Jul.
    moments = [
        datetime(2026, 1, 10, 10, tzinfo=UTC),
        datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
        datetime(2026, 3, 2, 10, tzinfo=UTC),
        datetime(2026, 3, 20, 10, tzinfo=UTC),
    ]
    # Delivered in order (a streak ignores a late event for an earlier month: see the README).
    for i, at in enumerate(moments):
        order(api, clock, f"s{i}", "eva", at)
        drain(db, clock, quick)
    assert points_from(db, eva, "streak") == [100]
    redeliver_all(db, clock)
    assert points_from(db, eva, "streak") == [100]
    for i, at in enumerate(
        [datetime(2026, 5, 5, 10, tzinfo=UTC), datetime(2026, 6, 5, 10, tzinfo=UTC)]
    ):
        order(api, clock, f"t{i}", "eva", at)
        drain(db, clock, quick)
    with db.unit_of_work(write=False) as session:
        state = session.scalars(select(StreakState).where(StreakState.member_id == eva)).one()
        rungs = session.scalars(select(StreakRung).where(StreakRung.member_id == eva)).all()
    assert (state.length, state.best) == (2, 3)  # April missed: May starts again
    assert [(r.months, r.points) for r in rungs] == [(3, 100)]
    order(api, clock, "t9", "eva", datetime(2026, 7, 5, 10, tzinfo=UTC))
    drain(db, clock, quick)
    assert points_from(db, eva, "streak") == [100, 100]  # a new run reaches 3 again
    with db.unit_of_work(write=False) as session:
        rewarded = session.scalars(
            select(OutboxMessage.payload).where(OutboxMessage.topic == "streak.rewarded")
        ).all()
    assert [(p["streak_id"], p["months"], p["points"]) for p in rewarded] == [
        ("monthly-orders", 3, 100),
        ("monthly-orders", 3, 100),
    ]


def _join(db: Database, member_id: int, name: str, *, join: bool = True) -> None:
    with db.unit_of_work() as session:
        member = session.get(Member, member_id)
        assert member is not None
        service.set_leaderboard(session, member, display_name=name, join=join, now=T_NOW)


T_NOW = datetime(2026, 4, 20, 12, tzinfo=UTC)


def test_the_leaderboard_ranks_opted_in_members_with_ties(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    names = ["fer", "gil", "hugo", "ines", "juan"]
    ids = {n: add_member(db, n, None) for n in names}
    totals = {"fer": "100", "gil": "300", "hugo": "100", "ines": "500", "juan": "50"}
    for n, total in totals.items():
        order(api, clock, n, n, datetime(2026, 4, 2, 10, tzinfo=UTC), total)
    # Last month's points do not count this month.
    order(api, clock, "old", "fer", datetime(2026, 3, 2, 10, tzinfo=UTC), "900")
    drain(db, clock, quick)
    _join(db, ids["fer"], "Fer")
    _join(db, ids["gil"], "Gil G.")
    _join(db, ids["hugo"], "Hugo")
    _join(db, ids["ines"], "Inés", join=False)  # a name, but no consent
    _join(db, ids["juan"], "Juan")
    _join(db, ids["juan"], "Juan", join=False)  # changed their mind
    with db.unit_of_work(write=False) as session:
        board = service.board(DEMO, "monthly-points")
        top, mine = service.standings(session, DEMO, board, now=T_NOW, member_id=ids["hugo"])
        _, nobody = service.standings(session, DEMO, board, now=T_NOW, member_id=ids["ines"])
    # Base 1 point per euro: gil 300, fer 100, hugo 100 (first-order badges give 0 points).
    assert [(s.display_name, s.score, s.rank) for s in top] == [
        ("Gil G.", 300, 1),
        ("Fer", 100, 2),
        ("Hugo", 100, 2),
    ]
    assert mine is not None and mine.rank == 2
    assert nobody is None


def test_display_names_are_checked_and_unique(db: Database) -> None:
    a, b = add_member(db, "a1", None), add_member(db, "b1", None)
    _join(db, a, "Luna")
    for bad, code in [
        ("luna", "display_name_taken"),
        (" L U N A ", "display_name_taken"),
        ("me@example.com", "display_name_invalid"),
        ("x" * 30, "display_name_invalid"),
        ("<b>hi</b>", "display_name_invalid"),
        ("", "display_name_invalid"),
    ]:
        with pytest.raises(LealtaError) as caught:
            _join(db, b, bad)
        assert caught.value.code == code, bad
    _join(db, a, "Luna Nueva")
    _join(db, b, "Luna")  # free again
    with db.unit_of_work(write=False) as session:
        assert service.opted_in(session, b) and service.profile(session, b) is not None


# --- API, console, cockpit and privacy ------------------------------------------------------


def test_the_api_reads_badges_challenges_and_a_leaderboard(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    kim = add_member(db, "kim", None)
    order(api, clock, "k1", "kim", datetime(2026, 5, 4, 10, tzinfo=UTC), "70")
    drain(db, clock, quick)
    _join(db, kim, "Kim")
    listed = api.get("/v1/members/kim/badges")
    assert listed.status_code == 200, listed.text
    by_id = {b["id"]: b for b in listed.json()["items"]}
    assert by_id["first-order"]["earned"] is True and by_id["ten-orders"]["earned"] is False
    challenges = api.get("/v1/members/kim/challenges").json()["items"]
    assert [(c["id"], c["period"], c["value"], c["target"], c["percent"]) for c in challenges] == [
        ("three-orders-month", "2026-05", 1, 3, 33)
    ]
    board = api.get("/v1/leaderboards/monthly-points")
    assert board.status_code == 200
    assert board.json()["items"] == [{"rank": 1, "display_name": "Kim", "score": 70}]
    missing = api.get("/v1/leaderboards/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "leaderboard_not_found"
    assert api.get("/v1/members/nobody/badges").status_code == 404


def test_export_and_erasure(db: Database, clock: FixedClock) -> None:
    use(db, DEMO)
    lia = add_member(db, "lia", None)
    _join(db, lia, "Lia")
    with db.unit_of_work() as session:
        session.add(
            MemberBadge(
                member_id=lia, badge_id="first-order", points=0, ledger_entry_id=None,
                backfill=False, awarded_at=clock.now(),
            )
        )  # fmt: skip
    with db.unit_of_work() as session:
        exported = privacy.export_gamification(session, lia)
        assert exported["leaderboard_name"] == "Lia"
        assert [b["badge"] for b in exported["badges"]] == ["first-order"]
        privacy.erase_leaderboard(session, lia, clock.now())
    with db.unit_of_work(write=False) as session:
        assert service.profile(session, lia) is None  # no name: on no leaderboard
        top, _ = service.standings(
            session, DEMO, service.board(DEMO, "monthly-points"), now=clock.now()
        )
        assert top == []


@pytest.fixture
def site(db: Database, clock: FixedClock, cockpit_settings: Settings) -> Any:  # noqa: F811
    use(db, DEMO)
    with db.unit_of_work() as session:
        create_staff(session, ("admin",), now=clock.now(), domain="shop.test")
    return app_for(cockpit_settings, db=db, clock=clock)


def _token(page: str) -> str:
    found = CSRF.search(page)
    assert found, page
    return found.group(1)


def test_cockpit_pages_in_both_languages_and_a_refused_name(
    site: Any,
    db: Database,
    clock: FixedClock,
    mail: Any,  # noqa: F811
) -> None:
    mia = add_member(db, "mia", "mia@example.com")
    with db.unit_of_work() as session:
        member = session.get(Member, mia)
        assert member is not None
        session.add(
            MemberBadge(
                member_id=mia, badge_id="first-order", points=0, ledger_entry_id=None,
                backfill=False, awarded_at=clock.now(),
            )
        )  # fmt: skip
    with TestClient(site, raise_server_exceptions=False, follow_redirects=False) as web:
        sign_in(web, mail, "mia@example.com")
        for lang, leaks in (("es", english_leaks), ("en", spanish_leaks)):
            web.cookies.set("lealta_lang", lang)
            for path in ("/me/earn", "/me/badges", "/me/leaderboard"):
                got = web.get(path)
                assert got.status_code == 200, (path, got.text)
                assert leaks(got.text) == [], (lang, path)
        web.cookies.set("lealta_lang", "es")
        form = web.get("/me/leaderboard").text
        refused = web.post(
            "/me/leaderboard",
            data={"csrf_token": _token(form), "display_name": "mia@example.com", "join": "1"},
        )
        assert refused.status_code == 422
        assert "No uses una dirección de e-mail" in refused.text
        assert english_leaks(refused.text) == []
        saved = web.post(
            "/me/leaderboard",
            data={"csrf_token": _token(form), "display_name": "Mía", "join": "1"},
        )
        assert saved.status_code == 303
    with db.unit_of_work(write=False) as session:
        assert service.opted_in(session, mia)
        mine = service.profile(session, mia)
        assert mine is not None and mine.display_name == "Mía"

    console = TestClient(site, raise_server_exceptions=False, follow_redirects=False)
    console.cookies.set("lealta_lang", "es")
    signed = console.post(
        "/admin/login",
        data={
            "email": "admin@shop.test",
            "password": PASSWORD,
            "csrf_token": _token(console.get("/admin/login").text),
        },
    )
    assert signed.status_code == 303
    page = console.get("/admin/gamification")
    assert page.status_code == 200 and "Primera compra" in page.text
    assert english_leaks(page.text) == []
    member_page = console.get("/admin/members/mia")
    assert member_page.status_code == 200
    assert 'id="badges-h"' in member_page.text and "Primera compra" in member_page.text


def test_a_weekly_spend_challenge_issues_its_coupon_once(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    document = DEMO.model_dump(mode="json", exclude_none=True)
    document["challenges"].append(
        {"id": "spend-week", "name": "Spend 100 this week", "period": "week",
         "clock": "programme", "goal": {"measure": "spend", "target": "100"},
         "reward": "coupon-5"}
    )  # fmt: skip
    use(db, Programme.model_validate(document))
    noa = add_member(db, "noa", None)
    # Monday 2 March 2026 is in ISO week 10; Sunday 8 March 23:30 UTC is Monday 9 in Madrid.
    order(api, clock, "w1", "noa", datetime(2026, 3, 2, 9, tzinfo=UTC), "60.50")
    order(api, clock, "w2", "noa", datetime(2026, 3, 8, 23, 30, tzinfo=UTC), "80")
    drain(db, clock, quick)
    with db.unit_of_work(write=False) as session:
        progress = service.progress_of(session, noa)
    assert progress[("spend-week", "2026-W10")].value == 6050
    assert progress[("spend-week", "2026-W11")].completed_at is None
    order(api, clock, "w3", "noa", datetime(2026, 3, 4, 9, tzinfo=UTC), "39.50")
    drain(db, clock, quick)
    redeliver_all(db, clock)
    with db.unit_of_work(write=False) as session:
        row = service.progress_of(session, noa)[("spend-week", "2026-W10")]
        assert row.value == 10000 and row.completed_at is not None and row.points == 0
        coupons = session.scalars(select(Coupon).where(Coupon.member_id == noa)).all()
    assert [(c.id, c.reward_id) for c in coupons] == [(row.coupon_id, "coupon-5")]


@pytest.mark.postgres_only
def test_racing_deliveries_of_one_event_reward_once(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    ola = add_member(db, "ola", None)
    # Two orders already in: the racing third completes the challenge and reaches 3 reviews.
    at = datetime(2026, 2, 3, 10, tzinfo=UTC)
    for i in range(3):
        review(api, clock, f"o{i}", "ola", at + timedelta(hours=i))
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def deliver() -> None:
        barrier.wait()
        try:
            with db.unit_of_work() as session:
                happened = service.happened(
                    session, "review.posted", "r-o2", clock.now(), backfill=False
                )
                service.process(session, DEMO, ola, happened, now=clock.now())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert badges(db, ola) == {"reviewer": 50}
    assert points_from(db, ola, "badge") == [50]
    with db.unit_of_work(write=False) as session:
        row = service.progress_of(session, ola)[("two-reviews-month", "2026-02")]
    assert row.value == 1  # one event, counted once however often it is delivered


def test_the_cli_backfills_badges_and_prints_a_leaderboard(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEALTA_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    use(db, DEMO)
    pia = add_member(db, "pia", None)
    with db.unit_of_work() as session:
        account = session.get(Account, pia)
        assert account is not None
        account.tier_id = "oro"
    runner = CliRunner()
    first = runner.invoke(cli_app, ["gamification", "backfill-badges", "--badge", "gold"])
    assert first.exit_code == 0, first.output
    assert "gold" in first.output and "1" in first.output
    assert badges(db, pia) == {"gold": 0}
    again = runner.invoke(cli_app, ["gamification", "backfill-badges"])
    assert again.exit_code == 0 and badges(db, pia) == {"gold": 0}
    board = runner.invoke(cli_app, ["gamification", "leaderboard", "monthly-points"])
    assert board.exit_code == 0, board.output
    assert runner.invoke(cli_app, ["gamification", "leaderboard", "nope"]).exit_code == 4
