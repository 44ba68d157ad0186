"""The programme's timezone: validated in the document, and the clock periodic jobs keep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.jobs.periodic import Schedule, Scheduler, programme_zone
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Job
from lealta.programme.schema import DEFAULT_PROGRAMME, Programme

NIGHTLY = Schedule("inbound.test.nightly", "0 3 * * *", "inbound.test.nightly", {})


def test_the_default_timezone_is_madrid() -> None:
    assert Programme(name="x").timezone == "Europe/Madrid"
    assert DEFAULT_PROGRAMME.timezone == "Europe/Madrid"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "CET+1", "../../etc/passwd", "utc "])
def test_a_timezone_that_is_not_iana_is_refused(client: TestClient, zone: str) -> None:
    r = client.put("/v1/programme", json={"name": "Club", "timezone": zone})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_programme"
    assert [d["path"] for d in r.json()["error"]["details"]] == ["timezone"]
    assert client.get("/v1/programme/versions").json() == []


def run_ticks(db: Database, days: list[datetime]) -> list[datetime]:
    """Enqueue the nightly schedule at noon UTC of each day; the run_at of its jobs."""
    for day in days:
        # A fresh scheduler per day: its programme-zone cache must not hide a change.
        Scheduler([NIGHTLY]).enqueue_due(db, day)
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(select(Job.run_at).where(Job.task == NIGHTLY.task).order_by(Job.run_at))
        )


def test_periodic_jobs_keep_03_00_in_madrid_across_the_autumn_change(db: Database) -> None:
    # No programme applied: the default, Europe/Madrid. 2026-10-25 03:00 CEST → 02:00 CET.
    noon = [datetime(2026, 10, d, 12, 0, tzinfo=UTC) for d in (24, 25, 26)]
    ticks = run_ticks(db, noon)
    assert ticks == [
        datetime(2026, 10, 24, 1, 0, tzinfo=UTC),  # 03:00 CEST (UTC+2)
        datetime(2026, 10, 25, 2, 0, tzinfo=UTC),  # 03:00 CET (UTC+1), the change day
        datetime(2026, 10, 26, 2, 0, tzinfo=UTC),
    ]
    madrid = ZoneInfo("Europe/Madrid")
    assert {t.astimezone(madrid).hour for t in ticks} == {3}


def test_periodic_jobs_follow_the_programmes_own_timezone_across_spring_forward(
    client: TestClient, db: Database, clock: FixedClock
) -> None:
    r = client.put("/v1/programme", json={"name": "Club", "timezone": "America/New_York"})
    assert r.status_code == 200, r.text
    with db.unit_of_work(write=False) as session:
        assert programme_zone(session, clock.now()) == ZoneInfo("America/New_York")
    # New York springs forward on 2026-03-08: 03:00 EST is 08:00 UTC, 03:00 EDT is 07:00.
    noon = [datetime(2026, 3, d, 12, 0, tzinfo=UTC) for d in (7, 8, 9)]
    assert run_ticks(db, noon) == [
        datetime(2026, 3, 7, 8, 0, tzinfo=UTC),
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 9, 7, 0, tzinfo=UTC),
    ]


def test_a_tick_is_enqueued_once_however_often_the_scheduler_looks(db: Database) -> None:
    at = datetime(2026, 10, 25, 12, 0, tzinfo=UTC)
    scheduler = Scheduler([NIGHTLY])
    for minute in range(5):
        scheduler.enqueue_due(db, at + timedelta(minutes=minute))
    Scheduler([NIGHTLY]).enqueue_due(db, at)  # another worker
    assert run_ticks(db, []) == [datetime(2026, 10, 25, 2, 0, tzinfo=UTC)]
