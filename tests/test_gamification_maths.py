"""The pure part of gamification, without a database: periods in a time zone, streak steps,
ladder rungs, badge thresholds and display names."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from lealta.gamification import maths
from lealta.gamification.schema import BadgeCondition, Challenge, Rung

MADRID = "Europe/Madrid"


def test_an_order_late_on_31_october_utc_is_november_in_madrid() -> None:
    at = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    assert maths.period_key("month", at, MADRID) == "2026-11"
    assert maths.period_key("month", at, "UTC") == "2026-10"
    assert maths.month_index(at, MADRID) == maths.month_index(at, "UTC") + 1


def test_weeks_and_month_bounds_follow_the_zone() -> None:
    at = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert maths.period_key("week", at, MADRID) == "2026-W44"
    start, end = maths.period_bounds("month", at, MADRID)
    assert start == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert end == datetime(2026, 11, 30, 23, tzinfo=UTC)
    summer = maths.period_bounds("month", datetime(2026, 7, 10, tzinfo=UTC), MADRID)
    assert summer[0] == datetime(2026, 6, 30, 22, tzinfo=UTC)
    assert maths.period_bounds("all", at, MADRID) == (None, None)


def test_a_fixed_challenge_counts_only_inside_its_window() -> None:
    challenge = Challenge.model_validate(
        {
            "id": "nov",
            "name": "3 orders in November",
            "goal": {"target": 3},
            "period": "fixed",
            "starts_at": "2026-11-01T00:00:00+01:00",
            "ends_at": "2026-12-01T00:00:00+01:00",
            "points": 10,
        }
    )
    inside = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    assert maths.challenge_period(challenge, inside, MADRID) == "fixed"
    assert maths.challenge_period(challenge, datetime(2026, 10, 31, 22, tzinfo=UTC), MADRID) is None
    assert maths.challenge_period(challenge, datetime(2026, 12, 1, tzinfo=UTC), MADRID) is None
    spend = Challenge.model_validate(
        {"id": "s", "name": "s", "goal": {"measure": "spend", "target": "100.50"}, "points": 1}
    )
    assert maths.challenge_target(spend, 2) == 10050


def test_streak_steps_reset_after_a_missed_month_and_ignore_the_past() -> None:
    state = maths.streak_step(None, 100)
    assert state == maths.StreakState(100, 100, 1, 1)
    assert maths.streak_step(state, 100) is None
    state = maths.streak_step(state, 101)
    state = maths.streak_step(state, 102)
    assert state == maths.StreakState(100, 102, 3, 3)
    assert maths.streak_step(state, 99) is None
    assert maths.streak_alive(state, 103) == 3
    assert maths.streak_alive(state, 104) == 0
    assert maths.streak_step(state, 104) == maths.StreakState(104, 104, 1, 3)


LADDER = [Rung(months=3, points=100), Rung(months=6, points=300), Rung(months=12, points=1000)]


@given(st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=40))
def test_each_rung_is_reached_once_per_run(months: list[int]) -> None:
    state: maths.StreakState | None = None
    paid: list[tuple[int, int]] = []
    for month in sorted(months):
        new = maths.streak_step(state, month)
        if new is None:
            continue
        prior = state.length if state is not None and new.started == state.started else 0
        paid += [(new.started, r.months) for r in maths.rungs_reached(LADDER, prior, new.length)]
        state = new
    assert len(paid) == len(set(paid))
    assert state is not None
    for _started, rung in paid:
        assert rung <= state.best


def test_badge_thresholds() -> None:
    figures = maths.Metrics(orders=10, spend_minor=50_000, events={"review.posted": 2}, tier_rank=2)
    ranks = {"basico": 0, "plata": 1, "oro": 2, "platino": 3}

    def met(**condition: object) -> bool:
        return maths.badge_met(
            BadgeCondition.model_validate(condition), figures, exponent=2, tier_ranks=ranks
        )

    assert met(metric="orders", at_least=10) and not met(metric="orders", at_least=11)
    assert met(metric="spend", at_least=Decimal("500")) and not met(metric="spend", at_least=501)
    assert not met(metric="events", event_type="review.posted", at_least=3)
    assert met(metric="events", event_type="review.posted", at_least=2)
    assert met(metric="tier", tier="plata") and met(metric="tier", tier="oro")
    assert not met(metric="tier", tier="platino")


def test_display_names() -> None:
    assert maths.clean_display_name("  Ana   M. ") == ("Ana M.", None)
    assert maths.clean_display_name("José-Luis") == ("José-Luis", None)
    assert maths.clean_display_name("a@b.es")[1] == "email"
    assert maths.clean_display_name("x" * 25)[1] == "too_long"
    assert maths.clean_display_name("<script>")[1] == "characters"
    assert maths.clean_display_name("   ")[1] == "empty"
    assert maths.display_key("Ana M.") == maths.display_key(" ana  m. ")
