"""The member cockpit (``/me``) through its pages, on a real database and a real SMTP server.

Sign-in links are read from the emails the loopback SMTP server receives, exactly as a
member would follow them. The demo programme is in force with ``pending.days`` at 0.
"""

from __future__ import annotations

import email
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.models import Account, Consent, Coupon, Member, MemberLoginToken, Redemption
from lealta.programme import service as programmes
from lealta.rewards import service as rewards
from tests.conftest import T0, app_for
from tests.factories import add_member
from tests.test_rewards import DEMO, use

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GIF = b"GIF89a" + b"\x00" * 64
LINK = re.compile(r"http://testserver/me/login/([A-Za-z0-9_-]+)")


# --- fixtures -------------------------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if address in str(m.get("To", ""))]

    def token_for(self, address: str) -> str:
        sent = self.to(address)
        assert sent, f"no email to {address}"
        body = sent[-1].get_payload(decode=True)
        assert isinstance(body, bytes)
        found = LINK.search(body.decode())
        assert found, body
        return found.group(1)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def mail(mailbox: tuple[Mailbox, int]) -> Mailbox:
    return mailbox[0]


@pytest.fixture
def cockpit_settings(settings: Settings, mailbox: tuple[Mailbox, int], tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": mailbox[1],
            "public_url": "http://testserver",
            "data_dir": tmp_path,
            "upload_max_bytes": 4096,
        }
    )


@pytest.fixture
def app(db: Database, clock: FixedClock, cockpit_settings: Settings) -> Any:
    use(db, DEMO)
    return app_for(cockpit_settings, db=db, clock=clock)


