"""The in-memory simulator against a real import, design by design (SQLite and PostgreSQL).

For each design the same file is simulated (in memory) and imported into a fresh Lealta (the
test database) through ``lealta import orders``' service and the points job; the real
database's projection is read by :func:`lealta.simulator.figures.read` and every figure must
be equal: counts, money, points, liability, coupons, members per tier and per segment, the
monthly series and tier mix, the rejected rows and their reasons.
"""

from __future__ import annotations

import csv
import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from bench.orders import write_history
from sqlalchemy import func, select

from lealta.imports import service as imports
from lealta.jobs import service as jobs
from lealta.kit.db import Database
from lealta.kit.timestamps import EARLIEST
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.segments import compiler
from lealta.simulator import figures, service
from lealta.simulator.figures import Projection
from tests.conftest import T0

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo-programme.yaml"

SEGMENTS = """
segments:
  - id: active
    all: [{field: activity, op: eq, value: active}]
  - id: at-risk
    all: [{field: activity, op: eq, value: at_risk, active_days: 60, inactive_days: 150}]
  - id: top-spenders
    all: [{field: spend_decile, op: gte, value: 9, days: 365}]
  - id: frequent
    all: [{field: frequency, op: gte, value: 3, days: 365}]
  - id: champions
    all:
      - {field: rfm_r, op: gte, value: 4}
      - {field: rfm_m, op: gte, value: 3}
  - id: expiring
    all: [{field: points_expiring, op: gt, value: 0, days: 120}]
  - id: rich
    any:
      - {field: points_balance, op: gte, value: 400}
      - {field: spend, op: gte, value: 900, days: 200}
  - id: recent-joiners
    all: [{field: enrolled_days, op: lte, value: 200}]
  - id: big-baskets
    cel: "metrics.aov_365d >= 150.0 && member.language == 'es'"
  - id: uploaded
    kind: static
"""

# Points-based tiers over a rolling window with grace (downgrades at reviews), entry points,
# a return window, expiry at month ends, two thresholds (a fixed-amount coupon and free
# shipping).
ROLLING = f"""
name: Rolling
currency: EUR
earning: {{points_per_unit: 2, rounding: half_up, minimum_order: 10}}
tiers:
  basis: points
  period: rolling
  rolling_months: 3
  grace_days: 10
  levels:
    - {{id: bronze, name: {{es: Bronce, en: Bronze}}, threshold: 0, multiplier: 1}}
    - {{id: silver, name: {{es: Plata, en: Silver}}, threshold: 600, multiplier: 1.5,
       entry_points: 100}}
    - {{id: gold, name: {{es: Oro, en: Gold}}, threshold: 1500, multiplier: 2,
       entry_points: 250}}
pending: {{days: 7}}
expiry: {{months: 6, round_to: month_end}}
thresholds:
  - {{id: every-300, name: {{es: Cada 300, en: Every 300}}, every: 300, reward: five-off}}
  - {{id: every-700, name: {{es: Cada 700, en: Every 700}}, every: 700, reward: shipping}}
rewards:
  - id: five-off
    type: coupon
    name: {{es: 5 euros, en: 5 euros}}
    cost: 0
    eligibility: "false"
    coupon: {{amount_off: 5, valid_days: 30}}
  - id: shipping
    type: free_shipping
    name: {{es: Envío gratis, en: Free shipping}}
    cost: 0
    eligibility: "false"
{SEGMENTS}
"""

# Spend tiers per calendar year (reviews every 1 January), no return window, short expiry.
CALENDAR = f"""
name: Calendar
currency: EUR
earning: {{points_per_unit: 1, rounding: down}}
tiers:
  basis: spend
  period: calendar_year
  levels:
    - {{id: basic, name: {{es: Básico, en: Basic}}, threshold: 0, multiplier: 1}}
    - {{id: star, name: {{es: Estrella, en: Star}}, threshold: 700, multiplier: 3}}
expiry: {{months: 3}}
{SEGMENTS}
"""

# No tiers, points never expire, one percentage coupon per 250 spent.
FLAT = """
name: Flat
currency: EUR
earning: {points_per_unit: 1}
thresholds:
  - {id: every-250, name: {es: Cada 250, en: Every 250}, every: 250, reward: ten-pct}
rewards:
  - id: ten-pct
    type: coupon
    name: {es: 10 %, en: 10 %}
    cost: 0
    eligibility: "false"
    coupon: {percent_off: 10, valid_days: 30}
"""

