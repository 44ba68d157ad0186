"""The pure part of gamification: periods in a time zone, streak steps, ladder rungs and
badge thresholds. No database, no clock: every time is passed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from lealta.gamification.schema import BadgeCondition, Challenge, Rung

FIXED = "fixed"


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def month_index(at: datetime, tz: str) -> int:
    """Months since year 0 of ``at`` seen in ``tz``: consecutive months differ by one."""
    local = at.astimezone(zone(tz))
    return local.year * 12 + local.month - 1


def month_label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def period_key(kind: str, at: datetime, tz: str) -> str:
    """``YYYY-MM`` (month), ``YYYY-Www`` (ISO week) or ``fixed``, of ``at`` in ``tz``."""
    if kind == FIXED:
        return FIXED
    local = at.astimezone(zone(tz))
    if kind == "week":
        year, week, _ = local.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return f"{local.year:04d}-{local.month:02d}"


def period_bounds(kind: str, at: datetime, tz: str) -> tuple[datetime | None, datetime | None]:
    """The UTC ``[start, end)`` of the month or week holding ``at`` in ``tz``; ``(None,
    None)`` for ``all``."""
    if kind not in ("month", "week"):
        return None, None
    tzinfo = zone(tz)
    local = at.astimezone(tzinfo)
    if kind == "week":
        day = local.date() - timedelta(days=local.weekday())
        start = datetime(day.year, day.month, day.day, tzinfo=tzinfo)
        nxt = day + timedelta(days=7)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tzinfo)
    else:
        start = datetime(local.year, local.month, 1, tzinfo=tzinfo)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        end = datetime(year, month, 1, tzinfo=tzinfo)
    return start.astimezone(UTC), end.astimezone(UTC)


def challenge_period(challenge: Challenge, at: datetime, tz: str) -> str | None:
    """The period of ``challenge`` an event at ``at`` counts for, or None outside its window."""
    if not challenge.live(at):
        return None
    return period_key(challenge.period, at, tz)


def challenge_target(challenge: Challenge, exponent: int) -> int:
    """The goal in stored units: a count, or spend in minor units of the currency."""
    if challenge.goal.measure == "count":
        return int(challenge.goal.target)
    return int((challenge.goal.target * (Decimal(10) ** exponent)).to_integral_value())


def percent(value: int, target: int) -> int:
    if target <= 0:
        return 100
    return max(0, min(100, value * 100 // target))


@dataclass(frozen=True, slots=True)
class StreakState:
    started: int
    """Month index where the current run began."""
    last: int
    """Month index of the newest month with an order."""
    length: int
    best: int


def streak_step(state: StreakState | None, month: int) -> StreakState | None:
    """The state after an order in ``month``; None when nothing changes (same month again,
    or a late event for a month before the newest one: history is never rewritten)."""
    if state is None:
        return StreakState(month, month, 1, 1)
    if month <= state.last:
        return None
    if month == state.last + 1:
        length = state.length + 1
        return StreakState(state.started, month, length, max(state.best, length))
    return StreakState(month, month, 1, max(state.best, 1))


def streak_alive(state: StreakState | None, now_month: int) -> int:
    """The current run's length as of ``now_month``: 0 once a whole month went by without an
    order (the run is broken; the next order starts again at 1)."""
    if state is None or now_month - state.last > 1:
        return 0
    return state.length


def rungs_reached(ladder: list[Rung], before: int, after: int) -> list[Rung]:
    """The rungs whose length lies in ``(before, after]`` (each paid once per run)."""
    return [r for r in ladder if before < r.months <= after]


def next_rung(ladder: list[Rung], length: int) -> Rung | None:
    return next((r for r in ladder if r.months > length), None)


@dataclass(frozen=True, slots=True)
class Metrics:
    """A member's figures badges are judged on (spend in minor units)."""

    orders: int = 0
    spend_minor: int = 0
    events: dict[str, int] | None = None
    tier_rank: int | None = None


def badge_met(
    condition: BadgeCondition, metrics: Metrics, *, exponent: int, tier_ranks: dict[str, int]
) -> bool:
    """Whether ``metrics`` satisfy ``condition`` (tiers: the named one or a higher one)."""
    if condition.metric == "orders":
        return metrics.orders >= condition.at_least
    if condition.metric == "spend":
        return Decimal(metrics.spend_minor) >= condition.at_least * (Decimal(10) ** exponent)
    if condition.metric == "events":
        assert condition.event_type is not None
        return (metrics.events or {}).get(condition.event_type, 0) >= condition.at_least
    assert condition.tier is not None
    wanted = tier_ranks.get(condition.tier)
    return wanted is not None and metrics.tier_rank is not None and metrics.tier_rank >= wanted


DISPLAY_NAME_MAX = 24


def clean_display_name(raw: str) -> tuple[str | None, str | None]:
    """``(name, None)`` for an acceptable leaderboard name, else ``(None, problem)``: one of
    ``empty``, ``too_long``, ``email``, ``characters``. Spaces are squeezed."""
    name = " ".join(raw.split())
    if not name:
        return None, "empty"
    if len(name) > DISPLAY_NAME_MAX:
        return None, "too_long"
    if "@" in name:
        return None, "email"
    if not all(ch.isalnum() or ch in " ._-'" for ch in name):
        return None, "characters"
    return name, None


def display_key(name: str) -> str:
    """What makes two names "the same" (case and spaces ignored)."""
    return "".join(name.casefold().split())
