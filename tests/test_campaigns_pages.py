"""The console's Campaigns pages over HTTP (Spanish, no English leaks): the list with the
seed drafts, the editor's live preview, a refused form with the error next to its field,
saving, the campaign page and its audited actions; the tracking link of e-mails."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.campaigns import service
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import AuditLog
from lealta.models.campaign import CampaignRecipient
from tests.conftest import app_for
from tests.factories import create_staff
from tests.i18n_leaks import english_leaks
from tests.test_campaigns_api import api, quick  # noqa: F401
from tests.test_segments_pages import _console, _token


@pytest.fixture
def site(api: TestClient, db: Database, clock: FixedClock, quick: Settings) -> Any:  # noqa: F811
    with db.unit_of_work() as session:
        create_staff(session, ("admin", "read_only"), now=clock.now(), domain="shop.test")
    return app_for(quick, db=db, clock=clock)


def test_editor_list_detail_actions(
    site: Any,
    db: Database,
    clock: FixedClock,
    quick: Settings,  # noqa: F811
) -> None:
    es = _console(site, "admin", "es")
    listed = es.get("/admin/campaigns")
    assert listed.status_code == 200 and english_leaks(listed.text) == []
    assert "Reactivación de inactivos" in listed.text and "borrador" in listed.text
    new = es.get("/admin/campaigns/new")
    assert new.status_code == 200 and english_leaks(new.text) == []
    form = {
        "csrf_token": _token(new.text), "id": "flash", "name_es": "Relámpago",
        "starts_at": "2026-02-01T10:00", "priority": "120", "channels": ["email", "inapp"],
        "template": "we_miss_you", "points": "30", "holdout": "10", "variant_id_0": "a",
        "variant_id_1": "b", "variant_template_1": "points_earned", "per_minute": "3",
    }  # fmt: skip
    fragment = es.post("/admin/campaigns/preview", data=form)
    assert fragment.status_code == 200 and 'data-count="7"' in fragment.text
    assert "<html" not in fragment.text
    refused = es.post("/admin/campaigns", data={**form, "ends_at": "2026-01-01T10:00"})
    assert refused.status_code == 422
    assert 'data-error="ends_at"' in refused.text and "Revisa este campo" in refused.text
    assert "debe ser posterior a starts_at" in refused.text  # the validator's text, in Spanish
    assert 'value="flash"' in refused.text
    saved = es.post("/admin/campaigns", data=form)
    assert saved.status_code == 303 and saved.headers["location"] == "/admin/campaigns/flash"
    page = es.get("/admin/campaigns/flash")
    assert page.status_code == 200 and "Campaña flash guardada" in page.text
    assert english_leaks(page.text) == []
    assert "/admin/campaigns/flash/results" in page.text
    edit = es.get("/admin/campaigns/flash/edit")
    assert edit.status_code == 200 and 'value="a"' in edit.text
    launched = es.post("/admin/campaigns/flash/launch", data={"csrf_token": _token(page.text)})
    assert launched.status_code == 303
    again = es.post("/admin/campaigns/flash/launch", data={"csrf_token": _token(page.text)})
    assert again.status_code == 409 and "No es posible ahora" in again.text
    with db.unit_of_work() as session:
        service.launch(session, "flash", now=clock.now())
    service.tick(db, quick, now=clock.now())
    page = es.get("/admin/campaigns/flash")
    assert 'data-count="sent"' in page.text
    paused = es.post("/admin/campaigns/flash/cancel", data={"csrf_token": _token(page.text)})
    assert paused.status_code == 303
    with db.unit_of_work(write=False) as session:
        actions = set(session.scalars(select(AuditLog.action).where(AuditLog.target_id == "flash")))
    assert {"campaign.create", "campaign.launch"} <= actions
    reader = _console(site, "read_only", "es")
    assert (
        reader.post(
            "/admin/campaigns/flash/pause", data={"csrf_token": _token(page.text)}
        ).status_code
        == 403
    )


def test_tracking_link(site: Any, db: Database, clock: FixedClock, quick: Settings) -> None:  # noqa: F811
    client = TestClient(site, raise_server_exceptions=False, follow_redirects=False)
    bad = client.get("/c/not-a-token")
    assert bad.status_code == 404 and "<html" in bad.text
    with db.unit_of_work() as session:
        service.create(
            session,
            service.parse(
                {
                    "id": "t",
                    "name": "T",
                    "starts_at": (clock.now() - timedelta(minutes=1)).isoformat(),
                    "steps": [{"type": "send_message", "template": "we_miss_you"}],
                }
            ),
            actor="t", now=clock.now(),
        )  # fmt: skip
    service.tick(db, quick, now=clock.now())
    with db.unit_of_work(write=False) as session:
        first = session.scalars(select(CampaignRecipient).order_by(CampaignRecipient.id)).first()
        assert first is not None and first.status == "sent"
        rid = first.id
    followed = client.get(f"/c/{service.link_token(quick, rid)}")
    assert followed.status_code == 303 and followed.headers["location"] == "/me"
    with db.unit_of_work(write=False) as session:
        assert session.get(CampaignRecipient, rid).clicked_at == clock.now()  # type: ignore[union-attr]
    assert client.get(f"/c/{service.link_token(quick, 10**9)}").status_code == 404


def test_cli_lists_shows_and_controls(
    site: Any, settings: Settings, db: Database, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lealta.cli import app as cli_app
    from lealta.config import get_settings

    monkeypatch.setenv("LEALTA_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()
    runner = CliRunner()
    monkeypatch.setattr("lealta.campaigns.cli.console.width", 250)
    try:
        listed = runner.invoke(cli_app, ["campaigns", "list"])
        assert listed.exit_code == 0, listed.output
        assert "reactivation-inact" in listed.output and "draft" in listed.output
        launched = runner.invoke(cli_app, ["campaigns", "launch", "unused-points"])
        assert launched.exit_code == 0 and "launching" in launched.output
        again = runner.invoke(cli_app, ["campaigns", "launch", "unused-points"])
        assert again.exit_code == 5
        shown = runner.invoke(cli_app, ["campaigns", "show", "unused-points"])
        assert shown.exit_code == 0 and '"status": "scheduled"' in shown.output
        assert runner.invoke(cli_app, ["campaigns", "pause", "unused-points"]).exit_code == 5
        cancelled = runner.invoke(cli_app, ["campaigns", "cancel", "unused-points"])
        assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
        assert runner.invoke(cli_app, ["campaigns", "show", "nope"]).exit_code == 4
    finally:
        get_settings.cache_clear()
    with db.unit_of_work(write=False) as session:
        actors = set(
            session.scalars(select(AuditLog.actor).where(AuditLog.target_type == "campaign"))
        )
    assert actors == {"cli"}
