"""A closed-loop load generator: N threads, each with its own keep-alive ``httpx.Client``.

Every thread sends its next request as soon as the previous one answered, for a fixed time;
latency is measured around the HTTP call only (payloads are built outside the timed span).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

P = TypeVar("P")


@dataclass
class LoadResult:
    clients: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile in seconds (``q`` in 0..100)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)


def closed_loop(
    base_url: str,
    headers: dict[str, str],
    send: Callable[[httpx.Client, P], httpx.Response],
    prepare: Callable[[int, int], P],
    *,
    clients: int,
    seconds: float,
    expect: frozenset[int] = frozenset({200}),
    seq_offset: int = 0,
) -> LoadResult:
    """Run ``clients`` threads for ``seconds``; returns latencies of successful requests.

    ``prepare(worker, seq)`` builds the request's payload outside the timed span and
    ``send(client, payload)`` makes the call that is timed.
    """
    lock = threading.Lock()
    result = LoadResult(clients=clients, elapsed=0.0)
    clock = {"begin": 0.0, "deadline": float("inf")}

    def start_clock() -> None:  # runs once, when every client is connected
        clock["begin"] = time.perf_counter()
        clock["deadline"] = clock["begin"] + seconds

    barrier = threading.Barrier(clients, action=start_clock)

    def worker(index: int) -> None:
        latencies: list[float] = []
        errors = 0
        first_error = ""
        try:
            with httpx.Client(base_url=base_url, headers=headers, timeout=60.0) as client:
                try:
                    client.get("/health")  # open the keep-alive connection before the clock
                    barrier.wait(timeout=60)
                except (httpx.HTTPError, threading.BrokenBarrierError) as exc:
                    barrier.abort()
                    errors, first_error = 1, f"could not start: {exc!r}"
                    return
                seq = seq_offset
                while True:
                    payload = prepare(index, seq)
                    start = time.perf_counter()
                    if start >= clock["deadline"]:
                        break
                    try:
                        response = send(client, payload)
                        ok = response.status_code in expect
                    except httpx.HTTPError as exc:
                        response, ok = None, False
                        first_error = first_error or repr(exc)
                    end = time.perf_counter()
                    if ok:
                        latencies.append(end - start)
                    else:
                        errors += 1
                        if response is not None and not first_error:
                            first_error = f"{response.status_code} {response.text[:300]}"
                    seq += 1
        finally:
            with lock:
                result.latencies.extend(latencies)
                result.errors += errors
                result.first_error = result.first_error or first_error

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - clock["begin"]
    return result
