"""Operations hardening: bounded database waits, /health and /ready, multi-process serving.

The "black hole" is a real TCP server on loopback that accepts connections and never says a
word, used as the PostgreSQL URL: the state of a database host whose server hangs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from lealta.app import create_app
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database

ROOT = Path(__file__).resolve().parents[1]
WELL_FORMED_KEY = "lea_nosuchkey_0123456789abcdef"


def hole_settings(port: int, **extra: object) -> Settings:
    values: dict[str, object] = {
        "database_url": f"postgresql://lealta@127.0.0.1:{port}/lealta",
        "env": "test",
        "log_level": "WARNING",
        "db_connect_timeout": 1,
        "db_pool_timeout": 1,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def assert_db_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["error"]["code"] == "database_unavailable"


# --- a database that accepts connections and never answers --------------------------------


def test_black_hole_database_fails_fast_with_503(black_hole: int) -> None:
    app = create_app(hole_settings(black_hole))
    with TestClient(app, raise_server_exceptions=False) as client:
        start = time.perf_counter()
        response = client.get(
            "/v1/members/alice", headers={"Authorization": f"Bearer {WELL_FORMED_KEY}"}
        )
        elapsed = time.perf_counter() - start
    assert_db_unavailable(response)
    # libpq counts the connect timeout in whole seconds, at least 2; psycopg's default is 130.
    assert elapsed < 10


def test_black_hole_page_is_a_styled_503(black_hole: int) -> None:
    app = create_app(hole_settings(black_hole))
    with TestClient(app, raise_server_exceptions=False) as client:
        form = client.get("/me/login?lang=es")
        match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert match is not None
        start = time.perf_counter()
        response = client.post(
            "/me/login", data={"email": "ana@example.com", "csrf_token": match.group(1)}
        )
        elapsed = time.perf_counter() - start
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.headers["content-type"].startswith("text/html")
    assert "La base de datos está ocupada o no responde" in response.text
    assert "database_unavailable" in response.text
    assert elapsed < 10


def test_ready_is_503_without_naming_the_database(black_hole: int) -> None:
    app = create_app(hole_settings(black_hole))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert "127.0.0.1" not in response.text
    assert str(black_hole) not in response.text
    assert "timeout" not in response.text.lower()


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a real uvicorn server (its own event loop and 40-thread pool) in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def test_health_answers_while_every_worker_thread_waits_on_the_database(
    black_hole: int,
) -> None:
    # 45 requests against a 40-thread pool: every thread waits on the database for 6 s.
    app = create_app(
        hole_settings(
            black_hole, db_connect_timeout=6, db_pool_timeout=6, db_pool_size=5, db_max_overflow=0
        )
    )
    done: list[float] = []
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)

    with served(app) as base, httpx.Client(base_url=base, timeout=60, limits=limits) as http:

        def stuck() -> httpx.Response:
            response = http.get(
                "/v1/members/alice", headers={"Authorization": f"Bearer {WELL_FORMED_KEY}"}
            )
            done.append(time.monotonic())
            return response

        with ThreadPoolExecutor(45) as pool:
            start = time.monotonic()
            futures = [pool.submit(stuck) for _ in range(45)]
            time.sleep(2.0)
            asked = time.monotonic()
            health = http.get("/health")
            latency = time.monotonic() - asked
            assert done == [], "the database requests should still be waiting"
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}
            # A /health run in the thread pool would wait for a thread: about 4 s more.
            assert latency < 2.0
            responses = [f.result() for f in futures]
            finished = time.monotonic() - start
    for response in responses:
        assert_db_unavailable(response)
    # Two rounds of 6 s at most (the five requests beyond the 40 threads queue for one).
    assert finished < 40


# --- pool exhaustion and statement timeouts (the real test database) --------------------


def test_exhausted_pool_is_503_then_recovers(
    database_url: str, db: Database, server_key: str, settings: Settings, clock: FixedClock
) -> None:
    small = Database(database_url, pool_size=1, max_overflow=0, pool_timeout=0.5)
    try:
        app = create_app(settings, db=small, clock=clock)
        with TestClient(app, raise_server_exceptions=False) as client:
            client.headers["Authorization"] = f"Bearer {server_key}"
            held = [engine.connect() for engine in small.engines]  # every pool exhausted
            try:
                start = time.perf_counter()
                response = client.get("/v1/members/nobody")
                elapsed = time.perf_counter() - start
            finally:
                for connection in held:
                    connection.close()
            assert_db_unavailable(response)
            assert 0.4 < elapsed < 5
            # The connection is back in the pool: the same request reaches the database.
            again = client.get("/v1/members/nobody")
            assert again.status_code == 404
            assert again.json()["error"]["code"] == "member_not_found"
    finally:
        small.dispose()


@contextmanager
def members_write_lock(db: Database) -> Iterator[None]:
    """Hold, in another connection for at most 15 s, what a member enrolment waits for."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.unit_of_work() as session:
            if db.dialect == "postgresql":
                session.execute(text("LOCK TABLE members IN EXCLUSIVE MODE"))
            else:
                session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock
            locked.set()
            release.wait(15)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join()


