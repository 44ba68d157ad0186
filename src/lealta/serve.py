"""Serving with several worker processes (``lealta run --workers N``), the default on PostgreSQL.

Each worker is a whole, stateless API process (its own connection pool, its own short caches);
the database holds every bit of state, so processes can be added until it saturates. On
PostgreSQL ``lealta run`` therefore starts one worker per CPU (at most
``MAX_DEFAULT_WORKERS``); on SQLite one, since every write takes the file's single write lock
and a second process would only queue behind it.

uvicorn's supervisor spawns each worker as a fresh interpreter and pings it over a pipe; a
worker that does not answer within ``timeout_worker_healthcheck`` seconds is killed and
replaced. A spawned worker first re-imports the ``lealta`` command and then the app; with
``PYTHONDONTWRITEBYTECODE=1`` and no bytecode on disk that is several seconds of compiling per
worker, longer than uvicorn's default 5 s on a busy machine, so the workers were killed and
respawned forever without a word. Here the parent compiles the bytecode once (into a cache
under the data directory that the workers read through ``PYTHONPYCACHEPREFIX``), the health
check waits ``LEALTA_WORKER_HEALTHCHECK_TIMEOUT`` seconds, and every worker start, death and
replacement is logged with its pid and the reason.
"""

from __future__ import annotations

import compileall
import importlib.util
import os
import sys
import time
from pathlib import Path

from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from lealta.kit.logging import get_logger

log = get_logger("lealta.serve")

MAX_DEFAULT_WORKERS = 4


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(database_url: str) -> int:
    """Worker processes when neither ``--workers`` nor ``LEALTA_WORKERS`` says: several on
    PostgreSQL, where processes scale until the database saturates; one on SQLite."""
    if database_url.startswith("sqlite"):
        return 1
    return min(available_cpus(), MAX_DEFAULT_WORKERS)


def worker_count(requested: int | None, configured: int | None, database_url: str) -> int:
    """``--workers`` wins over ``LEALTA_WORKERS``, which wins over :func:`default_workers`."""
    for count in (requested, configured):
        if count is not None:
            return max(1, count)
    return default_workers(database_url)


def precompile_loaded_modules(cache_dir: Path) -> int:
    """Write bytecode for every module this process has imported; return how many files.

    Only when the interpreter does not write bytecode itself (``PYTHONDONTWRITEBYTECODE``):
    then the cache goes to ``cache_dir``, and ``PYTHONPYCACHEPREFIX`` points the workers (which
    inherit the environment) at it. ``compileall`` writes even when bytecode writing is off, and
    skips files whose bytecode is up to date, so a restart costs nothing.
    """
    if not sys.dont_write_bytecode:
        return 0  # the imports above already wrote their bytecode next to the sources
    if sys.pycache_prefix is None:
        cache_dir = cache_dir.resolve()
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("bytecode_cache_unavailable", path=str(cache_dir), error=str(exc))
            return 0
        sys.pycache_prefix = str(cache_dir)
        os.environ["PYTHONPYCACHEPREFIX"] = str(cache_dir)
    compiled = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        cached = importlib.util.cache_from_source(source)
        if compileall.compile_file(source, quiet=2, legacy=False) and os.path.exists(cached):
            compiled += 1
    return compiled


class Supervisor(Multiprocess):
    """uvicorn's supervisor, saying which worker started, died or hung, and why."""

    def init_processes(self) -> None:
        super().init_processes()
        log.info("workers_started", pids=[p.pid for p in self.processes])

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        timeout = self.config.timeout_worker_healthcheck
        for idx, process in enumerate(self.processes):
            exited = not process.process.is_alive()
            if not exited and process.ping(timeout):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker_failed_to_start", pid=process.pid, exitcode=process.exitcode)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            replacement = Process(self.config, self.sockets)
            replacement.start()
            self.processes[idx] = replacement
            log.warning(
                "worker_restarted",
                pid=process.pid,
                reason="exited" if exited else f"no answer to the health check in {timeout} s",
                exitcode=process.exitcode if exited else None,
                new_pid=replacement.pid,
            )


def serve_workers(config: Config, cache_dir: Path) -> None:
    """Bind the socket once and run ``config.workers`` worker processes under the supervisor."""
    import lealta.app  # noqa: F401 - imported so its modules are compiled for the workers

    start = time.perf_counter()
    compiled = precompile_loaded_modules(cache_dir)
    if compiled:
        log.info("bytecode_ready", files=compiled, seconds=round(time.perf_counter() - start, 2))
    sock = config.bind_socket()
    try:
        Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()
