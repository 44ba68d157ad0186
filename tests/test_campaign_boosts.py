"""A campaign's temporary earning multiplier in the engine: orders paid while it holds earn
its extra line (rule ``campaign:<id>``) through the online and the batch driver; before the
member is reached, after it runs out or after the campaign is cancelled they do not; a refund
takes the extra line back with the rest of what the order earned."""

# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.app import create_app
from lealta.campaigns import service
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import LedgerEntry, Member, Order
from tests.factories import order_paid, order_refunded
from tests.test_campaigns import START, campaign, ready, save  # noqa: F401

RULE = "campaign:spring"


@pytest.fixture
def api(
    ready: Database, clock: FixedClock, settings: Settings, server_key: str
) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=ready, clock=clock)) as client:
        client.headers["Authorization"] = f"Bearer {server_key}"
        yield client


def _lines(db: Database, customer: str, order_ref: str) -> dict[str, int]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(LedgerEntry.rule_id, func.sum(LedgerEntry.points))
            .join(Order, Order.id == LedgerEntry.order_id)
            .join(Member, Member.id == LedgerEntry.member_id)
            .where(Member.external_id == customer, Order.external_id == order_ref)
            .group_by(LedgerEntry.rule_id)
        ).all()
    return {str(rule): int(points) for rule, points in rows}


def _pay(api: TestClient, clock: FixedClock, n: str, customer: str, days: float) -> None:
    at = START + timedelta(days=days)
    clock.set(at)
    r = api.post("/v1/events", json=order_paid(f"e-{n}", customer, f"o-{n}", "100.00", at))
    assert r.status_code in (200, 201), r.text


def test_orders_earn_the_campaign_multiplier_while_it_holds(
    api: TestClient, ready: Database, clock: FixedClock, settings: Settings
) -> None:
    db = ready
    _pay(api, clock, "before", "c01", -0.01)  # paid before the campaign reached c01
    save(db, campaign(steps=[], multiplier={"factor": "1.5", "days": 7}))
    service.tick(db, settings, now=START)
    _pay(api, clock, "in", "c01", 1)
    _pay(api, clock, "late", "c01", 7.5)
    assert RULE not in _lines(db, "c01", "o-before")
    paid = _lines(db, "c01", "o-in")
    assert paid[RULE] == paid["base"] // 2 > 0  # x1.5: half the base again
    assert RULE not in _lines(db, "c01", "o-late")

    # The batch driver applies it too.
    at = START + timedelta(days=2)
    clock.set(at)
    r = api.post(
        "/v1/events/batch",
        json={"events": [order_paid("e-batch", "c02", "o-batch", "100.00", at)]},
    )
    assert r.status_code == 200, r.text
    assert _lines(db, "c02", "o-batch")[RULE] == _lines(db, "c02", "o-batch")["base"] // 2

    # A full refund takes back the whole order, the campaign's line included.
    clock.set(START + timedelta(days=3))
    refund = order_refunded("r-in", "c01", "o-in", START + timedelta(days=3))
    assert api.post("/v1/events", json=refund).status_code in (200, 201)
    assert sum(_lines(db, "c01", "o-in").values()) == 0


def test_cancelling_the_campaign_ends_its_multiplier(
    api: TestClient, ready: Database, clock: FixedClock, settings: Settings
) -> None:
    db = ready
    save(db, campaign(steps=[], multiplier={"factor": "2", "days": 30}))
    service.tick(db, settings, now=START)
    _pay(api, clock, "one", "c03", 1)
    assert _lines(db, "c03", "o-one")[RULE] == _lines(db, "c03", "o-one")["base"]
    with db.unit_of_work() as session:
        assert service.get(session, "spring").status == "completed"  # everyone reached
        # Cancelling a completed campaign ends the multipliers it gave.
        service.cancel(session, "spring", actor="t", now=START + timedelta(days=2))
    _pay(api, clock, "two", "c03", 3)
    assert RULE not in _lines(db, "c03", "o-two")
