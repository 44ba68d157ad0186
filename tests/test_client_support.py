"""What the client tests share (no tests here): the real app served by uvicorn on a free
loopback port in a thread, and a fault-injecting HTTP proxy that lets a request reach the
server and then loses its answer, the failure that idempotency keys exist for."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
import yaml
from fastapi import FastAPI

from lealta.app import create_app
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from tests.conftest import T0

DEMO_FILE = Path(__file__).parents[1] / "examples" / "demo-programme.yaml"


T = TypeVar("T")


def run_async(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run an async test scenario on a loop of its own, in a thread, and return its result:
    the main thread may already run one (Playwright's sync API keeps its loop there for the
    browser tests)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def in_thread(work: Callable[[], T]) -> T:
    """``work()`` in a thread of its own, where no event loop runs (see :func:`run_async`)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


def demo_document(*, pending_days: int = 0) -> dict[str, Any]:
    """The demo programme; order points available at once unless ``pending_days``."""
    document: dict[str, Any] = yaml.safe_load(DEMO_FILE.read_text())
    document["pending"] = {"days": pending_days}
    return document


def at(days_ago: float) -> datetime:
    return T0 - timedelta(days=days_ago)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_app(database_url: str, db: Database) -> FastAPI:
    settings = Settings(database_url=database_url, env="test", log_level="WARNING")
    return create_app(settings, db=db, clock=FixedClock(T0))


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1:``port``; can be stopped and started again."""

    def __init__(self, app: FastAPI, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"uvicorn-{self.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "uvicorn did not stop"
        self._server = self._thread = None


def _read_message(stream: Any) -> bytes | None:
    """One HTTP/1.1 message (head and Content-Length body) from a binary file, or None at EOF."""
    head = b""
    while True:
        line = stream.readline()
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    length = 0
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = stream.read(length) if length else b""
    return head + body


class FaultProxy:
    """A loopback HTTP proxy in front of ``upstream_port``. Every request is forwarded and its
    request line recorded; for the next ``drop_answers`` requests the server's answer is
    swallowed and the client's connection closed, so the server has acted and the client
    never hears of it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.drop_answers = 0
        self.requests: list[str] = []
        self.dropped: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as incoming:
            while True:
                request = _read_message(incoming)
                if request is None:
                    return
                line = request.split(b"\r\n", 1)[0].decode()
                with self._lock:
                    self.requests.append(line)
                    drop = self.drop_answers > 0
                    if drop:
                        self.drop_answers -= 1
                        self.dropped.append(line)
                with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                    upstream.sendall(request)
                    with upstream.makefile("rb") as answers:
                        answer = _read_message(answers)
                if drop or answer is None:
                    return  # closing the connection unanswered
                conn.sendall(answer)
