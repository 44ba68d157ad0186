"""The console's Bulk operations page: upload, progress, rejected rows, report; es and en."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from lealta.bulk import service as bulk
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import ROLES
from tests.conftest import app_for
from tests.factories import PASSWORD, add_member, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks

Console = Callable[[str, str], TestClient]


@pytest.fixture
def console(db: Database, clock: FixedClock, settings: Settings) -> Iterator[Console]:
    """``console(role, language)``: a client signed in as a user with that role."""
    with db.unit_of_work() as session:
        create_staff(session, ROLES, now=clock.now(), domain="shop.test")
    app = app_for(settings, db=db, clock=clock)
    clients: list[TestClient] = []

    def make(role: str, language: str) -> TestClient:
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        client.cookies.set("lealta_lang", language)
        token = csrf(client.get("/admin/login").text)
        response = client.post(
            "/admin/login",
            data={"email": f"{role}@shop.test", "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def upload(
    client: TestClient,
    content: bytes,
    *,
    kind: str = "points",
    reason: str = "",
    name: str = "g.csv",
) -> tuple[int, str, str]:
    token = csrf(client.get("/admin/bulk").text)
    response = client.post(
        "/admin/bulk",
        data={"csrf_token": token, "kind": kind, "reason": reason},
        files={"file": (name, content, "text/csv")} if content else {},
        follow_redirects=False,
    )
    return response.status_code, response.headers.get("location", ""), response.text


def no_leaks(page: str, language: str) -> None:
    leaks = english_leaks(page) if language == "es" else spanish_leaks(page)
    assert leaks == [], leaks


@pytest.mark.parametrize("language", ["es", "en"])
def test_upload_follow_and_report(
    console: Console, db: Database, clock: FixedClock, language: str
) -> None:
    add_member(db, "ana", None, points=5)
    admin = console("admin", language)
    page = admin.get("/admin/bulk")
    assert page.status_code == 200 and 'id="bulk-form"' in page.text
    no_leaks(page.text, language)
    content = b"external_id,points,reason\nana,10,Gift\nghost,5,\nana,-100,\n"
    status, location, _ = upload(admin, content, reason="Storm")
    assert status == 303 and location.startswith("/admin/bulk/")
    waiting = admin.get(location)
    assert waiting.status_code == 200
    assert 'http-equiv="refresh"' in waiting.text and 'data-status="queued"' in waiting.text
    no_leaks(waiting.text, language)
    op_id = int(location.rsplit("/", 1)[1])
    bulk.run(db, op_id, clock=clock)
    done = admin.get(location)
    assert 'data-status="done"' in done.text and 'http-equiv="refresh"' not in done.text
    assert 'data-kpi="applied">1<' in done.text and 'data-kpi="rejected">2<' in done.text
    assert "member_not_found" in done.text and "insufficient_points" in done.text
    no_leaks(done.text, language)
    if language == "es":
        assert "No hay ningún miembro con este identificador externo." in done.text
    report = admin.get(f"{location}/report.csv")
    assert report.status_code == 200 and report.text.startswith("line,external_id,status")
    again_status, again_location, _ = upload(admin, content, reason="Storm")
    assert (again_status, again_location) == (303, location)  # the same file: no second one
    listing = admin.get("/admin/bulk")
    assert f'data-operation="{op_id}"' in listing.text
    no_leaks(listing.text, language)


@pytest.mark.parametrize("language", ["es", "en"])
def test_form_errors_are_pages_in_the_reader_language(
    console: Console, db: Database, language: str
) -> None:
    admin = console("marketer", language)
    cases = [
        (b"", "points", ""),  # no file
        (b"customer,points\nana,1\n", "points", ""),  # bad header
        (b"external_id,tier\nana,oro\n", "tier", ""),  # tier moves need a reason
        (b"\xff\xfe\x00bad", "points", ""),  # not UTF-8
        (b"external_id,points\n", "points", ""),  # no rows
    ]
    for content, kind, reason in cases:
        status, _, text = upload(admin, content, kind=kind, reason=reason)
        assert status == 422, (content, text[:200])
        assert 'id="bulk-error"' in text and 'id="bulk-form"' in text
        assert not text.lstrip().startswith("{")
        no_leaks(text, language)
    expected = "Elige un archivo CSV." if language == "es" else "Choose a CSV file."
    assert expected in upload(admin, b"")[2]


def test_roles_and_unknown_operation(console: Console) -> None:
    support = console("support", "en")
    refused = support.get("/admin/bulk")
    assert refused.status_code == 403 and not refused.text.lstrip().startswith("{")
    assert 'href="/admin/bulk"' not in support.get("/admin").text
    admin = console("admin", "es")
    assert 'href="/admin/bulk"' in admin.get("/admin").text
    missing = admin.get("/admin/bulk/999")
    assert missing.status_code == 404 and not missing.text.lstrip().startswith("{")
