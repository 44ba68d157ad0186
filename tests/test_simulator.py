"""The programme simulator: its figures equal a real import of the same file into Lealta.

The simulation always runs in its own throwaway SQLite file; the "fresh Lealta" it is compared
with is the test database (SQLite or PostgreSQL), filled by the real import and catch-up, and
its figures are computed here by hand from its accounts and ledger.
"""

from __future__ import annotations

import gc
import itertools
import json
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from bench.orders import write_history
from sqlalchemy import func, select
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.imports import service as imports
from lealta.jobs import service as jobs
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.timestamps import EARLIEST
from lealta.models import Account, LedgerEntry, Member
from lealta.programme import service as programmes
from lealta.segments import compiler
from lealta.simulator import figures, report, service
from lealta.simulator.figures import differences
from tests.conftest import T0

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo-programme.yaml"


@pytest.fixture(scope="module")
def orders_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "orders.csv"
    write_history(path, 900, customers=150, end=T0 - timedelta(days=2), seed=3)
    return path


def _variant(tmp: Path, name: str, **replace: str) -> Path:
    text = DEMO.read_text(encoding="utf-8").replace("name: Moda Mediterránea", f"name: {name}")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _segments(db: Database, design: programmes.Programme) -> dict[str, int]:
    """Members in each segment of ``design`` in ``db`` at T0, by the segments' compiled SQL."""
    out: dict[str, int] = {}
    with db.unit_of_work(write=False) as session:
        dialect = session.get_bind().dialect.name
        for segment in design.segments:
            group = segment.group()
            assert group is not None
            query = compiler.compile_group(
                group, dialect=dialect, now=T0, currency=design.currency
            ).subquery()
            out[segment.id] = session.scalar(select(func.count()).select_from(query)) or 0
    return out


def test_numbers_equal_a_real_import_of_the_same_file(orders_file: Path, db: Database) -> None:
    design = service.read_programme(DEMO)
    projection = service.simulate(design, orders_file, service.Options(as_of=T0, chunk_size=128))

    with db.unit_of_work() as session:
        programmes.apply(session, design, actor="test", now=T0, activate_at=EARLIEST)
    real = imports.import_orders(db, orders_file, programme=design, now=T0, actor="test")
    jobs.run_due(db, now=T0, backfill=True)

    assert (projection.rows_read, projection.imported) == (real.rows_read, real.imported)
    reference = figures.read(
        db,
        design,
        as_of=T0,
        cost_per_point=projection.cost_per_point,
        report=real,
        segments=_segments(db, design),
    )
    reference.seconds = projection.seconds
    assert projection == reference
    assert projection.rejected == real.rejected_count == 0
    with db.unit_of_work(write=False) as session:
        accounts = list(session.scalars(select(Account)))
        members = session.scalar(select(Member.id).order_by(Member.id.desc()).limit(1))
        ledger = list(
            session.execute(
                select(LedgerEntry.occurred_at, LedgerEntry.entry_type, LedgerEntry.points)
            )
        )
    assert members is not None
    assert projection.members == len(accounts) == 150
    assert projection.points_issued == sum(a.lifetime_earned for a in accounts) > 0
    assert projection.points_redeemed == sum(a.lifetime_spent for a in accounts)
    assert projection.points_expired == sum(a.points_expired for a in accounts) > 0
    assert projection.points_outstanding == sum(a.points_available for a in accounts)
    assert projection.points_pending == sum(a.points_pending for a in accounts)
    tiers = Counter(a.tier_id for a in accounts)
    assert projection.members_per_tier == {t: tiers.get(t, 0) for t in projection.tiers}
    assert sum(projection.members_per_tier.values()) == 150
    # liability = (outstanding + pending) x the default cost of a point (0.01 EUR)
    outstanding = sum(a.points_available + a.points_pending for a in accounts)
    assert projection.liability == (outstanding * service.DEFAULT_COST_PER_POINT).quantize(
        projection.liability
    )
    # monthly flows, summed by hand from the real ledger
    issued: defaultdict[str, int] = defaultdict(int)
    balance: defaultdict[str, int] = defaultdict(int)
    for at, kind, points in ledger:
        month = f"{at.year:04d}-{at.month:02d}"
        balance[month] += points
        if kind == "earn":
            issued[month] += points
    running = 0
    for m in projection.months:
        running += balance.get(m.month, 0)
        assert m.points_issued == issued.get(m.month, 0), m.month
        assert m.points_outstanding == running, m.month
    assert projection.months[-1].month == f"{T0.year:04d}-{T0.month:02d}"
    assert projection.months[-1].tier_mix == projection.members_per_tier
    assert sum(m.new_members for m in projection.months) == 150
    assert sum(m.orders for m in projection.months) == projection.orders


