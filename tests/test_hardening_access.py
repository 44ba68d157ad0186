"""Access hardening: the console lock-out under parallel guesses, sessions that end on the
server (sign-out, new password, new role), and cockpit sign-in emails whose timing and
burst limits reveal nothing.

Real database, real HTTP app, real SMTP server on loopback. Parallel tests need PostgreSQL
(separate connections); SQLite runs the sequential versions.
"""

from __future__ import annotations

import asyncio
import email
import re
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import login_links
from lealta.models import (
    AdminUser,
    AuditLog,
    LedgerEntry,
    MemberLoginToken,
    OutboxMessage,
    Redemption,
)
from lealta.staff import service as staff_users
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, add_member, create_staff
from tests.test_rewards import DEMO, use

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
IDEM = re.compile(r'name="idempotency_key" value="([^"]+)"')
ALERT = re.compile(r'role="alert">([^<]*)<')
LINK = re.compile(r"/me/login/([A-Za-z0-9_-]{20,})")
COOKIE = "lealta_session"


# --- fixtures -------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the loopback SMTP server received; ``delay`` makes every delivery slow."""

    delay: float = 0.0
    port: int = 0
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in list(self.messages) if address in str(m.get("To", ""))]

    def token_for(self, address: str) -> str:
        sent = self.to(address)
        assert sent, f"no email to {address}"
        body = sent[-1].get_payload(decode=True)
        assert isinstance(body, bytes)
        found = LINK.search(body.decode())
        assert found, body
        return found.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def mail() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture
def app_settings(settings: Settings, mail: Mailbox) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mail.port,
            "public_url": "http://testserver",
        }
    )


@pytest.fixture
def app(db: Database, clock: FixedClock, app_settings: Settings) -> FastAPI:
    """The demo programme, a console user per role that matters, and María (1.000 points)."""
    use(db, DEMO)
    with db.unit_of_work() as session:
        create_staff(session, ("admin", "support"), now=T0)
    add_member(db, "cust-1", "maria@example.com", points=1000)
    return app_for(app_settings, db=db, clock=clock)


def browser(app: FastAPI) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False)


@pytest.fixture
def web(app: FastAPI) -> Iterator[TestClient]:
    with browser(app) as client:
        yield client


def token_of(client: TestClient, path: str) -> str:
    found = CSRF.search(client.get(path, follow_redirects=True).text)
    assert found is not None
    return found.group(1)


def count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


class CountingHasher(PasswordHasher):
    """argon2's own hasher, counting how many passwords it checks against a stored hash."""

    def __init__(self) -> None:
        super().__init__()
        self.verified = 0
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher()
    monkeypatch.setattr(staff_users, "_hasher", counting)
    return counting


# --- 2. console lock-out --------------------------------------------------------------------


def console_login(client: TestClient, address: str, password: str) -> httpx.Response:
    return client.post(
        "/admin/login",
        data={
            "email": address,
            "password": password,
            "csrf_token": token_of(client, "/admin/login"),
        },
    )


def alert(response: httpx.Response) -> str:
    found = ALERT.search(response.text)
    assert found is not None, response.text
    return found.group(1).strip()