@pytest.fixture
def web(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


@pytest.fixture
def other_web(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def csrf(client: TestClient, path: str = "/me/login") -> str:
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def ask_link(client: TestClient, address: str) -> Any:
    return client.post("/me/login", data={"email": address, "csrf_token": csrf(client)})


def sign_in(client: TestClient, mail: Mailbox, address: str) -> None:
    assert ask_link(client, address).status_code == 303
    token = mail.token_for(address)
    confirm = client.get(f"/me/login/{token}")
    assert confirm.status_code == 200
    done = client.post(
        f"/me/login/{token}", data={"csrf_token": csrf(client, f"/me/login/{token}")}
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/me"


def redeem_key(client: TestClient, reward_id: str) -> tuple[str, str]:
    page = client.get(f"/me/rewards/{reward_id}")
    assert page.status_code == 200, page.text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert key and token
    return token.group(1), key.group(1)


def count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def available(db: Database, member_id: int) -> int:
    with db.unit_of_work(write=False) as session:
        account = session.get(Account, member_id)
        assert account is not None
        return account.points_available


# --- sign-in ----------------------------------------------------------------------------


class TestSignIn:
    def test_pages_need_a_signed_in_member(self, web: TestClient) -> None:
        for path in ("/me", "/me/wallet", "/me/export", "/me/avatar", "/me/card/qr.svg"):
            response = web.get(path)
            assert response.status_code == 303
            assert response.headers["location"] == f"/me/login?next={path}"

    def test_unknown_and_known_email_get_the_same_answer_and_only_a_member_gets_mail(
        self, db: Database, web: TestClient, other_web: TestClient, mail: Mailbox
    ) -> None:
        add_member(db, "ana", "ana@example.com", name="Ana")
        known = ask_link(web, "Ana@Example.com ")
        unknown = ask_link(other_web, "nobody@example.com")
        assert known.status_code == unknown.status_code == 303
        assert known.headers["location"] == unknown.headers["location"] == "/me/login/sent"
        assert web.get("/me/login/sent").text == other_web.get("/me/login/sent").text
        assert len(mail.to("ana@example.com")) == 1
        assert mail.to("nobody@example.com") == []
        # Only a SHA-256 of the token is stored, never the token itself.
        token = mail.token_for("ana@example.com")
        with db.unit_of_work(write=False) as session:
            hashes = list(session.scalars(select(MemberLoginToken.token_hash)))
        assert token not in hashes
        assert len([h for h in hashes if h]) == 1

    def test_the_email_is_in_the_members_language_and_links_to_the_public_url(
        self, db: Database, web: TestClient, mail: Mailbox
    ) -> None:
        add_member(db, "ana", "ana@example.com", name="Ana")
        ask_link(web, "ana@example.com")
        message = mail.to("ana@example.com")[0]
        assert "inicio de sesión" in str(message["Subject"]).lower() or "enlace" in str(
            message["Subject"]
        )
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        assert "Hola Ana" in body.decode()
        assert "http://testserver/me/login/" in body.decode()

    def test_a_link_signs_in_once_and_get_does_not_use_it(
        self, db: Database, web: TestClient, other_web: TestClient, mail: Mailbox
    ) -> None:
        add_member(db, "ana", "ana@example.com", name="Ana")
        ask_link(web, "ana@example.com")
        token = mail.token_for("ana@example.com")
        for _ in range(3):  # a mail scanner following the link does not burn it
            assert web.get(f"/me/login/{token}").status_code == 200
        done = web.post(f"/me/login/{token}", data={"csrf_token": csrf(web, f"/me/login/{token}")})
        assert done.status_code == 303
        assert "Ana" in web.get("/me").text
        # A second submission, from anywhere, is refused.
        again = other_web.post(
            f"/me/login/{token}", data={"csrf_token": csrf(other_web, "/me/login")}
        )
        assert again.status_code == 400
        assert "link_used" in again.text
        assert other_web.get("/me").status_code == 303
        assert other_web.get(f"/me/login/{token}").status_code == 400

    def test_an_expired_link_is_refused(
        self, db: Database, web: TestClient, mail: Mailbox, clock: FixedClock
    ) -> None:
        add_member(db, "ana", "ana@example.com")
        ask_link(web, "ana@example.com")
        token = mail.token_for("ana@example.com")
        form = {"csrf_token": csrf(web)}
        clock.set(T0 + timedelta(minutes=15))
        response = web.post(f"/me/login/{token}", data=form)
        assert response.status_code == 400
        assert "link_expired" in response.text
        assert web.get("/me").status_code == 303

    def test_an_unknown_link_is_refused(self, db: Database, web: TestClient) -> None:
        response = web.post("/me/login/not-a-real-token", data={"csrf_token": csrf(web)})
        assert response.status_code == 400
        assert "link_unknown" in response.text
        assert web.get("/me/login/" + "x" * 5000).status_code == 400

    def test_rate_limit_per_email_shows_a_message_and_sends_nothing(
        self, db: Database, web: TestClient, mail: Mailbox, clock: FixedClock
    ) -> None:
        add_member(db, "ana", "ana@example.com")
        for _ in range(3):
            assert ask_link(web, "ana@example.com").status_code == 303
        refused = ask_link(web, "ana@example.com")
        assert refused.status_code == 429
        assert "demasiados enlaces" in refused.text
        assert len(mail.to("ana@example.com")) == 3
        # An unknown address is limited exactly the same way (no hint it is unknown).
        for _ in range(3):
            ask_link(web, "ghost@example.com")
        assert ask_link(web, "ghost@example.com").status_code == 429
        clock.set(T0 + timedelta(minutes=16))
        assert ask_link(web, "ana@example.com").status_code == 303
        assert len(mail.to("ana@example.com")) == 4

    def test_rate_limit_per_client(self, db: Database, web: TestClient, mail: Mailbox) -> None:
        add_member(db, "ana", "ana@example.com")
        for i in range(10):
            assert ask_link(web, f"person{i}@example.com").status_code == 303
        refused = ask_link(web, "ana@example.com")
        assert refused.status_code == 429
        assert mail.to("ana@example.com") == []

    def test_bad_input_and_missing_csrf(self, db: Database, web: TestClient, mail: Mailbox) -> None:
        add_member(db, "ana", "ana@example.com")
        bad = ask_link(web, "not an email")
        assert bad.status_code == 422
        assert 'role="alert"' in bad.text
        no_csrf = web.post("/me/login", data={"email": "ana@example.com"})
        assert no_csrf.status_code == 403
        assert "csrf_failed" in no_csrf.text
        assert mail.messages == []
        assert count(db, MemberLoginToken) == 0

    def test_sign_out(self, db: Database, web: TestClient, mail: Mailbox) -> None:
        add_member(db, "ana", "ana@example.com")
        sign_in(web, mail, "ana@example.com")
        assert web.post("/me/logout", data={}).status_code == 403
        assert web.get("/me").status_code == 200
        out = web.post("/me/logout", data={"csrf_token": csrf(web, "/me")})
        assert out.status_code == 303
        assert web.get("/me").status_code == 303

    def test_next_page_after_sign_in(self, db: Database, web: TestClient, mail: Mailbox) -> None:
        add_member(db, "ana", "ana@example.com")
        web.get("/me/login?next=/me/wallet")
        ask_link(web, "ana@example.com")
        token = mail.token_for("ana@example.com")
        done = web.post(f"/me/login/{token}", data={"csrf_token": csrf(web, f"/me/login/{token}")})
        assert done.headers["location"] == "/me/wallet"
        web.get("/me/login?next=https://evil.example/")
        assert web.get("/me/login?next=//evil.example").headers["location"] == "/me"


# --- pages ------------------------------------------------------------------------------


class TestPages:
    def test_dashboard_shows_balance_tier_progress_and_benefits(
        self, db: Database, web: TestClient, mail: Mailbox, client: TestClient
    ) -> None:
        add_member(db, "ana", "ana@example.com", name="Ana")
        paid = client.post(
            "/v1/events",
            json={
                "id": "o1",
                "type": "order.paid",
                "customer_id": "ana",
                "occurred_at": (T0 - timedelta(hours=1)).isoformat(),
                "order": {"id": "o1", "total": "1500.00", "currency": "EUR"},
            },
        )
        assert paid.status_code == 201, paid.text
        sign_in(web, mail, "ana@example.com")
        page = web.get("/me")
        assert page.status_code == 200
        assert 'role="progressbar"' in page.text
        assert "Plata" in page.text and "Oro" in page.text
        assert "Te faltan 3.500,00\xa0€ para llegar a Oro" in page.text
        assert "10" in page.text and "Envío gratis" in page.text
        english = web.get("/me?lang=en")
        assert "Silver" in english.text and "more to reach Gold" in english.text

    def test_history_is_paginated_and_a_bad_cursor_is_a_message(
        self, db: Database, web: TestClient, mail: Mailbox
    ) -> None:
        ana = add_member(db, "ana", "ana@example.com")
        with db.unit_of_work() as session:
            account = ledger.lock_account(session, ana)
            for i in range(24):
                ledger.credit(
                    session,
                    account,
                    entry_type="adjust",
                    points=10 + i,
                    reason=f"gift {i}",
                    source=ledger.Source("test"),
                    occurred_at=T0 - timedelta(hours=30 - i),
                    now=T0,
                )
        sign_in(web, mail, "ana@example.com")
        first = web.get("/me/history")
        assert first.text.count('class="card entry"') == 20
        assert "gift 23" in first.text and "gift 3" not in first.text
        older = re.search(r'href="(/me/history\?cursor=[^"]+)"', first.text)
        assert older
        second = web.get(older.group(1))
        assert second.text.count('class="card entry"') == 4
        assert "gift 0" in second.text
        bad = web.get("/me/history?cursor=garbage")
        assert bad.status_code == 422
        assert 'role="alert"' in bad.text

    def test_catalogue_explains_locked_rewards(
        self, db: Database, web: TestClient, mail: Mailbox
    ) -> None:
        add_member(db, "ana", "ana@example.com", points=600)
        sign_in(web, mail, "ana@example.com")
        page = web.get("/me/rewards?lang=en")
        eligible, locked = page.text.split("Not yet available to you")
        assert "€5 off" in eligible and "Free shipping" in eligible
        assert "You need 200 more points." in locked  # 10% off shoes costs 800
        assert "Only for members in tier Gold / Platinum." in locked

    def test_redeem_twice_with_one_form_redeems_once_and_fills_the_wallet(
        self, db: Database, web: TestClient, mail: Mailbox
    ) -> None:
        ana = add_member(db, "ana", "ana@example.com", points=1200)
        sign_in(web, mail, "ana@example.com")
        token, key = redeem_key(web, "coupon-5")
        form = {"csrf_token": token, "idempotency_key": key}
        first = web.post("/me/rewards/coupon-5/redeem", data=form)
        second = web.post("/me/rewards/coupon-5/redeem", data=form)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == "/me/wallet"
        assert available(db, ana) == 700
        assert count(db, Redemption) == 1
        with db.unit_of_work(write=False) as session:
            code = session.scalars(select(Coupon.code)).one()
        wallet = web.get("/me/wallet")
        assert code in wallet.text
        assert f'src="/me/wallet/{code}/qr.svg"' in wallet.text
        qr = web.get(f"/me/wallet/{code}/qr.svg")
        assert qr.status_code == 200
        assert qr.headers["content-type"].startswith("image/svg+xml")
        assert qr.text.lstrip().startswith("<svg")
        # A new confirmation (new key) is a second redemption.
        token, key = redeem_key(web, "coupon-5")
        web.post("/me/rewards/coupon-5/redeem", data={"csrf_token": token, "idempotency_key": key})
        assert available(db, ana) == 200

    def test_refused_redemptions_show_why_and_change_nothing(
        self, db: Database, web: TestClient, mail: Mailbox
    ) -> None:
        ana = add_member(db, "ana", "ana@example.com", points=400)
        sign_in(web, mail, "ana@example.com")
        token, key = redeem_key(web, "free-shipping")
        poor = web.post(
            "/me/rewards/coupon-5/redeem", data={"csrf_token": token, "idempotency_key": key}
        )
        assert poor.status_code == 409
        assert "Te faltan 100 puntos" in poor.text
        gold = web.post(
            "/me/rewards/vip-dinner/redeem", data={"csrf_token": token, "idempotency_key": "k2"}
        )
        assert gold.status_code == 409
        no_key = web.post("/me/rewards/free-shipping/redeem", data={"csrf_token": token})
        assert no_key.status_code == 400
        unknown = web.post(
            "/me/rewards/nope/redeem", data={"csrf_token": token, "idempotency_key": "k3"}
        )
        assert unknown.status_code == 404
        no_csrf = web.post("/me/rewards/free-shipping/redeem", data={"idempotency_key": "k4"})
        assert no_csrf.status_code == 403
        assert available(db, ana) == 400
        assert count(db, Redemption) == 0
        assert count(db, Coupon) == 0

    def test_card_shows_a_qr_of_the_members_own_id(
        self, db: Database, web: TestClient, mail: Mailbox
    ) -> None:
        add_member(db, "ana-77", "ana@example.com")
        sign_in(web, mail, "ana@example.com")
        assert "ana-77" in web.get("/me/card").text
        qr = web.get("/me/card/qr.svg")
        assert qr.status_code == 200 and "<svg" in qr.text

    def test_profile_saves_name_language_and_timezone(
        self, db: Database, web: TestClient, mail: Mailbox
    ) -> None:
        ana = add_member(db, "ana", "ana@example.com", name="Ana")
        sign_in(web, mail, "ana@example.com")
        token = csrf(web, "/me/profile")
        saved = web.post(
            "/me/profile",
            data={
                "csrf_token": token,
                "name": "Ana María",
                "language": "en",
                "timezone": "America/Bogota",
            },
        )
        assert saved.status_code == 303
        page = web.get("/me/profile")
        assert "Your profile was saved." in page.text
        with db.unit_of_work(write=False) as session:
            row = session.get(Member, ana)
            assert row is not None
            assert (row.name, row.language, row.timezone) == (
                "Ana María",
                "en",
                "America/Bogota",
            )

    @pytest.mark.parametrize(
        ("field_name", "value"),
        [("timezone", "Mars/Olympus"), ("language", "fr"), ("name", "x" * 201)],
    )
    def test_profile_bad_input_is_a_message_and_changes_nothing(
        self, db: Database, web: TestClient, mail: Mailbox, field_name: str, value: str
    ) -> None:
        ana = add_member(db, "ana", "ana@example.com", name="Ana")
        sign_in(web, mail, "ana@example.com")
        form = {"name": "Other", "language": "es", "timezone": "Europe/Madrid", field_name: value}
        response = web.post("/me/profile", data={**form, "csrf_token": csrf(web, "/me/profile")})
        assert response.status_code == 422
        assert 'role="alert"' in response.text
        with db.unit_of_work(write=False) as session:
            row = session.get(Member, ana)
            assert row is not None and row.name == "Ana" and row.language == "es"
        forged = web.post("/me/profile", data={**form, "name": "X", "csrf_token": "forged"})
        assert forged.status_code == 403

    def test_picture_upload_checks_magic_bytes_and_size(
        self, db: Database, web: TestClient, mail: Mailbox, cockpit_settings: Settings
    ) -> None:
        ana = add_member(db, "ana", "ana@example.com")
        sign_in(web, mail, "ana@example.com")
        token = csrf(web, "/me/profile")
        folder = cockpit_settings.data_dir / "avatars"

        def upload(data: bytes, name: str = "me.png", kind: str = "image/png") -> Any:
            return web.post(
                "/me/profile/picture",
                data={"csrf_token": token},
                files={"picture": (name, data, kind)},
            )

        gif = upload(GIF)  # claims to be a PNG
        assert gif.status_code == 422 and "PNG, JPEG" in gif.text
        big = upload(PNG + b"\x00" * 5000)
        assert big.status_code == 422 and 'role="alert"' in big.text
        empty = upload(b"")
        assert empty.status_code == 422
        assert not folder.exists() or list(folder.iterdir()) == []
        with db.unit_of_work(write=False) as session:
            row = session.get(Member, ana)
            assert row is not None and row.avatar_path is None
        assert web.get("/me/avatar").status_code == 404

        assert upload(PNG, name="../../evil.php", kind="text/x-php").status_code == 303
        stored = list(folder.iterdir())
        assert len(stored) == 1 and re.fullmatch(r"[0-9a-f]{32}\.png", stored[0].name)
        picture = web.get("/me/avatar")
        assert picture.status_code == 200
        assert picture.content == PNG
        assert picture.headers["content-type"] == "image/png"
        jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 32
        assert upload(jpeg, name="x.jpg", kind="image/jpeg").status_code == 303
        assert [p.suffix for p in folder.iterdir()] == [".jpg"]  # the old file was replaced
        webp = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16
        assert upload(webp, name="x.webp", kind="image/webp").status_code == 303
        assert web.get("/me/avatar").headers["content-type"] == "image/webp"

    def test_consent_toggles_append_records(
        self, db: Database, web: TestClient, mail: Mailbox
    ) -> None:
        ana = add_member(db, "ana", "ana@example.com")
        sign_in(web, mail, "ana@example.com")
        token = csrf(web, "/me/privacy")
        assert (
            web.post(
                "/me/privacy/consents", data={"csrf_token": token, "marketing_email": "on"}
            ).status_code
            == 303
        )
        with db.unit_of_work(write=False) as session:
            rows = list(session.scalars(select(Consent).where(Consent.member_id == ana)))
        assert {(c.purpose, c.granted, c.source) for c in rows} == {
            ("marketing_email", True, "cockpit"),
            ("marketing_sms", False, "cockpit"),
            ("marketing_push", False, "cockpit"),
            ("data_processing", False, "cockpit"),
        }
        # The same choices again record nothing; a change appends, never edits.
        web.post("/me/privacy/consents", data={"csrf_token": token, "marketing_email": "on"})
        assert count(db, Consent) == 4
        web.post("/me/privacy/consents", data={"csrf_token": token})
        assert count(db, Consent) == 5
        with db.unit_of_work(write=False) as session:
            current = {c.purpose: c.granted for c in members.current_consents(session, ana)}
        assert current["marketing_email"] is False
        assert web.post("/me/privacy/consents", data={"marketing_sms": "on"}).status_code == 403
        assert count(db, Consent) == 5
        assert "checked" not in web.get("/me/privacy").text.split("marketing_email")[1][:40]


# --- isolation --------------------------------------------------------------------------


class TestOwnDataOnly:
    @pytest.fixture
    def two(
        self, db: Database, web: TestClient, mail: Mailbox, clock: FixedClock
    ) -> tuple[int, int, str]:
        """Ana signed in on ``web``; Bea has a coupon and a picture."""
        ana = add_member(db, "ana", "ana@example.com", points=1000, name="Ana")
        bea = add_member(db, "bea", "bea@example.com", points=2000, name="Bea")
        with db.unit_of_work() as session:
            programme = programmes.current(session, now=clock.now())
            bea_row = session.get(Member, bea)
            assert bea_row is not None
            done = rewards.redeem(
                session, programme, bea_row, "coupon-5", now=clock.now(), actor="t"
            ).redemption
            bea_row.avatar_path = "0" * 32 + ".png"
            coupon = session.get(Coupon, done.coupon_id)
            assert coupon is not None
            code = coupon.code
        sign_in(web, mail, "ana@example.com")
        return ana, bea, code

    def test_another_members_coupon_qr_and_picture_are_not_found(
        self, web: TestClient, two: tuple[int, int, str], cockpit_settings: Settings
    ) -> None:
        folder = cockpit_settings.data_dir / "avatars"
        folder.mkdir(parents=True)
        (folder / ("0" * 32 + ".png")).write_bytes(PNG)
        _, _, code = two
        assert web.get(f"/me/wallet/{code}/qr.svg").status_code == 404
        assert web.get(f"/me/wallet/{code.lower()}/qr.svg").status_code == 404
        assert code not in web.get("/me/wallet").text
        assert web.get("/me/avatar").status_code == 404
        assert web.get("/me/avatar?member_id=2").status_code == 404

    def test_tampered_form_fields_cannot_redeem_for_another_member(
        self, db: Database, web: TestClient, two: tuple[int, int, str]
    ) -> None:
        ana, bea, _ = two
        token, key = redeem_key(web, "free-shipping")
        response = web.post(
            "/me/rewards/free-shipping/redeem",
            data={
                "csrf_token": token,
                "idempotency_key": key,
                "member_id": str(bea),
                "customer_id": "bea",
                "external_id": "bea",
            },
        )
        assert response.status_code == 303
        assert available(db, ana) == 700
        assert available(db, bea) == 1500
        assert count(db, Redemption, Redemption.member_id == bea) == 1
        assert count(db, Redemption, Redemption.member_id == ana) == 1

    def test_export_contains_only_the_members_own_data(
        self, db: Database, web: TestClient, two: tuple[int, int, str]
    ) -> None:
        _, _, bea_code = two
        token, key = redeem_key(web, "free-shipping")
        web.post(
            "/me/rewards/free-shipping/redeem", data={"csrf_token": token, "idempotency_key": key}
        )
        response = web.get("/me/export")
        assert response.status_code == 200
        assert response.headers["content-disposition"].startswith("attachment;")
        data = json.loads(response.text)
        assert set(data) >= {
            "profile",
            "consents",
            "balance",
            "ledger",
            "orders",
            "coupons",
            "redemptions",
            "tier_history",
        }
        assert data["profile"]["external_id"] == "ana"
        assert data["balance"]["available"] == 700
        assert [e["points"] for e in data["ledger"]] == [1000, -300]
        assert len(data["coupons"]) == 1 and data["coupons"][0]["code"] != bea_code
        assert [r["reward_id"] for r in data["redemptions"]] == ["free-shipping"]
        assert "bea" not in response.text.lower()
        assert bea_code not in response.text
