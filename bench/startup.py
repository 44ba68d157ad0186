"""(ix) ``make run`` time to serve: ``lealta demo up && lealta run`` until ``/health`` says 200.

What ``make run`` does after its (warm, no-op) setup step, on a fresh data directory
(``LEALTA_DATA_DIR``, so the embedded SQLite default is a new file) and a free port
(``LEALTA_PORT``), with no other ``LEALTA_*`` variable set: the time a newcomer waits. The
same run then restarts ``lealta run`` alone on the loaded directory, the baseline that says
how much of the wait is the demo load and how much is starting the server.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from bench.server import LEALTA, ROOT, free_port, stop_group

TARGET_SECONDS = 15.0
POLL_SECONDS = 0.05


class StartupFailed(RuntimeError):
    """``lealta demo up`` failed or the server never answered ``/health``."""


@dataclass(frozen=True, slots=True)
class Startup:
    demo_seconds: float
    serve_seconds: float
    restart_seconds: float

    @property
    def total(self) -> float:
        return self.demo_seconds + self.serve_seconds


def _env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEALTA_")}
    env.update(LEALTA_DATA_DIR=str(data_dir), LEALTA_PORT=str(port), LEALTA_HOST="127.0.0.1")
    return env


def _serve_until_healthy(env: dict[str, str], port: int, log: IO[str], timeout: float) -> float:
    """Start ``lealta run``; seconds until the first 200 from ``/health``; stop it again."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(LEALTA), "run"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() - start < timeout:
                if proc.poll() is not None:
                    raise StartupFailed(f"lealta run exited with {proc.returncode}")
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        return time.perf_counter() - start
                except httpx.TransportError:
                    pass
                time.sleep(POLL_SECONDS)
        raise StartupFailed(f"no 200 from /health within {timeout:.0f} s")
    finally:
        stop_group(proc)


def time_to_serve(timeout: float = 300.0) -> Startup:
    """Measure ``lealta demo up`` then ``lealta run`` on a fresh data directory, then a restart."""
    with tempfile.TemporaryDirectory(prefix="lealta-bench-run-") as tmp:
        port = free_port()
        env = _env(Path(tmp) / "data", port)
        with (Path(tmp) / "server.log").open("w+") as log:
            start = time.perf_counter()
            demo = subprocess.run(
                [str(LEALTA), "demo", "up"], env=env, cwd=ROOT, capture_output=True, text=True,
                timeout=timeout,
            )  # fmt: skip
            demo_seconds = time.perf_counter() - start
            if demo.returncode != 0:
                tail = "\n".join((demo.stderr or demo.stdout).strip().splitlines()[-10:])
                raise StartupFailed(f"lealta demo up: exit {demo.returncode}\n{tail}")
            try:
                serve = _serve_until_healthy(env, port, log, timeout)
                restart = _serve_until_healthy(env, port, log, timeout)
            except StartupFailed as exc:
                log.seek(0)
                tail = "\n".join(log.read().strip().splitlines()[-10:])
                raise StartupFailed(f"{exc}\n{tail}") from None
    return Startup(demo_seconds, serve, restart)
