"""The job queue from outside: ``/v1/jobs`` (list, stats, retry, discard), the console's Jobs
page in both languages with its roles and forms, and the ``lealta worker`` / ``lealta jobs``
commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import Settings, get_settings
from lealta.jobs import queue
from lealta.jobs.tasks import Backoff
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import AuditLog, Job
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _enqueue(db: Database, task: str = "demo.task", **kw: Any) -> int:
    with db.unit_of_work() as session:
        return queue.enqueue(session, task, kw.pop("args", {"n": 1}), now=T0, **kw)


def _kill(db: Database, job_id: int, error: str = "ValueError: the shop is down") -> None:
    """Claim and fail ``job_id`` until it is dead (max_attempts=1 jobs die at once)."""
    with db.unit_of_work() as session:
        claimed = queue.claim(session, "w", now=T0, limit=50, lease=timedelta(minutes=1))
        (held,) = [c for c in claimed if c.id == job_id]
        queue.release(session, [c.id for c in claimed if c.id != job_id], worker="w")
        queue.fail(
            session, job_id, worker="w", attempt=held.attempt, now=T0, error=error,
            backoff=Backoff(), give_up=True,
        )  # fmt: skip


def _status(db: Database, job_id: int) -> str:
    with db.unit_of_work(write=False) as session:
        return queue.get(session, job_id).status


# --- the API -------------------------------------------------------------------------------


def test_list_filter_and_page(client: TestClient, db: Database) -> None:
    ids = [_enqueue(db, "a" if i % 2 else "b") for i in range(5)]
    dead = _enqueue(db, "c", max_attempts=1)
    _kill(db, dead)
    page = client.get("/v1/jobs", params={"limit": 2})
    assert page.status_code == 200, page.text
    body = page.json()
    assert [j["id"] for j in body["items"]] == [dead, ids[4]]
    assert body["next_cursor"]
    rest = client.get("/v1/jobs", params={"limit": 10, "cursor": body["next_cursor"]}).json()
    assert [j["id"] for j in rest["items"]] == ids[::-1][1:] and rest["next_cursor"] is None
    failed = client.get("/v1/jobs", params={"status": "dead"}).json()["items"]
    assert [(j["id"], j["task"], j["last_error"]) for j in failed] == [
        (dead, "c", "ValueError: the shop is down")
    ]
    only_a = client.get("/v1/jobs", params={"task": "a"}).json()["items"]
    assert {j["task"] for j in only_a} == {"a"} and len(only_a) == 2
    job = client.get(f"/v1/jobs/{ids[0]}").json()
    assert job["status"] == "queued" and job["args"] == {"n": 1} and job["max_attempts"] == 8
    for bad, code in (
        ({"status": "lost"}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"cursor": "nope"}, "invalid_cursor"),
    ):
        refused = client.get("/v1/jobs", params=bad)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == code, refused.text


def test_stats(client: TestClient, db: Database) -> None:
    _enqueue(db, "a", run_at=T0 - timedelta(minutes=3))
    _enqueue(db, "a", run_at=T0 + timedelta(hours=1))
    _kill(db, _enqueue(db, "b", max_attempts=1))
    stats = client.get("/v1/jobs/stats").json()
    assert stats["counts"]["queued"] == 2 and stats["counts"]["dead"] == 1
    assert (stats["due"], stats["scheduled"]) == (1, 1)
    assert stats["oldest_due_seconds"] == 180.0
    assert {(d["task"], d["status"], d["count"]) for d in stats["by_task"]} == {
        ("a", "queued", 2), ("b", "dead", 1),
    }  # fmt: skip


def test_retry_and_discard_are_audited_and_idempotent_by_state(
    client: TestClient, db: Database
) -> None:
    job_id = _enqueue(db, max_attempts=1)
    _kill(db, job_id)
    retried = client.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("queued", 0)
    assert client.post(f"/v1/jobs/{job_id}/retry").json()["status"] == "queued"
    discarded = client.post(f"/v1/jobs/{job_id}/discard")
    assert discarded.json()["status"] == "discarded"
    assert client.post(f"/v1/jobs/{job_id}/discard").status_code == 200
    with db.unit_of_work(write=False) as session:
        actions = session.execute(
            select(AuditLog.action, AuditLog.target_id, AuditLog.actor).order_by(AuditLog.id)
        ).all()
    assert [a for a, _, _ in actions] == ["job.retry", "job.retry", "job.discard", "job.discard"]
    assert {(t, who) for _, t, who in actions} == {(str(job_id), "apikey:test-server")}


def test_refusals(client: TestClient, db: Database, read_key: str) -> None:
    job_id = _enqueue(db)
    with db.unit_of_work() as session:
        queue.claim(session, "w", now=T0, limit=1, lease=timedelta(minutes=1))
    running = client.post(f"/v1/jobs/{job_id}/discard")
    assert running.status_code == 409 and running.json()["error"]["code"] == "job_running"
    missing = client.post("/v1/jobs/987654/retry")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
    assert client.get("/v1/jobs/0").status_code == 422
    assert client.get(f"/v1/jobs/{2**63}").status_code == 422
    reader = {"Authorization": f"Bearer {read_key}"}
    for method, path in (("get", "/v1/jobs"), ("get", "/v1/jobs/stats"),
                         ("post", f"/v1/jobs/{job_id}/retry")):  # fmt: skip
        refused = client.request(method, path, headers=reader)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "insufficient_scope"
    anonymous = TestClient(client.app, raise_server_exceptions=False)
    assert anonymous.get("/v1/jobs").status_code == 401


def test_the_document_describes_the_jobs_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/jobs", "/v1/jobs/stats", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/retry",
            "/v1/jobs/{job_id}/discard"} <= set(paths)  # fmt: skip
    retry = paths["/v1/jobs/{job_id}/retry"]["post"]
    assert {"200", "404", "409"} <= set(retry["responses"])
    assert retry["security"] == [{"bearer": []}, {"apiKey": []}]


# --- the console page ----------------------------------------------------------------------

Console = Callable[[str, str], TestClient]


@pytest.fixture
def console(db: Database, clock: FixedClock, settings: Settings) -> Iterator[Console]:
    with db.unit_of_work() as session:
        create_staff(
            session, ("admin", "support", "read_only"), now=clock.now(), domain="shop.test"
        )
    app = app_for(settings, db=db, clock=clock)
    clients: list[TestClient] = []

    def make(role: str, lang: str = "en") -> TestClient:
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        client.cookies.set("lealta_lang", lang)
        token = CSRF.search(client.get("/admin/login").text)
        assert token
        signed = client.post(
            "/admin/login",
            data={"email": f"{role}@shop.test", "password": PASSWORD, "csrf_token": token[1]},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _rich_queue(db: Database) -> dict[str, int]:
    ids = {
        "waiting": _enqueue(db, "points.catch_up"),
        "later": _enqueue(db, "outbox.deliver", run_at=T0 + timedelta(hours=2)),
        "dead": _enqueue(db, "webhooks.deliver", max_attempts=1),
        "done": _enqueue(db, "jobs.prune"),
    }
    _kill(db, ids["dead"], "ConnectionError: https://shop.example refused\n\nTraceback ...")
    with db.unit_of_work() as session:
        claimed = queue.claim(session, "w", now=T0, limit=10, lease=timedelta(minutes=1))
        (c,) = [c for c in claimed if c.id == ids["done"]]
        queue.complete(session, c.id, worker="w", attempt=c.attempt, now=T0)
        queue.release(session, [c.id for c in claimed if c.id != ids["done"]], worker="w")
    return ids


def test_the_jobs_page_in_both_languages(console: Console, db: Database) -> None:
    ids = _rich_queue(db)
    for lang, leaks in (("es", english_leaks), ("en", spanish_leaks)):
        client = console("admin", lang)
        page = client.get("/admin/jobs")
        assert page.status_code == 200, page.text
        assert f'<html lang="{lang}">' in page.text
        assert leaks(page.text) == [], (lang, leaks(page.text))
        assert 'href="/admin/jobs" aria-current="page"' in page.text
        assert "ConnectionError: https://shop.example refused" in page.text
        assert re.search(r'data-kpi="dead"><a [^>]*>1<', page.text)
        assert re.search(r'data-kpi="due">1<', page.text)
        assert f'action="/admin/jobs/{ids["dead"]}/retry"' in page.text
        assert f'action="/admin/jobs/{ids["done"]}/retry"' not in page.text  # succeeded
        filtered = client.get("/admin/jobs", params={"status": "dead"})
        assert leaks(filtered.text) == []
        assert filtered.text.count('data-job="') == 1
    spanish = console("admin", "es").get("/admin/jobs").text
    assert "Fallidas definitivamente" in spanish and "Tareas" in spanish


def test_only_admins_see_and_act(console: Console, db: Database) -> None:
    job_id = _enqueue(db, max_attempts=1)
    _kill(db, job_id)
    for role in ("support", "read_only"):
        client = console(role, "en")
        assert client.get("/admin/jobs").status_code == 403
        assert 'href="/admin/jobs"' not in client.get("/admin").text
        token = CSRF.search(client.get("/admin").text)
        assert token
        refused = client.post(f"/admin/jobs/{job_id}/retry", data={"csrf_token": token[1]})
        assert refused.status_code == 403
    assert _status(db, job_id) == "dead"
    admin = console("admin", "en")
    assert 'href="/admin/jobs"' in admin.get("/admin").text


def test_retry_and_discard_from_the_page(console: Console, db: Database) -> None:
    job_id = _enqueue(db, max_attempts=1)
    _kill(db, job_id)
    client = console("admin", "en")
    page = client.get("/admin/jobs", params={"status": "dead"}).text
    token = CSRF.search(page)
    assert token
    no_csrf = client.post(f"/admin/jobs/{job_id}/retry", data={})
    assert no_csrf.status_code == 403 and _status(db, job_id) == "dead"
    done = client.post(
        f"/admin/jobs/{job_id}/retry",
        data={"csrf_token": token[1], "status": "dead", "task": ""},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin/jobs?status=dead"
    assert _status(db, job_id) == "queued"
    shown = client.get(done.headers["location"]).text
    assert f"Job {job_id} will run now." in shown
    gone = client.post(
        f"/admin/jobs/{job_id}/discard", data={"csrf_token": token[1]}, follow_redirects=False
    )
    assert gone.status_code == 303 and _status(db, job_id) == "discarded"
    with db.unit_of_work() as session:
        queue.retry(session, job_id, now=T0)
        queue.claim(session, "w", now=T0, limit=1, lease=timedelta(minutes=1))
    busy = client.post(f"/admin/jobs/{job_id}/discard", data={"csrf_token": token[1]})
    assert busy.status_code == 409
    assert "The job is running; wait for it to finish or fail." in busy.text
    lost = client.post("/admin/jobs/99999/retry", data={"csrf_token": token[1]})
    assert lost.status_code == 404 and "This job no longer exists." in lost.text


# --- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def cli(db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    monkeypatch.setenv("LEALTA_WORKER_POLL_SECONDS", "0.05")
    monkeypatch.setenv("COLUMNS", "250")  # Rich tables unwrapped
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_lists_retries_and_discards(cli: CliRunner, db: Database) -> None:
    job_id = _enqueue(db, "webhooks.deliver", max_attempts=1)
    _kill(db, job_id)
    listed = cli.invoke(cli_app, ["jobs", "list", "--status", "dead"])
    assert listed.exit_code == 0, listed.output
    assert "webhooks.deliver" in listed.output and "ValueError: the shop is down" in listed.output
    assert cli.invoke(cli_app, ["jobs", "retry", str(job_id)]).exit_code == 0
    assert _status(db, job_id) == "queued"
    assert cli.invoke(cli_app, ["jobs", "discard", str(job_id)]).exit_code == 0
    assert _status(db, job_id) == "discarded"
    missing = cli.invoke(cli_app, ["jobs", "retry", "424242"])
    assert missing.exit_code == 4 and "job_not_found" in missing.output
    bad = cli.invoke(cli_app, ["jobs", "list", "--status", "lost"])
    assert bad.exit_code == 2 and "invalid_status" in bad.output
    with db.unit_of_work(write=False) as session:
        actors = set(session.scalars(select(AuditLog.actor)))
    assert actors == {"cli"}


def _lealta(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``lealta …`` as a process of its own (the worker configures logging for the process,
    which must not leak into this one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEALTA_")}
    env.update(
        LEALTA_DATABASE_URL=database_url.replace("postgresql+psycopg://", "postgresql://"),
        LEALTA_WORKER_POLL_SECONDS="0.05",
        LEALTA_LOG_LEVEL="WARNING",
    )
    return subprocess.run(
        [str(Path(sys.executable).parent / "lealta"), *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_worker_until_idle_runs_the_due_jobs(db: Database, database_url: str) -> None:
    job_id = _enqueue(db, "jobs.prune", args={})
    ran = _lealta(database_url, "worker", "--until-idle", "--concurrency", "1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "jobs succeeded" in ran.stdout
    assert _status(db, job_id) == "succeeded"
    with db.unit_of_work(write=False) as session:
        done = session.execute(select(Job.task, Job.status)).all()
    # The periodic ticks were enqueued and run (the points catch-up on an empty database).
    assert ("points.catch_up", "succeeded") in done
    missing = _lealta(database_url, "worker", "--once", "--import", "lealta.no_such_module")
    assert missing.returncode == 2  # a usage error
    assert "module_not_found" in missing.stderr and "lealta.no_such_module" in missing.stderr


def test_jobs_run_still_catches_up_at_once(cli: CliRunner) -> None:
    done = cli.invoke(cli_app, ["jobs", "run", "--at", "2026-01-05T12:00:00Z"])
    assert done.exit_code == 0, done.output
    assert "released 0 pts" in done.output
