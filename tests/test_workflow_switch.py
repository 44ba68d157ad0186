"""Switching a workflow on or off in the programme document from the API and the console
(the demo ships its workflows off: a marketer switches one on without editing YAML)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import AuditLog, WorkflowRun
from lealta.programme import service as programmes
from tests.conftest import T0
from tests.i18n_leaks import english_leaks, spanish_leaks
from tests.test_notify import mail as mail
from tests.test_notify import mailbox as mailbox
from tests.test_notify import notify_settings as notify_settings
from tests.test_notify import provider as provider
from tests.test_workflows import _api, apply, document, member, pay, work
from tests.test_workflows_api import CSRF, _signed_in
from tests.test_workflows_api import console as console


def _off_document() -> dict[str, Any]:
    doc = document()
    for workflow in doc["workflows"]:
        workflow["enabled"] = False
    return doc


@pytest.fixture
def api(
    db: Database, clock: FixedClock, notify_settings: Settings, server_key: str
) -> Iterator[TestClient]:
    apply(db, _off_document(), T0 - timedelta(days=400))
    with _api(db, clock, notify_settings, server_key) as client:
        yield client


def _runs(db: Database, workflow_id: str) -> int:
    with db.unit_of_work(write=False) as session:
        return len(
            session.scalars(
                select(WorkflowRun.id).where(WorkflowRun.workflow_id == workflow_id)
            ).all()
        )


def test_enable_and_disable_over_the_api(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings
) -> None:
    member(api, "eva")
    pay(api, "eva", "40.00", T0)
    work(db, clock, notify_settings)
    assert _runs(db, "points-earned") == 0  # off: no run
    assert api.post("/v1/workflows/points-earned/enable").status_code == 400  # no key
    on = api.post("/v1/workflows/points-earned/enable", headers={"Idempotency-Key": "on-1"})
    assert on.status_code == 200, on.text
    assert on.json() == {"workflow_id": "points-earned", "enabled": True, "programme_version": 2}
    replay = api.post("/v1/workflows/points-earned/enable", headers={"Idempotency-Key": "on-1"})
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert api.get("/v1/workflows/points-earned").json()["enabled"] is True
    with db.unit_of_work(write=False) as session:
        current = programmes.current(session, now=clock.now())
        # Only that flag changed: every other workflow is still off.
        assert [w.id for w in current.workflows if w.enabled] == ["points-earned"]
        actions = session.scalars(
            select(AuditLog.action).where(AuditLog.target_id == "points-earned")
        ).all()
        assert "workflow.enable" in actions
    pay(api, "eva", "30.00", T0)
    work(db, clock, notify_settings)
    assert _runs(db, "points-earned") == 1
    # Already on: no new version.
    again = api.post("/v1/workflows/points-earned/enable", headers={"Idempotency-Key": "on-2"})
    assert again.json()["programme_version"] == 2
    off = api.post("/v1/workflows/points-earned/disable", headers={"Idempotency-Key": "off-1"})
    assert off.json() == {"workflow_id": "points-earned", "enabled": False, "programme_version": 3}
    pay(api, "eva", "20.00", T0)
    work(db, clock, notify_settings)
    assert _runs(db, "points-earned") == 1
    missing = api.post("/v1/workflows/nope/enable", headers={"Idempotency-Key": "x"})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "workflow_not_found"


def test_a_scheduled_programme_version_is_not_superseded(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    apply(db, _off_document(), clock.now() + timedelta(days=3))
    refused = api.post("/v1/workflows/tier-up/enable", headers={"Idempotency-Key": "s-1"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "programme_change_scheduled"
    assert refused.json()["error"]["details"] == {"scheduled_version": 2}
    assert api.get("/v1/workflows/tier-up").json()["enabled"] is False


@pytest.mark.parametrize("lang", ["es", "en"])
def test_console_switches_a_workflow_on_and_off(
    console: Any, api: TestClient, db: Database, clock: FixedClock, lang: str
) -> None:
    admin = _signed_in(console, "admin", lang)
    leaks = english_leaks if lang == "es" else spanish_leaks
    page = admin.get("/admin/workflows/tier-up")
    assert page.status_code == 200 and leaks(page.text) == []
    assert ("Activar" if lang == "es" else "Switch on") in page.text
    token = CSRF.search(page.text)
    assert token
    switched = admin.post(
        "/admin/workflows/tier-up/enabled", data={"csrf_token": token[1], "enabled": "true"}
    )
    assert switched.status_code == 303
    after = admin.get("/admin/workflows/tier-up")
    assert leaks(after.text) == []
    assert ("Flujo activado" if lang == "es" else "Workflow switched on") in after.text
    assert ("Desactivar" if lang == "es" else "Switch off") in after.text
    assert api.get("/v1/workflows/tier-up").json()["enabled"] is True
    admin.post(
        "/admin/workflows/tier-up/enabled", data={"csrf_token": token[1], "enabled": "false"}
    )
    assert api.get("/v1/workflows/tier-up").json()["enabled"] is False
    reader = _signed_in(console, "read_only", lang)
    forbidden = reader.post(
        "/admin/workflows/tier-up/enabled", data={"csrf_token": token[1], "enabled": "true"}
    )
    assert forbidden.status_code in (403, 400)
    assert api.get("/v1/workflows/tier-up").json()["enabled"] is False
