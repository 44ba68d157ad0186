"""When a message may go out: the frequency cap and quiet hours, as pure functions.

No session, no clock: the caller passes the instant and the member's timezone, so the rules
are tested directly (``tests/test_notify_policy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True, slots=True)
class Cap:
    """At most ``messages`` per member and channel in any ``hours`` window; 0 sends nothing."""

    messages: int
    hours: int

    def window_start(self, now: datetime) -> datetime:
        """Messages sent at or after this instant count towards the cap."""
        return now - timedelta(hours=self.hours)

    def allows(self, sent_in_window: int) -> bool:
        """Whether one more message fits, given how many went out in the window."""
        return sent_in_window < self.messages


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Hours of the member's day when nothing is sent: ``[start, end)``, wrapping midnight
    when ``start > end`` (22 → 8); ``start == end`` means no quiet hours."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start <= 23 and 0 <= self.end <= 23):
            raise ValueError("quiet hours are whole hours from 0 to 23")

    def ends_at(self, now: datetime, timezone: str) -> datetime | None:
        """``None`` when ``now`` is outside quiet hours in ``timezone``; otherwise the UTC
        instant they end (the message waits until then)."""
        if self.start == self.end:
            return None
        zone = member_zone(timezone)
        local = now.astimezone(zone)
        hour = local.hour
        if self.start < self.end:
            quiet = self.start <= hour < self.end
            end_day = local.date()
        else:
            quiet = hour >= self.start or hour < self.end
            end_day = local.date() + timedelta(days=1) if hour >= self.start else local.date()
        if not quiet:
            return None
        end = datetime.combine(end_day, time(self.end), tzinfo=zone)
        # Wall-clock arithmetic: a DST gap moves the end, never before ``now``.
        return max(end.astimezone(UTC), now.astimezone(UTC))


def member_zone(timezone: str) -> tzinfo:
    """The member's timezone, UTC when the stored name is unknown."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


CONSENT_PURPOSES: dict[str, str | None] = {
    "email": "marketing_email",
    "sms": "marketing_sms",
    "push": "marketing_push",
    "inapp": None,
}
"""The consent purpose each channel needs (the in-app inbox needs none: the member reads it
signed in, where nothing is pushed to them)."""


def needs_consent(channel: str) -> str | None:
    """The consent purpose a channel requires, if any."""
    return CONSENT_PURPOSES[channel]