class TestLockOut:
    def test_after_the_limit_even_the_right_password_is_refused_like_an_unknown_email(
        self,
        web: TestClient,
        db: Database,
        clock: FixedClock,
        app_settings: Settings,
        hasher: CountingHasher,
    ) -> None:
        limit = app_settings.admin_lockout_attempts
        unknown = console_login(web, "nobody@example.com", "wrong-wrong")
        for _ in range(limit):
            assert console_login(web, "support@example.com", "wrong-wrong").status_code == 401
        assert hasher.verified == limit
        for _ in range(3):  # while locked, nothing is checked against the hash
            locked = console_login(web, "support@example.com", PASSWORD)
            assert locked.status_code == unknown.status_code == 401
            assert alert(locked) == alert(unknown)
        assert hasher.verified == limit
        assert web.get("/admin").status_code == 303
        assert count(db, AuditLog, AuditLog.action == "admin_user.locked") == 1

        clock.set(T0 + timedelta(minutes=app_settings.admin_lockout_minutes, seconds=1))
        assert console_login(web, "support@example.com", PASSWORD).status_code == 303
        assert web.get("/admin").status_code == 200

    def test_the_locked_answer_says_nothing_about_the_account(
        self, web: TestClient, app_settings: Settings
    ) -> None:
        for _ in range(app_settings.admin_lockout_attempts):
            console_login(web, "support@example.com", "wrong-wrong")
        locked = console_login(web, "support@example.com", PASSWORD)
        unknown = console_login(web, "nobody@example.com", PASSWORD)
        wrong = console_login(web, "admin@example.com", "wrong-wrong")
        assert locked.status_code == unknown.status_code == wrong.status_code == 401
        assert alert(locked) == alert(unknown) == alert(wrong)
        assert "locked" not in locked.text.lower()
        spanish = browser(web.app)
        spanish.cookies.set("lealta_lang", "es")
        assert "Correo o contraseña incorrectos" in alert(
            console_login(spanish, "nobody@example.com", PASSWORD)
        )

    @pytest.mark.postgres_only
    def test_forty_parallel_guesses_check_at_most_the_limit_and_lock(
        self,
        app: FastAPI,
        db: Database,
        app_settings: Settings,
        hasher: CountingHasher,
    ) -> None:
        clients = [browser(app) for _ in range(40)]
        tokens = [token_of(c, "/admin/login") for c in clients]
        start = threading.Barrier(len(clients))

        def guess(i: int) -> int:
            start.wait()
            password = PASSWORD if i == 20 else f"wrong-guess-{i}"
            return (
                clients[i]
                .post(
                    "/admin/login",
                    data={
                        "email": "support@example.com",
                        "password": password,
                        "csrf_token": tokens[i],
                    },
                )
                .status_code
            )

        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            codes = list(pool.map(guess, range(len(clients))))
        limit = app_settings.admin_lockout_attempts
        assert set(codes) <= {401, 303}
        assert codes.count(303) <= 1  # the right one may win only inside the first 5 checks
        # At most `limit` wrong passwords are ever checked in a row. If the right one came in
        # among the first checks it signed in and reset the count (as a sequential sign-in
        # does), so at most `limit` more wrong ones were checked before the lock.
        checked_at_most = limit * (1 + codes.count(303))
        assert hasher.verified <= checked_at_most
        late = browser(app)
        assert console_login(late, "support@example.com", PASSWORD).status_code == 401
        assert hasher.verified <= checked_at_most
        with db.unit_of_work(write=False) as session:
            user = session.scalars(
                select(AdminUser).where(AdminUser.email == "support@example.com")
            ).one()
            assert user.locked_until is not None
        assert count(db, AuditLog, AuditLog.action == "admin_user.locked") == 1


# --- 3. sessions end on the server ----------------------------------------------------------


def console_session(app: FastAPI, role: str) -> TestClient:
    client = browser(app)
    assert console_login(client, f"{role}@example.com", PASSWORD).status_code == 303
    return client


def adjust(client: TestClient, points: int = 50) -> httpx.Response:
    page = client.get("/admin/members/cust-1")
    assert page.status_code == 200, page.text
    token = CSRF.search(page.text)
    key = IDEM.search(page.text)
    assert token and key
    return client.post(
        "/admin/members/cust-1/adjustments",
        data={
            "csrf_token": token.group(1),
            "idempotency_key": key.group(1),
            "points": str(points),
            "reason": "goodwill",
        },
    )


def replay(app: FastAPI, cookie: str) -> TestClient:
    """A second browser holding a copy of the cookie."""
    thief = browser(app)
    thief.cookies.set(COOKIE, cookie)
    return thief


def prepared_adjustment(client: TestClient) -> dict[str, str]:
    page = client.get("/admin/members/cust-1")
    token, key = CSRF.search(page.text), IDEM.search(page.text)
    assert token and key
    return {
        "csrf_token": token.group(1),
        "idempotency_key": key.group(1),
        "points": "70",
        "reason": "replayed",
    }


def adjustments(db: Database) -> int:
    return count(db, LedgerEntry, LedgerEntry.entry_type == "adjust")


