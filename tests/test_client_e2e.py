"""The Python client (``clients/python``) against the real app served over loopback HTTP:
orders, balances, rewards, coupons, programme, replays, typed errors and pagination, with the
sync and the async client. Runs on SQLite and on PostgreSQL like the rest of the suite."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from lealta_client import (
    ApiModel,
    AsyncClient,
    AuthenticationError,
    Cart,
    CartItem,
    Client,
    ConflictError,
    Consent,
    Event,
    MemberFilter,
    MemberUpdate,
    NewMember,
    NotFoundError,
    Order,
    OrderItem,
    PermissionDeniedError,
    RetryPolicy,
    UnprocessableEntityError,
)
from lealta_client import _calls as calls

from lealta.kit.db import Database
from tests.test_client_support import LiveServer, at, demo_document, make_app, run_async

FAST = RetryPolicy(max_retries=3, backoff_base=0.05, backoff_max=0.2, max_retry_after=0.2)


@pytest.fixture(scope="module")
def live(database_url: str, _session_db: Database) -> Iterator[LiveServer]:
    server = LiveServer(make_app(database_url, _session_db))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lealta(live: LiveServer, server_key: str) -> Iterator[Client]:
    with Client(live.url, server_key, timeout=15, retry=FAST) as client:
        yield client


def shoes_order(order_id: str, total: str) -> Order:
    return Order(
        id=order_id,
        total=Decimal(total),
        currency="EUR",
        channel="web",
        items=[OrderItem(sku="ZAP-1", category="calzado", unit_price=Decimal(total))],
    )


def test_an_order_earns_points_that_buy_a_coupon_used_at_checkout(lealta: Client) -> None:
    assert lealta.programme.put(demo_document()).version == 1
    customer = "ana+1@example.com"  # travels URL-encoded in paths
    member = lealta.members.create(
        NewMember(external_id=customer, email="ana@example.com", name="Ana", language="en")
    )
    assert (member.external_id, member.language) == (customer, "en")

    event = Event.order_paid(customer, shoes_order("ORD-1", "600.00"), occurred_at=at(3))
    result = lealta.events.send(event)
    # 600 € at 1 pt/€ plus the shoes bonus (an order of 100 € or more with shoes).
    assert result.points_delta == 650 == sum(p.points for p in result.postings)
    assert {p.rule_id for p in result.postings} >= {"shoes-bonus"}
    assert result.response_info is not None
    assert (result.response_info.status_code, result.response_info.replayed) == (201, False)
    assert result.response_info.idempotency_key  # a fresh key was sent

    balance = lealta.members.balance(customer)
    assert (balance.available, balance.pending, balance.lifetime_earned) == (650, 0, 650)
    assert balance.qualifying_spend == Decimal("600.00")
    assert balance.tier == "basico"

    tier = lealta.tiers.get(customer)
    assert tier.tier.id == "basico" and tier.next_tier is not None
    assert tier.next_tier.id == "plata"
    assert tier.amount_needed == Decimal("400")
    assert lealta.tiers.benefits(customer).benefits.birthday_discount_percent == Decimal("5")

    catalogue = lealta.rewards.catalogue(customer)
    rewards = {r.id: r for r in catalogue.items}
    assert rewards["coupon-5"].redeemable
    assert not rewards["tote-bag"].redeemable
    assert [r.code for r in rewards["tote-bag"].locked_reasons] == ["insufficient_points"]

    redemption = lealta.rewards.redeem(customer, "coupon-5")
    assert redemption.points == 500 and redemption.points_available == 150
    assert redemption.coupon is not None
    code = redemption.coupon.code
    assert lealta.members.balance(customer).available == 150
    wallet_codes = [c.code for c in lealta.coupons.wallet(customer).items]
    assert code in wallet_codes

    cart = Cart(
        total=Decimal("40.00"),
        currency="EUR",
        items=[CartItem(sku="TEE-1", quantity=2, unit_price=Decimal("20.00"))],
    )
    check = lealta.coupons.validate(code.lower().replace("-", ""), cart, customer_id=customer)
    assert check.valid and check.discount == Decimal("5")
    small = Cart(total=Decimal("10"), currency="EUR")
    too_small = lealta.coupons.validate(code, small, customer_id=customer)
    assert (too_small.valid, too_small.reason_code) == (False, "minimum_order")

    used = lealta.coupons.redeem(code, order_id="ORD-2", cart=cart, customer_id=customer)
    assert used.use.discount == Decimal("5") and used.coupon.status == "redeemed"
    assert lealta.coupons.get(code).uses == 1
    with pytest.raises(ConflictError) as refused:
        lealta.rewards.rollback(redemption.id)
    assert refused.value.code == "coupon_already_used"

    undone = lealta.coupons.rollback(code, order_id="ORD-2")
    assert undone.use.rolled_back_at is not None
    back = lealta.rewards.rollback(redemption.id)
    assert back.status == "rolled_back" and back.points_available == 650
    assert lealta.coupons.get(code).status == "void"

    orders = list(lealta.members.iter_orders(customer))
    assert [(o.order_id, o.total, o.points_earned) for o in orders] == [
        ("ORD-1", Decimal("600.00"), 650)
    ]
    assert orders[0].items[0].category == "calzado"


def test_a_replayed_write_returns_the_first_result_and_acts_once(lealta: Client) -> None:
    lealta.programme.put(demo_document())
    event = Event.order_paid("bea", shoes_order("ORD-7", "80.00"), occurred_at=at(2), id="e-7")
    first = lealta.events.send(event, idempotency_key="shop-evt-7")
    again = lealta.events.send(event, idempotency_key="shop-evt-7")
    # The same event id under another key is the same event too.
    by_id = lealta.events.send(event)
    for replay in (again, by_id):
        assert replay.response_info is not None and replay.response_info.replayed
        assert replay.response_info.status_code == 200
        assert replay.model_dump() == first.model_dump()
    assert lealta.members.balance("bea").available == 80

    credit = lealta.ledger.adjust("bea", 25, "Goodwill: late delivery", idempotency_key="adj-1")
    replay = lealta.ledger.adjust("bea", 25, "Goodwill: late delivery", idempotency_key="adj-1")
    assert replay.response_info is not None and replay.response_info.replayed
    assert replay.entry.id == credit.entry.id
    assert lealta.members.balance("bea").available == 105
    with pytest.raises(ConflictError) as reused:
        lealta.ledger.adjust("bea", 26, "Goodwill: late delivery", idempotency_key="adj-1")
    assert reused.value.code == "idempotency_key_reused"
    assert reused.value.details == {"key": "adj-1"}
    entries = [e.entry_type for e in lealta.ledger.iter_history("bea")]
    assert sorted(entries) == ["adjust", "earn"]

    # Without a key of its own, each call is a new logical write with a key of its own.
    one = lealta.ledger.spend("bea", 5, order_id="ORD-8")
    two = lealta.ledger.spend("bea", 5, order_id="ORD-8")
    assert one.response_info is not None and two.response_info is not None
    assert one.response_info.idempotency_key != two.response_info.idempotency_key
    assert not two.response_info.replayed
    assert lealta.members.balance("bea").available == 95

    created = lealta.members.create(NewMember(external_id="cris"), idempotency_key="m-1")
    replayed = lealta.members.create(NewMember(external_id="cris"), idempotency_key="m-1")
    assert replayed.response_info is not None and replayed.response_info.replayed
    assert replayed.created_at == created.created_at
    with pytest.raises(ConflictError) as exists:
        lealta.members.create(NewMember(external_id="cris"))
    assert exists.value.code == "member_exists"


def test_errors_are_typed_with_the_api_code_and_never_retried(
    lealta: Client, live: LiveServer, read_key: str
) -> None:
    lealta.programme.put(demo_document())
    lealta.members.create(NewMember(external_id="dani"))

    with pytest.raises(NotFoundError) as missing:
        lealta.members.balance("nobody")
    assert missing.value.code == "member_not_found" and missing.value.status_code == 404

    with pytest.raises(ConflictError) as short:
        lealta.ledger.spend("dani", 10)
    assert short.value.code == "insufficient_points"
    assert short.value.details == {"available": 0, "requested": 10}
    assert short.value.request_id

    with pytest.raises(UnprocessableEntityError) as bad_id:
        lealta.members.get("has space")
    assert bad_id.value.code == "invalid_external_id"

    with pytest.raises(UnprocessableEntityError) as bad_doc:
        lealta.programme.validate({**demo_document(), "currency": "EURO"})
    assert bad_doc.value.code == "invalid_programme"
    assert any(d["path"].startswith("currency") for d in bad_doc.value.details)

    with (
        Client(live.url, "lea_wrong_key", retry=FAST) as stranger,
        pytest.raises(AuthenticationError) as unknown_key,
    ):
        stranger.members.get("dani")
    with Client(live.url, read_key, retry=FAST) as reader:
        assert reader.members.get("dani").external_id == "dani"
        with pytest.raises(PermissionDeniedError) as no_scope:
            reader.ledger.adjust("dani", 5, "Not allowed")

    errors = [missing, short, bad_id, bad_doc, unknown_key, no_scope]
    assert [e.value.attempts for e in errors] == [1] * len(errors)
    assert lealta.members.balance("dani").available == 0


def test_pages_are_walked_to_the_end(lealta: Client) -> None:
    lealta.programme.put(demo_document())
    batch = lealta.events.send_batch(
        Event.order_paid("eva", shoes_order(f"ORD-{n}", f"{10 + n}.00"), occurred_at=at(20 - n))
        for n in range(7)
    )
    assert (batch.processed, batch.rejected) == (7, 0)
    for n in range(3):
        lealta.ledger.adjust("eva", n + 1, f"Correction {n}")

    everything = lealta.ledger.history("eva", limit=200)
    assert everything.next_cursor is None and len(everything.items) == 10
    first = lealta.ledger.history("eva", limit=3)
    assert len(first.items) == 3 and first.next_cursor is not None
    walked = list(lealta.ledger.iter_history("eva", page_size=3))
    assert [e.id for e in walked] == [e.id for e in everything.items]

    orders = list(lealta.members.iter_orders("eva", page_size=2))
    assert [o.order_id for o in orders] == [f"ORD-{n}" for n in reversed(range(7))]


def test_a_batch_gives_ids_to_events_without_one_and_replays_by_id(lealta: Client) -> None:
    lealta.programme.put(demo_document())
    review = {
        "type": "review.posted",
        "customer_id": "fran",
        "occurred_at": at(1).isoformat(),
        "properties": {"stars": 5},
    }
    order = Event.order_paid("fran", shoes_order("ORD-F", "30.00"), occurred_at=at(2), id="f-1")
    bad = {**review, "customer_id": "not valid/id"}
    result = lealta.events.send_batch([order, review, bad])
    assert (result.processed, result.replayed, result.rejected) == (2, 0, 1)
    by_index = {item.index: item for item in result.results}
    assert by_index[2].error is not None and by_index[2].error.code == "invalid_external_id"
    given = by_index[1].result
    assert given is not None and given.event_id  # the client's uuid4
    assert by_index[0].result is not None and by_index[0].result.event_id == "f-1"

    again = lealta.events.send_batch([order, {**review, "id": given.event_id}])
    assert (again.processed, again.replayed, again.rejected) == (0, 2, 0)
    assert lealta.members.balance("fran").available == 30 + 50


def test_members_profile_consents_and_partial_updates(lealta: Client) -> None:
    lealta.members.create(
        NewMember(
            external_id="José-ñ",
            email="jose@example.com",
            phone="+34 600 000 000",
            attributes={"size": "M", "vip": True},
            consents=[Consent(purpose="marketing_email", granted=True)],
        )
    )
    updated = lealta.members.update(
        "José-ñ", MemberUpdate(name="José", attributes={"vip": None, "shoe": 42})
    )
    assert updated.name == "José" and updated.email == "jose@example.com"
    assert updated.attributes == {"size": "M", "shoe": 42}
    cleared = lealta.members.update("José-ñ", MemberUpdate(phone=None))
    assert cleared.phone is None and cleared.name == "José"

    member = lealta.members.record_consent(
        "José-ñ", Consent(purpose="marketing_email", granted=False, source="cockpit")
    )
    assert [(c.purpose, c.granted) for c in member.consents][-1] == ("marketing_email", False)
    assert lealta.members.get("José-ñ").external_id == "José-ñ"


def test_members_are_listed_with_filters_and_every_page(lealta: Client, live: LiveServer) -> None:
    lealta.programme.put(demo_document())
    for n in range(5):
        tags = ["vip"] if n % 2 == 0 else []
        lealta.members.create(NewMember(external_id=f"m-{n}", name=f"Member {n}", tags=tags))
    lealta.ledger.adjust("m-3", 100, "Gift")

    page = lealta.members.list(limit=2)
    assert len(page.items) == 2 and page.next_cursor is not None
    by_id = MemberFilter(sort="external_id", order="asc")
    everyone = list(lealta.members.iter_all(by_id, page_size=2))
    assert [m.external_id for m in everyone] == [f"m-{n}" for n in range(5)]
    vip = MemberFilter(tags=["vip"], sort="external_id", order="asc")
    assert [m.external_id for m in lealta.members.iter_all(vip)] == ["m-0", "m-2", "m-4"]
    rich = lealta.members.list(MemberFilter(points_min=50))
    assert [(m.external_id, m.points_available) for m in rich.items] == [("m-3", 100)]
    found = lealta.members.list(MemberFilter(q="member 1"))
    assert [m.external_id for m in found.items] == ["m-1"]
    with pytest.raises(UnprocessableEntityError) as bad:
        lealta.members.list(MemberFilter(tiers=["diamante"]))
    assert bad.value.code == "unknown_tier"


def test_programme_versions_dry_runs_and_schema(lealta: Client) -> None:
    empty = lealta.programme.get()
    assert empty.version is None and empty.document["currency"]
    assert lealta.programme.schema()["type"] == "object"

    document = demo_document()
    check = lealta.programme.validate(document)
    assert check.dry_run and check.version is None and check.changes
    assert lealta.programme.versions() == []

    first = lealta.programme.put(document)
    assert (first.version, first.dry_run) == (1, False)
    document["earning"]["points_per_unit"] = 2
    diff = lealta.programme.validate(document)
    assert [c.path for c in diff.changes] == ["earning.points_per_unit"]
    second = lealta.programme.put(document)
    assert second.version == 2
    assert [v.version for v in lealta.programme.versions()] == [2, 1]
    assert lealta.programme.version(1).document["earning"]["points_per_unit"] == "1"
    assert lealta.programme.get().version == 2


def test_the_async_client_does_the_same(live: LiveServer, server_key: str) -> None:
    async def scenario() -> None:
        async with AsyncClient(live.url, server_key, timeout=15, retry=FAST) as lealta:
            assert (await lealta.health()).status == "ok"
            await lealta.programme.put(demo_document())
            order = shoes_order("ORD-A", "120.00")
            results = await asyncio.gather(
                lealta.events.send(Event.order_paid("gala", order, occurred_at=at(5))),
                lealta.members.create(NewMember(external_id="hugo")),
            )
            assert results[0].points_delta == 170
            await lealta.ledger.adjust("gala", 200, "Welcome")
            assert (await lealta.members.balance("gala")).available == 370
            redemption = await lealta.rewards.redeem("gala", "free-shipping", idempotency_key="r")
            replay = await lealta.rewards.redeem("gala", "free-shipping", idempotency_key="r")
            assert replay.response_info is not None and replay.response_info.replayed
            assert replay.id == redemption.id
            assert (await lealta.members.balance("gala")).available == 70
            entries = [e async for e in lealta.ledger.iter_history("gala", page_size=1)]
            assert [e.entry_type for e in entries] == ["redeem", "adjust", "earn", "earn"]
            orders = [o.order_id async for o in lealta.members.iter_orders("gala")]
            assert orders == ["ORD-A"]
            with pytest.raises(NotFoundError):
                await lealta.tiers.get("nobody")

    run_async(scenario)


def _sample_calls() -> list[calls.Call[Any]]:
    cart = Cart(total=Decimal("1"), currency="EUR")
    consent = Consent(purpose="marketing_email", granted=True)
    return [
        calls.send_event({"type": "x"}, None),
        calls.send_batch([], str),
        calls.create_member(NewMember(external_id="a"), None),
        calls.list_members(MemberFilter(), None, None),
        calls.get_member("a"),
        calls.update_member("a", MemberUpdate()),
        calls.record_consent("a", consent, None),
        calls.balance("a"),
        calls.orders("a", None, None),
        calls.ledger("a", None, None),
        calls.adjust("a", 1, "abc", None, None),
        calls.spend("a", 1, None, None, None),
        calls.tier("a"),
        calls.benefits("a"),
        calls.catalogue("a"),
        calls.redeem_reward("a", "r", None, None),
        calls.redemptions("a", None),
        calls.rollback_redemption(1, None),
        calls.validate_coupon("C", cart, None),
        calls.redeem_coupon("C", "o", cart, None, None),
        calls.rollback_coupon("C", "o", None),
        calls.get_coupon("C"),
        calls.wallet("a"),
        calls.get_programme(),
        calls.put_programme({}, dry_run=False, activate_at=None),
        calls.programme_versions(),
        calls.programme_version(1),
        calls.programme_schema(),
        calls.health(),
    ]


def test_every_call_of_the_client_is_an_operation_of_the_api_with_its_fields(
    live: LiveServer,
) -> None:
    """Against the server's own OpenAPI document: each call's method and path exist, and each
    response model names the fields the server documents (the required ones as required)."""
    builders = [
        f
        for f in vars(calls).values()
        if inspect.isfunction(f)
        and f.__module__ == calls.__name__
        and str(inspect.signature(f).return_annotation).startswith("Call[")
    ]
    sample = _sample_calls()
    assert len(sample) == len(builders)
    document = live.app.openapi()
    schemas = document["components"]["schemas"]
    checked = 0
    for call in sample:
        matching = [
            (template, operations[call.method.lower()])
            for template, operations in document["paths"].items()
            if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), call.path)
            and call.method.lower() in operations
        ]
        assert matching, f"{call.method} {call.path} is not in the API"
        template, operation = min(matching, key=lambda m: m[0].count("{"))
        model = getattr(call.parse, "__self__", None)
        if not (isinstance(model, type) and issubclass(model, ApiModel)):
            continue
        answers = [operation["responses"][s] for s in ("201", "200") if s in operation["responses"]]
        schema = answers[0]["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        if "properties" not in schema:  # /health: a free-form object
            continue
        ours = set(model.model_fields)
        assert ours == set(schema["properties"]), (template, model.__name__)
        required = {n for n, f in model.model_fields.items() if f.is_required()}
        assert required <= set(schema.get("required", [])), (template, model.__name__)
        checked += 1
    assert checked >= 24
