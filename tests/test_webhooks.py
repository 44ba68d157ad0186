"""Outbound webhooks on the real database (SQLite and PostgreSQL) and a real HTTP receiver on
loopback: signing (checked with the README's snippet, run verbatim), retries, disabling,
replay, filters, backfill, the API, the CLI and the OpenAPI ``webhooks`` section."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import Settings, get_settings
from lealta.jobs.worker import Worker
from lealta.kit.clock import Clock, FixedClock, SystemClock
from lealta.kit.db import Database
from lealta.models import (
    AdminUser,
    AuditLog,
    Job,
    Member,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from lealta.outbox import events as domain
from lealta.outbox.service import emit
from lealta.webhooks import service, signing
from tests.conftest import T0, app_for
from tests.factories import add_member
from tests.test_cockpit import Mailbox, mailbox  # noqa: F401 - the SMTP fixture
from tests.webhook_receiver import Receiver, running

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_verifier() -> Any:
    """The README's verification snippet, executed verbatim."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Outbound webhooks", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README has no verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(found.group(1), "README.md", "exec"), namespace)
    return namespace["verify_lealta_webhook"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running() as box:
        yield box


@pytest.fixture
def hook_settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        env="test",
        log_level="WARNING",
        worker_poll_seconds=0.02,
        webhook_timeout_seconds=5,
        webhook_disable_after_failures=3,
        webhook_disable_after_hours=1,
    )


def _worker(db: Database, clock: Clock, settings: Settings) -> Worker:
    return Worker(db, clock=clock, settings=settings, name="hook-worker", schedule=False)


def _endpoint(db: Database, url: str, events: list[str] | None = None) -> tuple[int, str]:
    with db.unit_of_work() as session:
        endpoint = service.create_endpoint(
            session, url=url, event_types=events or ["*"], now=T0, actor="test"
        )
        return endpoint.id, endpoint.secret


def _emit(db: Database, event: domain.DomainEvent, *, backfill: bool = False) -> None:
    with db.unit_of_work(write=False) as session:
        member_id = session.scalar(select(Member.id).where(Member.external_id == "cus_hook"))
    if member_id is None:
        member_id = add_member(db, "cus_hook", None)
    with db.unit_of_work() as session:
        emit(session, event, member_id=member_id, now=T0, backfill=backfill)


def _paid(event_id: str = "ord_1") -> domain.OrderPaid:
    return domain.OrderPaid(event_id=event_id, customer_id="cus_hook", points_delta=42)


def _deliveries(db: Database) -> list[WebhookDelivery]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def _attempts(db: Database) -> list[WebhookAttempt]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)))


def _endpoints(db: Database) -> list[WebhookEndpoint]:
    with db.unit_of_work(write=False) as session:
        return service.list_endpoints(session)


def _endpoint_row(db: Database, endpoint_id: int) -> WebhookEndpoint:
    with db.unit_of_work(write=False) as session:
        found = session.get(WebhookEndpoint, endpoint_id)
        assert found is not None
        return found


# --- pure parts ----------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(b"whsec_k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signing.signature("whsec_k", 1700000000, body) == f"v1={expected}"
    assert signing.verify(
        "whsec_k", timestamp="1700000000", body=body,
        signature_header=f"v1=bad v1={expected}", now=1700000100, tolerance=300,
    )  # fmt: skip
    assert not signing.verify(
        "whsec_k", timestamp="1700000000", body=body + b" ",
        signature_header=f"v1={expected}", now=1700000000, tolerance=300,
    )  # fmt: skip
    assert not signing.verify(
        "whsec_k", timestamp="1700000000", body=body,
        signature_header=f"v1={expected}", now=1700000301, tolerance=300,
    )  # fmt: skip
    assert (
        signing.new_secret().startswith("whsec_") and signing.new_secret() != signing.new_secret()
    )


