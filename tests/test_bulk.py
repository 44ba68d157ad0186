"""Bulk operations (points, tags, attributes, tier moves): API, job, CLI, idempotency."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from lealta.bulk import service as bulk
from lealta.bulk.ops import BULK_SOURCE
from lealta.cli import app as cli_app
from lealta.config import Settings, get_settings
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.models import Account, AuditLog, BulkOperation, Job, LedgerEntry, Member, TierChange
from tests.conftest import T0
from tests.factories import add_member

PROGRAMME: dict[str, Any] = {
    "name": "Bulk",
    "tiers": {
        "levels": [
            {"id": "bronce", "name": {"es": "Bronce"}, "threshold": 0},
            {"id": "plata", "name": {"es": "Plata"}, "threshold": 100},
            {"id": "oro", "name": {"es": "Oro"}, "threshold": 1000},
        ]
    },
    "attributes": {"city": "string", "kids": "int"},
}


def enrol(db: Database, count: int, *, prefix: str = "m") -> list[str]:
    """``count`` members enrolled set-based (the factories' one-by-one path is too slow for
    ten thousand)."""
    ids = [f"{prefix}{i:05d}" for i in range(count)]
    now = T0 - timedelta(days=1)
    with db.unit_of_work() as session:
        new = [members.new_member(ext, None, channel="test", at=now, now=now) for ext in ids]
        members.enrol_many(session, new, now=now)
    return ids


def balances(db: Database) -> dict[str, int]:
    with db.unit_of_work(write=False) as session:
        return dict(
            session.execute(
                select(Member.external_id, Account.points_available).join(
                    Account, Account.member_id == Member.id
                )
            ).all()
        )


def verified(db: Database) -> int:
    """Accounts checked by ``lealta ledger verify``, asserting there is no discrepancy."""
    with db.unit_of_work(write=False) as session:
        checked, problems = ledger.verify(session)
    assert problems == []
    return checked


def count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def run_jobs(db: Database, clock: FixedClock, database_url: str) -> None:
    settings = Settings(
        database_url=database_url, env="test", log_level="WARNING", worker_poll_seconds=0.02
    )
    Worker(db, clock=clock, settings=settings, name="test-bulk", schedule=False).run(
        until_idle=True
    )


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def cli(db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


# --- API ---------------------------------------------------------------------------------------


class TestBulkPointsApi:
    def test_points_job_applies_rows_and_rejects_alone(
        self, client: TestClient, db: Database, clock: FixedClock, database_url: str
    ) -> None:
        add_member(db, "ana", None, points=50)
        add_member(db, "bea", None)
        body = {
            "reason": "Storm apology",
            "rows": [
                {"external_id": "ana", "points": 100},
                {"external_id": "bea", "points": 20, "reason": "Own reason"},
                {"external_id": "ghost", "points": 10},
                {"external_id": "bea", "points": -500},  # more than she has: rejected alone
                {"external_id": "ana", "points": -30},
                {"external_id": "bea", "points": 0},
            ],
        }
        response = client.post("/v1/bulk/points", json=body, headers={"Idempotency-Key": "k1"})
        assert response.status_code == 202, response.text
        op = response.json()
        assert op["status"] == "queued" and op["total_rows"] == 6
        assert op["rejected_rows"] == 1  # the 0-point row is refused on arrival
        assert balances(db) == {"ana": 50, "bea": 0}  # nothing before the job runs
        run_jobs(db, clock, database_url)
        assert balances(db) == {"ana": 120, "bea": 20}
        done = client.get(f"/v1/bulk/{op['id']}").json()
        assert done["status"] == "done" and done["progress"] == 1.0
        assert (done["applied_rows"], done["rejected_rows"], done["points_applied"]) == (3, 3, 90)
        rows = client.get(f"/v1/bulk/{op['id']}/rows").json()["items"]
        assert [(r["line"], r["status"], r["code"]) for r in rows] == [
            (1, "applied", None),
            (2, "applied", None),
            (3, "rejected", "member_not_found"),
            (4, "rejected", "insufficient_points"),
            (5, "applied", None),
            (6, "rejected", "zero_points"),
        ]
        with db.unit_of_work(write=False) as session:
            entries = session.scalars(
                select(LedgerEntry).where(LedgerEntry.source_type == BULK_SOURCE)
            ).all()
            assert sorted((e.points, e.reason) for e in entries) == [
                (-30, "Storm apology"),
                (20, "Own reason"),
                (100, "Storm apology"),
            ]
            assert {e.id for e in entries} == {r["entry_id"] for r in rows if r["entry_id"]}
            assert ledger.verify(session)[1] == []
            actions = set(session.scalars(select(AuditLog.action)))
        assert {"bulk.points", "bulk.points.done"} <= actions
        report = client.get(f"/v1/bulk/{op['id']}/report.csv")
        assert report.status_code == 200
        assert report.headers["content-type"].startswith("text/csv")
        lines = list(csv.reader(report.text.splitlines()))
        assert lines[0] == list(bulk.REPORT_COLUMNS)
        assert lines[3][:4] == ["3", "ghost", "rejected", "member_not_found"]

    def test_same_key_replays_and_other_body_conflicts(
        self, client: TestClient, db: Database, clock: FixedClock, database_url: str
    ) -> None:
        add_member(db, "ana", None)
        body = {"rows": [{"external_id": "ana", "points": 10}]}
        first = client.post("/v1/bulk/points", json=body, headers={"Idempotency-Key": "same"})
        run_jobs(db, clock, database_url)
        again = client.post("/v1/bulk/points", json=body, headers={"Idempotency-Key": "same"})
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "done"
        run_jobs(db, clock, database_url)
        assert balances(db) == {"ana": 10}
        other = {"rows": [{"external_id": "ana", "points": 11}]}
        clash = client.post("/v1/bulk/points", json=other, headers={"Idempotency-Key": "same"})
        assert clash.status_code == 409
        assert clash.json()["error"]["code"] == "idempotency_key_reused"
        assert count(db, BulkOperation) == 1

    def test_bad_requests_are_4xx_and_write_nothing(self, client: TestClient, db: Database) -> None:
        body = {"rows": [{"external_id": "ana", "points": 10}]}
        missing = client.post("/v1/bulk/points", json=body)
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "missing_idempotency_key"
        for bad in (
            {"rows": []},
            {"rows": [{"external_id": "a/b", "points": 1}]},
            {"rows": [{"external_id": "ana", "points": "many"}]},
            {"rows": [{"external_id": "ana", "points": 1, "extra": 1}]},
        ):
            response = client.post("/v1/bulk/points", json=bad, headers={"Idempotency-Key": "x"})
            assert response.status_code == 422, bad
            assert "code" in response.json()["error"]
        assert client.get("/v1/bulk/999").json()["error"]["code"] == "bulk_operation_not_found"
        assert client.get("/v1/bulk/999/report.csv").status_code == 404
        assert count(db, BulkOperation) == 0 and count(db, Job) == 0

    def test_read_key_cannot_write(self, client: TestClient, read_key: str) -> None:
        response = client.post(
            "/v1/bulk/points",
            json={"rows": [{"external_id": "ana", "points": 1}]},
            headers={"Idempotency-Key": "r", "Authorization": f"Bearer {read_key}"},
        )
        assert response.status_code == 403


class TestBulkProfileAndTiers:
    def test_tags_attributes_and_tier_moves(
        self, client: TestClient, db: Database, clock: FixedClock, database_url: str
    ) -> None:
        assert client.put("/v1/programme", json=PROGRAMME).status_code == 200
        for ext in ("ana", "bea"):
            add_member(db, ext, None)
        tags = client.post(
            "/v1/bulk/tags",
            json={
                "rows": [
                    {"external_id": "ana", "add": ["vip", "store"]},
                    {"external_id": "bea", "add": ["web"], "remove": ["vip"]},
                    {"external_id": "ana", "remove": ["store"]},
                ]
            },
            headers={"Idempotency-Key": "t"},
        )
        attrs = client.post(
            "/v1/bulk/attributes",
            json={
                "rows": [
                    {"external_id": "ana", "attributes": {"city": "Sevilla", "kids": 2}},
                    {"external_id": "bea", "attributes": {"kids": "two"}},
                    {"external_id": "bea", "attributes": {"pet": "cat"}},
                ]
            },
            headers={"Idempotency-Key": "a"},
        )
        tiers = client.post(
            "/v1/bulk/tiers",
            json={
                "reason": "Founding customers",
                "rows": [
                    {"external_id": "ana", "tier": "oro"},
                    {"external_id": "bea", "tier": "diamante"},
                ],
            },
            headers={"Idempotency-Key": "tr"},
        )
        assert {tags.status_code, attrs.status_code, tiers.status_code} == {202}
        run_jobs(db, clock, database_url)
        ana = client.get("/v1/members/ana").json()
        bea = client.get("/v1/members/bea").json()
        assert ana["tags"] == ["vip"] and bea["tags"] == ["web"]
        assert ana["attributes"] == {"city": "Sevilla", "kids": 2} and bea["attributes"] == {}
        codes = [
            r["code"] for r in client.get(f"/v1/bulk/{attrs.json()['id']}/rows").json()["items"]
        ]
        assert codes == [None, "invalid_attribute", "unknown_attribute"]
        assert client.get("/v1/members/ana/tier").json()["tier"]["id"] == "oro"
        tier_rows = client.get(f"/v1/bulk/{tiers.json()['id']}/rows").json()["items"]
        assert [r["code"] for r in tier_rows] == [None, "unknown_tier"]
        with db.unit_of_work(write=False) as session:
            moves = session.scalars(select(TierChange).where(TierChange.to_tier == "oro")).all()
            assert [(m.reason, m.direction) for m in moves] == [("Founding customers", "initial")]
            assert ledger.verify(session)[1] == []
        again = client.post(
            "/v1/bulk/tiers",
            json={"reason": "Again", "rows": [{"external_id": "ana", "tier": "oro"}]},
            headers={"Idempotency-Key": "tr2"},
        )
        run_jobs(db, clock, database_url)
        rows = client.get(f"/v1/bulk/{again.json()['id']}/rows").json()["items"]
        assert rows[0]["code"] == "tier_unchanged"


# --- CLI and scale -----------------------------------------------------------------------------


def test_ten_thousand_members_from_csv_rerun_is_a_no_op(
    cli: CliRunner, db: Database, tmp_path: Path
) -> None:
    ids = enrol(db, 10_000)
    rows = [[ext, (i % 7) + 1, "Anniversary"] for i, ext in enumerate(ids)]
    rows.append(["nobody", 5, ""])
    path = write_csv(tmp_path / "gift.csv", ["external_id", "points", "reason"], rows)
    report = tmp_path / "report.csv"
    first = cli.invoke(cli_app, ["bulk", "points", str(path), "--report", str(report)])
    assert first.exit_code == 1, first.output  # one row rejected
    after_first = balances(db)
    assert sum(after_first.values()) == sum((i % 7) + 1 for i in range(10_000))
    assert after_first["m00008"] == 2
    entries = count(db, LedgerEntry)
    assert entries == 10_000
    with report.open(encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 10_001
    assert [r["code"] for r in lines if r["status"] == "rejected"] == ["member_not_found"]
    second = cli.invoke(cli_app, ["bulk", "points", str(path)])
    assert "nothing added" in second.output
    assert balances(db) == after_first
    assert count(db, LedgerEntry) == entries
    assert count(db, BulkOperation) == 1
    with db.unit_of_work(write=False) as session:
        assert ledger.verify(session) == (10_000, [])


def test_cli_points_bad_file_exits_2_and_writes_nothing(
    cli: CliRunner, db: Database, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "bad.csv", ["customer", "points"], [["a", 1]])
    result = cli.invoke(cli_app, ["bulk", "points", str(path)])
    assert result.exit_code == 2
    assert "invalid_csv_header" in result.output
    assert count(db, BulkOperation) == 0


def test_cli_malformed_rows_are_reported(cli: CliRunner, db: Database, tmp_path: Path) -> None:
    enrol(db, 2)
    path = write_csv(
        tmp_path / "mixed.csv",
        ["external_id", "points"],
        [["m00000", "ten"], ["m00001", "5"], ["bad id", "1"], ["m00000", "99999999999"]],
    )
    result = cli.invoke(cli_app, ["bulk", "points", str(path), "--key", "mixed"])
    assert result.exit_code == 1
    assert balances(db) == {"m00000": 0, "m00001": 5}
    with db.unit_of_work(write=False) as session:
        op = session.scalars(select(BulkOperation)).one()
        rows = bulk.rows_page(session, op.id)
    assert [(r.line, r.code) for r in rows] == [
        (2, "invalid_number"),
        (3, None),
        (4, "invalid_external_id"),
        (5, "points_too_large"),
    ]


def test_run_resumes_after_a_partial_run(db: Database, clock: FixedClock) -> None:
    ids = enrol(db, 25)
    rows = [bulk.NewRow(i + 1, ext, {"points": 3}) for i, ext in enumerate(ids)]
    with db.unit_of_work() as session:
        op = bulk.create(
            session,
            kind="points",
            key="resume",
            request_hash="h",
            rows=rows,
            actor="test",
            reason="r",
            source="test",
            now=clock.now(),
        ).operation

    class Stop(Exception):
        pass

    def stop_after_first(o: BulkOperation) -> None:
        raise Stop

    with pytest.raises(Stop):
        bulk.run(db, op.id, clock=clock, chunk_size=10, on_progress=stop_after_first)
    assert sum(balances(db).values()) == 30  # one chunk committed
    done = bulk.run(db, op.id, clock=clock, chunk_size=10)
    assert (done.status, done.applied_rows, done.points_applied) == ("done", 25, 75)
    assert sum(balances(db).values()) == 75
    assert bulk.run(db, op.id, clock=clock).status == "done"
    assert count(db, LedgerEntry) == 25
