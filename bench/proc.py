"""Run one command as a subprocess and measure its wall time and its own peak memory.

``resource.getrusage(RUSAGE_CHILDREN)`` reports the largest child this process has ever
waited for — the bench starts servers, pgbench and importers, so that maximum would mix
them all. ``os.wait4`` returns the same ``rusage`` for the one child waited for, so each
figure gets the peak RSS of exactly its own process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Measured:
    returncode: int
    seconds: float
    max_rss_mb: float
    output: str
    timed_out: bool

    def tail(self, lines: int = 10) -> str:
        return "\n".join(self.output.strip().splitlines()[-lines:])


def run_measured(
    command: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float
) -> Measured:
    """Run ``command`` (own process group, output captured) and wait for it with ``wait4``.

    Past ``timeout`` seconds the whole group is killed and ``timed_out`` is set.
    """
    with tempfile.TemporaryFile(mode="w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(command), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        log.seek(0)
        output = log.read()
    # Linux reports ru_maxrss in KiB.
    return Measured(proc.returncode, seconds, usage.ru_maxrss / 1024, output, expired.is_set())
