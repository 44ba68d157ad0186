"""How the simulator splits a replay over processes (:mod:`lealta.simulator.parallel`), and the
command that reads the split in a child process while it imports the application."""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from bench.orders import write_history
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.simulator import parallel
from tests.conftest import T0

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo-programme.yaml"
HEADER = "customer_id,order_id,occurred_at,amount,currency,type\n"


def _write(path: Path, rows: list[str], *, raw: bytes = b"") -> Path:
    path.write_bytes((HEADER + "".join(r + "\n" for r in rows)).encode() + raw)
    return path


def test_customers_linked_by_an_order_id_go_to_one_part(tmp_path: Path) -> None:
    rows = [f"c{n},o{n},2025-01-0{1 + n % 9}T10:00:00Z,10.00,EUR," for n in range(60)]
    rows += [
        "c1,o2,2025-02-01T10:00:00Z,5.00,EUR,order.refunded",  # c1 refunds c2's order
        "c2,o3,2025-02-02T10:00:00Z,5.00,EUR,",  # c2 reuses c3's order id: c1, c2, c3 linked
        "c40,o41,2025-02-03T10:00:00Z,5.00,EUR,order.refunded",
        "short,row",  # the wrong width: skipped here, part 0 rejects it
    ]
    routes = parallel.routes(_write(tmp_path / "o.csv", rows), 3)
    assert set(routes) == {f"c{n}" for n in range(60)}
    assert set(routes.values()) == {0, 1, 2}  # the others spread over every part
    assert routes["c1"] == routes["c2"] == routes["c3"]
    assert routes["c40"] == routes["c41"]
    # The same answer whatever the order of the lines that link them.
    again = parallel.routes(_write(tmp_path / "r.csv", rows[::-1]), 3)
    assert again["c1"] == again["c2"] == again["c3"] and again["c40"] == again["c41"]


def test_reading_stops_at_the_first_error_in_the_file(tmp_path: Path) -> None:
    rows = ["a,o1,2025-01-01T10:00:00Z,10.00,EUR,", "b,o2,2025-01-01T10:00:00Z,10.00,EUR,"]
    bad = _write(tmp_path / "bad.csv", rows, raw=b"c,o3,2025\xff,1.00,EUR,\nd,o4,x,1,EUR,\n")
    assert set(parallel.routes(bad, 2)) == {"a", "b"}  # as far as the invalid UTF-8
    quoted = _write(tmp_path / "q.csv", rows, raw=b'e,"o5\n')  # an unterminated quote
    assert set(parallel.routes(quoted, 2)) == {"a", "b"}
    (tmp_path / "h.csv").write_text("customer,order_id\nx,y\n", encoding="utf-8")
    assert parallel.routes(tmp_path / "h.csv", 2) == {}  # the replay refuses the header
    assert parallel.routes(tmp_path / "missing.csv", 2) == {}


def test_each_part_gets_its_rows_with_their_lines_in_the_original(tmp_path: Path) -> None:
    rows = [f"c{n},o{n},2025-01-0{1 + n % 9}T10:00:00Z,10.00,EUR," for n in range(40)]
    rows[5] = 'c5,"o5\nwith a new line",2025-01-02T10:00:00Z,10.00,EUR,'  # two lines, one row
    rows[9] = ""  # a blank line: the import skips it
    rows[12] = "short,row"  # the wrong width: to part 0
    path = tmp_path / "o.csv"
    path.write_bytes(b"\xef\xbb\xbf\n" + (HEADER + "\n".join(rows)).encode())  # BOM, no last \n
    folder = tmp_path / "split"
    folder.mkdir()
    split = parallel.split(path, 3, folder)
    assert split.files is not None and split.routes == parallel.routes(path, 3)
    original = path.read_bytes().split(b"\n")
    seen: dict[int, bytes] = {}
    for part, (file, lines) in enumerate(split.files):
        text = file.read_bytes()
        assert text.endswith(b"\n")
        local = text.split(b"\n")[:-1]
        assert len(local) == len(lines)
        assert [int(n) for n in lines[:2]] == [1, 2]  # the blank line and the header
        for own, number in zip(local[2:], lines[2:], strict=True):
            assert original[number - 1] == own  # each line is the original's at that number
            seen[number] = own
            customer = own.split(b",")[0].decode()
            if customer in split.routes and not own.startswith(b"with a"):
                assert split.routes[customer] == part
    # Every line of a row is in exactly one part (the blank line 13 is dropped); the row of
    # two lines (8 and 9) stays whole; the row of the wrong width goes to part 0.
    assert sorted(seen) == [n for n in range(3, len(original) + 1) if n != 13]
    assert seen[9] == b'with a new line",2025-01-02T10:00:00Z,10.00,EUR,'
    assert seen[16] == b"short,row" and b"short,row" in split.files[0][0].read_bytes()
    # No folder: the routes only; an unreadable file: nothing to split.
    assert parallel.split(path, 3).files is None
    bad = _write(tmp_path / "bad.csv", rows[:3], raw=b"x,o,2025\xff,1,EUR,\n")
    assert parallel.split(bad, 2, folder).files is None


