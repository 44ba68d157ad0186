"""The server model of ``lealta run``: how many worker processes, and that each one serves.

The subprocess test starts the real command on the test database (several workers by
default on PostgreSQL, one on SQLite) and finds out which process answered each request
from ``/proc``: the server side of every TCP connection is a socket inode, and exactly one
process holds a file descriptor on it. No endpoint has to reveal a pid for this.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from lealta.app import create_app, serving_app
from lealta.config import Settings, get_settings
from lealta.kit.db import Database, autovacuum_off
from lealta.serve import MAX_DEFAULT_WORKERS, available_cpus, default_workers, worker_count

ROOT = Path(__file__).resolve().parent.parent
LEALTA = ROOT / ".venv" / "bin" / "lealta"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lealta"
ESTABLISHED = "01"


def test_default_is_one_worker_per_cpu_up_to_four_on_postgresql_and_one_on_sqlite() -> None:
    assert default_workers(PG_URL) == min(available_cpus(), MAX_DEFAULT_WORKERS)
    assert default_workers("postgresql://db.internal/lealta") == default_workers(PG_URL)
    assert default_workers("sqlite:///data/lealta.db") == 1


def test_flag_wins_over_setting_which_wins_over_the_default() -> None:
    assert worker_count(3, 2, PG_URL) == 3
    assert worker_count(None, 2, PG_URL) == 2
    assert worker_count(None, 3, "sqlite:///data/lealta.db") == 3
    assert worker_count(1, None, PG_URL) == 1
    assert worker_count(None, None, PG_URL) == default_workers(PG_URL)


def test_workers_setting_is_unset_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEALTA_WORKERS", raising=False)
    assert Settings(_env_file=None).workers is None
    monkeypatch.setenv("LEALTA_WORKERS", "3")
    assert Settings(_env_file=None).workers == 3
    monkeypatch.setenv("LEALTA_WORKERS", "0")
    with pytest.raises(ValueError, match="workers"):
        Settings(_env_file=None)


# --- the real command -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _worker_pids(supervisor: int) -> set[int]:
    """Children of ``supervisor`` started by multiprocessing's spawn (not its resource tracker)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == supervisor and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server's end of the connection from ``client_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if (
                state == ESTABLISHED
                and int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                return inode
    return None


def _holder(inode: str, pids: set[int]) -> int | None:
    """Which of ``pids`` has a file descriptor on socket ``inode``."""
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def _health_answered_by(port: int, pids: set[int]) -> int | None:
    """GET /health on a new connection; the pid that answered 200 (None: no 200 or unknown)."""
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None
    with conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                head += chunk
        except OSError:
            return None
        if not head.startswith(b"HTTP/1.1 200"):
            return None
        inode = _server_socket_inode(port, conn.getsockname()[1])  # still open: keep-alive
        return _holder(inode, pids) if inode else None


@contextmanager
def _lealta_run(database_url: str, data_dir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEALTA_")}
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        LEALTA_DATABASE_URL=database_url,
        LEALTA_DATA_DIR=str(data_dir),
        LEALTA_LOG_LEVEL="WARNING",
    )
    log = (data_dir.parent / "server.log").open("wb")
    server = subprocess.Popen(
        [str(LEALTA), "run", "--port", str(port), "--no-migrate"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield server
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()


def test_run_serves_from_its_default_number_of_processes(tmp_path: Path, database_url: str) -> None:
    """On PostgreSQL (a machine with 2+ CPUs) several worker pids answer /health; on SQLite
    the one process serves alone."""
    expected = default_workers(database_url)
    port = _free_port()
    log = tmp_path / "server.log"
    with _lealta_run(database_url, tmp_path / "data", port) as server:
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        answered: set[int] = set()
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()
            workers = _worker_pids(server.pid) if expected > 1 else {server.pid}
            if len(workers) == expected:
                pid = _health_answered_by(port, workers)
                if pid is not None:
                    answered.add(pid)
                if answered == workers:
                    break
            time.sleep(0.05)
        if expected == 1:
            assert _worker_pids(server.pid) == set()  # no supervisor: it serves itself
    assert len(workers) == expected, log.read_text()
    assert answered == workers, (answered, workers, log.read_text())
    # The operator is told when PostgreSQL will not vacuum (this machine's CI cluster runs so).
    assert ("autovacuum off" in log.read_text()) == autovacuum_off(database_url)


def test_autovacuum_off_reads_the_servers_setting(db: Database, database_url: str) -> None:
    if db.dialect != "postgresql":
        assert autovacuum_off(database_url) is False
        return
    with db.unit_of_work(write=False) as session:
        setting = session.execute(text("SHOW autovacuum")).scalar_one()
    assert autovacuum_off(database_url) is (setting == "off")
    # An unreachable server is advice not given, never an error at start-up.
    assert autovacuum_off("postgresql+psycopg://nobody@127.0.0.1:1/nowhere") is False


def test_a_served_app_keeps_the_collector_off_its_start_up_objects(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lealta run`` serves :func:`serving_app`: once started, what exists lives as long as
    the process, and the cyclic collector's full passes (100-190 ms each on a serving process,
    during which it answers nothing) stop walking it. An app made for a test or a tool
    leaves the collector alone."""
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    gc.unfreeze()  # what a command run earlier in this process may have frozen
    try:
        with TestClient(create_app(Settings(database_url=database_url))) as plain:
            assert plain.get("/health").status_code == 200
        assert gc.get_freeze_count() == 0
        with TestClient(serving_app()) as served:
            assert served.get("/health").status_code == 200
            frozen = gc.get_freeze_count()
        assert frozen > 100_000, frozen  # the modules, the application, its routes and schemas
    finally:
        gc.unfreeze()
        get_settings.cache_clear()
