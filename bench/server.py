"""Start the real ``lealta run`` server as a subprocess and wait until it is ready."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

from lealta.apikeys import service as apikeys
from lealta.kit.db import Database
from lealta.kit.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
LEALTA = Path(sys.executable).parent / "lealta"


@dataclass(frozen=True, slots=True)
class Server:
    base_url: str
    api_key: str
    workers: int
    database_url: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_database(url: str) -> str:
    """Migrate ``url`` and return a fresh ``server`` API key for it."""
    upgrade(url)
    database = Database(url, pool_size=1, max_overflow=0)
    try:
        with database.unit_of_work() as session:
            _, key = apikeys.create(session, name="bench", scope="server", now=datetime.now(UTC))
    finally:
        database.dispose()
    return key


def lealta_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEALTA_")}
    env.update(
        LEALTA_DATABASE_URL=database_url,
        LEALTA_LOG_LEVEL="WARNING",
        **extra,
    )
    return env


@contextmanager
def running_server(database_url: str, *, workers: int, timeout: float = 60.0) -> Iterator[Server]:
    """Migrate, mint a key, run ``lealta run`` on a free port; stop its process group after."""
    key = prepare_database(database_url)
    port = free_port()
    env = lealta_env(database_url, LEALTA_WORKERS=str(workers))
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(
            [str(LEALTA), "run", "--host", "127.0.0.1", "--port", str(port),
             "--workers", str(workers), "--no-migrate"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_ready(base_url, proc, log, timeout)
            yield Server(base_url, key, workers, database_url)
        except Exception as exc:
            exc.add_note(f"server log (last lines):\n{_tail(log)}")
            raise
        finally:
            stop_group(proc)


def _wait_ready(base_url: str, proc: subprocess.Popen[bytes], log: IO[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
            try:
                r = client.get("/ready")
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout:.0f}s ({last}):\n{_tail(log)}")


def _tail(log: IO[str], lines: int = 30) -> str:
    log.flush()
    log.seek(0)
    return "\n".join(log.read().splitlines()[-lines:])


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``), then KILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
