"""Calendar arithmetic shared by tiers and expiry (UTC, month-aware)."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Literal

PeriodEnd = Literal["none", "month_end", "quarter_end", "year_end"]


def add_months(at: datetime, months: int) -> datetime:
    """Same day ``months`` later (clamped to the month's last day), same time of day."""
    index = at.month - 1 + months
    year, month = at.year + index // 12, index % 12 + 1
    day = min(at.day, calendar.monthrange(year, month)[1])
    return at.replace(year=year, month=month, day=day)


def end_of(at: datetime, period: PeriodEnd) -> datetime:
    """The last instant of the month, quarter or year containing ``at`` (UTC); ``none``: at."""
    at = at.astimezone(UTC)
    if period == "none":
        return at
    if period == "month_end":
        last_month = at.month
    elif period == "quarter_end":
        last_month = ((at.month - 1) // 3 + 1) * 3
    else:
        last_month = 12
    start_next = datetime(at.year, last_month, 1, tzinfo=UTC)
    start_next = add_months(start_next, 1)
    return start_next - timedelta(microseconds=1)


def start_of_year(at: datetime) -> datetime:
    return datetime(at.astimezone(UTC).year, 1, 1, tzinfo=UTC)
