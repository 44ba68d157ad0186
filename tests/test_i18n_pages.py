"""Languages on the pages: every console and cockpit page in Spanish shows no English from the
catalogues, and the ES/EN switch works from any page (also one answering a failed form)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.config import Settings
from lealta.demo import service as demo
from lealta.demo.programme import DEMO_PROGRAMME_TEXT
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import operations
from lealta.ledger.schemas import AdjustmentIn
from lealta.members import login_links
from lealta.members import service as members
from lealta.models import Coupon, LedgerEntry, Member, TierChange
from lealta.programme import service as programmes
from lealta.programme.schema import EarningRule, Programme, Translations
from lealta.rewards import service as rewards
from lealta.staff import service as staff_users
from tests.conftest import app_for
from tests.i18n_leaks import english_leaks, spanish_leaks, visible_text

PASSWORD = "correct horse battery"
MEMBERS = 40


# --- data ------------------------------------------------------------------------------------


def _rich_member(db: Database, now: Any) -> str:
    """The demo member with the most kinds of ledger entries, given a redemption, a rolled-back
    redemption and a manual adjustment on top."""
    with db.unit_of_work() as session:
        counts = session.execute(
            select(LedgerEntry.member_id, func.count(func.distinct(LedgerEntry.entry_type)))
            .group_by(LedgerEntry.member_id)
            .order_by(
                func.count(func.distinct(LedgerEntry.entry_type)).desc(), LedgerEntry.member_id
            )
        ).first()
        assert counts is not None
        member = session.get(Member, counts[0])
        assert member is not None
        programme = programmes.current(session, now=now)
        operations.adjust(
            session,
            member.external_id,
            AdjustmentIn(points=5000, reason="Compensación por retraso"),
            actor="admin:admin@shop.test",
            now=now,
            programme=programme,
        )
        done = rewards.redeem(
            session, programme, member, "coupon-5", now=now, actor="test"
        ).redemption
        rewards.redeem(session, programme, member, "tote-bag", now=now, actor="test")
        rewards.rollback(session, done.id, now=now, actor="test")
        rewards.redeem(session, programme, member, "coupon-5", now=now, actor="test")
        return member.external_id


@pytest.fixture
def demo_app(db: Database, clock: FixedClock, settings: Settings) -> Any:
    now = clock.now()
    demo.up(db, now=now - timedelta(minutes=5), member_count=MEMBERS)
    with db.unit_of_work() as session:
        staff_users.create_user(
            session,
            email="admin@shop.test",
            name="Ana Torres",
            role="admin",
            password=PASSWORD,
            now=now,
        )
    return app_for(settings, db=db, clock=clock)


def _client(app: Any) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    client.cookies.set("lealta_lang", "es")
    return client


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


@pytest.fixture
def admin(demo_app: Any) -> Iterator[TestClient]:
    client = _client(demo_app)
    token = _csrf(client.get("/admin/login").text)
    signed = client.post(
        "/admin/login",
        data={"email": "admin@shop.test", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    yield client
    client.__exit__(None, None, None)


def _member_client(app: Any, db: Database, clock: FixedClock, external_id: str) -> TestClient:
    client = _client(app)
    with db.unit_of_work() as session:
        member = members.get(session, external_id)
        assert member.email
        asked = login_links.request_link(
            session, member.email, client_ip="testclient", now=clock.now(), minutes=15
        )
        assert asked.token is not None
    page = client.get(f"/me/login/{asked.token}")
    done = client.post(
        f"/me/login/{asked.token}", data={"csrf_token": _csrf(page.text)}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    return client


def _leaks(response: Any, path: str, lang: str = "es") -> list[str]:
    """Strings of the other language on a page in ``lang`` (and that it is an HTML page)."""
    assert response.status_code < 500, (path, response.status_code)
    assert response.headers["content-type"].startswith("text/html"), (path, response.text[:200])
    assert f'<html lang="{lang}">' in response.text, path
    return english_leaks(response.text) if lang == "es" else spanish_leaks(response.text)


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden field {name}"
    return found.group(1)


def _spanish(response: Any, path: str) -> None:
    leaks = _leaks(response, path)
    assert leaks == [], (path, leaks)


# --- the leak checker itself -----------------------------------------------------------------


def test_checker_finds_english_in_visible_text_only() -> None:
    assert english_leaks("<p>Refund of order ORD-1</p>") == ["Refund of order %(order)s"]
    assert "Members" in english_leaks("<nav><a href='/x'>Members</a></nav>")
    # attributes, code and documents shown as code are not prose
    assert english_leaks('<a title="Members" href="/admin/members">Miembros</a>') == []
    assert english_leaks("<pre>name: Members</pre><code>earn</code>") == []
    # msgids inside a token, or the same in both languages ("Total"), do not count
    assert english_leaks("<p>ana@demo.test · earn-per-euro · learn · Total</p>") == []
    assert visible_text("<p>a<b>b</b></p>\n<script>x</script>") == "a b"


# --- every page in Spanish -------------------------------------------------------------------


def test_every_console_page_in_spanish_has_no_english(
    db: Database, clock: FixedClock, admin: TestClient
) -> None:
    external_id = _rich_member(db, clock.now())
    with db.unit_of_work(write=False) as session:
        kinds = set(
            session.scalars(
                select(LedgerEntry.entry_type)
                .join(Member, Member.id == LedgerEntry.member_id)
                .where(Member.external_id == external_id)
            )
        )
        assert {"earn", "redeem", "reverse", "adjust"} <= kinds, kinds
        assert session.scalar(select(func.count()).select_from(TierChange))
        coupon = session.scalars(select(Coupon).order_by(Coupon.id)).first()
        assert coupon is not None
        refunded = session.scalar(
            select(Member.external_id)
            .join(LedgerEntry, LedgerEntry.member_id == Member.id)
            .where(LedgerEntry.entry_type == "reverse", LedgerEntry.source_type == "order")
        )
        expired = session.scalar(
            select(Member.external_id)
            .join(LedgerEntry, LedgerEntry.member_id == Member.id)
            .where(LedgerEntry.entry_type == "expire")
        )
        programme = programmes.current(session)
    member_pages = {f"/admin/members/{m}" for m in (external_id, refunded, expired) if m}
    pages = [
        "/admin",
        "/admin/members",
        "/admin/members?q=a",
        *sorted(member_pages),
        "/admin/programme",
        "/admin/programme/versions/1",
        "/admin/rewards",
        *[f"/admin/rewards/{r.id}" for r in programme.rewards],
        "/admin/coupons",
        f"/admin/coupons?code={coupon.code}",
        "/admin/till",
        f"/admin/till?member={external_id}",
        "/admin/till?q=a",
        "/admin/users",
        "/admin/api-keys",
        "/admin/audit",
    ]
    found = {path: leaks for path in pages if (leaks := _leaks(admin.get(path), path))}
    assert found == {}
    admin.cookies.set("lealta_lang", "en")
    found = {path: leaks for path in pages if (leaks := _leaks(admin.get(path), path, "en"))}
    admin.cookies.set("lealta_lang", "es")
    assert found == {}
    # Pages answering a form: a refused adjustment, a validated programme.
    page = admin.get(f"/admin/members/{external_id}").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key
    refused = admin.post(
        f"/admin/members/{external_id}/adjustments",
        data={
            "csrf_token": _csrf(page),
            "idempotency_key": key.group(1),
            "points": "abc",
            "reason": "x",
        },
    )
    assert refused.status_code == 422
    _spanish(refused, "adjustment error")
    # Pages after a till redemption, a coupon used in store, a validated programme, a new key.
    till = admin.get(f"/admin/till?member={external_id}").text
    redeemed = admin.post(
        "/admin/till/reward",
        data={
            "csrf_token": _csrf(till),
            "member": external_id,
            "reward_id": "free-shipping",
            "idempotency_key": _hidden(till, "idempotency_key"),
        },
    )
    assert redeemed.url.path.startswith("/admin/till/redemptions/"), redeemed.text
    _spanish(redeemed, "till redemption")
    with db.unit_of_work(write=False) as session:
        member_id = members.get(session, external_id).id
        code = session.scalar(
            select(Coupon.code).where(Coupon.member_id == member_id, Coupon.status == "active")
        )
    assert code is not None
    till = admin.get(f"/admin/till?member={external_id}").text
    used = admin.post(
        "/admin/till/coupon",
        data={
            "csrf_token": _csrf(till),
            "member": external_id,
            "code": code,
            "order_ref": "T-100",
            "amount": "80",
            "idempotency_key": _hidden(till, "idempotency_key"),
        },
    )
    assert used.url.path.startswith("/admin/till/coupon-uses/"), used.text
    _spanish(used, "coupon use")
    _spanish(admin.get(f"/admin/coupons?code={code}"), "used coupon")
    document = DEMO_PROGRAMME_TEXT.replace("points: 50\n", "points: 60\n", 1)
    for text in (document, "rules: [", DEMO_PROGRAMME_TEXT):
        checked = admin.post(
            "/admin/programme/validate",
            data={"csrf_token": _csrf(admin.get("/admin/programme").text), "text": text},
        )
        _spanish(checked, f"programme validate {text[:10]!r}")
    for text, said in (
        ("rules: [", "no es YAML/JSON válido en la línea 1"),
        ("- just a list", "debe ser un objeto"),
    ):
        refused_doc = admin.post(
            "/admin/programme/validate",
            data={"csrf_token": _csrf(admin.get("/admin/programme").text), "text": text},
        )
        assert said in visible_text(refused_doc.text)
        assert (
            "is not valid" not in refused_doc.text and "must be a mapping" not in refused_doc.text
        )
    created = admin.post(
        "/admin/api-keys",
        data={
            "csrf_token": _csrf(admin.get("/admin/api-keys").text),
            "name": "tienda",
            "scope": "read",
        },
    )
    _spanish(created, "api key created")
    # The Spanish pages really say it in Spanish: the reasons come from the stored codes.
    text = visible_text(admin.get(f"/admin/members/{external_id}").text)
    assert "Recompensa: 5 € de descuento" in text
    assert "Canje" in text and "anulado" in text
    assert "Ofertas personalizadas según tus compras" in text and "data_processing" not in text
    if refunded:
        assert "Reembolso del pedido" in visible_text(admin.get(f"/admin/members/{refunded}").text)


def test_every_cockpit_page_in_spanish_has_no_english(
    db: Database, clock: FixedClock, demo_app: Any
) -> None:
    external_id = _rich_member(db, clock.now())
    web = _member_client(demo_app, db, clock, external_id)
    with db.unit_of_work() as session:
        member = members.get(session, external_id)
        member.language = "en"  # the cookie (the switch) beats the member's own language
        programme = programmes.current(session, now=clock.now())
    try:
        pages = [
            "/me",
            "/me/history",
            "/me/rewards",
            *[f"/me/rewards/{r.id}" for r in programme.rewards],
            "/me/wallet",
            "/me/card",
            "/me/profile",
            "/me/privacy",
        ]
        found = {path: leaks for path in pages if (leaks := _leaks(web.get(path), path))}
        assert found == {}
        web.cookies.set("lealta_lang", "en")
        found = {p: leaks for p in pages if (leaks := _leaks(web.get(p), p, "en"))}
        web.cookies.set("lealta_lang", "es")
        assert found == {}
        # A refused redemption (tier required) answers the POST; the switch goes to its page.
        form = web.get("/me/rewards/vip-dinner").text
        refused_redeem = web.post(
            "/me/rewards/vip-dinner/redeem",
            data={"csrf_token": _csrf(form), "idempotency_key": "i18n-vip-1"},
        )
        assert refused_redeem.status_code == 409
        _spanish(refused_redeem, "refused redemption")
        link = _switch_link(refused_redeem.text, "en")
        assert parse_qs(urlsplit(link).query)["next"] == ["/me/rewards/vip-dinner"]
        assert '<html lang="en">' in web.get(link).text
        assert '<html lang="es">' in web.get("/lang/es", params={"next": "/me"}).text
        history = visible_text(web.get("/me/history").text)
        assert "Recompensa: 5 € de descuento" in history
        assert "Reward:" not in history
        anon = _client(demo_app)
        for path in ("/me/login", "/me/login/sent", "/me/login/not-a-token"):
            _spanish(anon.get(path), path)
        refused = anon.post(
            "/me/login", data={"email": "nope", "csrf_token": _csrf(anon.get("/me/login").text)}
        )
        assert refused.status_code == 422
        _spanish(refused, "login error")
        anon.__exit__(None, None, None)
    finally:
        web.__exit__(None, None, None)


# --- the ES/EN switch ------------------------------------------------------------------------


def _switch_link(html: str, code: str) -> str:
    found = re.search(rf'<a href="([^"]+)"[^>]*hreflang="{code}"', html)
    assert found, html
    return found.group(1).replace("&amp;", "&")


def test_switch_after_a_failed_console_sign_in_lands_on_a_page_not_json(
    demo_app: Any,
) -> None:
    client = _client(demo_app)
    token = _csrf(client.get("/admin/login").text)
    failed = client.post(
        "/admin/login", data={"email": "admin@shop.test", "password": "wrong", "csrf_token": token}
    )
    assert failed.status_code in (401, 403, 422), failed.status_code
    link = _switch_link(failed.text, "en")
    assert parse_qs(urlsplit(link).query)["next"] == ["/admin/login"]
    switched = client.get(link)
    assert switched.status_code == 200
    assert switched.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in switched.text and "Sign in" in switched.text
    client.__exit__(None, None, None)


def test_switch_after_a_refused_adjustment_comes_back_to_the_member_in_english(
    db: Database, clock: FixedClock, admin: TestClient
) -> None:
    external_id = _rich_member(db, clock.now())
    page = admin.get(f"/admin/members/{external_id}").text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page)
    assert key
    refused = admin.post(
        f"/admin/members/{external_id}/adjustments",
        data={"csrf_token": _csrf(page), "idempotency_key": key.group(1), "points": "x"},
    )
    assert refused.status_code == 422
    switched = admin.get(_switch_link(refused.text, "en"))
    assert switched.status_code == 200, switched.text
    assert switched.url.path == f"/admin/members/{external_id}"
    assert '<html lang="en">' in switched.text and "Ledger" in switched.text
    assert "Reward: €5 off" in visible_text(switched.text)


def test_switch_after_a_failed_cockpit_sign_in_and_a_referer(demo_app: Any) -> None:
    client = _client(demo_app)
    token = _csrf(client.get("/me/login").text)
    failed = client.post("/me/login", data={"email": "not an email", "csrf_token": token})
    assert failed.status_code == 422
    switched = client.get(_switch_link(failed.text, "en"))
    assert switched.status_code == 200 and '<html lang="en">' in switched.text
    assert switched.url.path in ("/me/login", "/me")
    # With a Referer of ours the switch goes back exactly there; a foreign one is ignored.
    again = client.post(
        "/me/login",
        data={"email": "bad", "csrf_token": token},
        headers={"Referer": "http://testserver/me/login?next=%2Fme%2Fwallet"},
    )
    link = _switch_link(again.text, "es")
    assert parse_qs(urlsplit(link).query)["next"] == ["/me/login?next=%2Fme%2Fwallet"]
    foreign = client.post(
        "/me/login",
        data={"email": "bad", "csrf_token": token},
        headers={"Referer": "https://evil.test/me/wallet"},
    )
    assert parse_qs(urlsplit(_switch_link(foreign.text, "es")).query)["next"] == ["/me/login"]
    client.__exit__(None, None, None)


def test_switch_keeps_the_query_of_a_search(admin: TestClient) -> None:
    page = admin.get("/admin/members?q=mar&cursor=abc&lang=es")
    link = _switch_link(page.text, "en")
    assert parse_qs(urlsplit(link).query)["next"] == ["/admin/members?q=mar&cursor=abc"]
    switched = admin.get(link, follow_redirects=False)
    assert switched.status_code == 303
    assert switched.headers["location"] == "/admin/members?q=mar&cursor=abc"
    assert "lealta_lang=en" in switched.headers["set-cookie"]
    landed = admin.get(switched.headers["location"])
    assert '<html lang="en">' in landed.text


@pytest.mark.parametrize(
    "target",
    ["https://evil.test/admin", "//evil.test/admin", "/\\evil.test", "/elsewhere", "javascript:x"],
)
def test_switch_never_redirects_off_site(demo_app: Any, target: str) -> None:
    client = _client(demo_app)
    response = client.get("/lang/en", params={"next": target}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin"
    unknown = client.get("/lang/fr", params={"next": "/me"}, follow_redirects=False)
    assert unknown.headers["location"] == "/me" and "set-cookie" not in unknown.headers
    client.__exit__(None, None, None)


# --- es/en names in the programme ------------------------------------------------------------


def test_rule_names_have_both_languages_and_a_plain_string_still_works(
    db: Database, clock: FixedClock, admin: TestClient, server_key: str
) -> None:
    programme = Programme.model_validate(yaml.safe_load(DEMO_PROGRAMME_TEXT))
    review = programme.rule("review")
    assert review is not None
    assert review.label("es") == "Escribe una opinión de producto"
    assert review.label("en") == "Leave a product review"
    assert programme.thresholds[0].label("es").startswith("20 % de descuento")
    plain = EarningRule(id="x", name="Solo un nombre", event="review.posted", points=Decimal(1))
    assert plain.label("en") == plain.label("es") == "Solo un nombre"
    assert Translations(es="Sólo español").get("en") == "Sólo español"

    spanish = visible_text(admin.get("/admin/programme?lang=es").text)
    assert "Escribe una opinión de producto" in spanish and "Leave a product review" not in spanish
    assert "Productos exclusivos" in spanish and "exclusive products" not in spanish
    english = visible_text(admin.get("/admin/programme?lang=en").text)
    assert "Leave a product review" in english and "Escribe una opinión" not in english
    # The API returns the document as written: both languages.
    api = admin.get("/v1/programme", headers={"Authorization": f"Bearer {server_key}"}).json()
    rules = {r["id"]: r for r in api["document"]["rules"]} if "document" in api else {}
    if not rules:
        rules = {r["id"]: r for r in api["rules"]}
    assert rules["review"]["name"] == {
        "es": "Escribe una opinión de producto",
        "en": "Leave a product review",
    }
    # A ledger entry from a rule shows the rule's name in the page's language.
    with db.unit_of_work(write=False) as session:
        owner = session.scalar(
            select(Member.external_id)
            .join(LedgerEntry, LedgerEntry.member_id == Member.id)
            .where(LedgerEntry.rule_id == "review")
        )
    assert owner is not None
    page = admin.get(f"/admin/members/{owner}?lang=es").text
    assert "Escribe una opinión de producto" in visible_text(page)
    page = admin.get(f"/admin/members/{owner}?lang=en").text
    assert "Leave a product review" in visible_text(page)


def test_every_string_of_every_page_has_a_spanish_translation() -> None:
    """All ``_("...")`` in the web package (routes, helpers, templates) are in a catalogue."""
    web = Path(__file__).parents[1] / "src/lealta/web"
    sources = [p for p in (*web.rglob("*.py"), *web.rglob("*.html")) if p.name != "i18n.py"]
    used: dict[str, str] = {}
    for path in sources:
        for match in re.finditer(r"""(?<![\w.])_\(\s*(["'])(.+?)\1\s*[,)]""", path.read_text()):
            used.setdefault(match.group(2), path.name)
    known: set[str] = set()
    for po in (web / "locale/es/LC_MESSAGES").glob("*.po"):
        with po.open("rb") as handle:
            known.update(str(m.id) for m in read_po(handle) if m.id and m.string)
    assert {text: where for text, where in used.items() if text not in known} == {}
    assert len(used) > 400
