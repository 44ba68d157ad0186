"""The console's core pages over HTTP: sign-in and lock-out, CSRF, roles on every page and
action, member search and 360, audited points adjustments, users, API keys, audit log, CLI."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import Settings, get_settings
from lealta.events.schemas import EventIn
from lealta.events.service import IngestContext, ingest
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import Account, AdminUser, ApiKey, AuditLog, LedgerEntry
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff, order_paid

ROLES = ("admin", "support", "marketer", "read_only")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
IDEM = re.compile(r'name="idempotency_key" value="([^"]+)"')

_DOCUMENT = yaml.safe_load(
    Path(__file__).parents[1].joinpath("src/lealta/demo/programme.yaml").read_text()
)
DEMO = Programme.model_validate({**_DOCUMENT, "pending": {"days": 0}})


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def data(db: Database, clock: FixedClock) -> None:
    """The demo programme, one user per role, and three members (María has 1.000 points)."""
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=T0 - timedelta(days=30))
    with db.unit_of_work() as session:
        create_staff(session, ROLES, now=T0)
        for external_id, name, email in (
            ("cust-1", "María García", "maria@example.com"),
            ("cust-2", "Jordi Puig", "jordi@example.com"),
            ("shop-50_off", "Ana López 50%_off", None),
        ):
            members.create(
                session,
                MemberCreate(external_id=external_id, name=name, email=email),
                now=T0 - timedelta(days=20),
            )
    with db.unit_of_work() as session:
        ctx = IngestContext(programme=programmes.current(session, now=T0), now=T0, actor="test")
        event = EventIn.model_validate(
            order_paid("evt-1", "cust-1", "ord-1", "1000.00", T0 - timedelta(days=10))
        )
        ingest(session, event, ctx, key=None)


@pytest.fixture
def web(db: Database, clock: FixedClock, settings: Settings, data: None) -> Iterator[TestClient]:
    """A browser-like client: no API key, cookies kept, redirects not followed."""
    app = app_for(settings, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def csrf(client: TestClient, path: str = "/admin/login") -> str:
    match = CSRF.search(client.get(path, follow_redirects=True).text)
    assert match is not None
    return match.group(1)


def sign_in(client: TestClient, role: str = "admin", password: str = PASSWORD) -> TestClient:
    token = csrf(client)
    response = client.post(
        "/admin/login",
        data={"email": f"{role}@example.com", "password": password, "csrf_token": token},
    )
    assert response.status_code == 303, response.text
    return client


def available(db: Database, external_id: str = "cust-1") -> int:
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        account = session.get(Account, member.id)
        assert account is not None
        return account.points_available


def count(db: Database, model: type, *where: object) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def adjust_form(client: TestClient, external_id: str = "cust-1") -> dict[str, str]:
    page = client.get(f"/admin/members/{external_id}")
    assert page.status_code == 200
    token, key = CSRF.search(page.text), IDEM.search(page.text)
    assert token is not None and key is not None
    return {"csrf_token": token.group(1), "idempotency_key": key.group(1)}


# --- sign-in -------------------------------------------------------------------------------


class TestSignIn:
    def test_pages_redirect_to_the_sign_in_form(self, web: TestClient) -> None:
        for path in ("/admin", "/admin/members", "/admin/members/cust-1", "/admin/audit"):
            response = web.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/admin/login?next=")

    def test_success_lands_on_the_overview(self, web: TestClient) -> None:
        sign_in(web)
        page = web.get("/admin")
        assert page.status_code == 200
        assert "admin@example.com" in page.text and "Moda" in page.text

    def test_wrong_password_is_refused_with_a_message(self, web: TestClient) -> None:
        token = csrf(web)
        response = web.post(
            "/admin/login",
            data={"email": "admin@example.com", "password": "nope nope nope", "csrf_token": token},
        )
        assert response.status_code == 401
        assert 'role="alert"' in response.text
        assert web.get("/admin").status_code == 303

    def test_lock_out_after_repeated_failures(
        self, web: TestClient, db: Database, settings: Settings
    ) -> None:
        token = csrf(web)
        for _ in range(settings.admin_lockout_attempts):
            response = web.post(
                "/admin/login",
                data={
                    "email": "support@example.com",
                    "password": "wrong-wrong",
                    "csrf_token": token,
                },
            )
            assert response.status_code == 401
        right = web.post(
            "/admin/login",
            data={"email": "support@example.com", "password": PASSWORD, "csrf_token": token},
        )
        assert right.status_code == 401  # locked: the same answer as a wrong password
        assert web.get("/admin").status_code == 303
        assert count(db, AuditLog, AuditLog.action == "admin_user.locked") == 1

    def test_sign_in_without_csrf_is_refused(self, web: TestClient) -> None:
        csrf(web)
        response = web.post(
            "/admin/login", data={"email": "admin@example.com", "password": PASSWORD}
        )
        assert response.status_code == 403
        assert web.get("/admin").status_code == 303


# --- CSRF ----------------------------------------------------------------------------------


class TestCsrf:
    @pytest.mark.parametrize("token", [None, "forged-token"])
    def test_every_action_refuses_a_missing_or_wrong_token(
        self, web: TestClient, db: Database, token: str | None
    ) -> None:
        sign_in(web)
        form = adjust_form(web)
        extra = {} if token is None else {"csrf_token": token}
        audit_before = count(db, AuditLog)
        with db.unit_of_work(write=False) as session:
            support_id = session.scalar(
                select(AdminUser.id).where(AdminUser.email == "support@example.com")
            )
        posts = [
            (
                "/admin/members/cust-1/adjustments",
                {"idempotency_key": form["idempotency_key"], "points": "50", "reason": "Goodwill"},
            ),
            ("/admin/users", {"email": "x@example.com", "role": "support", "password": PASSWORD}),
            (f"/admin/users/{support_id}/role", {"role": "admin"}),
            (f"/admin/users/{support_id}/disable", {}),
            ("/admin/api-keys", {"name": "shop", "scope": "server"}),
        ]
        for path, body in posts:
            response = web.post(path, data={**body, **extra})
            assert response.status_code == 403, path
            assert "csrf_failed" in response.text
        assert available(db) == 1000
        assert count(db, AuditLog) == audit_before
        assert count(db, AdminUser) == len(ROLES)
        assert count(db, ApiKey) == 0
        with db.unit_of_work(write=False) as session:
            support = session.get(AdminUser, support_id)
            assert support is not None and support.role == "support" and not support.disabled


# --- roles ---------------------------------------------------------------------------------

VIEW_PAGES = ("/admin", "/admin/members", "/admin/members/cust-1", "/admin/audit")
ADMIN_PAGES = ("/admin/users", "/admin/api-keys")


class TestRoles:
    @pytest.mark.parametrize("role", ROLES)
    def test_pages_by_role(self, web: TestClient, role: str) -> None:
        sign_in(web, role)
        for path in VIEW_PAGES:
            assert web.get(path).status_code == 200, path
        for path in ADMIN_PAGES:
            expected = 200 if role == "admin" else 403
            response = web.get(path)
            assert response.status_code == expected, (role, path)
            if expected == 403:
                assert "forbidden_for_role" in response.text
        member = web.get("/admin/members/cust-1").text
        assert ('name="reason"' in member) == (role in ("admin", "support"))
        nav = web.get("/admin").text
        assert ('href="/admin/users"' in nav) == (role == "admin")

    @pytest.mark.parametrize("role", ["read_only", "marketer"])
    def test_roles_without_support_cannot_adjust(
        self, web: TestClient, db: Database, role: str
    ) -> None:
        sign_in(web, role)
        token = csrf(web, "/admin/members/cust-1")
        response = web.post(
            "/admin/members/cust-1/adjustments",
            data={
                "csrf_token": token,
                "idempotency_key": "k-1",
                "points": "500",
                "reason": "Trying my luck",
            },
        )
        assert response.status_code == 403
        assert available(db) == 1000

    @pytest.mark.parametrize("role", ["support", "marketer", "read_only"])
    def test_only_admins_manage_users_and_keys(
        self, web: TestClient, db: Database, role: str
    ) -> None:
        sign_in(web, role)
        token = csrf(web, "/admin")
        with db.unit_of_work(write=False) as session:
            me = session.scalar(
                select(AdminUser.id).where(AdminUser.email == f"{role}@example.com")
            )
            other = session.scalar(
                select(AdminUser.id).where(AdminUser.email == "admin@example.com")
            )
        posts = [
            ("/admin/users", {"email": "x@example.com", "role": "admin", "password": PASSWORD}),
            (f"/admin/users/{me}/role", {"role": "admin"}),
            (f"/admin/users/{other}/disable", {}),
            ("/admin/api-keys", {"name": "shop", "scope": "server"}),
        ]
        for path, body in posts:
            assert web.post(path, data={**body, "csrf_token": token}).status_code == 403, path
        assert count(db, ApiKey) == 0 and count(db, AdminUser) == len(ROLES)
        with db.unit_of_work(write=False) as session:
            mine = session.get(AdminUser, me)
            assert mine is not None and mine.role == role


# --- adjustments ---------------------------------------------------------------------------


class TestAdjustments:
    def test_support_adjusts_and_sees_it_in_the_ledger(self, web: TestClient, db: Database) -> None:
        sign_in(web, "support")
        form = adjust_form(web)
        response = web.post(
            "/admin/members/cust-1/adjustments",
            data={**form, "points": "250", "reason": "Goodwill: late delivery"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/members/cust-1#ledger"
        page = web.get("/admin/members/cust-1")
        assert 'role="status"' in page.text and "+250" in page.text
        assert "Goodwill: late delivery" in page.text
        assert available(db) == 1250
        with db.unit_of_work(write=False) as session:
            row = session.scalars(select(AuditLog).where(AuditLog.action == "points.adjust")).one()
            assert row.actor == "admin:support@example.com"
            assert row.reason == "Goodwill: late delivery" and row.details["points"] == 250
            entry = session.scalars(
                select(LedgerEntry).where(LedgerEntry.entry_type == "adjust")
            ).one()
            assert entry.actor == "admin:support@example.com"
        # The confirmation shows once.
        assert "recorded for cust-1" not in web.get("/admin/members/cust-1?lang=en").text

    def test_a_double_submit_is_one_adjustment(self, web: TestClient, db: Database) -> None:
        sign_in(web, "support")
        form = {**adjust_form(web), "points": "-300", "reason": "Duplicate order"}
        first = web.post("/admin/members/cust-1/adjustments", data=form)
        second = web.post("/admin/members/cust-1/adjustments", data=form)
        assert first.status_code == second.status_code == 303
        assert available(db) == 700
        assert count(db, LedgerEntry, LedgerEntry.entry_type == "adjust") == 1
        assert "already recorded" in web.get("/admin/members/cust-1?lang=en").text

    @pytest.mark.parametrize(
        ("points", "reason", "message"),
        [
            ("100", "", "Give a reason"),
            ("100", "  x ", "Give a reason"),
            ("0", "Nothing at all", "0 points"),
            ("ten", "Not a number", "whole number"),
            ("1.5", "Not a whole number", "whole number"),
            ("99999999999999999999", "Far too many", "limited to"),
            ("-5000", "More than she has", "not have enough points"),
        ],
    )
    def test_bad_input_shows_a_message_and_changes_nothing(
        self, web: TestClient, db: Database, points: str, reason: str, message: str
    ) -> None:
        sign_in(web, "admin")
        form = adjust_form(web)
        audit_before = count(db, AuditLog)
        response = web.post(
            "/admin/members/cust-1/adjustments?lang=en",
            data={**form, "points": points, "reason": reason},
        )
        assert response.status_code == 422
        assert message in response.text and 'role="alert"' in response.text
        # The values typed are kept, and the same key may be sent again once corrected.
        assert f'value="{points}"' in response.text
        assert form["idempotency_key"] in response.text
        assert available(db) == 1000
        assert count(db, LedgerEntry, LedgerEntry.entry_type == "adjust") == 0
        assert count(db, AuditLog) == audit_before

    def test_messages_are_translated(self, web: TestClient) -> None:
        sign_in(web, "admin")
        form = adjust_form(web)
        response = web.post(
            "/admin/members/cust-1/adjustments?lang=es",
            data={**form, "points": "0", "reason": "Nada"},
        )
        assert response.status_code == 422
        assert "Un ajuste de 0 puntos no cambia nada." in response.text

    def test_unknown_member_is_404(self, web: TestClient) -> None:
        sign_in(web, "support")
        assert web.get("/admin/members/nobody").status_code == 404
        token = csrf(web, "/admin")
        response = web.post(
            "/admin/members/nobody/adjustments",
            data={"csrf_token": token, "idempotency_key": "k", "points": "5", "reason": "Why not"},
        )
        assert response.status_code == 404


# --- member pages --------------------------------------------------------------------------


class TestMembers:
    @pytest.mark.parametrize(
        ("query", "found", "missing"),
        [
            ("CUST-", ["cust-1", "cust-2"], []),
            ("maría", ["cust-1"], ["cust-2"]),
            ("JORDI@EXAMPLE", ["cust-2"], ["cust-1"]),
            ("50%_", ["shop-50_off"], ["cust-1"]),
            ("%", ["shop-50_off"], ["cust-1", "cust-2"]),
        ],
    )
    def test_search(
        self, web: TestClient, query: str, found: list[str], missing: list[str]
    ) -> None:
        sign_in(web, "read_only")
        page = web.get("/admin/members", params={"q": query})
        assert page.status_code == 200
        for external_id in found:
            assert f">{external_id}</a>" in page.text
        for external_id in missing:
            assert f">{external_id}</a>" not in page.text

    def test_search_by_coupon_code(self, web: TestClient, db: Database, clock: FixedClock) -> None:
        from lealta.coupons import service as coupons

        with db.unit_of_work() as session:
            member = members.get(session, "cust-2")
            reward = next(r for r in DEMO.rewards if r.coupon is not None)
            assert reward.coupon is not None
            coupon = coupons.issue(
                session,
                reward.coupon,
                reward_id=reward.id,
                member_id=member.id,
                source="admin",
                currency=DEMO.currency,
                valid_from=clock.now(),
                now=clock.now(),
            )
            code = coupon.code
        sign_in(web, "support")
        page = web.get("/admin/members", params={"q": code.lower()})
        assert ">cust-2</a>" in page.text and ">cust-1</a>" not in page.text
        assert code in web.get("/admin/members/cust-2").text

    def test_pagination(self, web: TestClient, db: Database, clock: FixedClock) -> None:
        with db.unit_of_work() as session:
            for i in range(30):
                members.create(
                    session,
                    MemberCreate(external_id=f"bulk-{i:02d}"),
                    now=T0 - timedelta(days=30, minutes=i),
                )
        sign_in(web, "read_only")
        first = web.get("/admin/members", params={"q": "bulk-", "lang": "en"})
        assert first.text.count('href="/admin/members/bulk-') == 25
        found = re.search(
            r'<a[^>]*rel="next"[^>]*href="([^"]+)"|<a[^>]*href="([^"]+)"[^>]*rel="next"', first.text
        )
        assert found is not None, "a link to the next page"
        next_page = html.unescape(found.group(1) or found.group(2))
        second = web.get(next_page)
        assert second.text.count('href="/admin/members/bulk-') == 5
        assert 'rel="first"' in second.text and 'rel="next"' not in second.text
        # Odd page links are harmless.
        assert web.get("/admin/members", params={"page": "abc"}).status_code == 200
        assert web.get("/admin/members", params={"cursor": "tampered"}).status_code == 200

    def test_member_360(self, web: TestClient) -> None:
        sign_in(web, "read_only")
        page = web.get("/admin/members/cust-1?lang=en")
        assert page.status_code == 200
        text = page.text
        for fragment in (
            "María García",
            "maria@example.com",
            "ord-1",
            "1,000",
            'role="progressbar"',
            "more needed",
            "Tier history",
            "Redemptions",
        ):
            assert fragment in text, fragment
        assert "no-store" in page.headers["cache-control"]

    def test_ledger_is_cursor_paginated(self, web: TestClient, db: Database) -> None:
        sign_in(web, "support")
        for i in range(27):
            form = adjust_form(web)
            web.post(
                "/admin/members/cust-2/adjustments",
                data={**form, "points": str(i + 1), "reason": f"Batch {i}"},
            )
        first = web.get("/admin/members/cust-2")
        match = re.search(r'href="/admin/members/cust-2\?cursor=([^"#]+)#ledger"', first.text)
        assert match is not None
        older = web.get(f"/admin/members/cust-2?cursor={match.group(1)}")
        assert older.status_code == 200
        assert "Batch 0" in older.text and "Batch 26" not in older.text
        assert web.get("/admin/members/cust-2?cursor=garbage").status_code == 200


# --- overview and audit ---------------------------------------------------------------------


class TestOverviewAndAudit:
    def test_overview_figures(self, web: TestClient) -> None:
        sign_in(web, "marketer")
        page = web.get("/admin?lang=en").text
        assert re.search(r'data-kpi="members">3<', page)
        assert re.search(r'data-kpi="active">1<', page)
        assert re.search(r'data-kpi="outstanding">1,000<', page)
        assert re.search(r'data-kpi="issued">1,000<', page)
        assert "Tier distribution" in page

    def test_audit_log_filters_and_pages(self, web: TestClient, db: Database) -> None:
        sign_in(web, "support")
        form = adjust_form(web)
        web.post(
            "/admin/members/cust-1/adjustments",
            data={**form, "points": "10", "reason": "Audit me"},
        )
        page = web.get("/admin/audit", params={"action": "points.adjust"}).text
        assert "Audit me" in page and "admin:support@example.com" in page
        assert "admin_user.create" not in page.split("<tbody>")[1]
        by_actor = web.get("/admin/audit", params={"actor": "SUPPORT@"}).text
        assert "Audit me" in by_actor
        none = web.get("/admin/audit", params={"actor": "nobody"}).text
        assert "Audit me" not in none
        with db.unit_of_work() as session:
            for i in range(60):
                session.add(
                    AuditLog(
                        actor="test",
                        action="test.bulk",
                        target_type="thing",
                        target_id=str(i),
                        details={},
                        at=T0 + timedelta(seconds=i),
                    )
                )
        first = web.get("/admin/audit", params={"action": "test.bulk", "lang": "en"}).text
        assert "thing: 59" in first and "thing: 9<" not in first and "Page 1 of 2" in first
        second = web.get("/admin/audit", params={"action": "test.bulk", "page": "2"}).text
        assert "thing: 9<" in second


# --- users and API keys ----------------------------------------------------------------------


class TestUsersAndKeys:
    def test_admin_creates_a_user_who_can_sign_in(self, web: TestClient, db: Database) -> None:
        sign_in(web)
        token = csrf(web, "/admin/users")
        response = web.post(
            "/admin/users",
            data={
                "csrf_token": token,
                "email": "New@Example.com",
                "name": "New Person",
                "role": "support",
                "password": "a long enough secret",
            },
        )
        assert response.status_code == 303
        assert "new@example.com" in web.get("/admin/users?lang=en").text
        assert count(db, AuditLog, AuditLog.action == "admin_user.create") == len(ROLES) + 1
        other = TestClient(web.app, follow_redirects=False)
        token = csrf(other)
        signed = other.post(
            "/admin/login",
            data={
                "email": "new@example.com",
                "password": "a long enough secret",
                "csrf_token": token,
            },
        )
        assert signed.status_code == 303

    @pytest.mark.parametrize(
        ("email", "role", "password", "message"),
        [
            ("x@example.com", "support", "short", "at least 10"),
            ("not-an-email", "support", PASSWORD, "valid email"),
            ("x@example.com", "boss", PASSWORD, "Choose a role"),
            ("support@example.com", "support", PASSWORD, "already exists"),
        ],
    )
    def test_bad_user_input(
        self, web: TestClient, db: Database, email: str, role: str, password: str, message: str
    ) -> None:
        sign_in(web)
        token = csrf(web, "/admin/users")
        response = web.post(
            "/admin/users?lang=en",
            data={"csrf_token": token, "email": email, "role": role, "password": password},
        )
        assert response.status_code == 422
        assert message in response.text
        assert count(db, AdminUser) == len(ROLES)

    def test_change_role_disable_and_enable(self, web: TestClient, db: Database) -> None:
        sign_in(web)
        token = csrf(web, "/admin/users")
        with db.unit_of_work(write=False) as session:
            target = session.scalar(
                select(AdminUser.id).where(AdminUser.email == "read_only@example.com")
            )
            me = session.scalar(select(AdminUser.id).where(AdminUser.email == "admin@example.com"))
        assert (
            web.post(
                f"/admin/users/{target}/role", data={"csrf_token": token, "role": "support"}
            ).status_code
            == 303
        )
        assert (
            web.post(f"/admin/users/{target}/disable", data={"csrf_token": token}).status_code
            == 303
        )
        blocked = TestClient(web.app, follow_redirects=False)
        login_token = csrf(blocked)
        refused = blocked.post(
            "/admin/login",
            data={
                "email": "read_only@example.com",
                "password": PASSWORD,
                "csrf_token": login_token,
            },
        )
        assert refused.status_code == 401
        assert (
            web.post(f"/admin/users/{target}/enable", data={"csrf_token": token}).status_code == 303
        )
        with db.unit_of_work(write=False) as session:
            user = session.get(AdminUser, target)
            assert user is not None and user.role == "support" and not user.disabled
            actions = set(session.scalars(select(AuditLog.action)))
        assert {"admin_user.role", "admin_user.disable", "admin_user.enable"} <= actions
        # Nobody locks themselves out.
        own = web.post(f"/admin/users/{me}/role", data={"csrf_token": token, "role": "read_only"})
        assert own.status_code == 422
        assert web.post(f"/admin/users/{me}/disable", data={"csrf_token": token}).status_code == 422
        bad = web.post(f"/admin/users/{target}/role", data={"csrf_token": token, "role": "boss"})
        assert bad.status_code == 422
        assert (
            web.post("/admin/users/999999/disable", data={"csrf_token": token}).status_code == 404
        )

    def test_api_key_lifecycle(self, web: TestClient, db: Database) -> None:
        sign_in(web)
        token = csrf(web, "/admin/api-keys")
        created = web.post(
            "/admin/api-keys", data={"csrf_token": token, "name": "webshop", "scope": "read"}
        )
        assert created.status_code == 201
        secret = re.search(r'value="(lea_[0-9a-f]+_[A-Za-z0-9_-]+)"', created.text)
        assert secret is not None
        api = TestClient(web.app)
        headers = {"Authorization": f"Bearer {secret.group(1)}"}
        assert api.get("/v1/members/cust-1/balance", headers=headers).status_code == 200
        listing = web.get("/admin/api-keys").text
        assert "webshop" in listing and secret.group(1) not in listing
        prefix = secret.group(1).split("_")[1]
        revoked = web.post(f"/admin/api-keys/{prefix}/revoke", data={"csrf_token": token})
        assert revoked.status_code == 303
        assert api.get("/v1/members/cust-1/balance", headers=headers).status_code == 401
        with db.unit_of_work(write=False) as session:
            actions = list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))
        assert actions[-2:] == ["api_key.create", "api_key.revoke"]
        empty = web.post(
            "/admin/api-keys", data={"csrf_token": token, "name": " ", "scope": "read"}
        )
        assert empty.status_code == 422 and count(db, ApiKey) == 1

    def test_a_publishable_key_made_in_the_console_can_only_track(self, web: TestClient) -> None:
        sign_in(web)
        token = csrf(web, "/admin/api-keys")
        created = web.post(
            "/admin/api-keys", data={"csrf_token": token, "name": "web", "scope": "publishable"}
        )
        assert created.status_code == 201
        secret = re.search(r'value="(lea_[0-9a-f]+_[A-Za-z0-9_-]+)"', created.text)
        assert secret is not None
        assert "publicable (navegador)" in web.get("/admin/api-keys").text
        api = TestClient(web.app)
        headers = {"Authorization": f"Bearer {secret.group(1)}"}
        refused = api.get("/v1/members/cust-1/balance", headers=headers)
        assert refused.json()["error"]["code"] == "publishable_key_not_allowed"
        assert api.get("/v1/catalogue", headers=headers).status_code == 200


# --- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


class TestCli:
    def test_create_and_list_users(self, cli: CliRunner, db: Database) -> None:
        done = cli.invoke(
            cli_app,
            [
                "admin",
                "create-user",
                "--email",
                "ops@example.com",
                "--name",
                "Ops",
                "--role",
                "support",
                "--password",
                PASSWORD,
            ],
        )
        assert done.exit_code == 0, done.output
        prompted = cli.invoke(
            cli_app,
            ["admin", "create-user", "--email", "boss@example.com", "--role", "admin"],
            input=f"{PASSWORD}\n{PASSWORD}\n",
        )
        assert prompted.exit_code == 0, prompted.output
        assert PASSWORD not in prompted.output
        with db.unit_of_work(write=False) as session:
            roles = {e: r for e, r in session.execute(select(AdminUser.email, AdminUser.role))}
        assert roles == {"ops@example.com": "support", "boss@example.com": "admin"}
        listed = cli.invoke(cli_app, ["admin", "list-users"])
        assert listed.exit_code == 0
        assert "ops@example.com" in listed.output and "boss@example.com" in listed.output

    def test_refusals(self, cli: CliRunner, db: Database) -> None:
        base = ["admin", "create-user", "--email", "ops@example.com"]
        weak = cli.invoke(cli_app, [*base, "--role", "support", "--password", "short"])
        assert weak.exit_code == 2 and "weak_password" in weak.output
        role = cli.invoke(cli_app, [*base, "--role", "boss", "--password", PASSWORD])
        assert role.exit_code == 2
        ok = cli.invoke(cli_app, [*base, "--role", "support", "--password", PASSWORD])
        assert ok.exit_code == 0
        again = cli.invoke(cli_app, [*base, "--role", "support", "--password", PASSWORD])
        assert again.exit_code == 5 and "user_exists" in again.output
        assert count(db, AdminUser) == 1
