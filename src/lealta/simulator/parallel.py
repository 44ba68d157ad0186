"""How a replay is split over processes: how many, and which customer goes to which.

Standard library only, so that ``lealta simulate`` can start the split (:class:`Splitting`)
in a child process before it imports the application: reading the file to split it then
overlaps the imports, on a core that would otherwise wait.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import shutil
import tempfile
import zlib
from array import array
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
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


def _lines(raw: Any, taken: list[bytes] | None = None) -> Iterator[str]:
    """The file's lines, decoded as the import decodes them (UTF-8 line by line, the first
    line's BOM dropped); stops with ``UnicodeDecodeError`` where the import stops. Each
    line's bytes are appended to ``taken``, if given, as it is read (``csv.reader`` reads no
    further than the row it returns)."""
    first = True
    for chunk in raw:
        if taken is not None:
            taken.append(chunk)
        text = chunk.decode("utf-8")
        if first:
            text, first = text.removeprefix("\ufeff"), False
        yield text


def _header(reader: Iterator[list[str]]) -> list[str]:
    """The first row with a non-blank cell, as the import reads its header ([] if none)."""
    for row in reader:
        if any(cell.strip() for cell in row):
            return [cell.strip().lower() for cell in row]
    return []


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
            header = _header(reader)
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


@dataclass(slots=True)
class Split:
    """A file split over ``parts`` replaying processes."""

    parts: int
    routes: dict[str, int]
    """Customer id -> part (:func:`routes`)."""
    files: list[tuple[Path, array[int]]] | None = None
    """Per part, a file of the header and that part's rows, with the line each of its lines
    has in the original file; None: each part reads the original and keeps its rows."""


def _write_parts(
    path: Path, parts: int, routes: dict[str, int], folder: Path
) -> list[tuple[Path, array[int]]] | None:
    """Copy each row of ``path`` to its part's file in ``folder``, the lines before the
    header and the header to each (None at any error: the parts then read the original)."""
    names = [folder / f"part-{k}.csv" for k in range(parts)]
    maps: list[array[int]] = [array("L") for _ in range(parts)]
    taken: list[bytes] = []
    try:
        with path.open("rb") as raw, ExitStack() as stack:
            outs = [stack.enter_context(name.open("wb")) for name in names]

            reader = csv.reader(_lines(raw, taken), strict=True)
            header = _header(reader)
            width, who = len(header), header.index("customer_id")
            head, number = _joined(taken), len(taken)
            taken.clear()
            for k in range(parts):
                outs[k].write(head)
                maps[k].extend(range(1, number + 1))
            for cells in reader:
                count = len(taken)
                if any(cell.strip() for cell in cells):  # the import skips blank rows
                    owner = routes.get(cells[who].strip(), 0) if len(cells) == width else 0
                    outs[owner].write(_joined(taken))
                    maps[owner].extend(range(number + 1, number + count + 1))
                number += count
                taken.clear()
    except (OSError, ValueError, csv.Error, UnicodeDecodeError):
        return None
    return list(zip(names, maps, strict=True))


def _joined(lines: list[bytes]) -> bytes:
    """A row's lines, ending with a new line (the file's last line may lack one)."""
    text = b"".join(lines)
    return text if text.endswith(b"\n") else text + b"\n"


def split(path: Path, parts: int, folder: Path | None = None) -> Split:
    """:func:`routes` of ``path``, and, given a ``folder``, each part's rows in a file of
    its own there (so that each process reads only its rows)."""
    found = routes(path, parts)
    files = _write_parts(path, parts, found, folder) if folder is not None and found else None
    return Split(parts, found, files)


class Splitting:
    """:func:`split` done by a forked child while this process goes on (``lealta simulate``
    imports the application meanwhile), into a temporary folder removed on exit; a context
    manager. For one part, or where processes cannot fork, it does nothing."""

    def __init__(self, path: Path, parts: int) -> None:
        self.parts = parts
        self._process: Any = None
        self._conn: Any = None
        self._folder: str | None = None
        self._result: Split | None = None
        if parts < 2 or "fork" not in multiprocessing.get_all_start_methods():
            return
        try:
            self._folder = tempfile.mkdtemp(prefix="lealta-simulate-")
        except OSError:  # no room for the copies: the replay reads the routes itself
            return
        context = multiprocessing.get_context("fork")
        self._conn, theirs = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_send_split, args=(theirs, path, parts, Path(self._folder)), daemon=True
        )
        self._process.start()
        theirs.close()

    def result(self) -> Split | None:
        """The split, waiting for it (None: nothing was started, or the child failed; the
        replay then reads the routes itself)."""
        if self._conn is not None and self._result is None:
            try:
                self._result = self._conn.recv()
            except (EOFError, OSError):
                self._result = None
            self._stop()
        return self._result

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        process = self._process
        if process is not None:
            if process.is_alive():
                process.join(timeout=0.1)
            if process.is_alive():
                process.kill()
            process.join()

    def __enter__(self) -> Splitting:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _send_split(conn: Any, path: Path, parts: int, folder: Path) -> None:
    try:
        conn.send(split(path, parts, folder))
    finally:
        conn.close()
