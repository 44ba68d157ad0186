"""The frequency cap and quiet hours, and template rendering, as pure functions (no DB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lealta.notify import defaults
from lealta.notify.policy import Cap, QuietHours, needs_consent
from lealta.notify.render import InvalidTemplate, check, render

MADRID = "Europe/Madrid"


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- cap --------------------------------------------------------------------------------------


def test_the_cap_allows_up_to_its_count_in_its_window() -> None:
    cap = Cap(messages=3, hours=24)
    assert [cap.allows(n) for n in range(5)] == [True, True, True, False, False]
    assert cap.window_start(_utc(2026, 1, 5, 12)) == _utc(2026, 1, 4, 12)
    assert not Cap(messages=0, hours=24).allows(0)


@given(st.integers(0, 50), st.integers(0, 50))
def test_the_cap_is_monotonic(messages: int, sent: int) -> None:
    cap = Cap(messages=messages, hours=1)
    if not cap.allows(sent):
        assert not cap.allows(sent + 1)
    assert cap.allows(sent) == (sent < messages)


# --- quiet hours --------------------------------------------------------------------------------


def test_quiet_hours_wrapping_midnight_end_in_the_members_morning() -> None:
    quiet = QuietHours(22, 8)
    # 21:59 in Madrid (UTC+1 in winter): not quiet.
    assert quiet.ends_at(_utc(2026, 1, 5, 20, 59), MADRID) is None
    # 22:00 Madrid → 08:00 Madrid next day = 07:00 UTC.
    assert quiet.ends_at(_utc(2026, 1, 5, 21, 0), MADRID) == _utc(2026, 1, 6, 7)
    # 03:00 Madrid → 08:00 the same day.
    assert quiet.ends_at(_utc(2026, 1, 6, 2, 0), MADRID) == _utc(2026, 1, 6, 7)
    # 08:00 sharp is awake again.
    assert quiet.ends_at(_utc(2026, 1, 6, 7, 0), MADRID) is None


def test_quiet_hours_follow_summer_time_and_other_zones() -> None:
    quiet = QuietHours(22, 8)
    # July: Madrid is UTC+2, so 23:00 Madrid is 21:00 UTC and the end is 06:00 UTC.
    assert quiet.ends_at(_utc(2026, 7, 1, 21), MADRID) == _utc(2026, 7, 2, 6)
    # The same instant is 06:00 in Tokyo (UTC+9): still quiet until 08:00 → 23:00 UTC.
    assert quiet.ends_at(_utc(2026, 7, 1, 21), "Asia/Tokyo") == _utc(2026, 7, 1, 23)
    # An unknown zone is read as UTC.
    assert quiet.ends_at(_utc(2026, 7, 1, 23), "Mars/Olympus") == _utc(2026, 7, 2, 8)


def test_quiet_hours_within_one_day_and_none() -> None:
    lunch = QuietHours(13, 15)
    assert lunch.ends_at(_utc(2026, 1, 5, 13, 30), "UTC") == _utc(2026, 1, 5, 15)
    assert lunch.ends_at(_utc(2026, 1, 5, 15), "UTC") is None
    assert QuietHours(8, 8).ends_at(_utc(2026, 1, 5, 3), "UTC") is None
    with pytest.raises(ValueError):
        QuietHours(24, 8)


ZONES = st.sampled_from(["Europe/Madrid", "America/New_York", "Asia/Tokyo", "UTC", "Asia/Kolkata"])


@given(
    st.integers(0, 23),
    st.integers(0, 23),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
    ZONES,
)
def test_a_delayed_message_waits_until_a_waking_hour_within_a_day(
    start: int, end: int, moment: datetime, zone: str
) -> None:
    quiet = QuietHours(start, end)
    now = moment.replace(tzinfo=UTC)
    until = quiet.ends_at(now, zone)
    if until is None:
        return
    assert now <= until <= now + timedelta(hours=25)
    local = until.astimezone(ZoneInfo(zone))
    # The end is the configured hour (or later, past a DST gap), and it is not quiet then.
    assert local.hour == end or quiet.ends_at(until, zone) is None
    assert quiet.ends_at(until, zone) is None or until == now


def test_consent_purposes_per_channel() -> None:
    assert needs_consent("email") == "marketing_email"
    assert needs_consent("sms") == "marketing_sms"
    assert needs_consent("push") == "marketing_push"
    assert needs_consent("inapp") is None


# --- rendering --------------------------------------------------------------------------------


def _render(text: str, language: str, **context: object) -> str:
    return render(
        subject="",
        text=text,
        html=None,
        context=dict(context),
        language=language,
        timezone=MADRID,
        currency="EUR",
    ).text


def test_filters_format_in_the_members_locale_and_timezone() -> None:
    source = "{{ n|number }} | {{ m|money }} | {{ d|date }} | {{ t|datetime }} | {{ p|percent }}"
    values = {
        "n": 1234567,
        "m": "19.9",
        "d": "2026-03-01",
        "t": "2026-01-05T23:30:00+00:00",  # 00:30 on the 6th in Madrid
        "p": "42",
    }
    es = _render(source, "es", **values)
    en = _render(source, "en", **values)
    assert es.startswith("1.234.567 | 19,90\xa0€ | 1 de marzo de 2026 | 6 ene 2026, 0:30:00")
    assert en.startswith("1,234,567 | €19.90 | March 1, 2026 | Jan 6, 2026, 12:30:00")
    assert es.endswith("42\xa0%") and en.endswith("42%")


def test_templates_are_checked_and_sandboxed() -> None:
    check("Hola {{ member.name }}", field="subject")
    with pytest.raises(InvalidTemplate) as broken:
        check("{% if %}", field="body_text")
    assert "body_text" in broken.value.message
    with pytest.raises(InvalidTemplate):
        check("{{ x|nofilter }}", field="body_text")
    with pytest.raises(InvalidTemplate):
        _render("{{ ''.__class__.__mro__[1].__subclasses__() }}", "en")
    assert _render("{{ missing }}!", "en") == "!"


def test_every_shipped_template_renders_in_both_languages() -> None:
    context = {
        "member": {"name": "Ana"},
        "balance": 1200,
        "points": 50,
        "tier": {"name": "Oro"},
        "next_tier": {"name": "Platino"},
        "amount_needed": "300,00 €",
        "crossed": "100",
        "reward": {"name": "Café"},
        "coupon": {"code": "C-1", "expires_at": "2026-02-01T00:00:00+00:00"},
        "expiring": {"points": 300, "on": "2026-02-01"},
        "cockpit_url": "https://x/me",
        "unsubscribe_url": "https://x/u",
    }
    for key in defaults.KEYS:
        for channel in ("email", "sms", "push", "inapp"):
            for language in ("es", "en"):
                found = defaults.variant(key, channel, language)
                assert found is not None
                out = render(
                    subject=found[0],
                    text=found[1],
                    html=found[2],
                    context=context,
                    language=language,
                    timezone=MADRID,
                    currency="EUR",
                )
                assert out.text.strip() and "{{" not in out.text
                if channel == "email":
                    assert out.subject and out.html and "https://x/u" in out.text
