"""How a replay is split over processes: how many, and which customer goes to which.

Standard library only, so that ``lealta simulate`` can start the split (:func:`start_routes`)
in a child process before it imports the application: reading the file to split it then
overlaps the imports, on a core that would otherwise wait.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIN_PARALLEL_BYTES = 4 << 20
"""Smaller files are replayed in one process (starting another costs more than it saves)."""
MAX_WORKERS = 4


def auto_workers(size: int) -> int:
    """Processes for a file of ``size`` bytes: one per CPU (at most :data:`MAX_WORKERS`) for
    files of at least :data:`MIN_PARALLEL_BYTES`, else one."""
    if size < MIN_PARALLEL_BYTES:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, cpus or 1))


def _lines(raw: Any) -> Iterator[str]:
    """The file's lines, decoded as the import decodes them (UTF-8 line by line, the first
    line's BOM dropped); stops with ``UnicodeDecodeError`` where the import stops."""
    first = True
    for chunk in raw:
        text = chunk.decode("utf-8")
        if first:
            text, first = text.removeprefix("\ufeff"), False
        yield text


def routes(path: Path, parts: int) -> dict[str, int]:
    """Customer id -> part (0 to ``parts`` - 1): customers whose rows name the same order id
    (a refund of someone else's order, an order id reused, hence also the same idempotency
    key) are in the same part, so every lookup a row makes stays inside its part.

    Rows are read as the import reads them; a row of the wrong width is skipped (the replay
    gives it to part 0, which rejects it), and reading stops at the first error in the file
    (the replay stops there too, with the error)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    try:
        with path.open("rb") as raw:
            reader = csv.reader(_lines(raw), strict=True)
            header: list[str] = []
            for row in reader:
                if any(cell.strip() for cell in row):
                    header = [cell.strip().lower() for cell in row]
                    break
            if "customer_id" not in header or "order_id" not in header:
                return {}  # the replay refuses the header
            width = len(header)
            who, which = header.index("customer_id"), header.index("order_id")
            for cells in reader:
                if len(cells) != width:
                    continue
                a, b = find(cells[who].strip()), find("\0" + cells[which].strip())
                if a != b:
                    parent[b] = a
    except (OSError, csv.Error, UnicodeDecodeError):
        pass
    return {
        name: zlib.crc32(find(name).encode()) % parts
        for name in list(parent)
        if not name.startswith("\0")
    }


class PendingRoutes:
    """:func:`routes` being read by a child process (see :func:`start_routes`)."""

    def __init__(self, process: Any, conn: Any, parts: int) -> None:
        self._process = process
        self._conn = conn
        self.parts = parts

    def result(self) -> dict[str, int] | None:
        """The routes, or None if the child failed (the caller then reads them itself)."""
        try:
            found: dict[str, int] | None = self._conn.recv()
        except (EOFError, OSError):
            found = None
        self.close()
        return found

    def close(self) -> None:
        """Stop the child if it still runs (the command stopped before it needed the routes)
        and reap it."""
        self._conn.close()
        if self._process.is_alive():
            self._process.join(timeout=0.1)
        if self._process.is_alive():
            self._process.kill()
        self._process.join()


def _send_routes(conn: Any, path: Path, parts: int) -> None:
    try:
        conn.send(routes(path, parts))
    finally:
        conn.close()


def start_routes(path: Path, parts: int) -> PendingRoutes | None:
    """Start reading :func:`routes` in a forked child (None where processes cannot fork, or
    for a single part)."""
    if parts < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("fork")
    mine, theirs = context.Pipe(duplex=False)
    process = context.Process(target=_send_routes, args=(theirs, path, parts), daemon=True)
    process.start()
    theirs.close()
    return PendingRoutes(process, mine, parts)
