"""Closed-loop load generators: each of N clients sends its next request as soon as the
previous one answered, for a fixed time; latency is measured around the HTTP exchange only
(payloads are built outside the timed span).

:func:`closed_loop` runs a thread per client with its own keep-alive ``httpx.Client`` (for
loads that inspect answers, like the redemption check); :func:`raw_loop` is the lean one the
throughput figures use (see its comment).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import httpx

P = TypeVar("P")


@dataclass
class LoadResult:
    clients: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    cpu_seconds: float = 0.0
    """CPU time the load generator's own process spent during the run (all its threads)."""

    @property
    def cpu_per_request(self) -> float:
        """The generator's CPU seconds per answered request."""
        answered = self.count + self.errors
        return self.cpu_seconds / answered if answered else float("nan")

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


def merged(results: Sequence[LoadResult]) -> LoadResult:
    """Slices of one load measured at different times, taken together: their requests, time
    and CPU added up (the rate is all requests over all the slices' time)."""
    if not results:
        raise ValueError("no load to merge")
    return LoadResult(
        clients=results[0].clients,
        elapsed=sum(r.elapsed for r in results),
        latencies=[x for r in results for x in r.latencies],
        errors=sum(r.errors for r in results),
        first_error=next((r.first_error for r in results if r.first_error), ""),
        cpu_seconds=sum(r.cpu_seconds for r in results),
    )


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
    cpu = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - clock["begin"]
    result.cpu_seconds = time.process_time() - cpu
    return result


# --- the lean generator ------------------------------------------------------------------
#
# httpx costs about 1.2 ms of CPU per request on this machine, more than PostgreSQL's share of
# an event, and the generator shares the cores with the server: the threads above starve the
# server they measure. ``raw_loop`` drives the same closed loop from one asyncio event loop
# (uvloop when installed) with every request pre-serialised as raw HTTP/1.1 bytes over its own
# keep-alive connection and a minimal response parser (status line, Content-Length or chunked
# body): tens of microseconds of CPU per request. ``LoadResult.cpu_seconds`` says what the
# generator itself burnt, so its share of the machine is reported next to the figures.

RawRequest = tuple[str, str, bytes | None]
"""``(method, path, body)``; a body is sent with ``Content-Length``."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a request, waits for its whole response,
    and hands the status and body to ``on_response``."""

    def __init__(self, on_response: Callable[[int, bytes], None], on_lost: Callable[[str], None]):
        self._on_response = on_response
        self._on_lost = on_lost
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(repr(exc) if exc else "connection closed by the server")

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).split(b"\r\n")
            status = int(head[0].split(b" ", 2)[1])
            length, chunked = -1, False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            start = end + 4
            if chunked:
                parsed = _dechunk(buffer, start)
                if parsed is None:
                    return
                body, consumed = parsed
            else:
                length = max(length, 0)
                if len(buffer) - start < length:
                    return
                body, consumed = bytes(buffer[start : start + length]), start + length
            del buffer[:consumed]
            self._on_response(status, body)


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at ``start``: (body, end offset), or None if not all here."""
    parts: list[bytes] = []
    at = start
    while True:
        eol = buffer.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(bytes(buffer[at:eol]).split(b";", 1)[0], 16)
        at = eol + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", at - 2)
            if trailer_end < 0:
                return None
            return b"".join(parts), trailer_end + 4
        if len(buffer) < at + size + 2:
            return None
        parts.append(bytes(buffer[at : at + size]))
        at += size + 2


def raw_loop(
    base_url: str,
    headers: dict[str, str],
    request_for: Callable[[int, int], RawRequest],
    *,
    clients: int,
    seconds: float,
    expect: frozenset[int] = frozenset({200}),
    seq_offset: int = 0,
) -> LoadResult:
    """The closed loop of :func:`closed_loop` without httpx: ``clients`` keep-alive
    connections on one event loop, each sending ``request_for(client, seq)`` (built outside
    the timed span) as soon as the previous response is complete."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    fixed = f"Host: {url.netloc}\r\n{fixed}"

    def encode(request: RawRequest) -> bytes:
        method, path, body = request
        if body is None:
            return f"{method} {path} HTTP/1.1\r\n{fixed}\r\n".encode()
        head = f"{method} {path} HTTP/1.1\r\n{fixed}Content-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        runner = asyncio.run

    def go() -> LoadResult:
        coroutine = _raw(host, port, encode, request_for, clients, seconds, expect, seq_offset)
        return cast(LoadResult, runner(coroutine))

    cpu = time.process_time()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        result = go()
    else:  # a loop already runs in this thread (the caller's): ours gets a thread of its own
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            result = pool.submit(go).result()
    result.cpu_seconds = time.process_time() - cpu
    return result


async def _raw(
    host: str,
    port: int,
    encode: Callable[[RawRequest], bytes],
    request_for: Callable[[int, int], RawRequest],
    clients: int,
    seconds: float,
    expect: frozenset[int],
    seq_offset: int,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    result = LoadResult(clients=clients, elapsed=0.0)
    latencies = result.latencies
    done = loop.create_future()
    running = clients
    deadline = float("inf")
    perf = time.perf_counter

    def finish_one() -> None:
        nonlocal running
        running -= 1
        if running == 0 and not done.done():
            done.set_result(None)

    class Client:
        def __init__(self, index: int) -> None:
            self.index = index
            self.seq = seq_offset
            self.started = 0.0
            self.busy = False
            self.stopped = False
            self.conn = _Connection(self.answered, self.lost)

        def send_next(self) -> None:
            payload = encode(request_for(self.index, self.seq))
            self.seq += 1
            self.started = perf()
            if self.started >= deadline:
                self.stop()
                return
            self.busy = True
            assert self.conn.transport is not None
            self.conn.transport.write(payload)

        def answered(self, status: int, body: bytes) -> None:
            end = perf()
            self.busy = False
            if status in expect:
                latencies.append(end - self.started)
            else:
                result.errors += 1
                if not result.first_error:
                    result.first_error = f"{status} {body[:300].decode('utf-8', 'replace')}"
            if not self.stopped:
                self.send_next()

        def lost(self, reason: str) -> None:
            if self.stopped:
                return
            if self.busy:
                result.errors += 1
                result.first_error = result.first_error or f"connection lost: {reason}"
            self.stop()

        def stop(self) -> None:
            if not self.stopped:
                self.stopped = True
                finish_one()

    pool = [Client(i) for i in range(clients)]
    try:
        for client in pool:
            await loop.create_connection(lambda c=client: c.conn, host, port)  # type: ignore[misc]
    except OSError as exc:
        result.errors, result.first_error = 1, f"could not start: {exc!r}"
        return result
    begin = perf()
    deadline = begin + seconds
    for client in pool:
        client.send_next()
    try:
        await asyncio.wait_for(done, timeout=seconds + 60)
    except TimeoutError:
        result.errors += sum(1 for c in pool if not c.stopped)
        result.first_error = result.first_error or "requests still unanswered after 60 s"
    result.elapsed = perf() - begin
    for client in pool:
        if client.conn.transport is not None:
            client.conn.transport.close()
    return result
