"""Hardening of the pages: styled 404/405 pages, navigation by role, security headers, and
sign-in tokens kept out of the request logs."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.redact import redact_target
from lealta.members import login_links
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.programme import service as programmes
from tests.conftest import T0, app_for
from tests.factories import create_staff
from tests.test_admin_core import DEMO, ROLES, sign_in

TEMPLATES = Path(str(files("lealta.web") / "templates"))
NAV = re.compile(r'<nav class="nav"[^>]*>(.*?)</nav>', re.DOTALL)


@pytest.fixture
def data(db: Database) -> None:
    """The demo programme, one console user per role and one member, María."""
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=T0 - timedelta(days=30))
    with db.unit_of_work() as session:
        create_staff(session, ROLES, now=T0)
        members.create(
            session,
            MemberCreate(external_id="cust-1", name="María García", email="maria@example.com"),
            now=T0 - timedelta(days=20),
        )


@pytest.fixture
def web(db: Database, clock: FixedClock, settings: Settings, data: None) -> Iterator[TestClient]:
    app = app_for(settings, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def nav_links(html: str) -> list[str]:
    found = NAV.search(html)
    assert found is not None, html
    return re.findall(r'<a href="([^"]+)"', found.group(1))


def member_signs_in(web: TestClient, db: Database, address: str = "maria@example.com") -> None:
    with db.unit_of_work() as session:
        link = login_links.request_link(
            session, address, client_ip="testclient", now=T0, minutes=15
        )
    assert link.token is not None
    form = web.get(f"/me/login/{link.token}")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None, form.text
    done = web.post(f"/me/login/{link.token}", data={"csrf_token": token.group(1)})
    assert done.status_code == 303, done.text


# --- 404 and 405 on the pages --------------------------------------------------------------


class TestErrorPages:
    def test_unknown_console_address_is_the_styled_page_with_the_nav(self, web: TestClient) -> None:
        sign_in(web, "admin")
        response = web.get("/admin/no-such-page")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert '<html lang="es">' in response.text
        assert "Esta página no existe" in response.text
        assert "/admin/members" in nav_links(response.text)
        assert 'action="/admin/logout"' in response.text
        english = web.get("/admin/no-such-page?lang=en")
        assert english.status_code == 404
        assert "This page does not exist" in english.text

    def test_unknown_console_address_signed_out_has_no_nav(self, web: TestClient) -> None:
        response = web.get("/admin/members/cust-1/nothing-here")
        assert response.status_code == 404
        assert "Esta página no existe" in response.text
        assert nav_links(response.text) == []

    def test_wrong_method_is_the_styled_page(self, web: TestClient) -> None:
        sign_in(web, "admin")
        response = web.put("/admin/members")
        assert response.status_code == 405
        assert response.headers["content-type"].startswith("text/html")
        assert "Esta dirección no admite este tipo de petición" in response.text
        assert "allow" in {k.lower() for k in response.headers}

    def test_unknown_cockpit_address_in_the_members_language_with_the_nav(
        self, web: TestClient, db: Database
    ) -> None:
        signed_out = web.get("/me/nope", headers={"Accept-Language": "en"})
        assert signed_out.status_code == 404
        assert "This page does not exist" in signed_out.text
        assert nav_links(signed_out.text) == []
        member_signs_in(web, db)
        response = web.get("/me/wallet/nope/nope")
        assert response.status_code == 404
        assert "Esta página no existe" in response.text
        assert "/me/wallet" in nav_links(response.text)
        assert 'action="/me/logout"' in response.text

    def test_the_api_keeps_json_errors(self, web: TestClient) -> None:
        for response, status in (
            (web.get("/v1/no-such-thing"), 404),
            (web.get("/meh"), 404),
            (web.post("/metrics"), 405),
        ):
            assert response.status_code == status
            assert response.json()["error"]["code"] in ("not_found", "method_not_allowed")

    def test_go_back_needs_no_inline_javascript(self, web: TestClient) -> None:
        html = web.get("/admin/nope").text
        assert "javascript:" not in html
        assert 'href="/admin" data-history-back' in html


# --- navigation by role --------------------------------------------------------------------


class TestNavByRole:
    @pytest.mark.parametrize("role", ["admin", "marketer", "support", "read_only"])
    def test_every_nav_entry_opens_for_the_role(self, web: TestClient, role: str) -> None:
        sign_in(web, role)
        links = nav_links(web.get("/admin").text)
        assert ("/admin/till" in links) == (role in ("admin", "support"))
        assert ("/admin/users" in links) == (role == "admin")
        for href in links:
            assert web.get(href).status_code == 200, (role, href)

    def test_the_403_page_keeps_the_nav_and_sign_out(self, web: TestClient) -> None:
        sign_in(web, "read_only")
        response = web.get("/admin/till")
        assert response.status_code == 403
        assert "forbidden_for_role" in response.text
        assert "Tu rol no permite esto." in response.text
        assert "/admin/members" in nav_links(response.text)
        assert 'action="/admin/logout"' in response.text

    def test_the_role_descriptions_match_the_pages(self, web: TestClient) -> None:
        sign_in(web, "admin")
        english = web.get("/admin/users?lang=en").text
        assert "read-only sees every page" not in english
        assert "read-only sees members, programme, rewards, coupons and the audit log" in english


# --- security headers ----------------------------------------------------------------------


def _policy(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    parts = (p.strip().split(" ", 1) for p in policy.split(";") if p.strip())
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts}


class TestSecurityHeaders:
    def test_pages_api_and_static_files_carry_them(self, web: TestClient, db: Database) -> None:
        sign_in(web, "admin")
        for path in ("/admin", "/admin/login", "/me/login", "/v1/members/x", "/static/lealta.css"):
            response = web.get(path)
            assert response.headers["x-frame-options"] == "DENY", path
            assert response.headers["x-content-type-options"] == "nosniff", path
            assert response.headers["referrer-policy"] == "same-origin", path
            policy = _policy(response)
            assert policy["script-src"] == "'self'", path
            assert policy["frame-ancestors"] == "'none'", path
            assert policy["object-src"] == "'none'", path

    def test_a_header_is_not_doubled(self, web: TestClient, db: Database) -> None:
        member_signs_in(web, db)
        response = web.get("/me/card/qr.svg")
        assert response.status_code == 200
        assert response.headers.get_list("x-content-type-options") == ["nosniff"]

    def test_docs_allow_exactly_their_boot_script(self, web: TestClient) -> None:
        response = web.get("/docs")
        inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
        assert len(inline) == 1
        digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
        assert _policy(response)["script-src"] == f"'self' 'sha256-{digest}'"
        assert response.headers["x-frame-options"] == "DENY"

    def test_templates_have_no_inline_script(self) -> None:
        for template in TEMPLATES.rglob("*.html"):
            text = template.read_text()
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template
            assert not re.search(r"\son[a-z]+\s*=", text), template
            assert "javascript:" not in text, template


# --- tokens out of the logs ----------------------------------------------------------------


class TestRedaction:
    @pytest.mark.parametrize(
        ("target", "expected"),
        [
            ("/me/login/abcDEF_-12", "/me/login/[redacted]"),
            ("/me/login/sent", "/me/login/sent"),
            ("/me/login", "/me/login"),
            ("/me/login/tok?lang=en", "/me/login/[redacted]?lang=en"),
            ("/x?token=abc&b=2", "/x?token=[redacted]&b=2"),
            ("/x?a=1&api_key=zz", "/x?a=1&api_key=[redacted]"),
            ("/me/login?next=%2Fme%2Flogin%2Fsecret", "/me/login?next=%2Fme%2Flogin%2F[redacted]"),
            ("/admin/members/cust-1?q=ana", "/admin/members/cust-1?q=ana"),
        ],
    )
    def test_targets(self, target: str, expected: str) -> None:
        assert redact_target(target) == expected

    def test_a_real_request_logs_no_token(self, db: Database, database_url: str) -> None:
        """A real server (uvicorn, access log on): neither log line shows the link's token."""
        with db.unit_of_work() as session:
            members.create(
                session,
                MemberCreate(external_id="log-1", email="log@example.com"),
                now=T0,
            )
            link = login_links.request_link(
                session, "log@example.com", client_ip="test", now=datetime.now(UTC), minutes=15
            )
        assert link.token is not None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        script = (
            "import uvicorn; uvicorn.run('lealta.app:create_app', factory=True, "
            f"host='127.0.0.1', port={port}, access_log=True, log_level='info')"
        )
        env = {
            **os.environ,
            "LEALTA_DATABASE_URL": database_url,
            "LEALTA_ENV": "test",
            "LEALTA_LOG_LEVEL": "INFO",
        }
        server = subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                try:
                    httpx.get(f"{base}/health", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise AssertionError("the server did not start") from None
                    time.sleep(0.1)
            page = httpx.get(f"{base}/me/login/{link.token}?token={link.token}")
            assert page.status_code == 200
            assert "csrf_token" in page.text  # the real confirmation form
        finally:
            server.terminate()
            output, _ = server.communicate(timeout=15)
        lines = [line for line in output.splitlines() if "/me/login/" in line]
        assert len(lines) == 2, output  # our JSON line and uvicorn's access line
        assert any('"event": "request"' in line for line in lines), output
        assert any("GET /me/login/[redacted]?token=[redacted]" in line for line in lines), output
        assert link.token not in output
