"""The privacy pages: erasure from the console (typed confirmation) and requested from the
cockpit (confirmed by an emailed link, read from a real loopback SMTP server), the
transparency page, and the console's JSON export; every page in Spanish and English."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import service as members
from lealta.models import AuditLog, Member, MemberErasure
from tests import test_cockpit as _cockpit
from tests.conftest import T0
from tests.factories import PASSWORD, add_member, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks, visible_text
from tests.test_cockpit import Mailbox, csrf, sign_in

# The cockpit tests' fixtures: a real loopback SMTP server and the app that mails through it.
mailbox = _cockpit.mailbox
mail = _cockpit.mail
cockpit_settings = _cockpit.cockpit_settings
app = _cockpit.app
web = _cockpit.web
other_web = _cockpit.other_web

ADDRESS = "lucia.moreno@example.com"
ERASE_LINK = re.compile(r"http://testserver/me/privacy/erase/([A-Za-z0-9_.-]+)")


def page_in(response: Any, lang: str) -> str:
    """The page's visible text, after checking it is HTML in ``lang`` with nothing of the other
    language from the catalogues."""
    assert response.status_code < 500
    assert response.headers["content-type"].startswith("text/html"), response.text[:200]
    assert f'<html lang="{lang}">' in response.text
    leaks = english_leaks(response.text) if lang == "es" else spanish_leaks(response.text)
    assert leaks == [], leaks
    return visible_text(response.text)


@pytest.fixture
def lucia(db: Database, app: Any) -> str:
    add_member(db, "cust-lucia", ADDRESS, points=250, name="Lucía Moreno")
    return "cust-lucia"


def erased(db: Database) -> list[MemberErasure]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(MemberErasure)))


# --- cockpit ---------------------------------------------------------------------------------


class TestCockpit:
    def test_the_transparency_page_is_linked_and_in_both_languages(
        self, web: TestClient, mail: Mailbox, lucia: str
    ) -> None:
        sign_in(web, mail, ADDRESS)
        for lang in ("es", "en"):
            web.cookies.set("lealta_lang", lang)
            privacy = web.get("/me/privacy")
            assert 'href="/me/privacy/data"' in privacy.text
            assert 'href="/me/privacy/erase"' in privacy.text
            text = page_in(web.get("/me/privacy/data"), lang)
            heading = "Qué guardamos y por qué" if lang == "es" else "What we store and why"
            assert heading in text

    def test_pages_need_a_member(self, other_web: TestClient) -> None:
        for path in ("/me/privacy/data", "/me/privacy/erase"):
            response = other_web.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/me/login")

    def test_request_confirm_by_email_and_erase(
        self,
        db: Database,
        web: TestClient,
        other_web: TestClient,
        mail: Mailbox,
        lucia: str,
    ) -> None:
        sign_in(web, mail, ADDRESS)
        for lang in ("en", "es"):
            web.cookies.set("lealta_lang", lang)
            page_in(web.get("/me/privacy/erase"), lang)
        refused = web.post("/me/privacy/erase", data={"csrf_token": "forged"})
        assert refused.status_code == 403 and erased(db) == []
        asked = web.post("/me/privacy/erase", data={"csrf_token": csrf(web, "/me/privacy/erase")})
        assert asked.status_code == 303 and asked.headers["location"] == "/me/privacy"
        assert "Te hemos enviado un enlace" in visible_text(web.get("/me/privacy").text)
        body = mail.to(ADDRESS)[-1].get_payload(decode=True)
        assert isinstance(body, bytes)
        found = ERASE_LINK.search(body.decode())
        assert found, body
        token = found.group(1)
        assert erased(db) == [], "asking erases nothing"

        # The link works in any browser (the mailbox proves the member); GET erases nothing.
        other_web.cookies.set("lealta_lang", "en")
        confirm = other_web.get(f"/me/privacy/erase/{token}")
        page_in(confirm, "en")
        assert erased(db) == []
        forged = other_web.get(f"/me/privacy/erase/{token[:-2]}xx")
        assert forged.status_code == 400 and "erasure_link_invalid" in forged.text
        done = other_web.post(
            f"/me/privacy/erase/{token}",
            data={"csrf_token": csrf(other_web, f"/me/privacy/erase/{token}")},
        )
        assert done.status_code == 200
        assert "Your data was erased" in page_in(done, "en")
        [record] = erased(db)
        assert record.channel == "cockpit" and record.status == "completed"
        with db.unit_of_work(write=False) as session:
            member = session.get(Member, record.member_id)
            assert member is not None and member.email is None and member.name is None
        # Every session of the member has ended; the link is spent.
        assert web.get("/me").status_code == 303
        again = other_web.get(f"/me/privacy/erase/{token}")
        assert again.status_code == 400 and "erasure_link_used" in again.text

    def test_an_old_link_has_expired(
        self, db: Database, web: TestClient, mail: Mailbox, lucia: str, clock: FixedClock
    ) -> None:
        sign_in(web, mail, ADDRESS)
        web.post("/me/privacy/erase", data={"csrf_token": csrf(web, "/me/privacy/erase")})
        body = mail.to(ADDRESS)[-1].get_payload(decode=True)
        assert isinstance(body, bytes)
        found = ERASE_LINK.search(body.decode())
        assert found
        clock.set(T0 + timedelta(hours=25))
        web.cookies.set("lealta_lang", "es")
        late = web.get(f"/me/privacy/erase/{found.group(1)}")
        assert late.status_code == 400 and "erasure_link_expired" in late.text
        assert "Este enlace ha caducado" in page_in(late, "es")
        assert erased(db) == []


# --- console ---------------------------------------------------------------------------------


@pytest.fixture
def staff(db: Database, app: Any) -> None:
    with db.unit_of_work() as session:
        create_staff(session, ["admin", "support"], now=T0)


def console(app: Any, role: str) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        page = client.get("/admin/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        signed = client.post(
            "/admin/login",
            data={"email": f"{role}@example.com", "password": PASSWORD, "csrf_token": token[1]},
        )
        assert signed.status_code == 303, signed.text
        yield client


@pytest.fixture
def admin(app: Any, staff: None) -> Iterator[TestClient]:
    yield from console(app, "admin")


@pytest.fixture
def support(app: Any, staff: None) -> Iterator[TestClient]:
    yield from console(app, "support")


class TestConsole:
    def test_member_360_links_and_the_erase_page_in_both_languages(
        self, admin: TestClient, lucia: str
    ) -> None:
        member = admin.get(f"/admin/members/{lucia}").text
        assert f"/admin/members/{lucia}/erase" in member
        assert f"/admin/members/{lucia}/data-export" in member
        for lang in ("es", "en"):
            admin.cookies.set("lealta_lang", lang)
            text = page_in(admin.get(f"/admin/members/{lucia}/erase"), lang)
            assert lucia in text
            page_in(admin.get(f"/admin/members/{lucia}"), lang)

    def test_a_mistyped_confirmation_erases_nothing_then_the_right_one_does(
        self, db: Database, admin: TestClient, lucia: str
    ) -> None:
        form = f"/admin/members/{lucia}/erase"
        admin.cookies.set("lealta_lang", "es")
        wrong = admin.post(form, data={"csrf_token": csrf(admin, form), "confirm": "cust-lu"})
        assert wrong.status_code == 422
        text = page_in(wrong, "es")
        assert "Escribe exactamente el id externo" in text
        assert 'value="cust-lu"' in wrong.text and 'aria-invalid="true"' in wrong.text
        assert erased(db) == []
        admin.cookies.set("lealta_lang", "en")
        page_in(admin.post(form, data={"csrf_token": csrf(admin, form), "confirm": ""}), "en")
        right = admin.post(form, data={"csrf_token": csrf(admin, form), "confirm": lucia})
        assert right.status_code == 303
        [record] = erased(db)
        assert right.headers["location"] == f"/admin/members/{record.pseudonym}"
        landed = admin.get(right.headers["location"])
        assert "personal data was erased" in page_in(landed, "en")
        assert "Lucía" not in landed.text and ADDRESS not in landed.text
        assert record.actor == "admin:admin@example.com" and record.channel == "console"
        assert admin.get(f"/admin/members/{lucia}").status_code == 404

    def test_support_exports_but_cannot_erase(
        self, db: Database, support: TestClient, lucia: str
    ) -> None:
        member = support.get(f"/admin/members/{lucia}").text
        assert f"/admin/members/{lucia}/erase" not in member
        assert support.get(f"/admin/members/{lucia}/erase").status_code == 403
        form = f"/admin/members/{lucia}/erase"
        token = csrf(support, f"/admin/members/{lucia}")
        denied = support.post(form, data={"csrf_token": token, "confirm": lucia})
        assert denied.status_code == 403 and erased(db) == []
        exported = support.get(f"/admin/members/{lucia}/data-export")
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("application/json")
        assert "attachment" in exported.headers["content-disposition"]
        data = json.loads(exported.text)
        assert data["profile"]["email"] == ADDRESS and data["ledger"][0]["points"] == 250
        with db.unit_of_work(write=False) as session:
            audits = session.scalar(
                select(func.count()).where(AuditLog.action == "member.data_export")
            )
            assert audits == 1
            assert members.get(session, lucia).email == ADDRESS