def test_filters_and_the_disabling_rule() -> None:
    assert signing.normalise_filters([" tier.changed", "order.paid", "order.paid"]) == [
        "order.paid", "tier.changed",
    ]  # fmt: skip
    assert signing.normalise_filters(["order.paid", "*"]) == ["*"]
    for bad in (["Order.Paid"], ["order paid"], [""], [], ["x" * 65]):
        with pytest.raises(ValueError):
            signing.normalise_filters(bad)
    assert signing.matches(["*"], "review.posted")
    assert signing.matches(["order.paid"], "order.paid")
    assert not signing.matches(["order.paid"], "order.refunded")

    def rule(failures: int, since: datetime | None, now: datetime) -> bool:
        return service.should_disable(failures, since, now, failures=3, hours=1.0)

    assert not rule(2, T0, T0 + timedelta(hours=5))
    assert not rule(3, T0, T0 + timedelta(minutes=59))
    assert rule(3, T0, T0 + timedelta(hours=1))
    assert not rule(9, None, T0)


# --- delivery ------------------------------------------------------------------------------


def test_an_event_is_delivered_signed_and_verifies_with_the_readme_snippet(
    db: Database, hook_settings: Settings, receiver: Receiver
) -> None:
    endpoint_id, secret = _endpoint(db, receiver.url)
    _emit(db, _paid())
    _worker(db, SystemClock(), hook_settings).run(until_idle=True)
    [request] = receiver.wait_for(1)
    verify = readme_verifier()
    assert verify(secret, request.headers, request.body)
    assert not verify(secret, request.headers, request.body.replace(b"42", b"43"))
    assert not verify("whsec_other", request.headers, request.body)
    body = orjson.loads(request.body)
    assert body["type"] == "order.paid" and body["version"] == 1
    assert body["id"] == request.headers["Lealta-Webhook-Id"] and body["id"].startswith("evt_")
    assert body["data"] == {"event_id": "ord_1", "customer_id": "cus_hook", "points_delta": 42}
    assert body["created_at"] == T0.isoformat()
    [delivery] = _deliveries(db)
    assert (delivery.endpoint_id, delivery.status, delivery.attempts) == (
        endpoint_id,
        "succeeded",
        1,
    )
    assert delivery.last_status_code == 200 and delivery.last_duration_ms is not None
    assert delivery.last_response == '{"ok": true}'


def test_server_errors_are_retried_with_backoff_until_delivered(
    db: Database, clock: FixedClock, hook_settings: Settings
) -> None:
    with running(Receiver(statuses=[500, 503, 200])) as receiver:
        _endpoint(db, receiver.url)
        _emit(db, _paid())
        worker = _worker(db, clock, hook_settings)
        worker.run(until_idle=True)
        [delivery] = _deliveries(db)
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            "retrying",
            1,
            500,
        )
        assert delivery.last_response == "receiver says no" and delivery.last_error == "HTTP 500"
        with db.unit_of_work(write=False) as session:
            job = session.scalars(select(Job).where(Job.task == "webhooks.deliver")).one()
        assert job.status == "retrying" and T0 <= job.run_at <= T0 + timedelta(seconds=30)
        for _ in range(2):
            clock.set(clock.now() + timedelta(hours=3))
            worker.run(until_idle=True)
        assert len(receiver.requests) == 3
    ids = {r.headers["Lealta-Webhook-Id"] for r in receiver.requests}
    assert len(ids) == 1  # one event id across retries
    [delivery] = _deliveries(db)
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert [(a.attempt, a.status_code, a.succeeded) for a in _attempts(db)] == [
        (1, 500, False), (2, 503, False), (3, 200, True),
    ]  # fmt: skip


