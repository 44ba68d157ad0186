"""Test fixtures: a real database (SQLite file or PostgreSQL), migrated once by Alembic.

``LEALTA_TEST_DATABASE_URL`` picks the database (``make test`` runs the suite once on each);
unset means a throwaway SQLite file. Each test starts from empty tables.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from lealta.apikeys import service as apikeys
from lealta.app import create_app
from lealta.config import Settings, get_settings
from lealta.kit.clock import Clock, FixedClock
from lealta.kit.db import Base, Database
from lealta.kit.migrate import upgrade
from lealta.staff import service as staff_service

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _url(tmp_root: Path) -> str:
    return os.environ.get("LEALTA_TEST_DATABASE_URL") or f"sqlite:///{tmp_root / 'test.db'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """PostgreSQL-only tests (real concurrent connections) are left out of the SQLite pass."""
    if os.environ.get("LEALTA_TEST_DATABASE_URL", "").startswith("postgresql"):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("postgres_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class _HashOnce(PasswordHasher):
    """argon2 with the production parameters, each distinct password hashed once per test
    session: the suite creates staff users with the same few passwords in hundreds of tests,
    and one hash costs about 60 ms. Checking a password against a stored hash (sign-in) is
    argon2's own, at full cost."""

    def __init__(self) -> None:
        super().__init__()
        self._hashes: dict[str | bytes, str] = {}

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        if salt is not None:
            return super().hash(password, salt=salt)
        if password not in self._hashes:
            self._hashes[password] = super().hash(password)
        return self._hashes[password]


@pytest.fixture(autouse=True, scope="session")
def _staff_password_hashes() -> Iterator[None]:
    original = staff_service._hasher
    staff_service._hasher = _HashOnce()
    yield
    staff_service._hasher = original


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Settings are read from the environment once per process (``get_settings`` is cached);
    a test that sets ``LEALTA_*`` variables (the CLI's tests) must not see settings cached by
    an earlier test for another database."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = _url(tmp_path_factory.mktemp("db"))
    upgrade(url)
    return url


_SESSION: dict[str, Database] = {}
_APPS: dict[str, FastAPI] = {}


@pytest.fixture(scope="session")
def _session_db(database_url: str) -> Iterator[Database]:
    database = Database(database_url, pool_size=60, max_overflow=10)
    _SESSION["db"] = database
    yield database
    _SESSION.clear()
    _APPS.clear()
    database.dispose()


def app_for(settings: Settings, *, db: Database, clock: Clock) -> FastAPI:
    """The application for these settings on the test database, built once per test session.

    FastAPI builds the routing state of an app's ~250 routes (a pydantic adapter per
    parameter) on the app's first requests: about 0.3 s per app, which made a quarter of the
    suite when every test built its own. An app holds no state of its own between tests
    beyond its clock (set here) and its API-key cache (dropped here); the tables are emptied
    by the ``db`` fixture. Any other database gets a fresh app."""
    if db is not _SESSION.get("db"):
        return create_app(settings, db=db, clock=clock)
    key = settings.model_dump_json()
    app = _APPS.get(key)
    if app is None:
        app = _APPS[key] = create_app(settings, db=db, clock=clock)
    app.state.clock = clock
    if hasattr(app.state, "api_key_cache"):
        del app.state.api_key_cache
    return app


def empty_tables(db: Database) -> None:
    """Empty every table and restart every identity, as if freshly migrated.

    On PostgreSQL a ``TRUNCATE`` of all 65 tables costs about 0.4 s (each table gets a new
    file), which made a third of the PostgreSQL pass; so one query finds the tables that
    hold rows, only those are truncated, and only the sequences that were used restart."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if db.dialect != "postgresql":
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
            return
        probe = " UNION ALL ".join(
            f"SELECT '{name}' WHERE EXISTS (SELECT 1 FROM {name})" for name in tables
        )
        full = list(conn.scalars(text(probe)))
        if full:
            conn.execute(text(f"TRUNCATE {', '.join(full)} CASCADE"))
        conn.execute(
            text(
                "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false)"
                " FROM pg_sequences WHERE last_value IS NOT NULL"
            )
        )


@pytest.fixture
def db(_session_db: Database) -> Database:
    empty_tables(_session_db)
    return _session_db


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, env="test", log_level="WARNING")


@pytest.fixture
def server_key(db: Database, clock: FixedClock) -> str:
    with db.unit_of_work() as session:
        _, key = apikeys.create(session, name="test-server", scope="server", now=clock.now())
    return key


@pytest.fixture
def read_key(db: Database, clock: FixedClock) -> str:
    with db.unit_of_work() as session:
        _, key = apikeys.create(session, name="test-read", scope="read", now=clock.now())
    return key


@pytest.fixture
def client(
    db: Database, clock: FixedClock, settings: Settings, server_key: str
) -> Iterator[TestClient]:
    app = app_for(settings, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


@pytest.fixture
def black_hole() -> Iterator[int]:
    """The port of a server that accepts TCP connections and never answers: the state of a
    database host whose server hangs, used as a PostgreSQL URL."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(256)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    server.close()
    for conn in held:
        conn.close()
