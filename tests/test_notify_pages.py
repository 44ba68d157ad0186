"""Notification pages over HTTP: the cockpit inbox (badge, mark read), the unsubscribe page,
the console's templates page (edit, error, preview) and the member 360's messages, in
Spanish and English with no words of the other language."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.config import Settings
from lealta.demo.programme import DEMO_PROGRAMME_TEXT
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import login_links
from lealta.members import service as members
from lealta.members.schemas import ConsentIn, MemberCreate
from lealta.models import ROLES, AuditLog, Message, NotificationTemplate
from lealta.notify import service
from lealta.programme import service as programmes
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(db: Database, clock: FixedClock, database_url: str) -> Any:
    settings = Settings(
        database_url=database_url,
        env="test",
        log_level="WARNING",
        notify_quiet_start=0,
        notify_quiet_end=0,
    )
    with db.unit_of_work() as session:
        document = programmes.parse_text(DEMO_PROGRAMME_TEXT)
        programmes.apply(
            session, programmes.validate(document), actor="test", now=T0 - timedelta(days=30)
        )
        create_staff(session, ROLES, now=T0)
        for external_id, name, language in (("ana", "Ana", "es"), ("bob", "Bob", "en")):
            member = members.create(
                session,
                MemberCreate(
                    external_id=external_id,
                    email=f"{external_id}@example.com",
                    name=name,
                    language=language,
                    consents=[ConsentIn(purpose="marketing_email", granted=True)],
                ),
                now=T0 - timedelta(days=2),
            )
            for n, key in enumerate(("points_earned", "tier_changed")):
                service.send_template(
                    session,
                    member.id,
                    key,
                    "inapp",
                    {"points": 1500, "tier": {"name": "Oro"}},
                    f"seed:{external_id}:{n}",
                    T0,
                )
    with db.unit_of_work(write=False) as session:
        ids = list(session.scalars(select(Message.id).order_by(Message.id)))
    for message_id in ids:
        assert service.deliver(db, settings, message_id, now=T0) == "sent"
    return app_for(settings, db=db, clock=clock)


def _client(app: Any, lang: str) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    client.cookies.set("lealta_lang", lang)
    return client


def _csrf(page: str) -> str:
    found = CSRF.search(page)
    assert found, page[:500]
    return found.group(1)


def _no_leaks(response: Any, lang: str) -> None:
    assert response.headers["content-type"].startswith("text/html"), response.text[:200]
    assert f'<html lang="{lang}">' in response.text
    leaks = english_leaks(response.text) if lang == "es" else spanish_leaks(response.text)
    assert leaks == [], leaks


def _member(app: Any, db: Database, external_id: str) -> TestClient:
    client = _client(app, "es")
    client.cookies.delete("lealta_lang")
    with db.unit_of_work() as session:
        asked = login_links.request_link(
            session, f"{external_id}@example.com", client_ip="testclient", now=T0, minutes=15
        )
    assert asked.token is not None
    page = client.get(f"/me/login/{asked.token}")
    done = client.post(
        f"/me/login/{asked.token}", data={"csrf_token": _csrf(page.text)}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    return client


def _staff(app: Any, role: str, lang: str) -> TestClient:
    client = _client(app, lang)
    token = _csrf(client.get("/admin/login").text)
    signed = client.post(
        "/admin/login",
        data={"email": f"{role}@example.com", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    return client


# --- cockpit ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("who", "lang"), [("ana", "es"), ("bob", "en")])
def test_the_inbox_shows_messages_with_an_unread_badge_and_marks_them_read(
    app: Any, db: Database, who: str, lang: str
) -> None:
    client = _member(app, db, who)
    home = client.get("/me")
    assert home.status_code == 200
    assert 'data-unread-badge="2"' in home.text
    _no_leaks(home, lang)
    inbox = client.get("/me/inbox")
    assert inbox.status_code == 200 and inbox.text.count('data-unread="1"') == 2
    _no_leaks(inbox, lang)
    expected = "Has ganado 1.500 puntos" if lang == "es" else "You earned 1,500 points"
    assert expected in inbox.text
    first = re.search(r'name="message" value="(\d+)"', inbox.text)
    assert first
    read = client.post(
        "/me/inbox/read",
        data={"csrf_token": _csrf(inbox.text), "message": first.group(1)},
        follow_redirects=False,
    )
    assert read.status_code == 303
    after = client.get("/me/inbox")
    assert after.text.count('data-unread="1"') == 1 and 'data-unread-badge="1"' in after.text
    _no_leaks(after, lang)  # with the flash message
    # Someone else's message, a bad id and a missing CSRF token: no change, no 500.
    with db.unit_of_work(write=False) as session:
        other = session.scalar(
            select(Message.id).where(Message.member_id != after_member_id(db, who)).limit(1)
        )
    for data in ({"message": str(other)}, {"message": "x1"}):
        refused = client.post(
            "/me/inbox/read", data={"csrf_token": _csrf(after.text), **data}, follow_redirects=True
        )
        assert refused.status_code == 200 and 'class="flash flash-error"' in refused.text
        _no_leaks(refused, lang)
    forged = client.post("/me/inbox/read", data={"message": first.group(1)})
    assert forged.status_code == 403 and "text/html" in forged.headers["content-type"]
    everything = client.post(
        "/me/inbox/read", data={"csrf_token": _csrf(after.text)}, follow_redirects=True
    )
    assert 'data-unread="1"' not in everything.text and "data-unread-badge" not in everything.text


def after_member_id(db: Database, external_id: str) -> int:
    with db.unit_of_work(write=False) as session:
        return members.get(session, external_id).id


def test_the_inbox_needs_a_signed_in_member(app: Any) -> None:
    client = _client(app, "es")
    answer = client.get("/me/inbox", follow_redirects=False)
    assert answer.status_code in (302, 303) and "/me/login" in answer.headers["location"]


@pytest.mark.parametrize(("who", "lang"), [("ana", "es"), ("bob", "en")])
def test_the_unsubscribe_page_speaks_the_members_language(
    app: Any, db: Database, who: str, lang: str
) -> None:
    client = _client(app, lang)
    client.cookies.delete("lealta_lang")
    settings: Settings = app.state.settings
    token = service.unsubscribe_token(settings, after_member_id(db, who), "email")
    page = client.get(f"/me/unsubscribe/{token}")
    assert page.status_code == 200
    _no_leaks(page, lang)
    done = client.post(f"/me/unsubscribe/{token}")
    assert done.status_code == 200 and 'data-unsubscribed="1"' in done.text
    _no_leaks(done, lang)
    bad = client.get("/me/unsubscribe/not-a-token")
    assert bad.status_code == 400
    _no_leaks(bad, "es")  # no member known: the visitor's default language


# --- console ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["es", "en"])
def test_the_templates_page_lists_edits_refuses_errors_and_previews(
    app: Any, db: Database, lang: str
) -> None:
    client = _staff(app, "marketer", lang)
    listing = client.get("/admin/templates")
    assert listing.status_code == 200 and 'data-template="points_earned/email/es"' in listing.text
    _no_leaks(listing, lang)
    url = "/admin/templates/points_earned/email/en"
    editor = client.get(url + "?member=bob")
    assert editor.status_code == 200 and "data-preview-subject" in editor.text
    assert "Hello Bob, you earned" in editor.text
    _no_leaks(editor, lang)
    broken = client.post(
        url,
        data={
            "csrf_token": _csrf(editor.text),
            "subject": "{{ points",
            "body_text": "Kept text",
            "body_html": "",
            "member": "bob",
        },
    )
    assert broken.status_code == 422 and "Kept text" in broken.text
    assert 'class="flash flash-error"' in broken.text
    _no_leaks(broken, lang)
    with db.unit_of_work(write=False) as session:
        assert session.scalars(select(NotificationTemplate)).all() == []
    saved = client.post(
        url,
        data={
            "csrf_token": _csrf(editor.text),
            "subject": "Hi {{ member.name }}: {{ balance|number }}",
            "body_text": "Tier {{ tier.name }}",
            "body_html": "<p>Tier {{ tier.name }}</p>",
            "member": "bob",
        },
        follow_redirects=True,
    )
    assert saved.status_code == 200
    assert "Hi Bob: 0" in saved.text and "Tier Basic" in saved.text
    _no_leaks(saved, lang)
    with db.unit_of_work(write=False) as session:
        actions = list(session.scalars(select(AuditLog.action)))
    assert "template.save" in actions
    reverted = client.post(
        url + "/revert", data={"csrf_token": _csrf(saved.text)}, follow_redirects=True
    )
    assert reverted.status_code == 200
    with db.unit_of_work(write=False) as session:
        assert session.scalars(select(NotificationTemplate)).all() == []
    missing = client.get(url + "?member=nobody")
    assert missing.status_code == 200 and 'class="flash flash-error"' in missing.text
    _no_leaks(missing, lang)
    bad_key = client.get("/admin/templates/new?key=Bad Key&channel=email&language=es")
    assert bad_key.status_code == 422
    _no_leaks(bad_key, lang)
    new = client.get(
        "/admin/templates/new?key=welcome&channel=sms&language=es", follow_redirects=False
    )
    assert new.status_code == 303 and new.headers["location"] == "/admin/templates/welcome/sms/es"
    fresh = client.get("/admin/templates/welcome/sms/es")
    assert fresh.status_code == 200
    _no_leaks(fresh, lang)
    unknown = client.get("/admin/templates/welcome/fax/es")
    assert unknown.status_code == 404 and "text/html" in unknown.headers["content-type"]


def test_read_only_staff_cannot_save_templates(app: Any) -> None:
    client = _staff(app, "read_only", "en")
    editor = client.get("/admin/templates/points_earned/email/es")
    assert editor.status_code == 200
    refused = client.post(
        "/admin/templates/points_earned/email/es",
        data={"csrf_token": _csrf(editor.text), "subject": "x", "body_text": "y"},
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(("who", "lang"), [("ana", "es"), ("bob", "en")])
def test_the_member_360_lists_the_members_messages(app: Any, who: str, lang: str) -> None:
    # Messages are shown as sent, in the member's language: each member on a page of theirs.
    client = _staff(app, "support", lang)
    page = client.get(f"/admin/members/{who}")
    assert page.status_code == 200
    assert page.text.count('data-message-status="sent"') == 2
    assert "points_earned" in page.text
    _no_leaks(page, lang)