def test_an_endpoint_failing_for_long_is_disabled_and_the_admins_are_told(
    db: Database,
    clock: FixedClock,
    hook_settings: Settings,
    mailbox: tuple[Mailbox, int],  # noqa: F811
) -> None:
    box, port = mailbox
    settings = hook_settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    with db.unit_of_work() as session:
        for email, role in (("boss@example.com", "admin"), ("help@example.com", "support")):
            session.add(
                AdminUser(email=email, name="x", role=role, password_hash="x", created_at=T0)
            )
    with running(Receiver(statuses=[500])) as receiver:
        endpoint_id, _ = _endpoint(db, receiver.url)
        _emit(db, _paid())
        worker = _worker(db, clock, settings)
        worker.run(until_idle=True)  # failure 1 at T0
        clock.set(T0 + timedelta(minutes=40))
        worker.run(until_idle=True)  # failure 2: not yet
        assert _endpoint_row(db, endpoint_id).enabled
        clock.set(T0 + timedelta(minutes=70))
        worker.run(until_idle=True)  # failure 3, over an hour: disabled
        endpoint = _endpoint_row(db, endpoint_id)
        assert not endpoint.enabled and endpoint.consecutive_failures == 3
        assert (
            endpoint.disabled_reason is not None and "3 failed attempts" in endpoint.disabled_reason
        )
        [delivery] = _deliveries(db)
        assert delivery.status == "dead"
        # Nothing more is sent to a disabled endpoint, even for new events.
        _emit(db, _paid("ord_2"))
        clock.set(T0 + timedelta(hours=5))
        worker.run(until_idle=True)
        assert len(receiver.requests) == 3
    with db.unit_of_work(write=False) as session:
        actions = list(session.scalars(select(AuditLog.action).where(AuditLog.actor == "system")))
    assert actions == ["webhook.disabled"]
    assert len(_deliveries(db)) == 1  # the disabled endpoint gets no new deliveries
    [message] = box.messages
    assert message["To"] == "boss@example.com"
    assert message["Subject"] == "Webhook endpoint disabled"
    assert f"/admin/webhooks/{endpoint_id}" in str(message.get_payload())


def test_backfilled_history_does_not_fire(
    db: Database, hook_settings: Settings, receiver: Receiver
) -> None:
    _endpoint(db, receiver.url)
    _emit(db, _paid(), backfill=True)
    _worker(db, SystemClock(), hook_settings).run(until_idle=True)
    assert _deliveries(db) == [] and receiver.requests == []


def test_filters_choose_the_endpoints_and_custom_events_reach_star(
    db: Database, hook_settings: Settings, receiver: Receiver
) -> None:
    star, _ = _endpoint(db, receiver.url + "/all")
    tiers, _ = _endpoint(db, receiver.url + "/tiers", ["tier.changed"])
    custom, _ = _endpoint(db, receiver.url + "/reviews", ["review.posted"])
    _emit(db, _paid())
    _emit(
        db,
        domain.EventProcessed(
            event_type="review.posted", event_id="rev_1", customer_id="cus_hook", points_delta=5
        ),
    )
    _worker(db, SystemClock(), hook_settings).run(until_idle=True)
    receiver.wait_for(3)
    got = sorted((r.path, orjson.loads(r.body)["type"]) for r in receiver.requests)
    assert got == [
        ("/hooks/all", "order.paid"), ("/hooks/all", "review.posted"),
        ("/hooks/reviews", "review.posted"),
    ]  # fmt: skip
    assert {d.endpoint_id for d in _deliveries(db)} == {star, custom}
    assert tiers not in {d.endpoint_id for d in _deliveries(db)}


def test_a_delivery_runs_once_per_endpoint_even_if_the_fan_out_repeats(
    db: Database, clock: FixedClock
) -> None:
    endpoint_id, _ = _endpoint(db, "http://127.0.0.1:9/x")
    for _ in range(2):
        with db.unit_of_work() as session:
            service.fan_out(
                session, outbox_id=7, event_type="order.paid", version=1, created_at=T0,
                data={"event_id": "e"}, member_id=None, now=T0,
            )  # fmt: skip
    assert [d.endpoint_id for d in _deliveries(db)] == [endpoint_id]
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(func.count()).where(Job.task == "webhooks.deliver")) == 1


# --- the API -------------------------------------------------------------------------------


