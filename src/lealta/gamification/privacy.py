"""Gamification in the GDPR documents: badges, challenge progress, streaks and the
leaderboard name in the data export; on erasure the leaderboard name goes (so the member
leaves every leaderboard), while badges and progress stay as
anonymous counts behind the erased member's id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from lealta.models import (
    ChallengeProgress,
    LeaderboardProfile,
    MemberBadge,
    StreakRung,
    StreakState,
)
from lealta.privacy import registry


@registry.eraser("gamification.leaderboard")
def erase_leaderboard(session: Session, member_id: int, now: datetime) -> None:
    # Without a display name a member is on no leaderboard; the consents themselves go with
    # the core tables (or stay, pseudonymised, with nothing left to show).
    session.execute(delete(LeaderboardProfile).where(LeaderboardProfile.member_id == member_id))


@registry.exporter("gamification")
def export_gamification(session: Session, member_id: int) -> dict[str, Any]:
    badges = session.scalars(
        select(MemberBadge).where(MemberBadge.member_id == member_id).order_by(MemberBadge.id)
    )
    progress = session.scalars(
        select(ChallengeProgress)
        .where(ChallengeProgress.member_id == member_id)
        .order_by(ChallengeProgress.id)
    )
    streaks = session.scalars(select(StreakState).where(StreakState.member_id == member_id))
    rungs = session.scalars(select(StreakRung).where(StreakRung.member_id == member_id))
    name = session.get(LeaderboardProfile, member_id)
    return {
        "badges": [
            {"badge": b.badge_id, "awarded_at": b.awarded_at.isoformat(), "points": b.points}
            for b in badges
        ],
        "challenges": [
            {
                "challenge": p.challenge_id,
                "period": p.period,
                "value": p.value,
                "target": p.target,
                "completed_at": p.completed_at.isoformat() if p.completed_at else None,
                "points": p.points,
            }
            for p in progress
        ],
        "streaks": [{"streak": s.streak_id, "length": s.length, "best": s.best} for s in streaks],
        "streak_rewards": [
            {"streak": r.streak_id, "months": r.months, "points": r.points} for r in rungs
        ],
        "leaderboard_name": name.display_name if name is not None else None,
    }