def test_two_designs_side_by_side(orders_file: Path, tmp_path: Path) -> None:
    base = service.read_programme(DEMO)
    generous = service.read_programme(
        _variant(
            tmp_path,
            "Generous",
            **{
                "points_per_unit: 1 ": "points_per_unit: 2 ",
                "threshold: 1000\n": "threshold: 300\n",
            },
        )
    )
    options = service.Options(as_of=T0)
    a = service.simulate(base, orders_file, options)
    b = service.simulate(generous, orders_file, options)
    assert b.points_issued > a.points_issued
    assert b.liability > a.liability
    assert a.orders == b.orders and a.revenue == b.revenue
    assert b.members_per_tier["plata"] > a.members_per_tier["plata"]
    diff = {d.figure: d for d in differences(a, b)}
    assert diff["points_issued"].change == b.points_issued - a.points_issued
    assert diff["orders"].change == 0
    assert diff["tier:basico"].change < 0
    # members per segment, side by side: the tier segments follow the tier counts
    assert a.members_per_segment["tier-plata"] == a.members_per_tier["plata"]
    assert diff["segment:tier-plata"].change == diff["tier:plata"].change > 0
    assert diff["segment:active"].change == 0  # the same orders: as active in both
    assert sum(a.members_per_segment[k] for k in ("active", "at-risk", "inactive")) == a.members

    data = report.to_json([a, b])
    json.dumps(data)  # plain JSON
    assert [d["programme"] for d in data["designs"]] == ["Moda Mediterránea", "Generous"]
    row = next(r for r in data["differences"] if r["figure"] == "liability")
    assert row["first"] == str(a.liability) and row["second"] == str(b.liability)

    page = report.html([a, b])
    assert page.count("<svg") == 6  # three charts per design
    assert 'data-figure="liability" class="worse"' in page
    assert 'data-figure="orders">' in page  # unchanged: not highlighted
    assert (
        '<tr data-figure="segment:tier-plata" class="better"><td>Members in segment Silver tier'
        in page
    )
    table = report.terminal([a, b])
    assert "Members in segment Top spenders (top 10 %)" in table.columns[0]._cells
    segment_rows = [r for r in data["differences"] if r["figure"].startswith("segment:")]
    assert len(segment_rows) == len(base.segments)
    assert data["designs"][0]["members_per_segment"] == a.members_per_segment
    assert "<script" not in page


def test_bad_design_and_bad_file_are_clear_errors(orders_file: Path, tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(LealtaError) as caught:
        service.read_programme(bad_yaml)
    assert caught.value.code == "invalid_programme"
    assert "line" in caught.value.message
    invalid = _variant(tmp_path, "Broken", **{"threshold: 1000\n": "threshold: -5\n"})
    with pytest.raises(LealtaError) as caught:
        service.read_programme(invalid)
    assert caught.value.code == "invalid_programme"
    with pytest.raises(LealtaError) as caught:
        service.read_programme(tmp_path / "missing.yaml")
    assert caught.value.code == "unreadable_file"

    header = tmp_path / "header.csv"
    header.write_text("customer_id,order_id,amount\nc1,o1,10.00\n", encoding="utf-8")
    design = service.read_programme(DEMO)
    with pytest.raises(LealtaError) as caught:
        service.simulate(design, header, service.Options(as_of=T0))
    assert caught.value.code == "invalid_csv_header"
    rows = tmp_path / "rows.csv"
    rows.write_text(
        "customer_id,order_id,occurred_at,amount,currency\n"
        "c1,o1,2025-01-01T10:00:00Z,10.00,EUR\n"
        "c1,o2,not-a-date,10.00,EUR\n",
        encoding="utf-8",
    )
    p = service.simulate(design, rows, service.Options(as_of=T0))
    assert (p.imported, p.rejected) == (1, 1)
    assert p.rejections[0]["line"] == 3


def test_cli_writes_table_json_and_html(orders_file: Path, tmp_path: Path) -> None:
    other = _variant(tmp_path, "Double", **{"points_per_unit: 1 ": "points_per_unit: 2 "})
    out_json, out_html = tmp_path / "out.json", tmp_path / "out.html"
    result = CliRunner().invoke(
        cli_app,
        [
            "simulate",
            "-p",
            str(DEMO),
            "-o",
            str(orders_file),
            "--compare",
            str(other),
            "--json",
            str(out_json),
            "--html",
            str(out_html),
            "--as-of",
            T0.isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Points issued" in result.output and "Double" in result.output
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert len(data["designs"]) == 2 and data["differences"]
    assert "<svg" in out_html.read_text(encoding="utf-8")

    bad = tmp_path / "bad.yaml"
    bad.write_text("currency: EUR\nname: x\ntiers: 3\n", encoding="utf-8")
    result = CliRunner().invoke(cli_app, ["simulate", "-p", str(bad), "-o", str(orders_file)])
    assert result.exit_code == 2
    assert "invalid_programme" in result.output


def test_the_replay_collects_once_per_chunk_and_puts_the_collector_back(
    orders_file: Path,
) -> None:
    """What each chunk leaves alive is frozen after its collection (the replay keeps every
    member's state to the end: walking it again at each chunk cost a tenth of the time), and
    the collector is as it was afterwards."""
    design = service.read_programme(DEMO)
    collections: list[int] = []
    frozen: list[int] = []

    def counted(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])
            frozen.append(gc.get_freeze_count())

    assert gc.isenabled()
    before = gc.get_freeze_count()  # a command's start-up imports may have frozen some
    gc.callbacks.append(counted)
    try:
        projection = service.simulate(
            design, orders_file, service.Options(as_of=T0, chunk_size=400)
        )
    finally:
        gc.callbacks.remove(counted)
    assert projection.imported > 800
    rows = projection.rows_read
    chunks = -(-rows // 400) + (rows % 400 == 0)  # a full last chunk is followed by an empty one
    # While the replay runs, objects are frozen (those alive before it, then each chunk's
    # survivors): the young generations are collected once after each chunk, nothing
    # automatic in between, and each collection finds more frozen than the one before.
    during = [
        (generation, n) for generation, n in zip(collections, frozen, strict=True) if n > before
    ]
    assert [generation for generation, _ in during] == [1] * chunks
    assert all(a < b for (_, a), (_, b) in itertools.pairwise(during))
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
