"""Time-based workflow triggers: the models and their pure date and threshold maths (no DB)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from lealta.jobs.periodic import check_cron
from lealta.programme.schema import Tiers
from lealta.workflows import triggers as t

ADAPTER: TypeAdapter[t.TimeTrigger] = TypeAdapter(t.TimeTrigger)
TIERS = Tiers.model_validate(
    {
        "levels": [
            {"id": "basico", "name": {"es": "Básico"}, "threshold": 0},
            {"id": "plata", "name": {"es": "Plata"}, "threshold": 500},
            {"id": "oro", "name": {"es": "Oro"}, "threshold": "1000.50"},
        ]
    }
)


def test_the_union_is_discriminated_on_kind() -> None:
    assert isinstance(ADAPTER.validate_python({"kind": "birthday"}), t.BirthdayTrigger)
    found = ADAPTER.validate_python({"kind": "inactivity", "days": 90})
    assert isinstance(found, t.InactivityTrigger) and found.days == 90
    assert {a.__name__ for a in t.TimeTrigger.__args__[0].__args__} == {  # type: ignore[attr-defined]
        f"{''.join(p.title() for p in k.split('_'))}Trigger" for k in t.TIME_TRIGGER_KINDS
    }
    with pytest.raises(ValidationError) as err:
        ADAPTER.validate_python({"kind": "inactivity"})
    assert err.value.errors()[0]["loc"] == ("inactivity", "days")
    with pytest.raises(ValidationError):
        ADAPTER.validate_python({"kind": "moon_phase"})
    with pytest.raises(ValidationError):
        ADAPTER.validate_python({"kind": "birthday", "at": 9})  # unknown keys are errors


def test_near_tier_needs_exactly_one_bound() -> None:
    assert ADAPTER.validate_python({"kind": "near_tier", "within_amount": "200"})
    assert ADAPTER.validate_python({"kind": "near_tier", "within_percent": 10})
    for bad in ({}, {"within_amount": 200, "within_percent": 10}):
        with pytest.raises(ValidationError, match="exactly one"):
            ADAPTER.validate_python({"kind": "near_tier", **bad})
    with pytest.raises(ValidationError):
        ADAPTER.validate_python({"kind": "near_tier", "within_percent": 101})


@pytest.mark.parametrize(
    "cron", ["0 9 * * 1", "*/15 * * * *", "0 0 9 * * *", "every monday", "61 * * * *", "* * *", ""]
)
def test_schedule_cron_is_checked_as_the_periodic_jobs_check_it(cron: str) -> None:
    try:
        check_cron(cron)
        valid = True
    except ValueError:
        valid = False
    if valid:
        assert ADAPTER.validate_python({"kind": "schedule", "cron": cron})
    else:
        with pytest.raises(ValidationError):
            ADAPTER.validate_python({"kind": "schedule", "cron": cron})
    assert valid == (cron in {"0 9 * * 1", "*/15 * * * *", "0 0 9 * * *"})


def test_birthdays_on_29_february_are_kept_on_28_february_in_other_years() -> None:
    assert t.celebrated_on(date(2027, 2, 28)) == (228, 229)
    assert t.celebrated_on(date(2028, 2, 28)) == (228,)
    assert t.celebrated_on(date(2028, 2, 29)) == (229,)
    assert t.celebrated_on(date(2100, 2, 28)) == (228, 229)  # not a leap year
    assert t.celebrated_on(date(2000, 2, 28)) == (228,)  # a leap year
    assert t.celebrated_on(date(2027, 3, 1)) == (301,)
    assert t.celebrated_on(date(2027, 12, 31)) == (1231,)


@given(st.dates(min_value=date(1901, 1, 1), max_value=date(2199, 12, 31)))
def test_every_birthday_is_celebrated_exactly_once_a_year(day: date) -> None:
    """Over a whole year each month-day, 29 February included, comes up exactly once."""
    seen: dict[int, int] = {}
    start = date(day.year, 1, 1)
    for offset in range(366 if t.is_leap(day.year) else 365):
        for form in t.celebrated_on(start + timedelta(days=offset)):
            seen[form] = seen.get(form, 0) + 1
    assert len(seen) == 366 and set(seen.values()) == {1}


def test_local_dates_across_midnight() -> None:
    now = datetime(2027, 2, 28, 11, 30, tzinfo=UTC)
    assert t.local_date(now, "Pacific/Auckland") == date(2027, 3, 1)  # 00:30 NZDT
    assert t.local_date(now, "America/Los_Angeles") == date(2027, 2, 28)  # 03:30 PST
    before = datetime(2027, 2, 28, 10, 59, tzinfo=UTC)
    assert t.local_date(before, "Pacific/Auckland") == date(2027, 2, 28)  # 23:59
    with pytest.raises(ValueError, match="IANA"):
        t.local_date(now, "Mars/Base")


def test_zone_days_lists_only_zones_off_the_programme_date() -> None:
    now = datetime(2027, 2, 28, 11, 30, tzinfo=UTC)
    base, others = t.zone_days(now, fallback="Europe/Madrid")
    assert (base.day, base.month_day, base.alt_month_day) == (date(2027, 2, 28), 228, 229)
    by_zone = {z.zone: z for z in others}
    assert by_zone["Pacific/Auckland"].day == date(2027, 3, 1)
    assert by_zone["Pacific/Auckland"].month_day == by_zone["Pacific/Auckland"].alt_month_day
    assert "America/Los_Angeles" not in by_zone and "Europe/Madrid" not in by_zone
    assert all(z.day != base.day for z in others)
    ahead, _ = t.zone_days(now - timedelta(days=1), fallback="Europe/Madrid", ahead=1)
    assert ahead.day == date(2027, 2, 28)


def test_near_tier_bounds_by_amount_and_percent() -> None:
    by_amount = t.near_tier_bounds(TIERS, scale=2, within_amount=Decimal(200), within_percent=None)
    assert by_amount == [
        t.NearBound("basico", "plata", 30_000, 50_000),
        t.NearBound("plata", "oro", 80_050, 100_050),
    ]
    by_percent = t.near_tier_bounds(TIERS, scale=2, within_amount=None, within_percent=Decimal(10))
    # 90 % of 1000.50 € is 900.45 €.
    assert by_percent[1] == t.NearBound("plata", "oro", 90_045, 100_050)
    wide = t.near_tier_bounds(TIERS, scale=2, within_amount=Decimal(9999), within_percent=None)
    assert wide[0].low == 0
    points = TIERS.model_copy(update={"basis": "points"})
    assert t.near_tier_bounds(points, scale=2, within_amount=Decimal(50), within_percent=None)[
        0
    ] == t.NearBound("basico", "plata", 450, 500)


def test_a_tick_is_an_iso_utc_time() -> None:
    tick = datetime(2027, 2, 28, 9, 0, 0, 500, tzinfo=UTC)
    assert t.iso_tick(tick) == "2027-02-28T09:00:00+00:00"