class TestConsoleSessions:
    def test_a_cookie_copied_before_sign_out_is_refused_after(
        self, app: FastAPI, db: Database
    ) -> None:
        staff = console_session(app, "support")
        assert adjust(staff).status_code == 303
        before = adjustments(db)
        copied = staff.cookies[COOKIE]
        form = prepared_adjustment(staff)
        logout = staff.post("/admin/logout", data={"csrf_token": form["csrf_token"]})
        assert logout.status_code == 303

        thief = replay(app, copied)
        refused = thief.post("/admin/members/cust-1/adjustments", data=form)
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/admin/login")
        assert thief.get("/admin").status_code == 303
        assert adjustments(db) == before

    def test_a_new_password_ends_every_session(self, app: FastAPI, db: Database) -> None:
        first, second = console_session(app, "support"), console_session(app, "support")
        form = prepared_adjustment(first)
        with db.unit_of_work() as session:
            user = session.scalars(
                select(AdminUser).where(AdminUser.email == "support@example.com")
            ).one()
            staff_users.set_password(session, user, "a brand new secret", now=T0)
        before = adjustments(db)
        refused = first.post("/admin/members/cust-1/adjustments", data=form)
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/admin/login")
        assert second.get("/admin").status_code == 303
        assert adjustments(db) == before
        again = browser(app)
        assert console_login(again, "support@example.com", "a brand new secret").status_code == 303

    def test_a_role_change_or_disabling_ends_the_users_sessions(
        self, app: FastAPI, db: Database
    ) -> None:
        admin = console_session(app, "admin")
        staff = console_session(app, "support")
        form = prepared_adjustment(staff)
        with db.unit_of_work(write=False) as session:
            target = session.scalar(
                select(AdminUser.id).where(AdminUser.email == "support@example.com")
            )
        token = token_of(admin, "/admin/users")
        changed = admin.post(
            f"/admin/users/{target}/role", data={"csrf_token": token, "role": "support"}
        )
        assert changed.status_code == 303
        before = adjustments(db)
        refused = staff.post("/admin/members/cust-1/adjustments", data=form)
        assert refused.status_code == 303 and "/admin/login" in refused.headers["location"]
        assert adjustments(db) == before
        assert admin.get("/admin").status_code == 200  # the admin's own session goes on

        staff = console_session(app, "support")
        form = prepared_adjustment(staff)
        disabled = admin.post(f"/admin/users/{target}/disable", data={"csrf_token": token})
        assert disabled.status_code == 303
        enabled = admin.post(f"/admin/users/{target}/enable", data={"csrf_token": token})
        assert enabled.status_code == 303
        refused = staff.post("/admin/members/cust-1/adjustments", data=form)
        assert refused.status_code == 303 and "/admin/login" in refused.headers["location"]
        assert adjustments(db) == before


def cockpit_sign_in(client: TestClient, mail: Mailbox, address: str) -> None:
    asked = client.post(
        "/me/login", data={"email": address, "csrf_token": token_of(client, "/me/login")}
    )
    assert asked.status_code == 303
    link = mail.token_for(address)
    done = client.post(
        f"/me/login/{link}", data={"csrf_token": token_of(client, f"/me/login/{link}")}
    )
    assert done.status_code == 303 and done.headers["location"] == "/me"


class TestCockpitSessions:
    def test_a_cookie_copied_before_sign_out_cannot_redeem(
        self, app: FastAPI, db: Database, mail: Mailbox
    ) -> None:
        member = browser(app)
        cockpit_sign_in(member, mail, "maria@example.com")
        copied = member.cookies[COOKIE]
        page = member.get("/me/rewards/coupon-5")
        token, key = CSRF.search(page.text), IDEM.search(page.text)
        assert token and key
        assert member.post("/me/logout", data={"csrf_token": token.group(1)}).status_code == 303
        assert member.get("/me").status_code == 303

        thief = replay(app, copied)
        refused = thief.post(
            "/me/rewards/coupon-5/redeem",
            data={"csrf_token": token.group(1), "idempotency_key": key.group(1)},
        )
        assert refused.status_code in (303, 401)
        if refused.status_code == 303:
            assert refused.headers["location"].startswith("/me/login")
        assert thief.get("/me").status_code == 303
        # The ended session shows the sign-in form again instead of bouncing to /me.
        assert thief.get("/me/login").status_code == 200
        assert count(db, Redemption) == 0

        cockpit_sign_in(member, mail, "maria@example.com")  # signing in again works
        assert member.get("/me").status_code == 200


# --- 5. sign-in emails: timing and bursts ---------------------------------------------------


