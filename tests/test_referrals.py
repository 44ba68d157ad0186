"""Referrals end to end on the configured database (SQLite or PostgreSQL): codes and links,
claims at sign-up and on an order, the welcome reward, the referrer's reward only after the
friend's qualifying order clears the return window (tier-specific amounts), reversal on
refund, self-referral and caps refused or flagged, the review queue, and racing claims and
qualifications rewarding once (threads on PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import Settings, get_settings
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Base, Database
from lealta.models import (
    Account,
    AuditLog,
    Coupon,
    LedgerEntry,
    Member,
    OutboxMessage,
    Referral,
    ReferralCode,
    ReferralReward,
)
from lealta.privacy import registry as privacy
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.referrals import service, tasks
from tests.conftest import T0, app_for
from tests.test_rewards import DEMO, use


def _programme(**change: Any) -> Programme:
    section = {
        "enabled": True,
        "referrer_points": 500,
        "referrer_points_by_tier": {"platino": 1000},
        "friend_points": 100,
        "friend_reward": "coupon-5",
        "friend_rewarded_at": "signup",
        "minimum_order": "30",
        "return_window_days": 30,
        "signup_url": "https://shop.example/join?ref={code}",
        **change,
    }
    return DEMO.model_copy(update={"referrals": DEMO.referrals.model_validate(section)})


@pytest.fixture
def api(
    db: Database, clock: FixedClock, settings: Settings, server_key: str
) -> Iterator[TestClient]:
    use(db, _programme())
    client = TestClient(app_for(settings, db=db, clock=clock), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {server_key}"
    with client:
        yield client


def _work(db: Database, clock: FixedClock, settings: Settings) -> None:
    Worker(db, clock=clock, settings=settings, name="referrals-test", schedule=False).run(
        until_idle=True
    )


def _enrol(api: TestClient, external_id: str, **fields: Any) -> None:
    body = {"external_id": external_id, "email": f"{external_id}@example.com", **fields}
    made = api.post("/v1/members", json=body, headers={"Idempotency-Key": f"m-{external_id}"})
    assert made.status_code == 201, made.text


def _code(api: TestClient, external_id: str) -> str:
    got = api.get(f"/v1/members/{external_id}/referral")
    assert got.status_code == 200, got.text
    return str(got.json()["code"])


def _order(
    api: TestClient, customer: str, order_id: str, total: str, clock: FixedClock, **props: Any
) -> None:
    sent = api.post(
        "/v1/events",
        json={
            "id": f"evt-{order_id}",
            "type": "order.paid",
            "customer_id": customer,
            "occurred_at": clock.now().isoformat(),
            "order": {"id": order_id, "total": total, "currency": "EUR"},
            "properties": props,
        },
    )
    assert sent.status_code in (200, 201), sent.text


def _refund(api: TestClient, customer: str, order_id: str, clock: FixedClock) -> None:
    sent = api.post(
        "/v1/events",
        json={
            "id": f"evt-refund-{order_id}",
            "type": "order.refunded",
            "customer_id": customer,
            "occurred_at": clock.now().isoformat(),
            "refund": {"order_id": order_id},
        },
    )
    assert sent.status_code in (200, 201), sent.text


def _qualify(db: Database, clock: FixedClock) -> service.QualifyReport:
    with db.unit_of_work() as session:
        return tasks.run(session, now=clock.now())


def _referral(db: Database, friend: str) -> Referral:
    with db.unit_of_work(write=False) as session:
        row = session.scalar(
            select(Referral)
            .join(Member, Member.id == Referral.friend_id)
            .where(Member.external_id == friend)
        )
        assert row is not None
        session.expunge(row)
        return row


def _referral_points(db: Database, external_id: str) -> int:
    with db.unit_of_work(write=False) as session:
        member_id = session.scalar(select(Member.id).where(Member.external_id == external_id))
        total = session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
                LedgerEntry.member_id == member_id,
                (LedgerEntry.source_type == "referral") | (LedgerEntry.actor == "referrals"),
            )
        )
        return int(total or 0)


def _available(db: Database, external_id: str) -> int:
    with db.unit_of_work(write=False) as session:
        return int(
            session.scalar(
                select(Account.points_available)
                .join(Member, Member.id == Account.member_id)
                .where(Member.external_id == external_id)
            )
            or 0
        )


def _count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _later(clock: FixedClock, days: float) -> None:
    clock.set(clock.now() + timedelta(days=days))


# --- the whole journey -------------------------------------------------------------------


def test_a_referral_rewards_both_sides_once_after_the_return_window_and_a_refund_reverses_it(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    _enrol(api, "ana", name="Ana García")
    code = _code(api, "ana")
    assert code == _code(api, "ana")  # made once, then read
    assert len(code) == 8 and not set(code) & set("01OIL")
    view = api.get("/v1/members/ana/referral").json()
    assert view["link"].endswith(f"/r/{code}")
    assert view["signup_url"] == f"https://shop.example/join?ref={code}"
    assert view["offer"]["referrer_points"] == 500

    # The friend signs up with the code (lower case and a dash are forgiven).
    _enrol(api, "bea", name="Beatriz Soler", referral_code=f"{code[:4].lower()}-{code[4:]}")
    with db.unit_of_work(write=False) as session:
        enrolled = session.scalars(
            select(OutboxMessage.payload).where(OutboxMessage.topic == "member.enrolled")
        ).all()
    assert {p.get("referral_code") for p in enrolled} >= {f"{code[:4].lower()}-{code[4:]}"}
    _work(db, clock, settings)
    referral = _referral(db, "bea")
    assert referral.status == "pending" and referral.code == code
    # The welcome: points and a coupon, at sign-up.
    assert _referral_points(db, "bea") == 100
    assert _count(db, Coupon, Coupon.reward_id == "coupon-5") == 1

    # A small order does not qualify; the first one of at least 30 € does.
    _later(clock, 1)
    _order(api, "bea", "B-1", "20.00", clock)
    _work(db, clock, settings)
    assert _referral(db, "bea").status == "pending"
    _later(clock, 1)
    order_day = clock.now()
    _order(api, "bea", "B-2", "45.00", clock)
    _work(db, clock, settings)
    waiting = _referral(db, "bea")
    assert waiting.status == "waiting" and waiting.order_external_id == "B-2"

    # Inside the return window nothing is paid to the referrer.
    clock.set(order_day + timedelta(days=29, hours=23))
    assert _qualify(db, clock).rewarded == []
    assert _referral_points(db, "ana") == 0

    clock.set(order_day + timedelta(days=30, minutes=1))
    report = _qualify(db, clock)
    assert report.rewarded == [waiting.id]
    assert _qualify(db, clock).rewarded == []  # a second run pays nothing more
    _work(db, clock, settings)
    assert _referral(db, "bea").status == "rewarded"
    assert _referral_points(db, "ana") == 500
    assert _referral_points(db, "bea") == 100  # the welcome is not paid twice
    assert _count(db, ReferralReward) == 2
    rewarded = _count(db, OutboxMessage, OutboxMessage.topic == "referral.rewarded")
    assert rewarded == 2
    view = api.get("/v1/members/ana/referral").json()
    assert view["stats"] == {"invited": 1, "waiting": 0, "rewarded": 1, "points_earned": 500}
    assert view["friends"][0]["friend"] == "Beatriz S."

    # The refund of the qualifying order takes the referrer's points back, once.
    before = _available(db, "ana")
    _refund(api, "bea", "B-2", clock)
    _work(db, clock, settings)
    _work(db, clock, settings)
    assert _referral(db, "bea").status == "reversed"
    assert _available(db, "ana") == before - 500
    assert _referral_points(db, "ana") == 0
    with db.unit_of_work() as session:  # repeating the reversal changes nothing
        assert service.reverse_rewards(
            session, waiting.id, programmes.current(session, now=clock.now()),
            now=clock.now(), reason="again",
        ) == 0  # fmt: skip
    assert _available(db, "ana") == before - 500


def test_platino_referrers_earn_double_and_the_friend_can_be_rewarded_at_qualification(
    db: Database, clock: FixedClock, settings: Settings, server_key: str
) -> None:
    use(db, _programme(friend_rewarded_at="qualified", friend_reward=None, return_window_days=14))
    with TestClient(app_for(settings, db=db, clock=clock)) as api:
        api.headers["Authorization"] = f"Bearer {server_key}"
        _enrol(api, "vip")
        with db.unit_of_work() as session:
            session.execute(
                update(Account)
                .where(
                    Account.member_id
                    == select(Member.id).where(Member.external_id == "vip").scalar_subquery()
                )
                .values(tier_id="platino")
            )
        code = _code(api, "vip")
        _enrol(api, "amiga", referral_code=code)
        _work(db, clock, settings)
        assert _referral_points(db, "amiga") == 0  # nothing at sign-up
        _order(api, "amiga", "A-1", "30.00", clock)
        _work(db, clock, settings)
        _later(clock, 13)
        assert _qualify(db, clock).rewarded == []
        _later(clock, 1.01)
        assert len(_qualify(db, clock).rewarded) == 1
        assert _referral_points(db, "vip") == 1000
        assert _referral_points(db, "amiga") == 100


def test_a_refund_inside_the_window_voids_the_referral_without_any_reward(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    _enrol(api, "ana")
    _enrol(api, "bea", referral_code=_code(api, "ana"))
    _order(api, "bea", "B-1", "80.00", clock)
    _work(db, clock, settings)
    _later(clock, 3)
    _refund(api, "bea", "B-1", clock)
    _work(db, clock, settings)
    assert _referral(db, "bea").status == "void"
    _later(clock, 40)
    assert _qualify(db, clock).rewarded == []
    assert _referral_points(db, "ana") == 0


def test_an_order_can_carry_the_code_and_enrol_the_friend(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    _enrol(api, "ana")
    code = _code(api, "ana")
    _order(api, "nuevo", "N-1", "35.00", clock, referral_code=code, device_id="dev-9")
    _work(db, clock, settings)
    referral = _referral(db, "nuevo")
    assert (referral.channel, referral.status, referral.order_external_id) == (
        "order", "waiting", "N-1",
    )  # fmt: skip
    _later(clock, 31)
    assert len(_qualify(db, clock).rewarded) == 1
    assert _referral_points(db, "ana") == 500


def test_an_identify_call_can_carry_the_code(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    _enrol(api, "ana")
    code = _code(api, "ana")
    sent = api.post(
        "/v1/identify",
        json={
            "userId": "web-1",
            "messageId": "id-web-1",
            "traits": {"email": "w1@example.com", "referralCode": code},
        },
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["ignored_traits"] == []
    _work(db, clock, settings)
    referral = _referral(db, "web-1")
    assert (referral.channel, referral.status, referral.code) == ("signup", "pending", code)
    assert _referral_points(db, "web-1") == 100


# --- fraud checks -------------------------------------------------------------------------


def test_self_referrals_are_refused_by_email_phone_or_hashed_attributes(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    _enrol(api, "ana", phone="+34 600 111 222", attributes={"device_id": "D1"})
    code = _code(api, "ana")
    # The same mailbox with a +tag, the same phone written otherwise, the same device.
    _enrol(api, "alias", email="ana+2@example.com", referral_code=code)
    _enrol(api, "phone", phone="600111222", referral_code=code)
    _enrol(api, "device", attributes={"device_id": "d1"}, referral_code=code)
    _enrol(api, "honest", referral_code=code)
    # An order whose payment fingerprint matches the referrer's is refused as well.
    with db.unit_of_work() as session:
        ana = session.scalar(select(Member).where(Member.external_id == "ana"))
        assert ana is not None
        ana.attributes = {**ana.attributes, "payment_fingerprint": "card-7"}
    _order(api, "card", "C-1", "50.00", clock, referral_code=code, payment_fingerprint="card-7")
    _work(db, clock, settings)
    assert _referral(db, "alias").flags == ["same_email"]
    assert _referral(db, "phone").flags == ["same_phone"]
    assert _referral(db, "device").flags == ["same_device_id"]
    assert _referral(db, "card").flags == ["same_payment_fingerprint"]
    for friend in ("alias", "phone", "device", "card"):
        assert _referral(db, friend).status == "refused"
        assert _referral_points(db, friend) == 0
    assert _referral(db, "honest").status == "pending"
    # Using one's own code is refused too, with a reason.
    with db.unit_of_work() as session:
        ana = session.scalar(select(Member).where(Member.external_id == "ana"))
        assert ana is not None
        own = service.claim(
            session, ana, code, channel="api", now=clock.now(),
            programme=programmes.current(session, now=clock.now()),
        )  # fmt: skip
        assert (own.status, own.flags) == ("refused", ["self"])


def test_unknown_codes_and_a_switched_off_programme_are_4xx_errors(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    _enrol(api, "ana")
    with db.unit_of_work() as session:
        ana = session.scalar(select(Member).where(Member.external_id == "ana"))
        assert ana is not None
        programme = programmes.current(session, now=clock.now())
        with pytest.raises(service.ReferralCodeUnknown) as unknown:
            service.claim(
                session, ana, "ZZZZZZZZ", channel="api", now=clock.now(), programme=programme
            )
        assert unknown.value.status_code == 422
        off = programme.model_copy(
            update={"referrals": programme.referrals.model_copy(update={"enabled": False})}
        )
        with pytest.raises(service.ReferralsDisabled):
            service.claim(session, ana, "ZZZZZZZZ", channel="api", now=clock.now(), programme=off)
    missing = api.get("/v1/members/nobody/referral")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "member_not_found"
    bad = api.get("/v1/referrals", params={"status": "bogus"})
    assert bad.status_code == 422


def test_caps_per_month_refuse_or_flag_and_reviewers_approve_or_reject(
    db: Database, clock: FixedClock, settings: Settings, server_key: str
) -> None:
    use(db, _programme(max_per_month=1, on_cap="flag"))
    with TestClient(app_for(settings, db=db, clock=clock)) as api:
        api.headers["Authorization"] = f"Bearer {server_key}"
        _enrol(api, "ana")
        code = _code(api, "ana")
        for friend in ("f1", "f2", "f3"):
            _enrol(api, friend, referral_code=code)
            _work(db, clock, settings)  # one after the other: the first claim is in the cap
        assert [_referral(db, f).status for f in ("f1", "f2", "f3")] == [
            "pending", "flagged", "flagged",
        ]  # fmt: skip
        assert _referral(db, "f2").flags == ["cap_month"]
        assert _referral_points(db, "f2") == 0  # no welcome while held
        queue = api.get("/v1/referrals", params={"status": "flagged"}).json()["items"]
        assert sorted(r["friend"] for r in queue) == ["f2", "f3"]
        approved = api.post(f"/v1/referrals/{_referral(db, 'f2').id}/approve")
        assert approved.status_code == 200 and approved.json()["status"] == "pending"
        assert _referral_points(db, "f2") == 100  # the welcome follows the approval
        again = api.post(f"/v1/referrals/{_referral(db, 'f2').id}/approve")
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "referral_state_conflict"
        rejected = api.post(
            f"/v1/referrals/{_referral(db, 'f3').id}/reject", json={"reason": "spam"}
        )
        assert rejected.json()["status"] == "rejected"
        assert (
            _count(db, AuditLog, AuditLog.action.in_(("referral.approve", "referral.reject"))) == 2
        )
        # A new month: the cap counts afresh (rejected referrals do not count).
        clock.set(T0.replace(month=T0.month + 1, day=2))
        _enrol(api, "f4", referral_code=code)
        _work(db, clock, settings)
        assert _referral(db, "f4").status == "pending"

    use(db, _programme(max_per_month=1, on_cap="refuse"))
    with TestClient(app_for(settings, db=db, clock=clock)) as api:
        api.headers["Authorization"] = f"Bearer {server_key}"
        _enrol(api, "f5", referral_code=code)
        _work(db, clock, settings)
        assert (_referral(db, "f5").status, _referral(db, "f5").flags) == ("refused", ["cap_month"])


def test_a_customer_who_ordered_before_is_no_new_friend(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    _enrol(api, "ana")
    code = _code(api, "ana")
    _order(api, "old", "O-1", "50.00", clock)
    _later(clock, 2)
    _order(api, "old", "O-2", "50.00", clock, referral_code=code)
    _work(db, clock, settings)
    assert _referral(db, "old").flags == ["not_new"]
    assert _referral(db, "old").status == "refused"


# --- races (PostgreSQL) -------------------------------------------------------------------


@pytest.mark.postgres_only
def test_racing_duplicate_claims_make_one_referral_and_one_welcome(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    _enrol(api, "ana")
    _enrol(api, "bea")
    code = _code(api, "ana")
    barrier = threading.Barrier(8)
    ids: list[int] = []
    errors: list[BaseException] = []

    def claim() -> None:
        barrier.wait()
        try:
            with db.unit_of_work() as session:
                bea = session.scalar(select(Member).where(Member.external_id == "bea"))
                assert bea is not None
                referral = service.claim(
                    session, bea, code, channel="api", now=clock.now(),
                    programme=programmes.current(session, now=clock.now()),
                )  # fmt: skip
                ids.append(referral.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 1
    assert _count(db, Referral) == 1
    assert _count(db, ReferralReward, ReferralReward.role == "friend") == 1
    assert _count(db, Coupon, Coupon.reward_id == "coupon-5") == 1
    assert _referral_points(db, "bea") == 100


@pytest.mark.postgres_only
def test_racing_qualification_runs_reward_the_referrer_once(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    _enrol(api, "ana")
    code = _code(api, "ana")
    for n in range(4):
        _enrol(api, f"f{n}", referral_code=code)
    _work(db, clock, settings)
    for n in range(4):
        _order(api, f"f{n}", f"F-{n}", "40.00", clock)
    _work(db, clock, settings)
    _later(clock, 31)
    barrier = threading.Barrier(4)
    rewarded: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            rewarded.extend(_qualify(db, clock).rewarded)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(rewarded) == 4 == len(set(rewarded))
    assert _referral_points(db, "ana") == 2000
    assert _count(db, ReferralReward, ReferralReward.role == "referrer") == 4


# --- privacy, CLI, schema -----------------------------------------------------------------


def test_export_and_erasure_of_referral_data(
    api: TestClient, db: Database, clock: FixedClock, settings: Settings
) -> None:
    _enrol(api, "ana")
    code = _code(api, "ana")
    _enrol(api, "bea", name="Beatriz Soler", referral_code=code)
    _work(db, clock, settings)
    with db.unit_of_work() as session:
        ana_id = session.scalar(select(Member.id).where(Member.external_id == "ana"))
        bea_id = session.scalar(select(Member.id).where(Member.external_id == "bea"))
        assert ana_id is not None and bea_id is not None
        sections = dict(privacy.exporters())
        mine = sections["referrals"](session, ana_id)
        assert mine["code"] == code
        assert mine["friends"][0]["friend"] == "Beatriz S."
        theirs = sections["referrals"](session, bea_id)
        assert theirs["referred_by_code"] == code and theirs["rewards"][0]["role"] == "friend"
        dict(privacy.erasers())["referrals.code"](session, ana_id, clock.now())
    assert _count(db, ReferralCode) == 0
    assert _count(db, Referral) == 1  # kept, by id, for the ledger's history


def test_cli_stats_list_approve_reject(
    db: Database,
    clock: FixedClock,
    settings: Settings,
    server_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use(db, _programme(on_self_referral="flag"))
    with TestClient(app_for(settings, db=db, clock=clock)) as api:
        api.headers["Authorization"] = f"Bearer {server_key}"
        _enrol(api, "ana")
        code = _code(api, "ana")
        _enrol(api, "x1", email="ana@example.com", referral_code=code)
        _enrol(api, "x2", email="ana@example.com", referral_code=code)
        _work(db, clock, settings)
    monkeypatch.setenv("LEALTA_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    stats = runner.invoke(cli_app, ["referrals", "stats"])
    assert stats.exit_code == 0, stats.output
    assert "flagged" in stats.output.lower()
    listed = runner.invoke(cli_app, ["referrals", "list", "--status", "flagged"])
    assert listed.exit_code == 0 and "x1" in listed.output and "x2" in listed.output
    x1, x2 = _referral(db, "x1").id, _referral(db, "x2").id
    assert runner.invoke(cli_app, ["referrals", "approve", str(x1)]).exit_code == 0
    assert (
        runner.invoke(cli_app, ["referrals", "reject", str(x2), "--reason", "dup"]).exit_code == 0
    )
    assert (_referral(db, "x1").status, _referral(db, "x2").status) == ("pending", "rejected")
    wrong = runner.invoke(cli_app, ["referrals", "approve", str(x2)])
    assert wrong.exit_code != 0


def test_the_programme_section_checks_its_references() -> None:
    document = DEMO.model_dump(mode="json", exclude_none=True)
    bad_tier = {
        **document,
        "referrals": {"enabled": True, "referrer_points_by_tier": {"diamante": 9}},
    }
    with pytest.raises(Exception, match="unknown tier 'diamante'"):
        programmes.validate(bad_tier)
    bad_reward = {**document, "referrals": {"enabled": True, "friend_reward": "tote-bag"}}
    with pytest.raises(Exception, match="issues no coupon"):
        programmes.validate(bad_reward)
    fine = programmes.validate(
        {**document, "referrals": {"enabled": True, "minimum_order": "25.5"}}
    )
    assert fine.referrals.minimum_order == Decimal("25.5")


def test_the_referral_tables_match_their_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    ours = [d for d in diff if "referral" in repr(d)]
    assert ours == []