@pytest.fixture
def api(
    db: Database, clock: FixedClock, hook_settings: Settings, server_key: str
) -> Iterator[TestClient]:

    with TestClient(app_for(hook_settings, db=db, clock=clock), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


def _key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": name}


def test_api_creates_shows_the_secret_once_and_manages_endpoints(
    api: TestClient, db: Database, read_key: str
) -> None:
    body = {"url": "https://shop.example/hooks", "event_types": ["order.paid", "tier.changed"]}
    created = api.post("/v1/webhooks", json=body, headers=_key("c1"))
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["enabled"] is True
    again = api.post("/v1/webhooks", json=body, headers=_key("c1"))
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == endpoint
    assert len(api.get("/v1/webhooks").json()["items"]) == 1
    shown = api.get(f"/v1/webhooks/{endpoint['id']}").json()
    assert "secret" not in shown and shown["event_types"] == ["order.paid", "tier.changed"]
    assert "secret" not in str(api.get("/v1/webhooks").json())

    rotated = api.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=_key("r1"))
    assert rotated.status_code == 200 and rotated.json()["secret"] != endpoint["secret"]
    assert _endpoint_row(db, endpoint["id"]).secret == rotated.json()["secret"]

    patched = api.patch(
        f"/v1/webhooks/{endpoint['id']}",
        json={"event_types": ["*"], "enabled": False},
        headers=_key("p1"),
    )
    assert patched.status_code == 200 and patched.json()["event_types"] == ["*"]
    assert patched.json()["enabled"] is False and patched.json()["disabled_reason"] is None

    removed = api.delete(f"/v1/webhooks/{endpoint['id']}", headers=_key("d1"))
    assert removed.status_code == 200 and removed.json() == {"id": endpoint["id"], "removed": True}
    assert api.get(f"/v1/webhooks/{endpoint['id']}").json()["error"]["code"] == (
        "webhook_endpoint_not_found"
    )
    with db.unit_of_work(write=False) as session:
        actions = list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert actions == [
        "webhook.created", "webhook.secret_rotated", "webhook.updated", "webhook.removed",
    ]  # fmt: skip

    reader = api.get("/v1/webhooks", headers={"Authorization": f"Bearer {read_key}"})
    assert reader.status_code == 403 and reader.json()["error"]["code"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://x.example/h"}, "invalid_webhook_url"),
        ({"url": "not a url"}, "invalid_webhook_url"),
        ({"url": "http://:80/x"}, "invalid_webhook_url"),
        ({"url": "http://x.example:99999/x"}, "invalid_webhook_url"),
        ({"url": "https://x.example/h", "event_types": ["Order Paid"]}, "invalid_event_types"),
        ({"url": "https://x.example/h", "event_types": []}, "validation_error"),
        ({"url": "https://x.example/h", "secret": "mine"}, "validation_error"),
    ],
)
def test_api_refuses_bad_endpoints_and_writes_nothing(
    api: TestClient, db: Database, body: dict[str, Any], code: str
) -> None:
    answer = api.post("/v1/webhooks", json=body, headers=_key("bad"))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == code
    assert api.get("/v1/webhooks").json()["items"] == []


