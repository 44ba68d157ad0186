"""Typed domain events: payload round trips, one ``emit()``, the backfill mark, subscribers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from lealta.demo import service as demo
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import OutboxMessage
from lealta.outbox import events as domain
from lealta.outbox import subscribers
from lealta.outbox.service import emit, emit_many
from tests.conftest import T0
from tests.factories import order_paid
from tests.test_import_export import HEADER, iso, run_import, write_csv
from tests.test_rewards import use

AT = datetime(2026, 1, 3, 9, 30, tzinfo=UTC)

SAMPLES: list[domain.DomainEvent] = [
    domain.OrderPaid(event_id="e1", customer_id="teo", points_delta=120),
    domain.OrderRefunded(event_id="e2", customer_id="teo", points_delta=-40),
    domain.EventProcessed(
        event_type="review.posted", event_id="e3", customer_id="teo", points_delta=50
    ),
    domain.TierChanged(
        from_tier="bronce",
        to_tier="plata",
        direction="upgrade",
        qualifying_value=Decimal("1200.00"),
        at=AT,
    ),
    domain.TierChanged(
        from_tier=None, to_tier="plata", direction="downgrade", qualifying_value=Decimal("0"), at=AT
    ),
    domain.ThresholdReached(
        rule_id="spend-500",
        reward_id="coupon-20",
        crossed=Decimal("500.00"),
        order_id="O1",
        at=AT,
        coupon_code="ABCD-1234",
    ),
    domain.ThresholdReached(
        rule_id="spend-500",
        reward_id="gift",
        crossed=Decimal("1000.00"),
        order_id="O1",
        at=AT,
        coupon_code=None,
    ),
    domain.ThresholdForfeited(
        rule_id="spend-500",
        reward_id="coupon-20",
        order_id="O1",
        event_id="e1",
        issued=3,
        forfeited=2,
        max_per_event=3,
        at=AT,
    ),
    domain.PointsReleased(points=300),
    domain.PointsExpired(points=75),
    domain.RewardRedeemed(
        redemption_id=7, reward_id="coffee", reward_type="coupon", points=200, coupon_code="XYZ"
    ),
    domain.RewardRedeemed(
        redemption_id=8,
        reward_id="pwp",
        reward_type="pay_with_points",
        points=500,
        coupon_code=None,
    ),
    domain.RedemptionRolledBack(redemption_id=7, reward_id="coffee"),
    domain.SurveyAnswered(survey_key="nps-2026", response_id=3, points=50, nps=9),
    domain.SurveyAnswered(survey_key="quality", response_id=4, points=0, nps=None),
    domain.MemberEnrolled(customer_id="teo", at=AT, referral_code="ANA-7K2Q"),
    domain.MemberEnrolled(customer_id="eva", at=AT),
    domain.CouponIssued(
        coupon_id=5, code="ABCD-1234", reward_id="coupon-20", source="threshold", valid_until=AT
    ),
    domain.CouponUsed(coupon_id=5, code="ABCD-1234", reward_id="coupon-20", order_ref="O2", at=AT),
    domain.BadgeAwarded(badge_id="first-order", points=50, at=AT),
    domain.ChallengeCompleted(
        challenge_id="three-in-november", period="2026-11", points=100, at=AT
    ),
    domain.ChallengeRevoked(challenge_id="three-in-november", period="2026-11", points=100, at=AT),
    domain.StreakRewarded(streak_id="monthly-orders", months=3, points=100, at=AT),
    domain.ReferralRewarded(referral_id=3, role="referrer", points=500, at=AT),
    domain.SegmentEntered(segment_key="at-risk", at=AT),
    domain.SegmentLeft(segment_key="active", at=AT),
]


# --- the event types -------------------------------------------------------------------------


def test_every_event_type_has_a_sample_a_type_and_a_version() -> None:
    assert {type(e) for e in SAMPLES} == set(domain.ALL_EVENTS)
    for cls in domain.ALL_EVENTS:
        assert isinstance(cls.TYPE, str) and cls.TYPE
        assert cls.VERSION >= 1
        assert dataclasses.is_dataclass(cls)
    assert domain.event_class("tier.changed") is domain.TierChanged
    assert domain.event_class("review.posted") is domain.EventProcessed


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: f"{e.topic}")
def test_each_event_round_trips_through_its_payload(event: domain.DomainEvent) -> None:
    payload = event.to_payload()
    assert all(isinstance(k, str) for k in payload)
    assert all(isinstance(v, str | int | type(None)) for v in payload.values())  # JSON scalars
    assert type(event).from_payload(payload, topic=event.topic) == event
    assert domain.decode(event.topic, payload) == event


def test_payload_keys_are_the_ones_written_before_typed_events() -> None:
    """Downstream readers keep working: the same keys and the same value shapes."""
    tier = domain.TierChanged("bronce", "plata", "upgrade", Decimal("1200.00"), AT)
    assert tier.to_payload() == {
        "from": "bronce",
        "to": "plata",
        "direction": "upgrade",
        "qualifying_value": "1200.00",
        "at": AT.isoformat(),
    }
    custom = domain.EventProcessed("review.posted", "e3", "teo", 50)
    assert custom.topic == "review.posted"
    assert custom.to_payload() == {"event_id": "e3", "customer_id": "teo", "points_delta": 50}
    reached = domain.ThresholdReached("r", "w", Decimal("500.00"), "O1", AT, None)
    assert reached.to_payload()["crossed"] == "500.00"
    with pytest.raises(ValueError, match="topic"):
        domain.EventProcessed.from_payload(custom.to_payload())
    with pytest.raises(dataclasses.FrozenInstanceError):
        custom.points_delta = 1  # type: ignore[misc]


# --- emit ------------------------------------------------------------------------------------


def _member(db: Database, clock: FixedClock) -> int:
    with db.unit_of_work() as session:
        return members.create(session, MemberCreate(external_id="ana"), now=clock.now()).id


def _emitted() -> Any:
    """The rows a test emitted itself: after the member's own enrolment row."""
    first = select(func.min(OutboxMessage.id)).where(OutboxMessage.topic == "member.enrolled")
    return (
        select(OutboxMessage)
        .where(OutboxMessage.id > first.scalar_subquery())
        .order_by(OutboxMessage.id)
    )


