"""Notifications end to end: a real SMTP server (aiosmtpd) and a real HTTP provider on
loopback, the ``notify.send`` job run by a real worker, consent, the frequency cap, quiet
hours (fixed clock), the unsubscribe link, templates and the in-app inbox over the API."""

from __future__ import annotations

import email
import itertools
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import policy
from email.message import Message as EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.config import Settings
from lealta.demo.programme import DEMO_PROGRAMME_TEXT
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Consent, Job, Message
from lealta.programme import service as programmes
from tests.conftest import T0, app_for
from tests.factories import order_paid

# --- real servers on loopback ----------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in str(m.get("To", ""))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@dataclass
class Provider:
    """A generic SMS/push provider: records requests; answers ``failures`` 503s first."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: int = 0
    url: str = ""


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append({"headers": dict(self.headers), "json": json.loads(body)})
            if state.failures > 0:
                state.failures -= 1
                self.send_response(503)
                self.end_headers()
                self.wfile.write(b"busy")
                return
            answer = json.dumps({"id": f"prov-{len(state.requests)}"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/send"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def notify_settings(
    database_url: str, mailbox: tuple[Mailbox, int], provider: Provider
) -> Settings:
    return Settings(
        database_url=database_url,
        env="test",
        log_level="WARNING",
        worker_poll_seconds=0.02,
        smtp_host="127.0.0.1",
        smtp_port=mailbox[1],
        mail_from="Tienda <hola@tienda.test>",
        public_url="https://loyal.tienda.test",
        notify_http_url=provider.url,
        notify_http_token="provider-secret",
        notify_quiet_start=0,
        notify_quiet_end=0,
        notify_cap_messages=5,
    )


@pytest.fixture
def mail(mailbox: tuple[Mailbox, int]) -> Mailbox:
    return mailbox[0]


def _api(db: Database, clock: FixedClock, settings: Settings, key: str) -> TestClient:
    client = TestClient(app_for(settings, db=db, clock=clock), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {key}"
    return client


@pytest.fixture
def api(
    db: Database, clock: FixedClock, notify_settings: Settings, server_key: str
) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        document = programmes.parse_text(DEMO_PROGRAMME_TEXT)
        programmes.apply(
            session, programmes.validate({**document, "pending": {"days": 0}}), actor="test",
            now=T0 - timedelta(days=30),
        )  # fmt: skip
    with _api(db, clock, notify_settings, server_key) as client:
        yield client


def _work(db: Database, clock: FixedClock, settings: Settings) -> None:
    Worker(db, clock=clock, settings=settings, name="notify-test", schedule=False).run(
        until_idle=True
    )


def _member(
    api: TestClient,
    external_id: str,
    *,
    language: str = "es",
    timezone: str = "Europe/Madrid",
    consents: tuple[str, ...] = ("marketing_email",),
    **fields: Any,
) -> None:
    body = {
        "external_id": external_id,
        "email": f"{external_id}@example.com",
        "name": fields.pop("name", external_id.title()),
        "language": language,
        "timezone": timezone,
        "consents": [{"purpose": p, "granted": True} for p in consents],
        **fields,
    }
    created = api.post("/v1/members", json=body, headers={"Idempotency-Key": f"m-{external_id}"})
    assert created.status_code in (200, 201), created.text


_KEYS = itertools.count()


def _later(clock: FixedClock, delta: timedelta) -> None:
    clock.set(clock.now() + delta)


def _send(
    api: TestClient,
    external_id: str,
    template: str,
    *,
    channel: str = "email",
    key: str | None = None,
    **context: Any,
) -> dict[str, Any]:
    sent = api.post(
        f"/v1/members/{external_id}/messages",
        json={"template": template, "channel": channel, "context": context},
        headers={"Idempotency-Key": key or f"send-{next(_KEYS)}"},
    )
    assert sent.status_code in (200, 202), sent.text
    return dict(sent.json())


def _messages(api: TestClient, external_id: str) -> list[dict[str, Any]]:
    listed = api.get(f"/v1/members/{external_id}/messages")
    assert listed.status_code == 200, listed.text
    return list(listed.json()["items"])


def _parts(message: EmailMessage) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[part.get_content_subtype()] = payload.decode(
                part.get_content_charset() or "utf-8"
            )
    return found


# --- e-mail ----------------------------------------------------------------------------------


COUPON_CONTEXT = {
    "crossed": "1500.5",
    "reward": {"name": "Café"},
    "coupon": {"code": "GIFT-123", "expires_at": "2026-03-01T10:00:00+00:00"},
    "points": 12345,
}


def test_emails_arrive_in_the_members_language_with_babel_formats_and_headers(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    _member(api, "maria", language="es", name="María")
    _member(api, "john", language="en", timezone="America/New_York", name="John")
    for who in ("maria", "john"):
        assert _send(api, who, "threshold_reached", **COUPON_CONTEXT)["status"] == "queued"
        _send(api, who, "points_earned", points=12345)
    _work(db, clock, notify_settings)

    es_mails, en_mails = mail.to("maria@example.com"), mail.to("john@example.com")
    assert len(es_mails) == 2 and len(en_mails) == 2
    es_gift = next(m for m in es_mails if "regalo" in m["Subject"])
    en_gift = next(m for m in en_mails if "gift" in m["Subject"])
    es_text, en_text = _parts(es_gift)["plain"], _parts(en_gift)["plain"]
    # Money, numbers and dates in the member's locale (es: 1.500,50 €; en: €1,500.50).
    assert "1.500,50\xa0€" in es_text and "1 de marzo de 2026" in es_text and "GIFT-123" in es_text
    assert "€1,500.50" in en_text and "March 1, 2026" in en_text
    assert "Hola María" in es_text and "Hello John" in en_text
    es_points = next(m for m in es_mails if "puntos" in m["Subject"])
    en_points = next(m for m in en_mails if "points" in m["Subject"])
    assert str(es_points["Subject"]) == "Has ganado 12.345 puntos"
    assert str(en_points["Subject"]) == "You earned 12,345 points"
    # Progress to the next tier (spend basis) in the member's money format.
    assert "Te faltan 1.000,00\xa0€ para subir a nivel Plata" in _parts(es_points)["plain"]
    assert "€1,000.00 more to reach Silver" in _parts(en_points)["plain"]
    # Both parts, the unsubscribe headers and a stable Message-ID.
    assert set(_parts(es_gift)) == {"plain", "html"}
    assert "<p>" in _parts(es_gift)["html"]
    unsubscribe = str(es_gift["List-Unsubscribe"])
    assert unsubscribe.startswith("<https://loyal.tienda.test/me/unsubscribe/")
    assert es_gift["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(es_gift["Message-ID"]).startswith("<lealta-message-")
    assert str(es_gift["Message-ID"]).endswith("@tienda.test>")
    logged = _messages(api, "maria")
    assert {m["status"] for m in logged} == {"sent"}
    assert all(m["provider_id"].startswith("<lealta-message-") for m in logged)
    assert all(m["language"] == "es" for m in logged)


def test_html_placeholders_are_escaped_and_templates_run_sandboxed(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    _member(api, "eve", name="<script>x</script>")
    saved = api.put(
        "/v1/templates/hello",
        json={
            "channel": "email",
            "language": "es",
            "subject": "Hola {{ member.name }}",
            "body_text": "Hola {{ member.name }}",
            "body_html": "<b>{{ member.name }}</b>",
        },
    )
    assert saved.status_code == 200, saved.text
    _send(api, "eve", "hello")
    _work(db, clock, notify_settings)
    html = _parts(mail.to("eve@example.com")[0])["html"]
    assert "<script>" not in html and "&lt;script&gt;" in html
    unsafe = api.put(
        "/v1/templates/evil",
        json={"channel": "email", "language": "es", "body_text": "{{ ''.__class__.__mro__ }}"},
    )
    assert unsafe.status_code == 200  # it compiles; rendering it is refused by the sandbox
    _send(api, "eve", "evil")
    _work(db, clock, notify_settings)
    evil = next(m for m in _messages(api, "eve") if m["template"] == "evil")
    assert evil["status"] == "failed" and "invalid_template" in evil["error"]


# --- the HTTP provider -------------------------------------------------------------------------


def test_sms_goes_to_the_http_provider_with_an_idempotency_key_and_is_retried(
    api: TestClient,
    db: Database,
    clock: FixedClock,
    notify_settings: Settings,
    provider: Provider,
) -> None:
    # A cap of one: the failed first attempt must not count against its own retry.
    settings = notify_settings.model_copy(update={"notify_cap_messages": 1})
    _member(api, "sam", language="en", phone="+34600111222", consents=("marketing_sms",))
    provider.failures = 1
    queued = _send(api, "sam", "points_earned", channel="sms", points=1500)
    _work(db, clock, settings)
    first = _messages(api, "sam")[0]
    assert first["status"] == "queued" and "503" in first["error"]
    _later(clock, timedelta(hours=2))
    _work(db, clock, settings)
    assert len(provider.requests) == 2
    keys = {r["headers"]["Idempotency-Key"] for r in provider.requests}
    assert keys == {f"lealta-message-{queued['id']}"}
    request = provider.requests[-1]
    assert request["headers"]["Authorization"] == "Bearer provider-secret"
    assert request["json"]["to"] == "+34600111222"
    assert request["json"]["channel"] == "sms"
    assert request["json"]["text"] == "You earned 1,500 points. Balance: 0."
    done = _messages(api, "sam")[0]
    assert done["status"] == "sent" and done["provider_id"] == "prov-2" and done["error"] is None


def test_a_provider_that_keeps_failing_leaves_the_message_failed_after_the_last_attempt(
    api: TestClient,
    db: Database,
    clock: FixedClock,
    notify_settings: Settings,
    provider: Provider,
) -> None:
    from lealta.notify.tasks import SEND_ATTEMPTS

    _member(api, "fay", phone="+34600111333", consents=("marketing_sms",))
    provider.failures = 1000
    _send(api, "fay", "points_earned", channel="sms", points=1)
    for _ in range(SEND_ATTEMPTS + 2):
        _work(db, clock, notify_settings)
        _later(clock, timedelta(hours=2))
    assert len(provider.requests) == SEND_ATTEMPTS
    (message,) = _messages(api, "fay")
    assert message["status"] == "failed" and message["error"].startswith("gave up: provider")
    with db.unit_of_work(write=False) as session:
        job = session.scalars(select(Job).where(Job.task == "notify.send")).one()
        assert job.status == "dead"


# --- consent, cap, quiet hours ---------------------------------------------------------------


def test_consent_is_checked_when_the_message_is_sent(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    _member(api, "nora", consents=())
    _member(api, "otto")
    _send(api, "nora", "points_earned", points=10)
    _send(api, "otto", "points_earned", points=10)
    # Otto withdraws between the send and the job: the job sees the withdrawal.
    withdrawn = api.post(
        "/v1/members/otto/consents", json={"purpose": "marketing_email", "granted": False}
    )
    assert withdrawn.status_code == 200
    _work(db, clock, notify_settings)
    assert mail.messages == []
    for who in ("nora", "otto"):
        (logged,) = _messages(api, who)
        assert logged["status"] == "no_consent" and "marketing_email" in logged["error"]


def test_the_frequency_cap_drops_and_records_what_is_over_it(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    settings = notify_settings.model_copy(update={"notify_cap_messages": 2, "notify_cap_hours": 24})
    _member(api, "cap")
    for n in range(3):
        _send(api, "cap", "points_earned", points=n + 1)
    _work(db, clock, settings)
    # The worker's threads decide the three at once, one member's sends one at a time (under
    # the account's lock): which one comes third is theirs to choose, that one is capped.
    statuses = [m["status"] for m in _messages(api, "cap")]
    assert sorted(statuses) == ["capped", "sent", "sent"]
    assert len(mail.to("cap@example.com")) == 2
    # In-app messages are not capped; a day later e-mail is allowed again.
    _send(api, "cap", "points_earned", channel="inapp", points=4)
    _later(clock, timedelta(hours=25))
    _send(api, "cap", "points_earned", points=5)
    _work(db, clock, settings)
    assert [m["status"] for m in _messages(api, "cap")[:2]] == ["sent", "sent"]
    assert len(mail.to("cap@example.com")) == 3


def test_quiet_hours_in_the_members_timezone_delay_the_message(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    settings = notify_settings.model_copy(update={"notify_quiet_start": 22, "notify_quiet_end": 8})
    _member(api, "late", timezone="Europe/Madrid")  # 12:00 UTC is 13:00 in Madrid
    _member(api, "tokyo", timezone="Asia/Tokyo")  # and 21:00 in Tokyo
    _later(clock, timedelta(hours=10))  # 22:00 UTC: 23:00 in Madrid, 07:00 in Tokyo
    _send(api, "late", "points_earned", points=1)
    _send(api, "tokyo", "points_earned", points=1)
    _work(db, clock, settings)
    assert mail.messages == []
    (late,) = _messages(api, "late")
    assert late["status"] == "delayed"
    assert late["due_at"].startswith("2026-01-06T07:00:00")  # 08:00 in Madrid
    (tokyo,) = _messages(api, "tokyo")
    assert tokyo["due_at"].startswith("2026-01-05T23:00:00")  # 08:00 in Tokyo
    with db.unit_of_work(write=False) as session:
        waiting = session.scalars(
            select(Job).where(Job.task == "notify.send", Job.status == "queued")
        )
        assert sorted(j.run_at.isoformat() for j in waiting) == [
            "2026-01-05T23:00:00+00:00",
            "2026-01-06T07:00:00+00:00",
        ]
    _later(clock, timedelta(hours=1))
    _work(db, clock, settings)
    assert len(mail.to("tokyo@example.com")) == 1 and mail.to("late@example.com") == []
    _later(clock, timedelta(hours=8))
    _work(db, clock, settings)
    assert len(mail.to("late@example.com")) == 1
    assert _messages(api, "late")[0]["status"] == "sent"


# --- unsubscribe -----------------------------------------------------------------------------


def test_the_unsubscribe_link_works_without_signing_in_and_records_the_withdrawal(
    api: TestClient,
    db: Database,
    clock: FixedClock,
    notify_settings: Settings,
    mail: Mailbox,
) -> None:
    _member(api, "bye", language="en")
    _send(api, "bye", "points_earned", points=3)
    _work(db, clock, notify_settings)
    link = str(mail.to("bye@example.com")[0]["List-Unsubscribe"]).strip("<>")
    path = urlsplit(link).path
    with TestClient(api.app, raise_server_exceptions=False) as visitor:  # no key, no session
        page = visitor.get(path)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "Stop receiving e-mail messages from us?" in page.text
        with db.unit_of_work(write=False) as session:
            assert session.scalars(select(Consent).where(Consent.granted.is_(False))).all() == []
        # The one-click POST of RFC 8058, as mail clients send it.
        done = visitor.post(path, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and 'data-unsubscribed="1"' in done.text
        again = visitor.post(path)
        assert again.status_code == 200
        forged = visitor.get(path[:-3] + "abc")
        assert forged.status_code == 400 and 'data-invalid-link="1"' in forged.text
    with db.unit_of_work(write=False) as session:
        rows = session.scalars(select(Consent).where(Consent.source == "unsubscribe_link")).all()
        assert [(r.purpose, r.granted) for r in rows] == [("marketing_email", False)]
    _send(api, "bye", "points_earned", points=4)
    _work(db, clock, notify_settings)
    assert len(mail.to("bye@example.com")) == 1
    assert _messages(api, "bye")[0]["status"] == "no_consent"


# --- API: idempotency, templates, inbox --------------------------------------------------------


def test_sending_is_idempotent_by_key(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    _member(api, "ida")
    first = _send(api, "ida", "points_earned", key="k1", points=1)
    replay = api.post(
        "/v1/members/ida/messages",
        json={"template": "points_earned", "channel": "email", "context": {"points": 1}},
        headers={"Idempotency-Key": "k1"},
    )
    assert replay.status_code == 200 and replay.json()["id"] == first["id"]
    assert replay.headers["Idempotent-Replayed"] == "true"
    reused = api.post(
        "/v1/members/ida/messages",
        json={"template": "points_earned", "context": {"points": 2}},
        headers={"Idempotency-Key": "k1"},
    )
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    missing = api.post("/v1/members/ida/messages", json={"template": "points_earned"})
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "missing_idempotency_key"
    _work(db, clock, notify_settings)
    assert len(mail.to("ida@example.com")) == 1
    with db.unit_of_work(write=False) as session:
        assert len(session.scalars(select(Message)).all()) == 1


def test_bad_sends_are_4xx_and_write_nothing(api: TestClient, db: Database) -> None:
    _member(api, "bad")
    cases = [
        ("/v1/members/bad/messages", {"template": "nope"}, 404, "template_not_found"),
        ("/v1/members/ghost/messages", {"template": "points_earned"}, 404, "member_not_found"),
        ("/v1/members/bad/messages", {"template": "points_earned", "channel": "fax"}, 422, None),
        ("/v1/members/bad/messages", {"template": "Bad Key!"}, 422, None),
    ]
    for n, (path, body, status, code) in enumerate(cases):
        answer = api.post(path, json=body, headers={"Idempotency-Key": f"bad-{n}"})
        assert answer.status_code == status, answer.text
        if code:
            assert answer.json()["error"]["code"] == code
    with db.unit_of_work(write=False) as session:
        assert session.scalars(select(Message)).all() == []
        assert session.scalars(select(Job).where(Job.task == "notify.send")).all() == []


def test_template_crud_and_preview_with_a_member(api: TestClient) -> None:
    _member(api, "pia", language="en", name="Pia")
    listed = api.get("/v1/templates").json()["items"]
    shipped = {(t["key"], t["channel"], t["language"]) for t in listed if t["builtin"]}
    assert ("points_earned", "email", "es") in shipped and (
        "tier_changed",
        "inapp",
        "en",
    ) in shipped
    assert {t["key"] for t in listed} >= {
        "points_earned",
        "tier_changed",
        "threshold_reached",
        "points_expiring",
    }
    broken = api.put(
        "/v1/templates/points_earned",
        json={"channel": "email", "language": "en", "subject": "{{ points", "body_text": "x"},
    )
    assert broken.status_code == 422 and broken.json()["error"]["code"] == "invalid_template"
    assert "subject" in broken.json()["error"]["message"]
    saved = api.put(
        "/v1/templates/points_earned",
        json={
            "channel": "email",
            "language": "en",
            "subject": "{{ points|number }} for {{ member.name }}",
            "body_text": "Balance {{ balance|number }}, tier {{ tier.name }}",
        },
    )
    assert saved.status_code == 200 and saved.json()["builtin"] is False
    preview = api.post(
        "/v1/templates/points_earned/preview?member=pia", json={"context": {"points": 2500}}
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["subject"] == "2,500 for Pia"
    assert preview.json()["body_text"] == "Balance 0, tier Basic"
    assert preview.json()["language"] == "en"
    unknown = api.post("/v1/templates/points_earned/preview?member=ghost")
    assert unknown.status_code == 404
    assert api.delete("/v1/templates/points_earned/email/en").status_code == 204
    assert api.delete("/v1/templates/points_earned/email/en").status_code == 404
    back = api.post(
        "/v1/templates/points_earned/preview?member=pia", json={"context": {"points": 1}}
    )
    assert back.json()["subject"] == "You earned 1 points"
    assert api.get("/v1/templates/nothing-here").status_code == 404


def test_the_in_app_inbox_counts_unread_and_marks_read(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings
) -> None:
    _member(api, "ina", consents=())
    _member(api, "other")
    first = _send(api, "ina", "points_earned", channel="inapp", points=7)
    _send(api, "ina", "tier_changed", channel="inapp", tier={"name": "Oro"})
    mine_other = _send(api, "other", "points_earned", channel="inapp", points=1)
    _work(db, clock, notify_settings)
    inbox = api.get("/v1/members/ina/inbox").json()
    assert inbox["unread"] == 2 and len(inbox["items"]) == 2
    assert inbox["items"][1]["body_text"] == "Has ganado 7 puntos. Saldo: 0."
    read = api.post(f"/v1/members/ina/inbox/read?message={first['id']}")
    assert read.status_code == 200 and read.json() == {"marked": 1, "unread": 1}
    foreign = api.post(f"/v1/members/ina/inbox/read?message={mine_other['id']}")
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "message_not_found"
    everything = api.post("/v1/members/ina/inbox/read")
    assert everything.json() == {"marked": 1, "unread": 0}


# --- the default transactional messages ----------------------------------------------------------


def test_order_paid_sends_points_earned_when_the_settings_turn_it_on(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    _member(api, "ola", name="Ola")
    _member(api, "quiet", name="Quiet")
    paid = api.post("/v1/events", json=order_paid("e1", "quiet", "o1", "120.00", T0))
    assert paid.status_code in (200, 201), paid.text
    _work(db, clock, notify_settings)  # default settings: no transactional messages
    assert mail.messages == []
    settings = notify_settings.model_copy(update={"notify_events": "order.paid,tier.changed"})
    paid = api.post("/v1/events", json=order_paid("e2", "ola", "o2", "1200.00", T0))
    assert paid.status_code in (200, 201), paid.text
    _work(db, clock, settings)
    _work(db, clock, settings)  # the messages queued by the subscribers
    subjects = sorted(str(m["Subject"]) for m in mail.to("ola@example.com"))
    assert subjects == ["Has ganado 1.200 puntos", "¡Felicidades! Has subido a nivel Plata"], (
        subjects
    )
    logged = _messages(api, "ola")
    assert sorted((m["template"], m["channel"]) for m in logged) == [
        ("points_earned", "email"),
        ("points_earned", "inapp"),
        ("tier_changed", "email"),
        ("tier_changed", "inapp"),
    ]
    # A second worker pass (a redelivery) sends nothing more.
    _work(db, clock, settings)
    assert len(mail.to("ola@example.com")) == 2


def test_the_notification_tables_match_their_migration(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lealta.kit.db import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    mine = [d for d in diff if "messages" in repr(d) or "notification_templates" in repr(d)]
    assert [d for d in mine if "outbox_messages" not in repr(d)] == []
