"""CSV import of orders and refunds, and the member export, on a real database."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import get_settings
from lealta.exports.service import MEMBER_COLUMNS, export_members
from lealta.imports.service import (
    LOADED_TABLES,
    ImportReport,
    InvalidCsvHeaderError,
    import_orders,
)
from lealta.kit.clock import FixedClock
from lealta.kit.db import Base, Database
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import Account, Event, LedgerEntry, Member, Order
from lealta.programme import service as programmes
from tests.conftest import T0, empty_tables

HEADER = ["customer_id", "order_id", "occurred_at", "amount", "currency"]
FULL_HEADER = [*HEADER, "type", "channel", "store", "email", "name", "notes"]
DAY = timedelta(days=1)


# --- helpers ---------------------------------------------------------------------------------


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run_import(db: Database, path: Path, clock: FixedClock, **options: Any) -> ImportReport:
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    return import_orders(
        db, path, programme=programme, now=clock.now(), actor="test:import", **options
    )


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Row:
    """One history line, usable both as a CSV row and as an API event."""

    type: str
    customer: str
    order_id: str
    at: datetime
    amount: str
    email: str = ""
    name: str = ""

    def cells(self) -> list[str]:
        return [
            self.customer, self.order_id, iso(self.at), self.amount, "EUR",
            self.type, "web" if self.type == "order.paid" else "", "", self.email, self.name,
            "ignored",
        ]  # fmt: skip

    def event(self, event_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": event_id,
            "type": self.type,
            "customer_id": self.customer,
            "occurred_at": iso(self.at),
        }
        if self.type == "order.paid":
            body["order"] = {
                "id": self.order_id, "total": self.amount, "currency": "EUR", "channel": "web"
            }  # fmt: skip
        else:
            body["refund"] = {"order_id": self.order_id, "amount": self.amount, "currency": "EUR"}
        profile = {k: v for k, v in (("email", self.email), ("name", self.name)) if v}
        if profile:
            body["customer"] = profile
        return body


def history(seed: int, customers: int = 6, orders: int = 40) -> list[Row]:
    """Orders and partial/full refunds for a few customers, oldest first."""
    rng = random.Random(seed)
    start = T0 - timedelta(days=orders * 7 + 10)
    rows: list[Row] = []
    paid: list[tuple[str, str, Decimal, datetime]] = []
    seen: set[str] = set()
    for n in range(orders):
        customer = f"c-{rng.randint(1, customers)}"
        at = start + timedelta(days=n * 7, hours=rng.randint(0, 20))
        amount = Decimal(rng.randint(500, 40_000)).scaleb(-2)
        profile = {}
        if customer not in seen:
            seen.add(customer)
            profile = {"email": f"{customer}@example.com", "name": f"Cliente {customer}"}
        order_id = f"O-{n:04d}"
        rows.append(Row("order.paid", customer, order_id, at, str(amount), **profile))
        paid.append((customer, order_id, amount, at))
    for customer, order_id, amount, at in rng.sample(paid, 10):
        first = (amount * Decimal("0.3")).quantize(Decimal("0.01"))
        rows.append(Row("order.refunded", customer, order_id, at + 2 * DAY, str(first)))
        if rng.random() < 0.5:
            rows.append(
                Row("order.refunded", customer, order_id, at + 3 * DAY, str(amount - first))
            )
    return sorted(rows, key=lambda r: r.at)


def snapshot(db: Database) -> dict[str, Any]:
    """Per member: profile, cached figures and the ledger (type, points, time, shortfall)."""
    with db.unit_of_work(write=False) as session:
        result: dict[str, Any] = {}
        for member, account in session.execute(
            select(Member, Account).join(Account, Account.member_id == Member.id)
        ):
            entries = session.execute(
                select(
                    LedgerEntry.entry_type,
                    LedgerEntry.points,
                    LedgerEntry.occurred_at,
                    LedgerEntry.shortfall,
                )
                .where(LedgerEntry.member_id == member.id)
                .order_by(LedgerEntry.occurred_at, LedgerEntry.id)
            ).all()
            orders = session.execute(
                select(Order.external_id, Order.status, Order.refunded_minor, Order.points_earned)
                .where(Order.member_id == member.id)
                .order_by(Order.external_id)
            ).all()
            result[member.external_id] = {
                "profile": (member.email, member.name, member.enrolled_at),
                "available": account.points_available,
                "lifetime_earned": account.lifetime_earned,
                "qualifying_spend_minor": account.qualifying_spend_minor,
                "shortfall": account.points_shortfall,
                "orders_count": account.orders_count,
                "ledger": [tuple(e) for e in entries],
                "orders": [tuple(o) for o in orders],
            }
        return result


def count(db: Database, model: type[Base]) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def reset(db: Database) -> None:
    """Empty every table, as the ``db`` fixture does before each test."""
    empty_tables(db)


# --- import ----------------------------------------------------------------------------------


class TestImportOrders:
    def test_generated_file_sets_balances(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        rng = random.Random(7)
        rows: list[list[str]] = []
        expected_points: dict[str, int] = {}
        expected_spend: dict[str, Decimal] = {}
        for n in range(1, 601):
            customer = f"cust-{rng.randint(1, 40):03d}"
            amount = Decimal(rng.randint(100, 50_000)).scaleb(-2)
            at = T0 - timedelta(days=400) + timedelta(hours=n * 14)
            rows.append([customer, f"ORD-{n}", iso(at), str(amount), "eur"])
            expected_points[customer] = expected_points.get(customer, 0) + int(amount)
            expected_spend[customer] = expected_spend.get(customer, Decimal(0)) + amount
        path = write_csv(tmp_path / "orders.csv", HEADER, rows)
        progress: list[tuple[int, int]] = []

        report = run_import(
            db, path, clock, chunk_size=250, on_progress=lambda r, b: progress.append((r, b))
        )

        assert (report.rows_read, report.imported, report.replayed) == (600, 600, 0)
        assert report.rejected == [] and report.rejected_count == 0
        assert report.out_of_order == 0
        assert report.elapsed_seconds > 0
        assert progress[-1] == (600, path.stat().st_size)
        with db.unit_of_work(write=False) as session:
            accounts = {
                m.external_id: a
                for m, a in session.execute(
                    select(Member, Account).join(Account, Account.member_id == Member.id)
                )
            }
        assert set(accounts) == set(expected_points)
        for customer, account in accounts.items():
            assert account.points_available == expected_points[customer]
            assert account.lifetime_earned == expected_points[customer]
            assert account.qualifying_spend_minor == int(expected_spend[customer] * 100)
        assert count(db, Order) == 600

    def test_rejected_rows_have_line_numbers_and_leave_nothing(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        at = iso(T0 - 10 * DAY)
        path = tmp_path / "mixed.csv"
        path.write_text(
            "Customer_ID,order_id,occurred_at,amount,currency,type,name\n"  # 1
            f'ok-1,O-1,{at},10.00,EUR,,"Ana\nGarcía"\n'  # 2-3: a quoted line break
            f"bad-amount,O-2,{at},12.5x,EUR,,\n"  # 4
            f"bad-currency,O-3,{at},10.00,ZZZ,,\n"  # 5
            "\n"  # 6: blank lines are skipped
            f"bad-date,O-4,yesterday,10.00,EUR,,\n"  # 7
            f"bad-refund,NOPE,{at},5.00,EUR,order.refunded,\n"  # 8
            f",O-5,{at},10.00,EUR,,\n"  # 9
            f"bad-precision,O-6,{at},10.001,EUR,,\n"  # 10
            f"bad-type,O-7,{at},10.00,EUR,order.shipped,\n"  # 11
            f"bad-future,O-8,{iso(T0 + DAY)},10.00,EUR,,\n"  # 12
            f"bad-width,O-9,{at},10,50,EUR,,\n"  # 13
            f"ok-2,O-10,{at},20.00,EUR,,\n",  # 14
            encoding="utf-8",
        )

        report = run_import(db, path, clock)

        assert (report.rows_read, report.imported, report.replayed) == (11, 2, 0)
        assert [(r.line, r.code) for r in report.rejected] == [
            (4, "validation_error"),
            (5, "invalid_currency"),
            (7, "validation_error"),
            (8, "order_not_found"),
            (9, "validation_error"),
            (10, "invalid_amount"),
            (11, "unsupported_event_type"),
            (12, "occurred_in_future"),
            (13, "invalid_row"),
        ]
        messages = {r.line: r.message for r in report.rejected}
        assert messages[4].startswith("amount:")
        assert messages[7].startswith("occurred_at:")
        assert messages[9] == "customer_id: required value is empty."
        assert report.rejected_count == 9
        with db.unit_of_work(write=False) as session:
            assert list(session.scalars(select(Member.external_id).order_by(Member.id))) == [
                "ok-1",
                "ok-2",
            ]
            name = session.scalars(select(Member.name).where(Member.external_id == "ok-1")).one()
            assert name == "Ana\nGarcía"
            assert list(session.scalars(select(Order.external_id).order_by(Order.id))) == [
                "O-1",
                "O-10",
            ]
        assert count(db, LedgerEntry) == 2
        assert count(db, Event) == 2
        with db.unit_of_work(write=False) as session:  # each event row keeps its response
            responses = list(session.scalars(select(Event.response)))
        assert len(responses) == 2 and all(r and r["postings"] for r in responses)

    def test_reimport_replays_and_changes_nothing(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        rows = history(seed=3)
        path = write_csv(tmp_path / "history.csv", FULL_HEADER, [r.cells() for r in rows])
        first = run_import(db, path, clock, chunk_size=7)
        assert first.imported == len(rows) and first.rejected == []
        before, entries = snapshot(db), count(db, LedgerEntry)

        clock.set(T0 + DAY)
        second = run_import(db, path, clock, chunk_size=7)

        assert (second.rows_read, second.imported, second.replayed) == (len(rows), 0, len(rows))
        assert second.rejected == []
        assert snapshot(db) == before
        assert count(db, LedgerEntry) == entries

    def test_a_changed_row_under_an_imported_order_id_is_rejected(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        at = iso(T0 - DAY)
        run_import(
            db, write_csv(tmp_path / "a.csv", HEADER, [["c1", "O-1", at, "10.00", "EUR"]]), clock
        )
        report = run_import(
            db, write_csv(tmp_path / "b.csv", HEADER, [["c1", "O-1", at, "99.00", "EUR"]]), clock
        )
        assert [(r.line, r.code) for r in report.rejected] == [(2, "idempotency_key_reused")]
        assert snapshot(db)["c1"]["available"] == 10

    def test_out_of_order_rows_are_counted(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        rows = [
            ["c1", "O-1", iso(T0 - 2 * DAY), "10.00", "EUR"],
            ["c1", "O-2", iso(T0 - 3 * DAY), "10.00", "EUR"],
            ["c1", "O-3", iso(T0 - DAY), "10.00", "EUR"],
        ]
        report = run_import(db, write_csv(tmp_path / "o.csv", HEADER, rows), clock)
        assert report.imported == 3 and report.out_of_order == 1

    @pytest.mark.parametrize(
        ("content", "missing"),
        [
            (
                "customer_id,order_id,occurred_at,currency\nc1,O-1,2025-01-01T00:00:00Z,EUR\n",
                "amount",
            ),
            ("", "customer_id"),
            ("\n\n", "customer_id"),
            ("customer_id;order_id;occurred_at;amount;currency\n", "customer_id"),
        ],
    )
    def test_bad_header_is_an_error_and_writes_nothing(
        self, db: Database, clock: FixedClock, tmp_path: Path, content: str, missing: str
    ) -> None:
        path = tmp_path / "bad.csv"
        path.write_text(content, encoding="utf-8")
        with pytest.raises(InvalidCsvHeaderError) as caught:
            run_import(db, path, clock)
        assert caught.value.code == "invalid_csv_header"
        assert missing in caught.value.message
        assert count(db, Member) == 0 and count(db, Event) == 0

    def test_duplicate_columns_are_a_header_error(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        path = write_csv(tmp_path / "dup.csv", [*HEADER, "amount"], [])
        with pytest.raises(InvalidCsvHeaderError, match="amount"):
            run_import(db, path, clock)

    def test_bom_and_case_in_header_are_accepted(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        path = tmp_path / "excel.csv"
        path.write_bytes(
            "\ufeffCUSTOMER_ID, Order_Id ,occurred_at,amount,currency\r\n".encode()
            + f"c1,O-1,{iso(T0 - DAY)},15.00,EUR\r\n".encode()
        )
        report = run_import(db, path, clock)
        assert report.imported == 1 and report.rejected == []

    def test_invalid_utf8_stops_after_importing_earlier_rows(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        at = iso(T0 - DAY)
        path = tmp_path / "latin1.csv"
        path.write_bytes(
            b"customer_id,order_id,occurred_at,amount,currency,name\n"
            + f"c1,O-1,{at},10.00,EUR,Ana\n".encode()
            + f"c2,O-2,{at},10.00,EUR,Jos\xe9\n".encode("latin-1")
        )
        with pytest.raises(Exception) as caught:
            run_import(db, path, clock)
        assert getattr(caught.value, "code", None) == "invalid_encoding"
        assert "Line 3" in str(caught.value)
        assert count(db, Member) == 1

    def test_matches_posting_the_same_events_to_the_api(
        self, db: Database, clock: FixedClock, client: TestClient, tmp_path: Path
    ) -> None:
        """The key property: an imported history equals the same events sent live."""
        rows = history(seed=11, customers=5, orders=60)
        assert any(r.type == "order.refunded" for r in rows)
        for n, row in enumerate(rows):
            response = client.post("/v1/events", json=row.event(f"evt-{n}"))
            assert response.status_code == 201, response.text
        via_api = snapshot(db)

        reset(db)
        path = write_csv(tmp_path / "history.csv", FULL_HEADER, [r.cells() for r in rows])
        report = run_import(db, path, clock, chunk_size=13)
        assert report.rejected == [] and report.imported == len(rows)
        via_import = snapshot(db)

        assert via_import == via_api
        assert sum(len(m["ledger"]) for m in via_import.values()) > len(rows) // 2
        assert any(e[0] == "reverse" for m in via_import.values() for e in m["ledger"])


# --- export ----------------------------------------------------------------------------------


class TestExportMembers:
    def test_rows_in_external_id_order(
        self, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        rows = [
            ["b-2", "O-1", iso(T0 - 5 * DAY), "1500.40", "EUR"],
            ["a-1", "O-2", iso(T0 - 4 * DAY), "20.00", "EUR"],
            ["b-2", "O-3", iso(T0 - 3 * DAY), "99.99", "EUR"],
        ]
        path = tmp_path / "in.csv"
        write_csv(path, FULL_HEADER, [[*r, "", "", "", "", "", ""] for r in rows])
        with path.open("a", encoding="utf-8") as out:
            out.write(f"b-2,O-1,{iso(T0 - 2 * DAY)},0.40,EUR,order.refunded,,,,,\n")
        assert run_import(db, path, clock).rejected == []
        with db.unit_of_work() as session:
            # A member with no history exports as zeros.
            members.create(session, MemberCreate(external_id="c-3"), now=clock.now())

        target = tmp_path / "out" / "members.csv"
        target.parent.mkdir()
        assert export_members(db, target) == 3

        with target.open(newline="", encoding="utf-8") as exported:
            reader = csv.reader(exported)
            assert tuple(next(reader)) == MEMBER_COLUMNS
            assert list(reader) == [
                ["a-1", "", "20", "20", "20.00", "0", "0", "0", "0", "", ""],
                ["b-2", "", "1599", "1599", "1599.99", "0", "0", "0", "0", "", ""],
                ["c-3", "", "0", "0", "0.00", "0", "0", "0", "0", "", ""],
            ]
        assert [p.name for p in target.parent.iterdir()] == ["members.csv"]

    def test_no_members_writes_the_header(self, db: Database, tmp_path: Path) -> None:
        target = tmp_path / "empty.csv"
        assert export_members(db, target) == 0
        assert target.read_text(encoding="utf-8").splitlines() == [",".join(MEMBER_COLUMNS)]

    def test_unwritable_target_is_a_clean_error(self, db: Database, tmp_path: Path) -> None:
        with pytest.raises(Exception) as caught:
            export_members(db, tmp_path / "missing-dir" / "m.csv")
        assert getattr(caught.value, "code", None) == "unwritable_file"


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def cli(db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


class TestCli:
    def test_import_all_good_exits_0(self, cli: CliRunner, db: Database, tmp_path: Path) -> None:
        rows = [[f"c{n}", f"O-{n}", "2025-06-01T10:00:00+02:00", "10.00", "EUR"] for n in range(5)]
        path = write_csv(tmp_path / "ok.csv", HEADER, rows)
        result = cli.invoke(cli_app, ["import", "orders", str(path)])
        assert result.exit_code == 0, result.output
        assert "Import of ok.csv" in result.output
        assert count(db, Member) == 5

        again = cli.invoke(cli_app, ["import", "orders", str(path)])
        assert again.exit_code == 0, again.output
        assert count(db, LedgerEntry) == 5

    def test_import_with_rejections_exits_1_and_lists_lines(
        self, cli: CliRunner, db: Database, tmp_path: Path
    ) -> None:
        rows = [
            ["c1", f"O-{n}", "2025-06-01T10:00:00Z", "x" if n % 2 else "1", "EUR"]
            for n in range(120)
        ]
        path = write_csv(tmp_path / "some-bad.csv", HEADER, rows)
        result = cli.invoke(cli_app, ["import", "orders", str(path)])
        assert result.exit_code == 1, result.output
        assert "Rejected rows" in result.output
        assert "validation_error" in result.output
        assert "and 10 more" in result.output
        assert count(db, Order) == 60

    def test_import_bad_header_exits_2(self, cli: CliRunner, db: Database, tmp_path: Path) -> None:
        path = write_csv(tmp_path / "h.csv", ["customer", "order_id"], [["c1", "O-1"]])
        result = cli.invoke(cli_app, ["import", "orders", str(path)])
        assert result.exit_code == 2
        assert "invalid_csv_header" in result.output
        assert count(db, Member) == 0

    def test_import_missing_file_exits_2(self, cli: CliRunner, tmp_path: Path) -> None:
        result = cli.invoke(cli_app, ["import", "orders", str(tmp_path / "nope.csv")])
        assert result.exit_code == 2
        assert "unreadable_file" in result.output

    def test_export_members(self, cli: CliRunner, db: Database, tmp_path: Path) -> None:
        rows = [["c1", "O-1", "2025-06-01T10:00:00Z", "12.34", "EUR"]]
        source = write_csv(tmp_path / "i.csv", HEADER, rows)
        assert cli.invoke(cli_app, ["import", "orders", str(source)]).exit_code == 0
        target = tmp_path / "members.csv"
        result = cli.invoke(cli_app, ["export", "members", str(target)])
        assert result.exit_code == 0, result.output
        assert "exported 1 members" in result.output
        assert target.read_text(encoding="utf-8").splitlines() == [
            ",".join(MEMBER_COLUMNS),
            "c1,,12,12,12.34,0,0,0,0,,",
        ]


def test_refund_ids_keep_refunds_idempotent_when_rows_are_added_above(
    db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    header = ["customer_id", "order_id", "occurred_at", "amount", "currency", "type", "refund_id"]
    order = ["c1", "O-1", iso(T0 - 3 * DAY), "100.00", "EUR", "order.paid", ""]
    refund = ["c1", "O-1", iso(T0 - 2 * DAY), "30.00", "EUR", "order.refunded", "R-77"]
    first = run_import(db, write_csv(tmp_path / "a.csv", header, [order, refund]), clock)
    assert first.imported == 2
    before = count(db, LedgerEntry)
    extra = ["c2", "O-2", iso(T0 - 4 * DAY), "5.00", "EUR", "order.paid", ""]
    second = run_import(db, write_csv(tmp_path / "b.csv", header, [extra, order, refund]), clock)
    # The refund moved down a line but keeps its id: replayed, not refunded twice.
    assert (second.imported, second.replayed) == (1, 2)
    assert count(db, LedgerEntry) == before + 1


# --- statistics after a large import ------------------------------------------------------------


def _vacuumed(db: Database) -> dict[str, bool]:
    """Per table the import writes: whether it was vacuumed and analysed by hand."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, last_vacuum IS NOT NULL AND last_analyze IS NOT NULL"
                " FROM pg_stat_user_tables WHERE relname = ANY(:names)"
            ),
            {"names": list(LOADED_TABLES)},
        ).all()
    return {name: done for name, done in rows}


@pytest.mark.postgres_only
def test_a_large_import_leaves_its_tables_vacuumed_and_analysed(
    db: Database, tmp_path: Path, clock: FixedClock
) -> None:
    rows = [[f"c{n % 7}", f"V{n}", iso(T0 - DAY * (30 - n)), "10.00", "EUR"] for n in range(30)]
    file = write_csv(tmp_path / "orders.csv", HEADER, rows)
    with db.engine.connect() as conn:  # statistics of earlier tests' tables are not ours
        conn.execute(text("SELECT pg_stat_reset()"))
        conn.commit()
    small = run_import(db, file, clock, analyze_after=31)
    assert small.imported == 30
    assert not any(_vacuumed(db).values())  # below the threshold: left to autovacuum
    more = write_csv(tmp_path / "more.csv", HEADER, [[*r[:1], f"W{r[1]}", *r[2:]] for r in rows])
    large = run_import(db, more, clock, analyze_after=30)
    assert large.imported == 30
    done = _vacuumed(db)
    assert set(done) == set(LOADED_TABLES) and all(done.values()), done