def test_enrolment_is_announced_with_its_referral_code(db: Database, clock: FixedClock) -> None:
    with db.unit_of_work() as session:
        members.create(
            session, MemberCreate(external_id="eva", referral_code="ANA-7K2Q"), now=clock.now()
        )
        members.create(
            session,
            MemberCreate(external_id="old"),
            now=clock.now(),
            enrolled_at=T0 - timedelta(days=400),
        )
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        got = [(domain.decode(r.topic, r.payload), r.backfill) for r in rows]
    assert got == [
        (domain.MemberEnrolled("eva", T0, "ANA-7K2Q"), False),
        (domain.MemberEnrolled("old", T0 - timedelta(days=400)), True),  # the past: backfill
    ]


def test_emit_writes_one_row_with_version_and_backfill(db: Database, clock: FixedClock) -> None:
    member_id = _member(db, clock)
    with db.unit_of_work() as session:
        emit(session, SAMPLES[0], member_id=member_id, now=T0, backfill=False)
        emit(session, SAMPLES[2], member_id=member_id, now=T0, backfill=True)
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(_emitted()).all()
        got = [(r.topic, r.version, r.backfill, r.member_id, r.payload) for r in rows]
        assert [r.created_at for r in rows] == [T0, T0]
        assert [r.processed_at for r in rows] == [None, None]
    assert got == [
        ("order.paid", 1, False, member_id, SAMPLES[0].to_payload()),
        ("review.posted", 1, True, member_id, SAMPLES[2].to_payload()),
    ]


def test_emit_many_writes_every_event_in_one_statement(db: Database, clock: FixedClock) -> None:
    member_id = _member(db, clock)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        if "outbox" in sql.lower():
            statements.append(sql)

    with db.unit_of_work() as session:
        sa_event.listen(db.engine, "before_cursor_execute", count)
        try:
            written = emit_many(session, [(e, member_id) for e in SAMPLES], now=T0, backfill=True)
            assert emit_many(session, [], now=T0, backfill=True) == 0
        finally:
            sa_event.remove(db.engine, "before_cursor_execute", count)
    assert written == len(SAMPLES)
    assert len(statements) == 1, statements
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(_emitted()).all()
        assert [domain.decode(r.topic, r.payload) for r in rows] == SAMPLES
        assert {(r.version, r.backfill) for r in rows} == {(1, True)}


# --- live traffic and backfilled history -----------------------------------------------------

