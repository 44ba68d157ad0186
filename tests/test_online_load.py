"""The lean load generator of the benchmarks (``bench.load.raw_loop``) and the request ids of
the HTTP middleware: what the throughput figures (i), (iii) and (viii) stand on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from bench.load import LoadResult, _Connection, merged, raw_loop

from lealta.kit.http import new_request_id


def _parse(chunks: list[bytes]) -> list[tuple[int, bytes]]:
    seen: list[tuple[int, bytes]] = []
    conn = _Connection(lambda status, body: seen.append((status, body)), lambda reason: None)
    for chunk in chunks:
        conn.data_received(chunk)
    return seen


def test_the_parser_reads_responses_split_anywhere_and_back_to_back() -> None:
    first = b'HTTP/1.1 201 Created\r\ncontent-length: 9\r\nx-a: b\r\n\r\n{"ok": 1}'
    second = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    third = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\n\r\n"
    )
    stream = first + second + third
    expected = [(201, b'{"ok": 1}'), (404, b""), (200, b"abcdefg")]
    assert _parse([stream]) == expected
    for cut in range(1, len(stream)):
        assert _parse([stream[:cut], stream[cut:]]) == expected, cut
    assert _parse([bytes([b]) for b in stream]) == expected


@pytest.fixture()
def http_server() -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP/1.1 keep-alive server on loopback: ``/ok`` is 200, anything else 500;
    every request line it receives is recorded."""
    received: list[bytes] = []
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            lines = head.split(b"\r\n")
            received.append(lines[0])
            length = next(
                (int(v) for n, _, v in (x.partition(b":") for x in lines[1:])
                 if n.strip().lower() == b"content-length"),
                0,
            )  # fmt: skip
            body = await reader.readexactly(length) if length else b""
            status = b"200 OK" if lines[0].split(b" ")[1] == b"/ok" else b"500 Oops"
            answer = b"echo:" + body
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Length: "
                + str(len(answer)).encode() + b"\r\n\r\n" + answer
            )  # fmt: skip
            await writer.drain()
        writer.close()

    stop = loop.create_future()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await stop

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port[0]}", received
    loop.call_soon_threadsafe(stop.set_result, None)
    thread.join(10)
    loop.close()


def test_raw_loop_keeps_every_client_busy_and_counts_what_it_did_not_expect(
    http_server: tuple[str, list[bytes]],
) -> None:
    base_url, received = http_server
    result = raw_loop(
        base_url,
        {"Authorization": "Bearer k"},
        lambda client, seq: ("POST", "/ok" if seq % 5 else "/fail", f"{client}-{seq}".encode()),
        clients=3,
        seconds=0.5,
    )
    assert result.count > 30
    assert result.errors > 0
    assert result.first_error.startswith("500 echo:")
    # Every request was answered; each client's requests 0, 5, 10, ... went to /fail, so a
    # client that sent n has ceil(n / 5) failures: n - 5 * ceil(n / 5) is in (-5, 0].
    assert len(received) == result.count + result.errors
    assert -5 * 3 < result.count - 4 * result.errors <= 0
    assert all(lat > 0 for lat in result.latencies)
    assert result.cpu_seconds > 0 and result.cpu_per_request < 0.01


def test_raw_loop_reports_a_server_that_is_not_there() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = raw_loop(f"http://127.0.0.1:{port}", {}, lambda c, s: ("GET", "/", None),
                      clients=2, seconds=0.2)  # fmt: skip
    assert result.count == 0 and result.errors == 1
    assert result.first_error.startswith("could not start")


def test_request_ids_are_32_hex_and_unique() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_slices_of_a_load_taken_together_count_every_request_over_all_their_time() -> None:
    fast = LoadResult(clients=8, elapsed=2.0, latencies=[0.001] * 300, cpu_seconds=0.2)
    slow = LoadResult(clients=8, elapsed=2.0, latencies=[0.010] * 100, errors=2, first_error="503")
    slow.cpu_seconds = 0.1
    whole = merged([fast, slow])
    assert whole.count == 400 and whole.elapsed == 4.0
    assert whole.rate == 100.0
    assert whole.errors == 2 and whole.first_error == "503"
    assert whole.cpu_seconds == pytest.approx(0.3)
    assert whole.p50 == 0.001 and whole.p99 == 0.010  # percentiles over all the requests
    uneven = merged([LoadResult(clients=8, elapsed=1.0, latencies=[0.001] * 300), slow])
    assert uneven.rate == pytest.approx(400 / 3.0)  # the mean of the two rates would be 175
    with pytest.raises(ValueError):
        merged([])
