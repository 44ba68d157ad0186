"""The console's Segments pages over HTTP: the list with counts, the builder's live preview
fragment, a refused form, saving, the segment page with members and CSV, static uploads, in
Spanish without English leaks; read-only users cannot change anything. The CLI too."""

# ruff: noqa: F811
from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from tests.conftest import app_for
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks
from tests.test_segments import api, drain, populate, quick, recompute  # noqa: F401

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


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


def _token(page: str) -> str:
    found = CSRF.search(page)
    assert found, page
    return found.group(1)


@pytest.fixture
def site(api: TestClient, db: Database, clock: FixedClock, quick: Settings) -> Any:
    populate(api, clock)
    recompute(db, clock)
    with db.unit_of_work() as session:
        create_staff(session, ("admin", "read_only"), now=clock.now(), domain="shop.test")
    return app_for(quick, db=db, clock=clock)


def test_builder_previews_refuses_saves_and_shows_members(
    site: Any,
    db: Database,
    clock: FixedClock,
    quick: Settings,
) -> None:
    es = _console(site, "admin", "es")
    listed = es.get("/admin/segments")
    assert listed.status_code == 200 and english_leaks(listed.text) == []
    assert "Nivel Oro" in listed.text and "/admin/segments/active" in listed.text
    token = _token(listed.text)
    form = {
        "csrf_token": token, "key": "big-recent", "name_es": "Grandes recientes",
        "match": "all", "field_0": "orders", "op_0": "gte", "value_0": "3", "days_0": "365",
        "field_1": "activity", "op_1": "ne", "value_1": "inactive",
    }  # fmt: skip
    fragment = es.post("/admin/segments/preview", data=form)
    assert fragment.status_code == 200 and 'data-count="4"' in fragment.text
    assert "miembros cumplen" in fragment.text and "<html" not in fragment.text
    wrong = es.post("/admin/segments/preview", data={**form, "value_0": "muchos"})
    assert "compares numbers" in wrong.text and 'role="alert"' in wrong.text
    refused = es.post("/admin/segments", data={**form, "field_0": "orders", "op_0": "has"})
    assert refused.status_code == 422 and "does not apply" in refused.text
    assert 'value="big-recent"' in refused.text  # the form keeps what was typed
    assert english_leaks(refused.text.split('role="alert"')[0]) == []
    more = es.post("/admin/segments", data={**form, "action": "add_row"})
    assert more.status_code == 200 and 'name="field_2"' in more.text
    saved = es.post("/admin/segments", data={**form, "action": "save"})
    assert saved.status_code == 303 and saved.headers["location"] == "/admin/segments/big-recent"
    drain(db, clock, quick)
    page = es.get("/admin/segments/big-recent")
    assert page.status_code == 200 and english_leaks(page.text) == []
    assert "Segmento big-recent guardado" in page.text
    assert all(f">c{i}<" in page.text for i in (3, 4, 5, 6))
    exported = es.get("/admin/segments/big-recent/members.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    assert exported.text.splitlines()[0] == "customer_id,name,email,language,entered_at"
    assert len(exported.text.splitlines()) == 5
    edited = es.post(
        "/admin/segments/big-recent",
        data={**form, "csrf_token": _token(page.text), "value_0": "5", "action": "save"},
    )
    assert edited.status_code == 303
    drain(db, clock, quick)
    assert ">c6<" in es.get("/admin/segments/big-recent").text
    assert ">c4<" not in es.get("/admin/segments/big-recent").text


def test_static_list_upload_and_read_only_users(site: Any) -> None:
    es = _console(site, "admin", "es")
    token = _token(es.get("/admin/segments").text)
    made = es.post("/admin/segments", data={"csrf_token": token, "key": "press", "kind": "static"})
    assert made.status_code == 303
    page = es.get("/admin/segments/press")
    empty = es.post("/admin/segments/press/upload", data={"csrf_token": _token(page.text)})
    assert empty.status_code == 422 and "Pega ids" in empty.text
    uploaded = es.post(
        "/admin/segments/press/upload",
        data={"csrf_token": _token(page.text), "mode": "replace"},
        files={"file": ("list.csv", b"customer_id\nc1\nc2\nghost\n", "text/csv")},
    )
    assert uploaded.status_code == 303
    shown = es.get("/admin/segments/press").text
    assert "2 miembros, 1 ids desconocidos" in shown and ">c1<" in shown
    en = _console(site, "read_only", "en")
    read = en.get("/admin/segments/active")
    assert read.status_code == 200 and spanish_leaks(read.text) == []
    assert "Recompute now" not in read.text
    refused = en.post("/admin/segments/active/recompute", data={"csrf_token": _token(read.text)})
    assert refused.status_code == 403
    assert en.get("/admin/segments/nope").status_code == 404


def test_cli_lists_recomputes_and_exports(
    site: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEALTA_DATABASE_URL", settings.database_url)
    from lealta.cli import app as cli_app
    from lealta.config import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["segments", "list"])
    assert listed.exit_code == 0 and "at-risk" in listed.output
    done = runner.invoke(cli_app, ["segments", "recompute", "active"])
    assert done.exit_code == 0, done.output
    exported = runner.invoke(cli_app, ["segments", "members", "inactive"])
    assert exported.exit_code == 0 and "c11" in exported.output
    missing = runner.invoke(cli_app, ["segments", "show", "nope"])
    assert missing.exit_code == 4
    get_settings.cache_clear()