ORDER_AT = T0 - timedelta(days=2)


def _events(db: Database) -> list[tuple[domain.DomainEvent, int, bool]]:
    """Every outbox row as (typed event, version, backfill), coupon codes blanked."""
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        out = []
        for row in rows:
            event = domain.decode(row.topic, row.payload)
            if isinstance(event, domain.ThresholdReached):
                assert event.coupon_code  # the demo threshold reward issues a coupon
                event = dataclasses.replace(event, coupon_code="*")
            if isinstance(event, domain.CouponIssued):
                event = dataclasses.replace(event, code="*")
            out.append((event, row.version, row.backfill))
        return out


def _expected(backfill: bool, event_id: str) -> list[tuple[domain.DomainEvent, int, bool]]:
    at = ORDER_AT
    reward = "coupon-20-threshold"
    return [
        (domain.MemberEnrolled("teo", at), 1, backfill),
        # The threshold's two coupons are issued (and announced) before the order's rows.
        *[
            (domain.CouponIssued(n, "*", reward, "threshold", at + timedelta(days=30)), 1, backfill)
            for n in (1, 2)
        ],
        (domain.TierChanged("basico", "plata", "upgrade", Decimal("1200.00"), at), 1, backfill),
        (
            domain.ThresholdReached("every-500", reward, Decimal("500.00"), "O1", at, "*"),
            1,
            backfill,
        ),
        (
            domain.ThresholdReached("every-500", reward, Decimal("1000.00"), "O1", at, "*"),
            1,
            backfill,
        ),
        (domain.OrderPaid(event_id, "teo", 1200), 1, backfill),
    ]


def test_an_order_over_the_api_writes_its_typed_events_live(
    db: Database, client: TestClient, clock: FixedClock
) -> None:
    use(db)
    clock.set(T0)
    response = client.post("/v1/events", json=order_paid("e1", "teo", "O1", "1200.00", ORDER_AT))
    assert response.status_code == 201, response.text
    assert _events(db) == _expected(False, "e1")


def test_the_same_order_imported_by_csv_is_marked_backfill(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    use(db)
    clock.set(T0)
    path = write_csv(tmp_path / "o.csv", HEADER, [["teo", "O1", iso(ORDER_AT), "1200.00", "EUR"]])
    report = run_import(db, path, clock)
    assert (report.imported, report.rejected_count) == (1, 0), report
    events = _events(db)
    assert events == _expected(True, events[-1][0].event_id)  # type: ignore[attr-defined]


def test_the_demo_history_is_backfill(db: Database, clock: FixedClock) -> None:
    demo.up(db, now=clock.now(), member_count=5)
    events = _events(db)
    assert events
    assert {backfill for _, _, backfill in events} == {True}


# --- subscribers -----------------------------------------------------------------------------


@pytest.fixture
def registered() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        subscribers.unsubscribe(domain.TierChanged, name=name)


def test_subscribers_are_found_by_type_and_skip_backfill_unless_they_opt_in(
    registered: list[str],
) -> None:
    @subscribers.subscribe(domain.TierChanged, name="test.congratulate")
    def congratulate(event: domain.TierChanged) -> None: ...

    @subscribers.subscribe("tier.changed", name="test.roll_up", include_backfill=True)
    def roll_up(event: domain.TierChanged) -> None: ...

    registered.extend(["test.congratulate", "test.roll_up"])

    def ours(found: list[subscribers.Subscriber]) -> list[subscribers.Subscriber]:
        # Capabilities imported elsewhere in the run (analytics roll-ups, …) subscribe too.
        return [s for s in found if s.name.startswith("test.")]

    live = ours(subscribers.subscribers_for("tier.changed", backfill=False))
    assert [(s.name, s.handler) for s in live] == [
        ("test.congratulate", congratulate),
        ("test.roll_up", roll_up),
    ]
    backfilled = ours(subscribers.subscribers_for(domain.TierChanged, backfill=True))
    assert [s.name for s in backfilled] == ["test.roll_up"]
    assert ours(subscribers.subscribers_for("points.expired", backfill=False)) == []
    # Registering a name again replaces it rather than running twice.
    subscribers.subscribe("tier.changed", name="test.congratulate")(roll_up)
    names = [s.name for s in ours(subscribers.subscribers_for("tier.changed", backfill=False))]
    assert names == ["test.roll_up", "test.congratulate"]