DESIGNS = {"demo": None, "rolling": ROLLING, "calendar": CALENDAR, "flat": FLAT}


def _design(name: str) -> Programme:
    text = DESIGNS[name]
    if text is None:
        return service.read_programme(DEMO)
    return service.load_programme(text, source=f"{name}.yaml")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated history (orders, full and partial refunds over two years) and, at its end,
    rows each driver must treat the same way: a row sent twice (replayed), a key reused with
    another amount, an order id another customer already used (its key is taken), a refund of
    someone else's order, a refund before its order, a refund of an unknown order, a second
    refund larger than what is left, a currency the programme does not use, an unparseable
    date and an order in the future."""
    path = tmp_path_factory.mktemp("sim-eq") / "orders.csv"
    write_history(path, 1200, customers=160, end=T0 - timedelta(days=3), seed=11)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    paid = [r for r in rows if r["type"] in ("", "order.paid")]
    first, second = paid[0], next(r for r in paid if r["customer_id"] != paid[0]["customer_id"])
    late = (T0 - timedelta(days=2)).isoformat()
    extra = [
        dict(first),  # the same row again: replayed
        {**first, "amount": "999.99"},  # same key, another body: idempotency_key_reused
        {**first, "customer_id": second["customer_id"], "occurred_at": late},  # key reused
        {**second, "order_id": "EXTRA-1", "occurred_at": late, "amount": "420.00"},
        {**first, "order_id": "EXTRA-1", "occurred_at": late},  # its key is taken: reused
        {
            **second,
            "type": "order.refunded",
            "order_id": first["order_id"],
            "occurred_at": late,
            "amount": "1.00",
            "refund_id": "R-X1",
        },  # someone else's order: order_not_found
        {
            **second,
            "type": "order.refunded",
            "order_id": "EXTRA-1",
            "occurred_at": second["occurred_at"],
            "amount": "1.00",
            "refund_id": "R-X2",
        },  # before its order
        {
            **second,
            "type": "order.refunded",
            "order_id": "NOPE",
            "occurred_at": late,
            "amount": "",
            "refund_id": "R-X3",
        },
        {
            **second,
            "type": "order.refunded",
            "order_id": "EXTRA-1",
            "occurred_at": late,
            "amount": "400.00",
            "refund_id": "R-X4",
        },
        {
            **second,
            "type": "order.refunded",
            "order_id": "EXTRA-1",
            "occurred_at": late,
            "amount": "30.00",
            "refund_id": "R-X5",
        },  # more than is left
        {**second, "order_id": "EXTRA-2", "occurred_at": late, "currency": "USD"},
        {**second, "order_id": "EXTRA-3", "occurred_at": "yesterday"},
        {**second, "order_id": "EXTRA-4", "occurred_at": (T0 + timedelta(days=3)).isoformat()},
        {**second, "customer_id": "NEW-LATE", "order_id": "EXTRA-5", "occurred_at": late},
    ]
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writerows(extra)
    return path


def test_parallel_replay_equals_one_process(history: Path) -> None:
    """Every figure, every rejected row: split over 1, 2 or 4 processes, the same."""
    design = _design("rolling")
    one = service.simulate(design, history, service.Options(as_of=T0))
    for workers in (2, 4):
        progress: list[tuple[int, int]] = []
        split = service.simulate(
            design,
            history,
            service.Options(as_of=T0, workers=workers, chunk_size=100),
            on_progress=lambda rows, done: progress.append((rows, done)),  # noqa: B023
        )
        split.seconds = one.seconds
        assert split == one
        # the progress bar advances to the whole file, every row counted once
        assert progress[-1] == (one.rows_read, history.stat().st_size)
        assert progress == sorted(progress)


TIES = """
name: Ties
currency: EUR
earning: {points_per_unit: 1}
segments:
  - id: recent-big
    all:
      - {field: rfm_r, op: eq, value: 5}
      - {field: spend, op: gte, value: 150}