def test_a_child_splits_the_file_and_is_always_reaped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "orders.csv"
    write_history(path, 400, customers=80, end=T0 - timedelta(days=2), seed=5)
    with parallel.Splitting(path, 2) as splitting:
        split = splitting.result()
        assert split is not None and split.files is not None
        assert split.routes == parallel.routes(path, 2)
        folder = split.files[0][0].parent
        assert all(file.exists() for file, _ in split.files)
        assert splitting.result() is split
    assert not folder.exists()  # removed on exit
    with parallel.Splitting(path, 1) as splitting:
        assert splitting.result() is None  # one part needs no split
    # Nowhere to write the copies: nothing is started (the replay reads the routes itself).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with parallel.Splitting(path, 2) as nowhere:
        assert nowhere.result() is None
    monkeypatch.undo()
    # A command that stops before it needs the split (a bad design) stops the child.
    with parallel.Splitting(path, 2) as unused:
        process = unused._process
    assert not process.is_alive() and process.exitcode is not None


def test_auto_workers_uses_one_process_for_small_files() -> None:
    assert parallel.auto_workers(0) == 1
    assert parallel.auto_workers(parallel.MIN_PARALLEL_BYTES - 1) == 1
    assert 1 <= parallel.auto_workers(parallel.MIN_PARALLEL_BYTES) <= parallel.MAX_WORKERS


@pytest.mark.parametrize("workers", [2, 3])
def test_the_command_gives_the_same_figures_split_over_processes(
    workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lealta simulate`` on a file it splits (routes read by a child while it imports) and
    on the same file in one process: the same JSON, both designs of a comparison."""
    path = tmp_path / "orders.csv"
    write_history(path, 1200, customers=200, end=T0 - timedelta(days=2), seed=11)
    base = len(path.read_text(encoding="utf-8").splitlines())
    with path.open("a", encoding="utf-8") as more:  # rows each part must number as the file
        more.write("late,o-x,2025-13-01T10:00:00Z,1.00,EUR,\nshort,row\n")
    splits: list[parallel.Splitting] = []
    splitting = parallel.Splitting

    def counted(file: Path, parts: int) -> parallel.Splitting:
        splits.append(splitting(file, parts))
        return splits[-1]

    monkeypatch.setattr(parallel, "Splitting", counted)
    out: dict[int, dict[str, object]] = {}
    for n in (1, workers):
        monkeypatch.setattr(parallel, "auto_workers", lambda size, n=n: n)
        target = tmp_path / f"out-{n}.json"
        done = CliRunner().invoke(
            cli_app,
            ["simulate", "-p", str(DEMO), "-o", str(path), "-c", str(DEMO), "--json",
             str(target), "--as-of", T0.isoformat()],
        )  # fmt: skip
        assert done.exit_code in (0, 1), done.output
        data = json.loads(target.read_text(encoding="utf-8"))
        for design in data["designs"]:
            design.pop("seconds", None)
        out[n] = data
    assert [s.parts for s in splits] == [1, workers]
    done_split = splits[1].result()  # the parts read files of their own rows
    assert done_split is not None and done_split.files is not None
    assert out[workers] == out[1]
    first = out[1]["designs"][0]
    assert first["imported"] > 1000
    lines = {r["line"] for r in first["rejections"]}
    assert {base + 1, base + 2} <= lines, first["rejections"]
