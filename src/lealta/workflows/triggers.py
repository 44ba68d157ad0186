"""Time-based workflow triggers: who is due, found by periodic jobs set-wise in SQL.

Each trigger names a moment of a member's life that no single event announces (a birthday,
an enrolment anniversary, an inactivity spell, points about to expire, points left unused,
being close to the next tier or to a reward, a cron schedule). :mod:`lealta.workflows.finders`
turns one into a single SELECT of ``(member_id, occurrence)``; the ``occurrence`` names the
instance (the birthday's date, the last order's date, the target tier and period, the tick)
so that starting runs idempotently on ``(workflow, member, occurrence)`` fires each once, however
often the periodic job looks.

This module holds the trigger models (imported by the programme schema, so it imports only
:mod:`lealta.programme.types`, pydantic and the stdlib) and the pure date and threshold maths
the finders use, tested without a database.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import Field, field_validator, model_validator

from lealta.programme.types import Model, Money, Percent, Slug

if TYPE_CHECKING:
    from lealta.programme.schema import Tiers

Days = Annotated[int, Field(ge=1, le=3650)]


class BirthdayTrigger(Model):
    """Members whose birthday is today (or in ``days_before`` days) in their own timezone.

    A 29 February birthday is celebrated on 28 February in years without one.
    """

    kind: Literal["birthday"] = "birthday"
    days_before: Annotated[int, Field(ge=0, le=60)] = Field(
        default=0, description="Greet this many days ahead of the birthday."
    )


class AnniversaryTrigger(Model):
    """Members whose enrolment anniversary (one year or more) is today in their timezone."""

    kind: Literal["anniversary"] = "anniversary"


class InactivityTrigger(Model):
    """Members with no order for ``days`` days (or none since enrolling ``days`` ago); once
    per inactivity spell."""

    kind: Literal["inactivity"] = "inactivity"
    days: Days


class PointsExpiringTrigger(Model):
    """Members with at least ``min_points`` in open lots expiring within ``within_days``; once
    per earliest expiry date."""

    kind: Literal["points_expiring"] = "points_expiring"
    within_days: Annotated[int, Field(ge=1, le=366)]
    min_points: Annotated[int, Field(ge=1)] = 1


class UnusedPointsTrigger(Model):
    """Members holding at least ``min_points`` earned ``older_than_days`` ago or more and no
    redemption in that time; once per spell without redemption."""

    kind: Literal["unused_points"] = "unused_points"
    older_than_days: Days
    min_points: Annotated[int, Field(ge=1)] = 1


class NearTierTrigger(Model):
    """Members whose qualifying value is below the next tier's threshold by at most
    ``within_amount`` (currency units, or points for a points-based tier) or
    ``within_percent`` of that threshold; once per target tier (and period)."""

    kind: Literal["near_tier"] = "near_tier"
    within_amount: Money | None = None
    within_percent: Percent | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> NearTierTrigger:
        if (self.within_amount is None) == (self.within_percent is None):
            raise ValueError("give exactly one of 'within_amount' and 'within_percent'")
        return self


class NearRewardTrigger(Model):
    """Members whose available points are short of a reward's cost by at most
    ``within_points`` (``reward`` names one; without it, the cheapest such reward)."""

    kind: Literal["near_reward"] = "near_reward"
    reward: Slug | None = None
    within_points: Annotated[int, Field(ge=1, le=100_000_000)]


class ScheduleTrigger(Model):
    """Every member (matching the workflow's conditions) at each tick of ``cron``, read in
    the programme's timezone."""

    kind: Literal["schedule"] = "schedule"
    cron: Annotated[str, Field(min_length=1, max_length=120)]

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        # The check of lealta.jobs.periodic.check_cron, with cronsim itself: importing the
        # jobs package here would bring the database into every pure module that reads the
        # programme schema (import-linter contracts).
        try:
            CronSim(value, datetime(2000, 1, 1, tzinfo=UTC))
        except (CronSimError, ValueError, IndexError) as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value


TimeTrigger = Annotated[
    BirthdayTrigger
    | AnniversaryTrigger
    | InactivityTrigger
    | PointsExpiringTrigger
    | UnusedPointsTrigger
    | NearTierTrigger
    | NearRewardTrigger
    | ScheduleTrigger,
    Field(discriminator="kind"),
]
TIME_TRIGGER_KINDS = (
    "birthday",
    "anniversary",
    "inactivity",
    "points_expiring",
    "unused_points",
    "near_tier",
    "near_reward",
    "schedule",
)


# --- dates ---------------------------------------------------------------------------------


def is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def celebrated_on(day: date) -> tuple[int, ...]:
    """The month and day (``month * 100 + day``: 229 is 29 February) of birthdays (or
    anniversaries) celebrated on ``day``: its own, plus 29 February on 28 February of a year
    without one."""
    own = day.month * 100 + day.day
    if own == 228 and not is_leap(day.year):
        return (own, 229)
    return (own,)


@functools.cache
def _zone(name: str) -> ZoneInfo:
    # ZoneInfo keeps only a few zones strongly; the finders read all of them at each look.
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{name}' is not an IANA time zone") from None


def local_date(now: datetime, zone: str) -> date:
    """The calendar date at ``now`` in ``zone`` (an IANA name; ValueError when unknown)."""
    return now.astimezone(_zone(zone)).date()


@functools.cache
def known_zones() -> tuple[str, ...]:
    """Every IANA zone name this Python knows, sorted."""
    return tuple(sorted(available_timezones() | {"UTC"}))


@dataclass(frozen=True, slots=True)
class ZoneDay:
    """For members in ``zone``: the date to celebrate and its month-day forms."""

    zone: str
    day: date
    month_day: int
    alt_month_day: int


def zone_days(now: datetime, *, fallback: str, ahead: int = 0) -> tuple[ZoneDay, list[ZoneDay]]:
    """The day to celebrate at ``now`` (local date + ``ahead`` days) in ``fallback`` (the
    programme's zone, used for members whose zone is unknown), and in every known zone
    where it differs from the fallback's. At any instant at most three local dates exist,
    so members in the remaining zones share the fallback's day."""

    def one(zone: str) -> ZoneDay:
        day = local_date(now, zone) + timedelta(days=ahead)
        forms = celebrated_on(day)
        return ZoneDay(zone, day, forms[0], forms[-1])

    base = one(fallback)
    others = [z for z in (one(name) for name in known_zones()) if z.day != base.day]
    return base, others


# --- thresholds ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NearBound:
    """Members in tier ``current`` are near ``target`` when ``low <= value < high`` (value in
    minor units for spend, points for points)."""

    current: str
    target: str
    low: int
    high: int


def near_tier_bounds(
    tiers: Tiers,
    *,
    scale: int,
    within_amount: Decimal | None,
    within_percent: Decimal | None,
) -> list[NearBound]:
    """For each tier but the top one, the value window that is "near" the next tier.

    ``scale`` is the currency's exponent for a spend basis (2 for EUR), 0 for points. The
    lower bound is rounded up, so "within 200 €" of 1000 € includes exactly 800 €.
    """
    exp = scale if tiers.basis == "spend" else 0
    bounds = []
    for current, target in zip(tiers.levels, tiers.levels[1:], strict=False):
        high = target.threshold.scaleb(exp)
        if within_amount is not None:
            low = high - within_amount.scaleb(exp)
        else:
            assert within_percent is not None
            low = high * (Decimal(100) - within_percent) / Decimal(100)
        high_int = int(high.to_integral_value(rounding=ROUND_CEILING))
        low_int = max(0, int(low.to_integral_value(rounding=ROUND_CEILING)))
        bounds.append(NearBound(current.id, target.id, low_int, high_int))
    return bounds


def iso_tick(tick: datetime) -> str:
    """A cron tick as the occurrence of a schedule trigger (UTC, seconds)."""
    return tick.astimezone(UTC).replace(microsecond=0).isoformat()
