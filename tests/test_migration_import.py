"""Moving from another system: members, opening balances and tiers, then live traffic."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import get_settings
from lealta.exports.service import export_members
from lealta.imports.migration import import_balances, import_members
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.models import AuditLog, Consent, LedgerEntry, Member, TierChange
from lealta.programme import service as programmes

PROGRAMME: dict[str, Any] = {
    "name": "Migration",
    "currency": "EUR",
    "earning": {"points_per_unit": 1, "rounding": "down"},
    "tiers": {
        "basis": "spend",
        "period": "lifetime",
        "levels": [
            {"id": "basico", "name": {"es": "Básico"}, "threshold": 0, "multiplier": 1},
            {"id": "plata", "name": {"es": "Plata"}, "threshold": 1000, "multiplier": 1.5},
            {"id": "oro", "name": {"es": "Oro"}, "threshold": 5000, "multiplier": 2},
        ],
    },
    "pending": {"days": 0},
    "expiry": {"months": 12},
    "attributes": {"city": "string", "kids": "int"},
}


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def run_members(db: Database, path: Path, clock: FixedClock, **kw: Any) -> Any:
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    return import_members(
        db, path, programme=programme, now=clock.now(), actor="test", source_system="oldsys", **kw
    )


def run_balances(db: Database, path: Path, clock: FixedClock, **kw: Any) -> Any:
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    return import_balances(
        db, path, programme=programme, now=clock.now(), actor="test", source_system="oldsys", **kw
    )


MEMBERS_HEADER = [
    "external_id", "email", "name", "language", "enrolled_at", "tags", "attr.city", "attr.kids",
    "consent.marketing_email", "consent.marketing_email.at",
]  # fmt: skip


@pytest.fixture
def tiered(client: TestClient) -> None:
    assert client.put("/v1/programme", json=PROGRAMME).status_code == 200


def members_file(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "members.csv",
        MEMBERS_HEADER,
        [
            ["ana", "ana@example.com", "Ana Ruiz", "en", "2019-03-02", "vip|store", "Sevilla", "2",
             "true", "2020-05-01T09:00:00Z"],
            ["bea", "", "Bea", "", "", "", "", "", "false", "2021-01-01T00:00:00Z"],
            ["bad id", "", "", "", "", "", "", "", "", ""],
            ["cai", "not-an-email", "", "", "", "", "", "", "", ""],
            ["dan", "", "", "", "", "", "", "three", "", ""],
            ["eva", "", "", "", "2099-01-01", "", "", "", "", ""],
        ],
    )  # fmt: skip


class TestImportMembers:
    def test_profile_attributes_tags_and_consents_with_their_dates(
        self, tiered: None, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        report = run_members(db, members_file(tmp_path), clock)
        assert (report.rows_read, report.created, report.consents) == (6, 2, 2)
        assert sorted((r.line, r.code) for r in report.rejected) == [
            (4, "invalid_external_id"),
            (5, "validation_error"),
            (6, "invalid_number"),
            (7, "occurred_in_future"),
        ]
        with db.unit_of_work(write=False) as session:
            ana = session.scalars(select(Member).where(Member.external_id == "ana")).one()
            assert (ana.email, ana.name, ana.language) == ("ana@example.com", "Ana Ruiz", "en")
            assert ana.enrolled_at == datetime(2019, 3, 2, tzinfo=UTC)
            assert ana.enrolment_channel == "migration"
            assert ana.tags == ["store", "vip"] and ana.attributes == {"city": "Sevilla", "kids": 2}
            consents = session.scalars(select(Consent).order_by(Consent.member_id)).all()
            assert [(c.purpose, c.granted, c.recorded_at, c.source) for c in consents] == [
                ("marketing_email", True, datetime(2020, 5, 1, 9, tzinfo=UTC), "migration:oldsys"),
                ("marketing_email", False, datetime(2021, 1, 1, tzinfo=UTC), "migration:oldsys"),
            ]

    def test_reimport_changes_nothing_and_updates_only_what_differs(
        self, tiered: None, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        path = members_file(tmp_path)
        run_members(db, path, clock)
        again = run_members(db, path, clock)
        assert (again.created, again.updated, again.consents, again.already_imported) == (
            0,
            0,
            0,
            2,
        )
        assert count(db, Consent) == 2 and count(db, Member) == 2
        change = write_csv(
            tmp_path / "change.csv",
            ["external_id", "name", "tags"],
            [["bea", "Beatriz", "newsletter"], ["ana", "Ana Ruiz", ""]],
        )
        report = run_members(db, change, clock)
        assert (report.updated, report.already_imported) == (1, 1)
        with db.unit_of_work(write=False) as session:
            bea = session.scalars(select(Member).where(Member.external_id == "bea")).one()
        assert (bea.name, bea.tags) == ("Beatriz", ["newsletter"])

    def test_dry_run_reports_and_writes_nothing(
        self, tiered: None, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        report = run_members(db, members_file(tmp_path), clock, dry_run=True)
        assert (report.created, report.consents, report.rejected_count) == (2, 2, 4)
        assert count(db, Member) == 0 and count(db, Consent) == 0
        assert count(db, AuditLog, AuditLog.action == "import.members") == 0


BALANCES_HEADER = ["external_id", "points", "expires_at", "tier", "tier_reached_at"]


def balances_file(tmp_path: Path) -> Path:
    return write_csv(
        tmp_path / "balances.csv",
        BALANCES_HEADER,
        [
            ["ana", "800", "2026-03-31T23:59:59Z", "plata", "2025-06-01"],
            ["bea", "300", "", "", ""],
            ["ghost", "10", "", "", ""],
            ["ana", "5", "", "", ""],
            ["cai", "-4", "", "", ""],
            ["bea", "1", "2020-01-01", "", ""],
            ["bea", "1", "", "diamante", ""],
        ],
    )


def post_order(
    client: TestClient, clock: FixedClock, n: int, who: str, amount: str, at: datetime
) -> dict[str, Any]:
    clock.set(at)
    response = client.post(
        "/v1/events",
        json={
            "id": f"e{n}",
            "type": "order.paid",
            "customer_id": who,
            "occurred_at": at.isoformat(),
            "order": {"id": f"O{n}", "total": amount, "currency": "EUR"},
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


class TestImportBalances:
    def test_opening_balances_then_live_orders_match_a_hand_computation(
        self, tiered: None, client: TestClient, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        run_members(db, members_file(tmp_path), clock)
        report = run_balances(db, balances_file(tmp_path), clock)
        assert (report.created, report.points, report.tiers) == (2, 1100, 1)
        assert sorted((r.line, r.code) for r in report.rejected) == [
            (4, "member_not_found"),
            (5, "duplicate_member"),
            (6, "negative_points"),
            (7, "already_expired"),
            (8, "unknown_tier"),
        ]
        with db.unit_of_work(write=False) as session:
            opening = session.scalars(
                select(LedgerEntry).where(LedgerEntry.source_type == "migration")
            ).all()
            assert sorted((e.points, e.source_ref, e.reason) for e in opening) == [
                (300, "oldsys", "Opening balance from oldsys"),
                (800, "oldsys", "Opening balance from oldsys"),
            ]
            move = session.scalars(select(TierChange)).one()
            assert (move.to_tier, move.occurred_at) == ("plata", datetime(2025, 6, 1, tzinfo=UTC))
        assert client.get("/v1/members/ana/tier").json()["tier"]["id"] == "plata"
        balance = client.get("/v1/members/ana/balance").json()
        assert balance["available"] == 800
        assert balance["next_expiry"]["at"].startswith("2026-03-31T23:59:59")

        # Live traffic. Ana earns at Plata (x1.5) until her own spend here reaches Oro.
        base = datetime(2026, 1, 10, 10, tzinfo=UTC)
        assert post_order(client, clock, 1, "ana", "200.00", base)["points_delta"] == 300
        second = post_order(client, clock, 2, "ana", "4900.00", base + timedelta(days=10))
        assert second["points_delta"] == 7350  # earned at Plata; 5,100 € spent here -> Oro
        assert second["balance"]["tier"] == "oro"
        assert (
            post_order(client, clock, 3, "ana", "100.00", base + timedelta(days=11))["points_delta"]
            == 200
        )
        # Bea (no tier carried over): 1,200 € at Básico x1, then Plata.
        bea = post_order(client, clock, 4, "bea", "1200.00", base + timedelta(days=2))
        assert (bea["points_delta"], bea["balance"]["tier"]) == (1200, "plata")
        # After 31 March the 800 migrated points of Ana have expired (she spent none).
        late = post_order(client, clock, 5, "ana", "10.00", datetime(2026, 4, 2, tzinfo=UTC))
        assert late["points_delta"] == 20
        assert client.get("/v1/members/ana/balance").json()["available"] == (
            800 + 300 + 7350 + 200 - 800 + 20
        )
        assert client.get("/v1/members/bea/balance").json()["available"] == 300 + 1200
        with db.unit_of_work(write=False) as session:
            assert ledger.verify(session)[1] == []

        # Importing the same file again changes nothing.
        entries = count(db, LedgerEntry)
        again = run_balances(db, balances_file(tmp_path), clock)
        assert (again.created, again.already_imported) == (0, 2)
        # Ana's first row is now past its expiry date: refused as such, and nothing written.
        assert (2, "already_expired") in [(r.line, r.code) for r in again.rejected]
        assert count(db, LedgerEntry) == entries

        # The export names every member's tier and buckets.
        out = tmp_path / "export.csv"
        export_members(db, out, now=clock.now())
        with out.open(encoding="utf-8") as f:
            rows = {r["external_id"]: r for r in csv.DictReader(f)}
        assert (rows["ana"]["tier"], rows["bea"]["tier"]) == ("oro", "plata")
        assert rows["ana"]["available_points"] == str(800 + 300 + 7350 + 200 - 800 + 20)
        assert rows["ana"]["expired_points"] == "800"
        # Bea's 300 carried-over points follow the programme's 12 months from the migration.
        assert (rows["bea"]["next_expiry_at"], rows["bea"]["next_expiry_points"]) == (
            "2027-01-05T12:00:00Z",
            "300",
        )

    def test_dry_run_writes_nothing(
        self, tiered: None, db: Database, clock: FixedClock, tmp_path: Path
    ) -> None:
        run_members(db, members_file(tmp_path), clock)
        report = run_balances(db, balances_file(tmp_path), clock, dry_run=True)
        assert (report.created, report.points, report.rejected_count) == (2, 1100, 5)
        assert count(db, LedgerEntry) == 0 and count(db, TierChange) == 0

    def test_export_names_the_entry_tier_for_members_not_placed_yet(
        self, tiered: None, client: TestClient, db: Database, tmp_path: Path
    ) -> None:
        assert client.post("/v1/members", json={"external_id": "zoe"}).status_code == 201
        out = tmp_path / "export.csv"
        export_members(db, out)
        with out.open(encoding="utf-8") as f:
            assert [r["tier"] for r in csv.DictReader(f)] == ["basico"]


@pytest.fixture
def cli(db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_members_then_balances_with_dry_run(
    tiered: None, cli: CliRunner, db: Database, tmp_path: Path
) -> None:
    members_path = write_csv(
        tmp_path / "m.csv", ["external_id", "name"], [["ana", "Ana"], ["bea", "Bea"]]
    )
    balances_path = write_csv(
        tmp_path / "b.csv", ["external_id", "points"], [["ana", "10"], ["bea", "20"]]
    )
    result = cli.invoke(cli_app, ["import", "members", str(members_path), "--source-system", "x"])
    assert result.exit_code == 0, result.output
    dry = cli.invoke(
        cli_app, ["import", "balances", str(balances_path), "--source-system", "x", "--dry-run"]
    )
    assert dry.exit_code == 0, dry.output
    assert "dry run" in dry.output
    assert count(db, LedgerEntry) == 0
    real = cli.invoke(cli_app, ["import", "balances", str(balances_path), "--source-system", "x"])
    assert real.exit_code == 0, real.output
    assert count(db, LedgerEntry) == 2
    missing = cli.invoke(cli_app, ["import", "balances", str(balances_path)])
    assert missing.exit_code == 2  # --source-system is required


# --- orders with line items, refunds, dry run --------------------------------------------------

SHOES = {
    "id": "shoes-bonus",
    "name": "Shoes bonus",
    "event": "order.paid",
    "kind": "points",
    "points": 50,
    "condition": "items.exists(i, i.category == 'calzado')",
}


def run_orders(db: Database, path: Path, clock: FixedClock, **kw: Any) -> Any:
    from lealta.imports.service import import_orders

    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session)
    return import_orders(db, path, programme=programme, now=clock.now(), actor="test", **kw)


ORDERS_HEADER = ["customer_id", "order_id", "occurred_at", "amount", "currency", "type", "items"]


def test_orders_with_items_from_a_column_or_a_second_file_and_refunds(
    client: TestClient, db: Database, clock: FixedClock, tmp_path: Path
) -> None:
    programme = {**PROGRAMME, "tiers": None, "rules": [SHOES]}
    assert client.put("/v1/programme", json=programme).status_code == 200
    shoes = '[{"sku": "ZAP-1", "category": "calzado", "quantity": 1, "unit_price": "60.00"}]'
    orders = write_csv(
        tmp_path / "orders.csv",
        ORDERS_HEADER,
        [
            ["ana", "A1", "2025-06-01T10:00:00Z", "60.00", "EUR", "", shoes],
            ["bea", "B1", "2025-06-02T10:00:00Z", "80.00", "EUR", "", ""],
            ["cai", "C1", "2025-06-03T10:00:00Z", "40.00", "EUR", "", ""],
            ["ana", "A1", "2025-06-05T10:00:00Z", "30.00", "EUR", "order.refunded", ""],
            ["cai", "C2", "2025-06-06T10:00:00Z", "10.00", "EUR", "", "{not json"],
        ],
    )
    items = write_csv(
        tmp_path / "items.csv",
        ["order_id", "sku", "category", "quantity", "unit_price"],
        [["B1", "ZAP-2", "calzado", "2", "40.00"], ["C1", "TEE-1", "ropa", "1", "40.00"]],
    )
    dry = run_orders(db, orders, clock, items_path=items, dry_run=True)
    assert (dry.imported, dry.rejected_count, dry.dry_run) == (4, 1, True)
    assert count(db, LedgerEntry) == 0 and count(db, Member) == 0
    report = run_orders(db, orders, clock, items_path=items)
    assert (report.imported, [r.code for r in report.rejected]) == (4, ["validation_error"])
    balances = {
        who: client.get(f"/v1/members/{who}/balance").json()["available"]
        for who in ("ana", "bea", "cai")
    }
    # Ana: 60 + 50 (shoes), then half the order refunded: half of each posting reversed.
    assert balances == {"ana": (60 + 50) // 2, "bea": 80 + 50, "cai": 40}
    again = run_orders(db, orders, clock, items_path=items)
    assert (again.imported, again.replayed) == (0, 4)
