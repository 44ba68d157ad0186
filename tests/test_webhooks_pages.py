"""The console's Webhooks pages: es and en without leaks, the disabled-endpoint banner, the
form error, the secret shown once, enable/disable/rotate/remove, replay, admins only."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import AuditLog, Job, WebhookEndpoint
from lealta.webhooks import service
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SECRET = re.compile(r'value="(whsec_[^"]+)"')
Console = Callable[[str, str], TestClient]


@pytest.fixture
def console(db: Database, clock: FixedClock, settings: Settings) -> Iterator[Console]:
    with db.unit_of_work() as session:
        create_staff(session, ("admin", "support"), now=clock.now(), domain="shop.test")
    app = app_for(settings, db=db, clock=clock)
    clients: list[TestClient] = []

    def make(role: str, lang: str = "en") -> TestClient:
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        client.cookies.set("lealta_lang", lang)
        token = CSRF.search(client.get("/admin/login").text)
        assert token
        signed = client.post(
            "/admin/login",
            data={"email": f"{role}@shop.test", "password": PASSWORD, "csrf_token": token[1]},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _token(client: TestClient, path: str = "/admin/webhooks") -> str:
    found = CSRF.search(client.get(path).text)
    assert found
    return found[1]


def _broken_endpoint(db: Database) -> tuple[int, int]:
    """An endpoint Lealta disabled after failures, with one dead delivery."""
    with db.unit_of_work() as session:
        endpoint = service.create_endpoint(
            session, url="https://down.example/hooks", event_types=["order.paid"], now=T0,
            actor="test",
        )  # fmt: skip
        service.fan_out(
            session, outbox_id=5, event_type="order.paid", version=1, created_at=T0,
            data={"event_id": "ord_1"}, member_id=None, now=T0,
        )  # fmt: skip
        session.flush()
        [delivery] = service.list_deliveries(session, endpoint_id=endpoint.id)
        request = service.start_attempt(session, delivery.id)
        assert isinstance(request, service.Request)
        settings = Settings(webhook_disable_after_failures=2, webhook_disable_after_hours=1)
        for minutes in (0, 90):
            service.record_attempt(
                session,
                request,
                service.Result(500, 12, "down for maintenance", "HTTP 500"),
                now=T0 + timedelta(minutes=minutes),
                last_try=False,
                settings=settings,
            )
        return endpoint.id, delivery.id


def test_pages_in_both_languages_with_the_banner(console: Console, db: Database) -> None:
    endpoint_id, delivery_id = _broken_endpoint(db)
    for lang, leaks in (("es", english_leaks), ("en", spanish_leaks)):
        client = console("admin", lang)
        page = client.get("/admin/webhooks")
        assert page.status_code == 200, page.text
        assert f'<html lang="{lang}">' in page.text
        assert leaks(page.text) == [], (lang, leaks(page.text))
        assert 'href="/admin/webhooks" aria-current="page"' in page.text
        assert f'data-webhook-disabled="{endpoint_id}"' in page.text
        assert f'data-delivery="{delivery_id}" data-status="dead"' in page.text
        detail = client.get(f"/admin/webhooks/{endpoint_id}")
        assert detail.status_code == 200 and leaks(detail.text) == [], leaks(detail.text)
        assert "down for maintenance" in detail.text and "HTTP 500" in detail.text
        assert f'data-webhook-disabled="{endpoint_id}"' in detail.text
        assert "whsec_" not in page.text + detail.text  # the secret is never listed
        filtered = client.get(f"/admin/webhooks/{endpoint_id}", params={"status": "succeeded"})
        assert 'data-delivery="' not in filtered.text
    spanish = console("admin", "es").get("/admin/webhooks").text
    assert "intentos fallidos seguidos" in spanish and "Añadir un endpoint" in spanish
    english = console("admin", "en").get("/admin/webhooks").text
    assert "2 failed attempts in a row" in english


def test_a_form_error_keeps_the_input_and_writes_nothing(console: Console, db: Database) -> None:
    for lang, leaks in (("es", english_leaks), ("en", spanish_leaks)):
        client = console("admin", lang)
        refused = client.post(
            "/admin/webhooks",
            data={
                "csrf_token": _token(client),
                "url": "ftp://shop.example/x",
                "event_types": "order.paid",
                "description": "the shop",
            },
        )
        assert refused.status_code == 422
        assert leaks(refused.text) == [], leaks(refused.text)
        assert 'value="ftp://shop.example/x"' in refused.text and 'value="the shop"' in refused.text
        assert 'role="alert"' in refused.text and 'aria-invalid="true"' in refused.text
        bad_types = client.post(
            "/admin/webhooks",
            data={"csrf_token": _token(client), "url": "https://a.example", "event_types": "Bad!"},
        )
        assert bad_types.status_code == 422 and leaks(bad_types.text) == []
    english = console("admin", "en")
    empty = english.post("/admin/webhooks", data={"csrf_token": _token(english)})
    assert empty.status_code == 422
    assert "Enter an absolute http:// or https:// URL." in empty.text
    with db.unit_of_work(write=False) as session:
        assert service.list_endpoints(session) == []


def test_add_shows_the_secret_once_then_manage_the_endpoint(console: Console, db: Database) -> None:
    client = console("admin", "en")
    no_csrf = client.post("/admin/webhooks", data={"url": "https://shop.example/h"})
    assert no_csrf.status_code == 403
    added = client.post(
        "/admin/webhooks",
        data={
            "csrf_token": _token(client),
            "url": "https://shop.example/h",
            "event_types": "order.paid, tier.changed",
        },
    )
    assert added.status_code == 200 and spanish_leaks(added.text) == []
    secret = SECRET.search(added.text)
    assert secret
    with db.unit_of_work(write=False) as session:
        [endpoint] = service.list_endpoints(session)
    assert endpoint.secret == secret[1]
    assert endpoint.event_types == ["order.paid", "tier.changed"]
    page = client.get(f"/admin/webhooks/{endpoint.id}").text
    assert secret[1] not in page

    token = _token(client)
    rotated = client.post(f"/admin/webhooks/{endpoint.id}/rotate", data={"csrf_token": token})
    new_secret = SECRET.search(rotated.text)
    assert new_secret and new_secret[1] != secret[1]
    off = client.post(
        f"/admin/webhooks/{endpoint.id}/disable", data={"csrf_token": token}, follow_redirects=False
    )
    assert off.status_code == 303
    shown = client.get(off.headers["location"]).text
    assert f"Endpoint {endpoint.id} is disabled." in shown
    assert "data-webhook-disabled" not in shown  # switched off by a person: no banner
    client.post(f"/admin/webhooks/{endpoint.id}/enable", data={"csrf_token": token})
    with db.unit_of_work(write=False) as session:
        row = session.get(WebhookEndpoint, endpoint.id)
        assert row is not None and row.enabled and row.secret == new_secret[1]
    removed = client.post(
        f"/admin/webhooks/{endpoint.id}/remove", data={"csrf_token": token}, follow_redirects=False
    )
    assert removed.status_code == 303 and removed.headers["location"] == "/admin/webhooks"
    assert client.get(f"/admin/webhooks/{endpoint.id}").status_code == 404
    with db.unit_of_work(write=False) as session:
        actions = list(
            session.scalars(
                select(AuditLog.action)
                .where(AuditLog.action.like("webhook.%"))
                .order_by(AuditLog.id)
            )
        )
    assert actions == [
        "webhook.created", "webhook.secret_rotated", "webhook.updated", "webhook.updated",
        "webhook.removed",
    ]  # fmt: skip


def test_replay_from_the_page(console: Console, db: Database) -> None:
    endpoint_id, delivery_id = _broken_endpoint(db)
    client = console("admin", "en")
    token = _token(client)
    refused = client.post(
        f"/admin/webhooks/deliveries/{delivery_id}/replay", data={"csrf_token": token}
    )
    assert refused.status_code == 409
    assert "The endpoint is disabled; enable it before replaying." in refused.text
    client.post(f"/admin/webhooks/{endpoint_id}/enable", data={"csrf_token": token})
    done = client.post(
        f"/admin/webhooks/deliveries/{delivery_id}/replay",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert (
        f"Delivery {delivery_id} will be sent again now."
        in client.get(done.headers["location"]).text
    )
    with db.unit_of_work(write=False) as session:
        jobs = session.scalars(select(Job).where(Job.task == "webhooks.deliver")).all()
    assert [j.status for j in jobs].count("queued") == 2  # the first one and the replay
    missing = client.post("/admin/webhooks/deliveries/99999/replay", data={"csrf_token": token})
    assert missing.status_code == 404 and "This delivery no longer exists." in missing.text
    huge = client.post(f"/admin/webhooks/deliveries/{2**70}/replay", data={"csrf_token": token})
    assert huge.status_code in (404, 422)


def test_only_admins(console: Console, db: Database) -> None:
    endpoint_id, _ = _broken_endpoint(db)
    support = console("support", "en")
    assert support.get("/admin/webhooks").status_code == 403
    assert support.get(f"/admin/webhooks/{endpoint_id}").status_code == 403
    assert 'href="/admin/webhooks"' not in support.get("/admin").text
    token = CSRF.search(support.get("/admin").text)
    assert token
    assert (
        support.post(f"/admin/webhooks/{endpoint_id}/enable", data={"csrf_token": token[1]})
    ).status_code == 403
    assert 'href="/admin/webhooks"' in console("admin", "en").get("/admin").text
