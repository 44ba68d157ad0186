"""Shopify webhooks in: signature, mapping to order.paid / order.refunded, redeliveries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.config import Settings
from lealta.inbound import shopify
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Event, InboundDelivery, Member, NonMemberEvent
from tests.conftest import T0, app_for

SECRET = "shpss_test_secret"
PAID = "/v1/inbound/shopify/orders-paid"
REFUND = "/v1/inbound/shopify/refunds-create"


@pytest.fixture
def shop(db: Database, clock: FixedClock, settings: Settings) -> Iterator[TestClient]:
    """An app with the Shopify secret set; no API key (webhooks are signed instead)."""
    configured = settings.model_copy(update={"shopify_webhook_secret": SECRET})
    with TestClient(app_for(configured, db=db, clock=clock)) as c:
        yield c


def paid_order(
    order_id: int = 820982911946154508,
    customer: int | None = 115310627314723954,
    total: str = "59.90",
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": order_id,
        "name": "#1001",
        "email": "ana@example.com",
        "created_at": (T0 - timedelta(hours=2)).isoformat(),
        "processed_at": (T0 - timedelta(hours=1)).isoformat(),
        "currency": "EUR",
        "total_price": total,
        "financial_status": "paid",
        "line_items": [
            {"id": 1, "sku": "TSHIRT-1", "quantity": 2, "price": "20.00", "variant_id": 7},
            {"id": 2, "sku": "", "quantity": 1, "price": "19.90", "variant_id": 8},
        ],
        "note_attributes": [],
    }
    if customer is not None:
        body["customer"] = {
            "id": customer,
            "email": "ana@example.com",
            "first_name": "Ana",
            "last_name": "García",
            "accepts_marketing": False,
        }
    body.update(extra)
    return body


def refund_of(
    order_id: int = 820982911946154508, refund_id: int = 509562969, amount: str = "20.00"
) -> dict[str, Any]:
    return {
        "id": refund_id,
        "order_id": order_id,
        "created_at": T0.isoformat(),
        "note": "wrong size",
        "refund_line_items": [{"quantity": 1, "subtotal": amount, "line_item_id": 1}],
        "transactions": [
            {"amount": amount, "kind": "refund", "status": "success", "currency": "EUR"},
            {"amount": "5.00", "kind": "refund", "status": "failure", "currency": "EUR"},
        ],
    }


def send(
    client: TestClient,
    path: str,
    body: dict[str, Any] | bytes,
    *,
    webhook_id: str | None = "wh-1",
    secret: str = SECRET,
    signature: str | None = None,
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Shopify-Shop-Domain": "demo.myshopify.com"}
    headers["X-Shopify-Hmac-Sha256"] = (
        signature if signature is not None else shopify.signature(secret, raw)
    )
    if webhook_id is not None:
        headers["X-Shopify-Webhook-Id"] = webhook_id
    return client.post(path, content=raw, headers=headers)


def available(db: Database, external_id: str) -> int:
    from lealta.models import Account

    with db.unit_of_work(write=False) as s:
        return int(
            s.scalar(
                select(Account.points_available)
                .join(Member, Member.id == Account.member_id)
                .where(Member.external_id == external_id)
            )
        )


def count(db: Database, model: Any) -> int:
    with db.unit_of_work(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# --- signature ---------------------------------------------------------------------------------


def test_signature_is_the_base64_hmac_of_the_raw_body() -> None:
    # Shopify's documented example shape: base64 of the HMAC-SHA256 digest.
    import base64
    import hashlib
    import hmac

    raw = b'{"id":1}'
    expected = base64.b64encode(hmac.new(b"k", raw, hashlib.sha256).digest()).decode()
    assert shopify.signature("k", raw) == expected
    shopify.verify("k", raw, expected)
    with pytest.raises(shopify.InvalidSignature):
        shopify.verify("k", raw + b" ", expected)
    with pytest.raises(shopify.MissingSignature):
        shopify.verify("k", raw, "  ")


def test_a_good_signature_records_the_order_and_enrols_the_customer(
    shop: TestClient, db: Database
) -> None:
    r = send(shop, PAID, paid_order())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "processed"
    assert body["customer_id"] == "115310627314723954"
    assert body["event_id"] == "shopify:order:820982911946154508"
    assert body["result"]["points_delta"] == 59
    assert available(db, "115310627314723954") == 59
    with db.unit_of_work(write=False) as s:
        member = s.scalars(select(Member).where(Member.external_id == "115310627314723954")).one()
        assert (member.email, member.name) == ("ana@example.com", "Ana García")


def test_a_bad_signature_is_401_and_records_nothing(shop: TestClient, db: Database) -> None:
    r = send(shop, PAID, paid_order(), secret="another-secret")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_signature"
    assert count(db, Event) == 0
    assert count(db, InboundDelivery) == 0


def test_a_missing_signature_is_401(shop: TestClient) -> None:
    r = shop.post(PAID, json=paid_order())
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "missing_signature"


def test_a_body_changed_after_signing_is_refused(shop: TestClient, db: Database) -> None:
    raw = json.dumps(paid_order()).encode()
    forged = raw.replace(b'"59.90"', b'"5990.00"')
    r = send(shop, PAID, forged, signature=shopify.signature(SECRET, raw))
    assert r.status_code == 401
    assert count(db, Event) == 0


def test_without_a_secret_the_endpoints_do_not_exist(client: TestClient) -> None:
    r = send(client, PAID, paid_order())
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "inbound_not_configured"


def test_malformed_bodies_are_4xx_with_a_code(shop: TestClient, db: Database) -> None:
    r = send(shop, PAID, b"{not json")
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed_json")
    r = send(shop, PAID, b"[1, 2]")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_webhook_payload")
    bad = paid_order()
    del bad["total_price"]
    r = send(shop, PAID, bad)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_webhook_payload")
    assert "total_price" in r.json()["error"]["message"]
    r = send(shop, PAID, paid_order(total="-3"))
    assert r.status_code == 422
    r = send(shop, PAID, paid_order(currency="USD"))
    assert r.status_code == 422
    assert count(db, Event) == 0
    assert count(db, InboundDelivery) == 0


# --- idempotency -------------------------------------------------------------------------------


def test_a_redelivery_replays_and_does_nothing_twice(shop: TestClient, db: Database) -> None:
    first = send(shop, PAID, paid_order())
    again = send(shop, PAID, paid_order())
    assert again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert available(db, "115310627314723954") == 59
    assert count(db, Event) == 1


def test_the_same_order_under_another_webhook_id_is_a_duplicate(
    shop: TestClient, db: Database
) -> None:
    send(shop, PAID, paid_order())
    other = send(shop, PAID, paid_order(), webhook_id="wh-2")
    assert other.status_code == 200
    assert other.json()["status"] == "duplicate"
    assert other.json()["reason"] == "already_recorded"
    changed = send(shop, PAID, paid_order(note="edited"), webhook_id="wh-3")
    assert changed.json()["status"] == "duplicate"
    assert available(db, "115310627314723954") == 59
    assert count(db, Event) == 1
    assert count(db, InboundDelivery) == 3


def test_a_webhook_id_reused_with_another_body_is_409(shop: TestClient) -> None:
    send(shop, PAID, paid_order())
    r = send(shop, PAID, paid_order(order_id=42))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "delivery_id_reused"


def test_without_a_webhook_id_the_order_id_dedupes(shop: TestClient, db: Database) -> None:
    send(shop, PAID, paid_order(), webhook_id=None)
    r = send(shop, PAID, paid_order(), webhook_id=None)
    assert r.headers.get("Idempotent-Replayed") == "true"
    assert count(db, Event) == 1


# --- customers ---------------------------------------------------------------------------------


def test_a_guest_order_is_skipped(shop: TestClient, db: Database) -> None:
    r = send(shop, PAID, paid_order(customer=None))
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["reason"]) == ("skipped", "no_customer")
    assert count(db, Member) == 0


def test_an_unknown_customer_is_a_non_member_when_enrolment_is_off(
    db: Database, clock: FixedClock, settings: Settings
) -> None:
    configured = settings.model_copy(update={"shopify_webhook_secret": SECRET, "auto_enrol": False})
    with TestClient(app_for(configured, db=db, clock=clock)) as shop:
        r = send(shop, PAID, paid_order())
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["reason"]) == ("processed", "non_member")
    assert count(db, Member) == 0
    assert count(db, Event) == 0
    assert count(db, NonMemberEvent) == 1  # kept for the member vs non-member figures
    with db.unit_of_work(write=False) as s:
        row = s.scalars(select(InboundDelivery)).one()
        assert (row.status, row.reason, row.customer_id) == (
            "processed",
            "non_member",
            "115310627314723954",
        )


# --- refunds -----------------------------------------------------------------------------------


def test_a_refund_reverses_the_points_of_the_refunded_amount(
    shop: TestClient, db: Database, clock: FixedClock
) -> None:
    send(shop, PAID, paid_order())
    clock.set(T0 + timedelta(hours=1))
    r = send(shop, REFUND, refund_of(amount="20.00"), webhook_id="wh-r1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "processed"
    assert body["event_id"] == "shopify:refund:509562969"
    assert body["result"]["type"] == "order.refunded"
    assert body["result"]["points_delta"] < 0
    assert available(db, "115310627314723954") == 59 + body["result"]["points_delta"]
    again = send(shop, REFUND, refund_of(amount="20.00"), webhook_id="wh-r1")
    assert again.headers.get("Idempotent-Replayed") == "true"
    dup = send(shop, REFUND, refund_of(amount="20.00"), webhook_id="wh-r2")
    assert dup.json()["status"] == "duplicate"
    assert available(db, "115310627314723954") == 59 + body["result"]["points_delta"]


def test_a_full_refund_takes_back_every_point(
    shop: TestClient, db: Database, clock: FixedClock
) -> None:
    send(shop, PAID, paid_order())
    clock.set(T0 + timedelta(hours=1))
    r = send(shop, REFUND, refund_of(amount="59.90"), webhook_id="wh-r1")
    assert r.json()["result"]["points_delta"] == -59
    assert available(db, "115310627314723954") == 0


def test_refunds_of_unknown_orders_or_of_nothing_are_skipped(
    shop: TestClient, db: Database
) -> None:
    r = send(shop, REFUND, refund_of(order_id=999), webhook_id="wh-r1")
    assert (r.json()["status"], r.json()["reason"]) == ("skipped", "unknown_order")
    send(shop, PAID, paid_order())
    nothing = refund_of()
    nothing["transactions"] = []
    nothing["refund_line_items"] = []
    r = send(shop, REFUND, nothing, webhook_id="wh-r2")
    assert (r.json()["status"], r.json()["reason"]) == ("skipped", "nothing_refunded")
    assert available(db, "115310627314723954") == 59


def test_a_refund_above_the_order_is_a_409_and_records_nothing(
    shop: TestClient, db: Database, clock: FixedClock
) -> None:
    send(shop, PAID, paid_order())
    clock.set(T0 + timedelta(hours=1))
    r = send(shop, REFUND, refund_of(amount="500.00"), webhook_id="wh-r1")
    assert r.status_code == 409, r.text
    assert count(db, InboundDelivery) == 1  # only the order's delivery
    assert available(db, "115310627314723954") == 59


def test_line_items_without_a_sku_use_the_variant() -> None:
    event = shopify.order_event(shopify.parse_order(paid_order()), store="demo.myshopify.com")
    assert isinstance(event, type(event)) and not isinstance(event, shopify.Skip)
    assert event.order is not None
    assert [i.sku for i in event.order.items] == ["TSHIRT-1", "variant-8"]
    assert event.order.store == "demo.myshopify.com"
    assert event.order.channel == "shopify"


def test_the_inbound_tables_match_their_migration(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lealta.kit.db import Base

    mine = ("inbound_deliveries", "anonymous_events", "api_key_origins")
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if any(name in repr(d) for name in mine)] == []


@pytest.mark.postgres_only
def test_concurrent_redeliveries_record_the_order_once(db: Database) -> None:
    import threading

    from lealta.inbound import service

    ctx = service.Inbound(now=T0, actor="inbound:shopify")
    barrier = threading.Barrier(4)
    outcomes: list[Any] = []

    def deliver(webhook: str) -> None:
        barrier.wait()
        with db.unit_of_work() as session:
            outcomes.append(
                service.receive_shopify(
                    session,
                    ctx,
                    topic=shopify.ORDERS_PAID,
                    payload=paid_order(),
                    delivery_id=webhook,
                    store=None,
                )
            )

    threads = [threading.Thread(target=deliver, args=(f"wh-{n % 2}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 4
    # One delivery per webhook id acted; the other call of each id replayed its answer.
    assert sum(o.replayed for o in outcomes) == 2
    acted = sorted(o.body["status"] for o in outcomes if not o.replayed)
    assert acted == ["duplicate", "processed"]
    assert available(db, "115310627314723954") == 59
    assert count(db, Event) == 1