def test_api_needs_an_idempotency_key_and_says_what_is_missing(api: TestClient) -> None:
    answer = api.post("/v1/webhooks", json={"url": "https://x.example/h"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "missing_idempotency_key"
    assert api.post("/v1/webhooks/deliveries/99/replay", headers=_key("x")).status_code == 404
    assert api.patch("/v1/webhooks/0", json={}, headers=_key("x")).status_code == 422


def test_delivery_log_and_replay_through_the_api(
    api: TestClient, db: Database, hook_settings: Settings, receiver: Receiver
) -> None:
    created = api.post("/v1/webhooks", json={"url": receiver.url}, headers=_key("c")).json()
    _emit(db, _paid())
    _worker(db, SystemClock(), hook_settings).run(until_idle=True)
    receiver.wait_for(1)
    page = api.get("/v1/webhooks/deliveries", params={"endpoint_id": created["id"]}).json()
    [item] = page["items"]
    assert (item["status"], item["last_status_code"], item["attempts"]) == ("succeeded", 200, 1)
    assert item["event_type"] == "order.paid" and item["event_id"].startswith("evt_")
    replayed = api.post(f"/v1/webhooks/deliveries/{item['id']}/replay", headers=_key("rp"))
    assert replayed.status_code == 200 and replayed.json()["status"] == "pending"
    again = api.post(f"/v1/webhooks/deliveries/{item['id']}/replay", headers=_key("rp"))
    assert again.headers.get("Idempotent-Replayed") == "true"
    _worker(db, SystemClock(), hook_settings).run(until_idle=True)
    first, second = receiver.wait_for(2)
    assert len(receiver.requests) == 2  # the repeated key did not replay twice
    assert first.body == second.body
    assert first.headers["Lealta-Webhook-Id"] == second.headers["Lealta-Webhook-Id"]
    detail = api.get(f"/v1/webhooks/deliveries/{item['id']}").json()
    assert [a["attempt"] for a in detail["attempt_log"]] == [1, 2]
    assert detail["status"] == "succeeded" and detail["payload"]["type"] == "order.paid"
    # A disabled endpoint's deliveries are not replayed until it is enabled again.
    api.patch(f"/v1/webhooks/{created['id']}", json={"enabled": False}, headers=_key("off"))
    refused = api.post(f"/v1/webhooks/deliveries/{item['id']}/replay", headers=_key("rp2"))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "webhook_endpoint_disabled"


def test_openapi_documents_every_event_payload(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    hooks = document["webhooks"]
    assert set(domain.EVENT_TYPES) <= set(hooks)
    operation = hooks["tier.changed"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) >= {"id", "type", "created_at", "data"}
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"Lealta-Webhook-Id", "Lealta-Webhook-Timestamp", "Lealta-Webhook-Signature"}
    data = document["components"]["schemas"]["TierChangedData"]["properties"]
    assert {"from", "to", "direction", "qualifying_value", "customer_id"} <= set(data)
    assert "/v1/webhooks" in document["paths"]


# --- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli(db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "250")  # Rich tables unwrapped
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_add_list_deliveries_replay_remove(
    cli: CliRunner, db: Database, hook_settings: Settings, receiver: Receiver
) -> None:
    added = cli.invoke(cli_app, ["webhooks", "add", receiver.url, "-e", "order.paid"])
    assert added.exit_code == 0, added.output
    secret = re.search(r"whsec_\S+", added.output)
    assert secret is not None
    [endpoint] = _endpoints(db)
    assert endpoint.secret == secret.group(0) and endpoint.event_types == ["order.paid"]
    listed = cli.invoke(cli_app, ["webhooks", "list"])
    assert listed.exit_code == 0 and "order.paid" in listed.output and "whsec_" not in listed.output
    _emit(db, _paid())
    _worker(db, SystemClock(), hook_settings).run(until_idle=True)
    receiver.wait_for(1)
    log = cli.invoke(cli_app, ["webhooks", "deliveries", "--status", "succeeded"])
    assert log.exit_code == 0 and "succeeded" in log.output and "200" in log.output
    [delivery] = _deliveries(db)
    replayed = cli.invoke(cli_app, ["webhooks", "replay", str(delivery.id)])
    assert replayed.exit_code == 0 and "pending" in replayed.output
    missing = cli.invoke(cli_app, ["webhooks", "replay", "999"])
    assert missing.exit_code == 4 and "webhook_delivery_not_found" in missing.output
    bad = cli.invoke(cli_app, ["webhooks", "add", "ftp://nope"])
    assert bad.exit_code == 2 and "invalid_webhook_url" in bad.output
    assert cli.invoke(cli_app, ["webhooks", "deliveries", "--status", "x"]).exit_code == 2
    removed = cli.invoke(cli_app, ["webhooks", "remove", str(endpoint.id)])
    assert removed.exit_code == 0
    assert _deliveries(db) == [] and _endpoints(db) == []


def test_the_webhook_tables_match_their_migration(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lealta.kit.db import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "webhook" in repr(d)] == []


def test_finished_deliveries_are_pruned_after_the_retention(
    db: Database, clock: FixedClock, hook_settings: Settings
) -> None:
    endpoint_id, _ = _endpoint(db, "http://127.0.0.1:9/x")
    with db.unit_of_work() as session:
        for outbox_id in (1, 2, 3):
            service.fan_out(
                session, outbox_id=outbox_id, event_type="order.paid", version=1,
                created_at=T0, data={}, member_id=None, now=T0,
            )  # fmt: skip
        session.flush()
        old, dead, waiting = service.list_deliveries(session, endpoint_id=endpoint_id)[::-1]
        request = service.start_attempt(session, old.id)
        assert isinstance(request, service.Request)
        service.record_attempt(
            session, request, service.Result(200, 5, "ok", None), now=T0, last_try=False,
            settings=hook_settings,
        )  # fmt: skip
        dead.status = "dead"
    keep = timedelta(days=30)
    with db.unit_of_work() as session:
        assert service.prune(session, now=T0 + timedelta(days=29), older_than=keep) == 0
    with db.unit_of_work() as session:
        assert service.prune(session, now=T0 + timedelta(days=31), older_than=keep) == 2
    assert [d.id for d in _deliveries(db)] == [waiting.id]  # still to be delivered: kept
    assert _attempts(db) == []
