"""Pure maths of the job system: backoff with full jitter, cron ticks in a timezone, and the
scheduler's choice of ticks (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lealta.jobs.periodic import Schedule, Scheduler, check_cron, dedupe_key, latest_tick, next_tick
from lealta.jobs.tasks import Backoff

MADRID = ZoneInfo("Europe/Madrid")


# --- backoff -------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_then_caps() -> None:
    b = Backoff(base=5, cap=60)
    assert [b.ceiling(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert b.ceiling(0) == 5  # never below the base
    assert b.ceiling(10_000) == 60  # no overflow for absurd attempt numbers


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    b = Backoff(base=5, cap=60)
    assert b.delay(3, rand=lambda: 0.0) == timedelta(0)
    assert b.delay(3, rand=lambda: 0.5) == timedelta(seconds=10)
    assert b.delay(3, rand=lambda: 0.999999) < timedelta(seconds=20)


@given(
    base=st.floats(min_value=0.01, max_value=100),
    extra=st.floats(min_value=0, max_value=10_000),
    attempt=st.integers(min_value=1, max_value=200),
    r=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_delay_is_within_zero_and_cap(
    base: float, extra: float, attempt: int, r: float
) -> None:
    b = Backoff(base=base, cap=base + extra)
    delay = b.delay(attempt, rand=lambda: r).total_seconds()
    assert 0 <= delay <= b.cap + 1e-6
    assert delay <= b.ceiling(attempt) + 1e-6
    assert b.ceiling(attempt) <= b.ceiling(attempt + 1)


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0, cap=10)
    with pytest.raises(ValueError):
        Backoff(base=10, cap=5)


def test_default_backoff_spreads_real_retries() -> None:
    """Without a fixed ``rand``, retries of many jobs failing together spread out."""
    b = Backoff(base=5, cap=3600)
    delays = {b.delay(6).total_seconds() for _ in range(50)}
    assert len(delays) > 40
    assert all(0 <= d <= 160 for d in delays)


# --- cron ticks ----------------------------------------------------------------------------


def test_latest_tick_includes_a_tick_exactly_now() -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert latest_tick("* * * * *", at) == at
    assert latest_tick("* * * * *", at + timedelta(seconds=59, microseconds=999)) == at
    assert latest_tick("* * * * *", at - timedelta(microseconds=1)) == at - timedelta(minutes=1)
    assert next_tick("* * * * *", at) == at + timedelta(minutes=1)


def test_hourly_and_daily_ticks() -> None:
    at = datetime(2026, 3, 1, 12, 16, 30, tzinfo=UTC)
    assert latest_tick("17 * * * *", at) == datetime(2026, 3, 1, 11, 17, tzinfo=UTC)
    assert latest_tick("17 * * * *", at + timedelta(seconds=30)) == datetime(
        2026, 3, 1, 12, 17, tzinfo=UTC
    )
    assert latest_tick("0 3 * * *", at) == datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


def test_ticks_are_read_in_the_programmes_timezone() -> None:
    # 03:00 in Madrid is 02:00 UTC in winter (CET) and 01:00 UTC in summer (CEST).
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, 0, tzinfo=UTC)
    assert latest_tick("0 3 * * *", winter, MADRID) == datetime(2026, 1, 15, 2, 0, tzinfo=UTC)
    assert latest_tick("0 3 * * *", summer, MADRID) == datetime(2026, 7, 15, 1, 0, tzinfo=UTC)
    # The same expression in UTC is another instant.
    assert latest_tick("0 3 * * *", winter) == datetime(2026, 1, 15, 3, 0, tzinfo=UTC)


def test_daylight_saving_day_ticks_once() -> None:
    """On 2026-03-29 Madrid jumps from 02:00 to 03:00: a 02:30 job runs once that day (at the
    first valid minute after the gap), and daily ticks stay one per day."""
    after_gap = datetime(2026, 3, 29, 4, 0, tzinfo=UTC)  # 06:00 CEST
    tick = latest_tick("30 2 * * *", after_gap, MADRID)
    assert tick.astimezone(MADRID).date().isoformat() == "2026-03-29"
    before = latest_tick("30 2 * * *", tick - timedelta(seconds=1), MADRID)
    assert before.astimezone(MADRID).date().isoformat() == "2026-03-28"


def test_invalid_cron_is_refused() -> None:
    for bad in ("", "* * *", "61 * * * *", "every minute"):
        with pytest.raises(ValueError):
            check_cron(bad)
    check_cron("*/5 * * * *")
    check_cron("0 0 1 * MON-FRI")


# --- the scheduler's choice of ticks -------------------------------------------------------


def test_scheduler_picks_each_new_tick_once_and_coalesces_missed_ones() -> None:
    every_minute = Schedule("m", "* * * * *", "m", {})
    scheduler = Scheduler([every_minute])
    t0 = datetime(2026, 3, 1, 12, 0, 20, tzinfo=UTC)
    (first,) = scheduler.due(t0, UTC)
    assert first[1] == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    scheduler._last["m"] = first[1]
    assert scheduler.due(t0 + timedelta(seconds=30), UTC) == []
    # Two hours without a worker: one tick, the newest, not 120.
    later = scheduler.due(t0 + timedelta(hours=2), UTC)
    assert [tick for _, tick in later] == [datetime(2026, 3, 1, 14, 0, tzinfo=UTC)]


def test_a_schedule_with_its_own_timezone_ignores_the_programmes() -> None:
    madrid = Schedule("d", "0 3 * * *", "d", {}, timezone="Europe/Madrid")
    scheduler = Scheduler([madrid])
    at = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    ((_, tick),) = scheduler.due(at, ZoneInfo("America/New_York"))
    assert tick == datetime(2026, 1, 15, 2, 0, tzinfo=UTC)


def test_dedupe_keys_name_the_schedule_and_the_tick_in_utc() -> None:
    tick = datetime(2026, 1, 15, 3, 0, tzinfo=MADRID)
    key = dedupe_key(Schedule("points.catch_up", "* * * * *", "points.catch_up", {}), tick)
    assert key == "periodic:points.catch_up:2026-01-15T02:00:00+00:00"
