"""Referral pages over HTTP: the cockpit page (link, inline QR, friends masked, es and en),
the cookie-less landing page of a shared link (visits counted, language by Accept-Language or
``?lang``, unknown codes as an HTML page), the console's funnel and review queue (approve /
reject with CSRF, audited) and the member 360's referrals."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.config import Settings
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import AuditLog, Member, Referral, ReferralCode
from lealta.programme import service as programmes
from lealta.referrals import service
from tests.conftest import app_for
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks
from tests.test_cockpit import cockpit_settings, mail, mailbox, sign_in  # noqa: F401
from tests.test_referrals import _programme
from tests.test_rewards import use

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _enrol(
    db: Database, clock: FixedClock, external_id: str, code: str | None = None, **f: Any
) -> None:
    with db.unit_of_work() as session:
        members.create(
            session,
            MemberCreate(
                external_id=external_id, email=f.pop("email", f"{external_id}@example.com"),
                referral_code=code, **f,
            ),
            now=clock.now(),
        )  # fmt: skip


def _code(db: Database, clock: FixedClock, external_id: str) -> str:
    with db.unit_of_work() as session:
        member_id = session.scalar(select(Member.id).where(Member.external_id == external_id))
        assert member_id is not None
        return service.code_for(session, member_id, now=clock.now())


@pytest.fixture
def site(db: Database, clock: FixedClock, cockpit_settings: Settings) -> Any:  # noqa: F811
    use(db, _programme(on_self_referral="flag"))
    with db.unit_of_work() as session:
        create_staff(session, ("admin", "read_only"), now=clock.now(), domain="shop.test")
    _enrol(db, clock, "ana", name="Ana García")
    code = _code(db, clock, "ana")
    _enrol(db, clock, "bea", code, name="Beatriz Soler")
    _enrol(db, clock, "twin", code, name="Ana Twin", email="ana@example.com")
    Worker(db, clock=clock, settings=cockpit_settings, name="t", schedule=False).run(
        until_idle=True
    )
    return app_for(cockpit_settings, db=db, clock=clock)


@pytest.fixture
def web(site: Any) -> Iterator[TestClient]:
    with TestClient(site, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def _console(site: Any, role: str, lang: str) -> TestClient:
    client = TestClient(site, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set("lealta_lang", lang)
    token = CSRF.search(client.get("/admin/login").text)
    assert token
    signed = client.post(
        "/admin/login",
        data={"email": f"{role}@shop.test", "password": PASSWORD, "csrf_token": token[1]},
    )
    assert signed.status_code == 303, signed.text
    return client


def test_the_cockpit_page_shows_the_link_qr_and_masked_friends_in_both_languages(
    web: TestClient,
    db: Database,
    clock: FixedClock,
    mail: Any,  # noqa: F811
) -> None:
    code = _code(db, clock, "ana")
    sign_in(web, mail, "ana@example.com")
    web.cookies.set("lealta_lang", "es")
    page = web.get("/me/referrals")
    assert page.status_code == 200
    assert f"/r/{code}" in page.text and "<svg" in page.text
    assert "Beatriz S." in page.text and "Beatriz Soler" not in page.text
    assert "En revisión" in page.text  # the flagged twin
    assert "Ganas 500 puntos" in page.text
    assert english_leaks(page.text) == []
    web.cookies.set("lealta_lang", "en")
    english = web.get("/me/referrals")
    assert "Refer a friend" in english.text and "You earn 500 points" in english.text
    assert spanish_leaks(english.text) == []
    assert 'href="/me/referrals"' in english.text  # in the navigation


def test_the_landing_page_sets_no_cookie_counts_visits_and_speaks_the_visitors_language(
    site: Any, db: Database, clock: FixedClock
) -> None:
    code = _code(db, clock, "ana")
    anon = TestClient(site, raise_server_exceptions=False)
    es = anon.get(f"/r/{code.lower()}", headers={"Accept-Language": "es-ES,es;q=0.9"})
    assert es.status_code == 200
    assert "set-cookie" not in es.headers
    assert es.headers["Cache-Control"] == "no-store"
    assert "Un amigo te invita" in es.text and code in es.text
    assert f"https://shop.example/join?ref={code}" in es.text
    assert english_leaks(es.text) == []
    en = anon.get(f"/r/{code}?lang=en")
    assert "A friend invites you" in en.text and spanish_leaks(en.text) == []
    assert "set-cookie" not in en.headers
    with db.unit_of_work(write=False) as session:
        assert session.scalar(select(ReferralCode.visits)) == 2
    unknown = anon.get("/r/ZZZZZZZZ", headers={"Accept-Language": "en"})
    assert unknown.status_code == 404 and "not valid" in unknown.text
    assert "<html" in unknown.text.lower()
    junk = anon.get("/r/%3Cscript%3E")
    assert junk.status_code == 404 and "<script>" not in junk.text


def test_the_console_shows_the_funnel_and_reviews_the_queue(
    site: Any, db: Database, clock: FixedClock
) -> None:
    es = _console(site, "admin", "es")
    page = es.get("/admin/referrals")
    assert page.status_code == 200 and english_leaks(page.text) == []
    assert "Cola de revisión" in page.text and "mismo correo" in page.text
    with db.unit_of_work(write=False) as session:
        twin = session.scalar(
            select(Referral)
            .join(Member, Member.id == Referral.friend_id)
            .where(Member.external_id == "twin")
        )
        assert twin is not None and twin.status == "flagged"
    token = CSRF.search(page.text)
    assert token
    forged = es.post(f"/admin/referrals/{twin.id}/reject", data={"csrf_token": "nope"})
    assert forged.status_code == 403 and "<html" in forged.text.lower()
    reader = _console(site, "read_only", "en")
    refused = reader.post(f"/admin/referrals/{twin.id}/reject", data={"csrf_token": token[1]})
    assert refused.status_code == 403
    done = es.post(
        f"/admin/referrals/{twin.id}/reject", data={"csrf_token": token[1], "reason": "same person"}
    )
    assert done.status_code == 303
    after = es.get("/admin/referrals")
    assert f"Recomendación {twin.id} rechazada." in after.text
    assert "Nada que revisar." in after.text
    again = es.post(f"/admin/referrals/{twin.id}/approve", data={"csrf_token": token[1]})
    assert again.status_code == 303
    assert "ya se revisó" in es.get("/admin/referrals").text
    with db.unit_of_work(write=False) as session:
        audit = session.scalar(
            select(func.count()).select_from(AuditLog).where(AuditLog.action == "referral.reject")
        )
        assert audit == 1
    filtered = es.get("/admin/referrals", params={"status": "rejected"})
    assert filtered.status_code == 200 and "twin" in filtered.text
    en = _console(site, "admin", "en")
    english = en.get("/admin/referrals?status=bogus")
    assert english.status_code == 200 and spanish_leaks(english.text) == []
    member = es.get("/admin/members/ana")
    assert member.status_code == 200 and "Recomendaciones" in member.text
    assert "/admin/members/bea" in member.text
    assert english_leaks(member.text) == []


def test_the_page_when_referrals_are_off(
    web: TestClient,
    db: Database,
    clock: FixedClock,
    mail: Any,  # noqa: F811
) -> None:
    with db.unit_of_work() as session:
        programme = programmes.current(session, now=clock.now())
    off = programme.model_copy(
        update={"referrals": programme.referrals.model_copy(update={"enabled": False})}
    )
    use(db, off)
    sign_in(web, mail, "bea@example.com")
    web.cookies.set("lealta_lang", "es")
    page = web.get("/me/referrals")
    assert page.status_code == 200 and "no hay oferta" in page.text
    assert web.get(f"/r/{_code(db, clock, 'ana')}").status_code == 404
