"""A campaign e-mail records its opening: the HTML part ends with a 1x1 image whose address
is the recipient's signed token; loading it (or clicking the link) records ``opened_at``.
Delivered through a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.campaigns import service
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models.campaign import CampaignRecipient
from lealta.notify.render import render
from tests.conftest import app_for
from tests.test_notify import (  # noqa: F401
    Mailbox,
    _member,
    _parts,
    _work,
    api,
    mail,
    mailbox,
    notify_settings,
    provider,
)

PIXEL = re.compile(r'<img src="(https://loyal\.tienda\.test/c/([^"/]+)/open\.gif)"')


def _campaign(db: Database, clock: FixedClock, settings: Settings, key: str) -> None:
    with db.unit_of_work() as session:
        service.create(
            session,
            service.parse(
                {
                    "id": key,
                    "name": key,
                    "starts_at": (clock.now() - timedelta(minutes=1)).isoformat(),
                    "channels": ["email"],
                    "steps": [{"type": "send_message", "template": "we_miss_you"}],
                }
            ),
            actor="t", now=clock.now(),
        )  # fmt: skip
    service.tick(db, settings, now=clock.now())


def _recipients(db: Database) -> dict[int, CampaignRecipient]:
    with db.unit_of_work(write=False) as session:
        found = session.scalars(select(CampaignRecipient).order_by(CampaignRecipient.id))
        return {r.id: r for r in found}


def test_opening_a_campaign_email_is_recorded_once(
    api: TestClient,  # noqa: F811
    db: Database,
    clock: FixedClock,
    notify_settings: Settings,  # noqa: F811
    mail: Mailbox,  # noqa: F811
) -> None:
    for who in ("ana", "ben"):
        _member(api, who)
    _campaign(db, clock, notify_settings, "opens")
    _work(db, clock, notify_settings)
    got = {who: mail.to(f"{who}@example.com") for who in ("ana", "ben")}
    assert all(len(m) == 1 for m in got.values()), got
    parts = _parts(got["ana"][0])
    found = PIXEL.search(parts["html"])
    assert found is not None, parts["html"]
    assert parts["html"].rstrip().endswith('height:1px">')  # last, after the template's body
    assert "open.gif" not in parts["plain"]
    url, token = found.groups()
    rid = service.read_link(notify_settings, token)
    recipients = _recipients(db)
    assert rid in recipients and all(r.opened_at is None for r in recipients.values())

    site = TestClient(app_for(notify_settings, db=db, clock=clock))
    image = site.get(url.removeprefix("https://loyal.tienda.test"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/gif"
    assert image.content[:6] == b"GIF89a" and image.content[6:10] == b"\x01\x00\x01\x00"
    assert "no-store" in image.headers["cache-control"]
    first = clock.now()
    clock.set(first + timedelta(hours=2))
    site.get(url.removeprefix("https://loyal.tienda.test"))  # opened again: the first counts
    after = _recipients(db)
    assert after[rid].opened_at == first and after[rid].clicked_at is None
    assert [r.opened_at for i, r in after.items() if i != rid] == [None]

    # A forged or unknown token still answers the image, and records nothing.
    for bad in ("not-a-token", service.link_token(notify_settings, 10**9)):
        answer = site.get(f"/c/{bad}/open.gif")
        assert answer.status_code == 200 and answer.content[:6] == b"GIF89a"
    now = _recipients(db)
    assert all(now[i].opened_at == r.opened_at for i, r in after.items())

    # Clicking proves an opening too (the image may have been blocked).
    other = next(i for i in after if i != rid)
    site.get(f"/c/{service.link_token(notify_settings, other)}", follow_redirects=False)
    clicked = _recipients(db)[other]
    assert clicked.clicked_at == clock.now() and clicked.opened_at == clock.now()


def test_open_tracking_can_be_turned_off(
    api: TestClient,  # noqa: F811
    db: Database,
    clock: FixedClock,
    notify_settings: Settings,  # noqa: F811
    mail: Mailbox,  # noqa: F811
) -> None:
    quiet = notify_settings.model_copy(update={"email_open_tracking": False})
    _member(api, "cal")
    _campaign(db, clock, quiet, "no-opens")
    _work(db, clock, quiet)
    (sent,) = mail.to("cal@example.com")
    html = _parts(sent)["html"]
    assert "open.gif" not in html and "<p>" in html


def test_the_image_goes_before_the_end_of_a_full_html_document() -> None:
    out = render(
        subject="s", text="t", html="<html><body><p>Hola</p></BODY></html>",
        context={"open_pixel_url": "https://x.test/c/a&b/open.gif"},
        language="es", timezone="UTC", currency="EUR",
    )  # fmt: skip
    assert out.html is not None
    assert out.html.startswith("<html><body><p>Hola</p><img ")
    assert out.html.endswith("</BODY></html>")
    assert 'src="https://x.test/c/a&amp;b/open.gif"' in out.html  # escaped
    plain = render(
        subject="s", text="t", html=None, context={"open_pixel_url": "u"},
        language="es", timezone="UTC", currency="EUR",
    )  # fmt: skip
    assert plain.html is None and "u" not in plain.text
