"""The window of time the service accepts, defined once.

Every moment a client sends (an event's or refund's ``occurred_at``, an adjustment's
``occurred_at``, a CSV row's ``occurred_at``) must lie between :data:`EARLIEST` and
:data:`FUTURE_SKEW` after the server's clock; a birthday between :data:`EARLIEST_BIRTHDAY` and
today. Anything else is a ``422`` with a machine code, never date arithmetic that overflows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from lealta.kit.errors import InvalidInput

EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
"""No loyalty history is older than this; earlier moments are typos (``0001-01-01``)."""
FUTURE_SKEW = timedelta(minutes=5)
"""How far ahead of the server's clock a moment may be (clients' clocks drift)."""
EARLIEST_BIRTHDAY = date(1900, 1, 1)


class TimestampTooEarly(InvalidInput):
    code = "occurred_too_early"


class TimestampInFuture(InvalidInput):
    code = "occurred_in_future"


class InvalidBirthday(InvalidInput):
    code = "invalid_birthday"


def check_moment(value: datetime, *, now: datetime, field: str = "occurred_at") -> datetime:
    """``value`` if it lies in the accepted window, else ``occurred_too_early`` or
    ``occurred_in_future`` (422). Comparing aware datetimes never overflows, whatever the
    offset, so this is safe on any parsed value."""
    if value < EARLIEST:
        raise TimestampTooEarly(
            f"{field} is before {EARLIEST.date().isoformat()}.",
            details={"field": field, "value": value.isoformat(), "earliest": EARLIEST.isoformat()},
        )
    if value > now + FUTURE_SKEW:
        raise TimestampInFuture(
            f"{field} is in the future.",
            details={"field": field, "value": value.isoformat(), "occurred_at": value.isoformat()},
        )
    return value


def check_birthday(value: date | None, *, now: datetime) -> date | None:
    """A birthday from :data:`EARLIEST_BIRTHDAY` to today (a day of slack for time zones)."""
    if value is None:
        return None
    if value < EARLIEST_BIRTHDAY or value > (now + timedelta(days=1)).date():
        raise InvalidBirthday(
            f"birthday must be between {EARLIEST_BIRTHDAY.isoformat()} and today.",
            details={"field": "birthday", "value": value.isoformat()},
        )
    return value