def test_statement_timeout_bounds_a_lock_wait_with_503(
    database_url: str, db: Database, server_key: str, settings: Settings, clock: FixedClock
) -> None:
    bounded = Database(database_url, statement_timeout=1)
    try:
        app = create_app(settings, db=bounded, clock=clock)
        with TestClient(app, raise_server_exceptions=False) as client:
            client.headers["Authorization"] = f"Bearer {server_key}"
            with members_write_lock(db):
                start = time.perf_counter()
                response = client.post(
                    "/v1/members",
                    json={"external_id": "ana"},
                    headers={"Idempotency-Key": "enrol-ana"},
                )
                elapsed = time.perf_counter() - start
            assert_db_unavailable(response)
            assert 0.9 < elapsed < 8
            # Nothing half-written: the same request now succeeds.
            again = client.post(
                "/v1/members", json={"external_id": "ana"}, headers={"Idempotency-Key": "enrol-ana"}
            )
            assert again.status_code == 201, again.text
    finally:
        bounded.dispose()


@pytest.mark.postgres_only
def test_statement_timeout_cancels_a_slow_query(database_url: str) -> None:
    bounded = Database(database_url, statement_timeout=0.5)
    try:
        with bounded.unit_of_work(write=False) as session:
            # Set once per connection in the startup packet, not by a statement per request.
            assert session.execute(text("SHOW statement_timeout")).scalar_one() == "500ms"
        start = time.perf_counter()
        with pytest.raises(OperationalError) as caught, bounded.unit_of_work() as session:
            session.execute(text("SELECT pg_sleep(5)"))
        assert time.perf_counter() - start < 3
        assert type(caught.value.orig).__name__ == "QueryCanceled"
    finally:
        bounded.dispose()


def test_settings_bound_every_database_wait() -> None:
    settings = Settings(env="test")
    assert (settings.db_connect_timeout, settings.db_statement_timeout) == (5, 30)
    assert settings.db_pool_timeout == 10
    app = create_app(Settings(env="test", database_url="postgresql://u@127.0.0.1:1/x"))
    assert app.state.db.engine.pool.timeout() == 10


# --- lealta run --workers 2 ----------------------------------------------------------------


def test_two_workers_start_and_stay_up_on_a_busy_machine(tmp_path: Path, database_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEALTA_")}
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        LEALTA_DATABASE_URL=database_url,
        LEALTA_DATA_DIR=str(tmp_path / "data"),
        LEALTA_LOG_FORMAT="json",
        LEALTA_LOG_LEVEL="INFO",
    )
    stderr = tmp_path / "server.log"
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    with stderr.open("wb") as log:
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/lealta"), "run", "--workers", "2", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, stderr.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.5)
        burner.kill()
        # Longer than uvicorn's default 5 s health check: a respawn loop would show by now.
        for _ in range(24):
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
            time.sleep(0.5)
        time.sleep(1)  # both workers finish their start-up log lines
    finally:
        burner.kill()
        burner.wait()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    events = [json.loads(line) for line in stderr.read_text().splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "worker_restarted" not in names, events
    supervised = next(e["pids"] for e in events if e["event"] == "workers_started")
    booted = sorted(e["pid"] for e in events if e["event"] == "worker_started")
    assert len(supervised) == 2
    assert booted == sorted(supervised), events
