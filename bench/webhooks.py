"""(webhooks) Lag from commit to webhook delivery on PostgreSQL, at a steady ingest rate.

Each run: a throwaway database, migrated; an HTTP receiver on loopback (a threaded
``http.server`` answering 200) registered as a ``*`` endpoint; one ``lealta worker`` process
(``--concurrency 4``) started and waited for. Then ``order.paid`` domain events are committed
one per transaction at a steady ``rate`` per second (``emit()`` in its own unit of work, as the
ingest path does), each one's commit time noted; the receiver notes when each
``Lealta-Webhook-Id`` arrives. Lag = arrival - commit, through the outbox dispatcher, the
``webhooks.fan_out`` subscriber job and the ``webhooks.deliver`` job (two polls of the
queue at most). Baseline, same run: a bare ``POST`` of a similar body to the same receiver
from the bench process (httpx, keep-alive).

Run alone: ``python -m bench --only webhooks``.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import httpx

from bench.jobs import WorkerFailed, _wait_started
from bench.pg import throwaway_database
from bench.report import ms, times
from bench.server import LEALTA, ROOT, lealta_env
from lealta.kit.db import Database
from lealta.kit.migrate import upgrade
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import OutboxMessage
from lealta.outbox import events as domain
from lealta.outbox.service import emit
from lealta.webhooks import service

if TYPE_CHECKING:
    from bench.runner import Run

RATE = 10.0
SECONDS = 6.0
POLLS = (1.0, 0.1)


@dataclass
class Arrivals:
    at: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def receiver() -> Iterator[tuple[str, Arrivals]]:
    arrivals = Arrivals()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            now = time.time()
            key = self.headers.get("Lealta-Webhook-Id", "")
            with arrivals.lock:
                arrivals.at.setdefault(key, now)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", arrivals
    finally:
        server.shutdown()
        server.server_close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True, slots=True)
class LagResult:
    poll: float
    sent: int
    lags: list[float]
    baseline: list[float]


def measure_lag(
    url: str, *, poll: float, rate: float = RATE, seconds: float = SECONDS
) -> LagResult:
    """Commit ``rate`` events/s for ``seconds`` with one worker polling every ``poll`` s."""
    sqlalchemy_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    upgrade(sqlalchemy_url)
    database = Database(sqlalchemy_url, pool_size=2, max_overflow=0)
    with receiver() as (hook_url, arrivals):
        now = datetime.now(UTC)
        with database.unit_of_work() as session:
            service.create_endpoint(
                session, url=hook_url, event_types=["*"], now=now, actor="bench"
            )
            member_id = members.create(session, MemberCreate(external_id="bench_hooks"), now=now).id
        with httpx.Client() as client:  # the baseline: a bare round trip to the receiver
            baseline = []
            for n in range(200):
                started = time.perf_counter()
                client.post(hook_url, content=b'{"id":"x"}', headers={"Lealta-Webhook-Id": f"b{n}"})
                baseline.append(time.perf_counter() - started)
        process = subprocess.Popen(
            [str(LEALTA), "worker", "--concurrency", "4"],
            cwd=ROOT,
            env={
                **lealta_env(url, PYTHONPATH=str(ROOT)),
                "LEALTA_LOG_LEVEL": "INFO",
                "LEALTA_WORKER_POLL_SECONDS": str(poll),
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_started(process)
            committed: dict[str, float] = {}
            count = int(rate * seconds)
            start = time.perf_counter()
            for n in range(count):
                pause = start + n / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                with database.unit_of_work() as session:
                    event = domain.OrderPaid(
                        event_id=f"o{n}", customer_id="bench_hooks", points_delta=n
                    )
                    emit(session, event, member_id=member_id, now=datetime.now(UTC), backfill=False)
                    [row] = [o for o in session.new if isinstance(o, OutboxMessage)]
                    session.flush()
                    key = f"evt_{row.id}"
                committed[key] = time.time()
            deadline = time.monotonic() + 30 + 3 * poll
            while time.monotonic() < deadline:
                with arrivals.lock:
                    if all(key in arrivals.at for key in committed):
                        break
                if process.poll() is not None:
                    raise WorkerFailed("the worker exited while delivering")
                time.sleep(0.05)
            with arrivals.lock:
                lags = [arrivals.at[k] - t for k, t in committed.items() if k in arrivals.at]
            return LagResult(poll, len(committed), lags, baseline)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            database.dispose()


def webhooks_figure(run: Run, admin: str) -> None:
    """(webhooks) commit → delivery lag p50/p99 against a bare round trip to the receiver."""
    for poll in POLLS:
        name = run.database(f"hooks{int(poll * 1000)}")
        run.step(
            f"(webhooks) {RATE:g} events/s for {SECONDS:g} s, worker poll {poll:g} s, on {name}"
        )
        with throwaway_database(admin, name) as url:
            try:
                result = measure_lag(url, poll=poll)
            except WorkerFailed as exc:
                run.errors.append(f"(webhooks) poll {poll:g} s: {exc}")
                run.report.add(f"(webhooks) commit → delivery, poll {poll:g} s", "n/a (failed)")
                continue
        if len(result.lags) < result.sent:
            run.errors.append(
                f"(webhooks) poll {poll:g} s: {result.sent - len(result.lags)} of"
                f" {result.sent} webhooks not delivered within 30 s"
            )
        if not result.lags:
            continue
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            lag, base = percentile(result.lags, q), percentile(result.baseline, q)
            run.report.add(
                f"(webhooks) commit → webhook delivered {label}, {RATE:g} events/s,"
                f" 1 worker polling every {poll:g} s",
                ms(lag),
                f"bare POST to the receiver {label} {ms(base)}",
                times(lag / base) if base else "—",
            )


NOTE = (
    "(webhooks) on a throwaway database per run: a loopback receiver registered as a `*`"
    f" endpoint, one `lealta worker --concurrency 4`, then `order.paid` events committed one"
    f" per transaction at {RATE:g}/s for {SECONDS:g} s; lag from each commit to the arrival of"
    " its `Lealta-Webhook-Id` (outbox dispatch, then the `webhooks.fan_out` and"
    " `webhooks.deliver` jobs; an idle worker looks every LEALTA_WORKER_POLL_SECONDS, shown"
    " for the default 1 s and for 0.1 s). Baseline: 200 bare keep-alive POSTs to the same"
    " receiver from the bench process."
)
