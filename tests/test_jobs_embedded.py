"""The embedded default acts by itself: with the in-process worker of ``lealta run`` (the app's
lifespan), an order's pending points become available once the return window has passed,
with no command run; the app's clock drives the worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.app import create_app
from lealta.config import Settings
from lealta.demo.programme import DEMO_PROGRAMME_TEXT
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Job
from tests.conftest import T0, app_for
from tests.factories import order_paid


def _until(check: Callable[[], Any], seconds: float = 15.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_the_in_process_worker_is_on_by_default_on_sqlite_only() -> None:
    sqlite = Settings(database_url="sqlite:///data/x.db", env="development")
    assert sqlite.runs_in_process_worker
    assert not Settings(database_url="postgresql://u@h/db").runs_in_process_worker
    assert not Settings(database_url="sqlite:///data/x.db", env="test").runs_in_process_worker
    assert Settings(
        database_url="postgresql://u@h/db", in_process_worker=True
    ).runs_in_process_worker
    assert not Settings(
        database_url="sqlite:///x.db", in_process_worker=False
    ).runs_in_process_worker


def test_pending_points_become_available_after_the_return_window_on_their_own(
    db: Database, database_url: str, server_key: str
) -> None:
    clock = FixedClock(T0)
    settings = Settings(
        database_url=database_url,
        env="test",
        log_level="WARNING",
        in_process_worker=True,
        worker_poll_seconds=0.05,
    )
    app = app_for(settings, db=db, clock=clock)
    with TestClient(app) as client:
        assert isinstance(app.state.jobs_worker, Worker)
        client.headers["Authorization"] = f"Bearer {server_key}"
        document = yaml.safe_load(DEMO_PROGRAMME_TEXT)
        assert document["pending"]["days"] == 14
        applied = client.put("/v1/programme", json=document)
        assert applied.status_code == 200, applied.text
        paid = client.post(
            "/v1/events",
            json=order_paid("evt-1", "cust-1", "ORD-1", "120.50", T0 - timedelta(minutes=1)),
        )
        assert paid.status_code == 201, paid.text

        def balance() -> dict[str, Any]:
            answer = client.get("/v1/members/cust-1/balance")
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body

        before = balance()
        assert before["pending"] > 0 and before["available"] == 0
        # The worker ran the points job at T0 already: nothing was due.
        assert _until(lambda: _succeeded_ticks(db) >= 1)
        assert balance() == before

        clock.set(T0 + timedelta(days=14, minutes=2))
        after = _until(lambda: (b := balance())["pending"] == 0 and b)
        assert after, balance()
        assert after["available"] == before["pending"]
    # The lifespan stopped the worker with the app.
    assert not app.state.jobs_worker._threads


def _succeeded_ticks(db: Database) -> int:
    with db.unit_of_work(write=False) as session:
        return len(
            session.scalars(
                select(Job.id).where(Job.task == "points.catch_up", Job.status == "succeeded")
            ).all()
        )


def test_the_served_app_starts_its_worker_from_the_settings(tmp_path: Any) -> None:
    """What ``lealta run`` does: the factory reads the settings; on SQLite, outside tests,
    the app runs a worker for as long as it serves."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", env="development")
    from lealta.kit.migrate import upgrade

    upgrade(settings.database_url)
    app = create_app(settings)
    with TestClient(app):
        worker = app.state.jobs_worker
        assert isinstance(worker, Worker) and not worker.stopping
    assert worker.stopping