"""


def test_quintile_ties_break_by_enrolment_order_in_parallel(tmp_path: Path, db: Database) -> None:
    """Every customer's last order at the same moment: the recency quintile is decided by
    member id alone (the segments' tie-break), so the members numbered last must be those
    enrolled last, however the replay is split."""
    path = tmp_path / "ties.csv"
    last = (T0 - timedelta(days=5)).isoformat()
    with path.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["customer_id", "order_id", "occurred_at", "amount", "currency"])
        for i in range(60):
            at = (T0 - timedelta(days=100, minutes=60 - i)).isoformat()
            out.writerow(
                [f"T{i:03d}", f"TA{i:03d}", at, "200.00" if i % 3 == 0 else "20.00", "EUR"]
            )
        for i in reversed(range(60)):
            out.writerow([f"T{i:03d}", f"TB{i:03d}", last, "10.00", "EUR"])
    design = service.load_programme(TIES, source="ties.yaml")
    one = service.simulate(design, path, service.Options(as_of=T0))
    # ids 49-60 (the last 12 enrolled, T048-T059) are quintile 5: T048, T051, ..., T057 spent 210
    assert one.members_per_segment == {"recent-big": 4}
    for workers in (2, 3):
        split = service.simulate(design, path, service.Options(as_of=T0, workers=workers))
        assert split.members_per_segment == one.members_per_segment
    assert _imported(db, design, path, chunk_size=7).members_per_segment == {"recent-big": 4}


def _segments(db: Database, design: Programme) -> dict[str, int]:
    """Members in each segment of ``design`` in ``db`` at T0, by the segments' compiled SQL
    on the real database's engine (static lists hold nobody)."""
    out: dict[str, int] = {}
    with db.unit_of_work(write=False) as session:
        dialect = session.get_bind().dialect.name
        for segment in design.segments:
            group = segment.group()
            if group is None:
                out[segment.id] = 0
                continue
            query = compiler.compile_group(
                group, dialect=dialect, now=T0, currency=design.currency
            ).subquery()
            out[segment.id] = session.scalar(select(func.count()).select_from(query)) or 0
    return out


def _imported(db: Database, design: Programme, path: Path, *, chunk_size: int) -> Projection:
    with db.unit_of_work() as session:
        programmes.apply(session, design, actor="test", now=T0, activate_at=EARLIEST)
    real = imports.import_orders(
        db, path, programme=design, now=T0, actor="test", chunk_size=chunk_size
    )
    jobs.run_due(db, now=T0, backfill=True)
    return figures.read(
        db,
        design,
        as_of=T0,
        cost_per_point=service.default_cost_per_point(design),
        report=real,
        segments=_segments(db, design),
    )


@pytest.mark.parametrize(
    ("name", "chunk_size", "workers"),
    [("demo", 2000, 1), ("rolling", 97, 2), ("calendar", 500, 3), ("flat", 2000, 1)],
)
def test_every_figure_equals_a_real_import(
    name: str, chunk_size: int, workers: int, history: Path, db: Database
) -> None:
    """``workers`` > 1: the customers split into groups replayed by forked processes."""
    design = _design(name)
    simulated = service.simulate(design, history, service.Options(as_of=T0, workers=workers))
    reference = _imported(db, design, history, chunk_size=chunk_size)
    reference.seconds = simulated.seconds
    assert simulated == reference
    # The comparison is not vacuous: the file exercises what each design has.
    assert simulated.members == 161 and simulated.rejected >= 9
    codes = {r["code"] for r in simulated.rejections}
    assert {
        "idempotency_key_reused",
        "order_not_found",
        "refund_before_order",
        "currency_mismatch",
        "occurred_in_future",
        "validation_error",
    } <= codes, codes
    assert simulated.points_issued >= simulated.points_outstanding > 0
    if design.expiry.months is not None:
        assert simulated.points_expired > 0
    if design.thresholds:
        assert simulated.coupons_issued > 0
    if name == "rolling":
        assert simulated.coupon_cost > 0
        moves = [m.tier_mix for m in simulated.months]
        assert any(mix.get("gold", 0) for mix in moves)
        # downgrades happen at reviews: the gold tier is not only ever growing
        golds = [mix.get("gold", 0) for mix in moves]
        assert any(b < a for a, b in itertools.pairwise(golds))
    if design.segments:
        assert set(simulated.members_per_segment) == {s.id for s in design.segments}
        assert sum(simulated.members_per_segment.values()) > 0
    if name in ("rolling", "calendar"):
        assert simulated.members_per_segment["uploaded"] == 0
        assert 0 < simulated.members_per_segment["active"] < simulated.members
        assert 0 < simulated.members_per_segment["expiring"] < simulated.members