def ask(client: TestClient | httpx.Client, address: str) -> httpx.Response:
    page = client.get("/me/login")
    found = CSRF.search(page.text)
    assert found is not None
    return client.post("/me/login", data={"email": address, "csrf_token": found.group(1)})


@pytest.fixture
def live(app: FastAPI, mail: Mailbox) -> Iterator[str]:
    """The app served by uvicorn on loopback: a response leaves before background work."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


class TestSignInEmails:
    def test_known_and_unknown_addresses_answer_in_the_same_time(
        self, live: str, db: Database, mail: Mailbox
    ) -> None:
        mail.delay = 1.0  # a slow mail server: 1 s per delivery
        known = [f"known{i}@example.com" for i in range(4)]
        for i, address in enumerate(known):
            add_member(db, f"known-{i}", address)
        times: dict[str, list[float]] = {"known": [], "unknown": []}
        for i in range(4):
            for kind, address in (("known", known[i]), ("unknown", f"ghost{i}@example.com")):
                with httpx.Client(base_url=live, follow_redirects=False) as client:
                    page = client.get("/me/login")
                    found = CSRF.search(page.text)
                    assert found is not None
                    started = time.perf_counter()
                    response = client.post(
                        "/me/login", data={"email": address, "csrf_token": found.group(1)}
                    )
                    times[kind].append(time.perf_counter() - started)
                    assert response.status_code == 303
                    assert response.headers["location"] == "/me/login/sent"
        gap = statistics.median(times["known"]) - statistics.median(times["unknown"])
        assert abs(gap) < 0.3, times
        assert max(times["known"]) < mail.delay, times
        deadline = time.monotonic() + 20  # the emails still arrive, after the responses
        while time.monotonic() < deadline and any(not mail.to(a) for a in known):
            time.sleep(0.1)
        assert all(len(mail.to(a)) == 1 for a in known)
        assert not [m for m in mail.messages if "ghost" in str(m.get("To", ""))]

    def test_the_sent_link_is_not_kept_in_the_outbox(
        self, web: TestClient, db: Database, mail: Mailbox
    ) -> None:
        assert ask(web, "maria@example.com").status_code == 303
        link = mail.token_for("maria@example.com")
        with db.unit_of_work(write=False) as session:
            rows = list(session.scalars(select(OutboxMessage)))
        queued = [r for r in rows if r.topic == login_links.LINK_TOPIC]
        assert len(queued) == 1 and queued[0].processed_at is not None
        assert link not in str(queued[0].payload)

    def test_sequential_requests_stop_at_the_address_limit(
        self, web: TestClient, db: Database, mail: Mailbox
    ) -> None:
        codes = [
            ask(web, "maria@example.com").status_code for _ in range(login_links.EMAIL_LIMIT + 2)
        ]
        assert codes == [303] * login_links.EMAIL_LIMIT + [429, 429]
        assert len(mail.to("maria@example.com")) == login_links.EMAIL_LIMIT

    @pytest.mark.postgres_only
    def test_twenty_parallel_requests_for_one_address_issue_at_most_the_limit(
        self, app: FastAPI, db: Database, mail: Mailbox
    ) -> None:
        codes = burst(app, ["maria@example.com"] * 20)
        tokens = count(
            db,
            MemberLoginToken,
            MemberLoginToken.email_hash == login_links.digest("maria@example.com"),
        )
        assert tokens <= login_links.EMAIL_LIMIT
        assert codes.count(303) == tokens
        assert set(codes) <= {303, 429}
        assert len(mail.to("maria@example.com")) <= login_links.EMAIL_LIMIT

    @pytest.mark.postgres_only
    def test_twenty_parallel_requests_from_one_client_stay_within_its_limit(
        self, app: FastAPI, db: Database
    ) -> None:
        codes = burst(app, [f"ghost{i}@example.com" for i in range(20)])
        assert count(db, MemberLoginToken) <= login_links.IP_LIMIT
        assert codes.count(303) == count(db, MemberLoginToken)


def burst(app: FastAPI, addresses: list[str]) -> list[int]:
    clients = [browser(app) for _ in addresses]
    tokens = [token_of(c, "/me/login") for c in clients]
    start = threading.Barrier(len(clients))

    def one(i: int) -> int:
        start.wait()
        response = clients[i].post(
            "/me/login", data={"email": addresses[i], "csrf_token": tokens[i]}
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(one, range(len(clients))))
