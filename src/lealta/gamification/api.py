"""``/v1/members/{id}/badges``, ``/v1/members/{id}/challenges`` and
``/v1/leaderboards/{id}``: read-only views of gamification for the shop's own pages."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from lealta.apikeys.deps import Reader
from lealta.gamification import maths, service
from lealta.kit.http import ERROR_RESPONSES, ClockDep, DbDep
from lealta.kit.ids import ExternalId
from lealta.members import service as members
from lealta.programme import service as programmes
from lealta.programme.schema import Slug, name_in

router = APIRouter(tags=["gamification"], responses=ERROR_RESPONSES)


class BadgeOut(BaseModel):
    id: str
    name: str
    icon: str
    earned: bool
    awarded_at: datetime | None
    points: int


class BadgeList(BaseModel):
    items: list[BadgeOut]


class ChallengeOut(BaseModel):
    id: str
    name: str
    period: str
    value: int
    target: int
    percent: int
    completed_at: datetime | None
    points: int


class ChallengeList(BaseModel):
    items: list[ChallengeOut]


class StandingOut(BaseModel):
    rank: int
    display_name: str
    score: int


class LeaderboardOut(BaseModel):
    id: str
    name: str
    items: list[StandingOut]


@router.get(
    "/v1/members/{external_id}/badges", response_model=BadgeList, summary="A member's badges"
)
def member_badges(
    external_id: ExternalId, principal: Reader, db: DbDep, clock: ClockDep
) -> BadgeList:
    """Every badge of the programme, earned or not (names in Spanish)."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        programme = programmes.current(session, now=clock.now())
        held = service.badges_of(session, member.id)
    return BadgeList(
        items=[
            BadgeOut(
                id=b.id,
                name=name_in(b.name, "es"),
                icon=b.icon,
                earned=b.id in held,
                awarded_at=held[b.id].awarded_at if b.id in held else None,
                points=held[b.id].points if b.id in held else b.points,
            )
            for b in programme.badges
        ]
    )


@router.get(
    "/v1/members/{external_id}/challenges",
    response_model=ChallengeList,
    summary="A member's challenge progress",
)
def member_challenges(
    external_id: ExternalId, principal: Reader, db: DbDep, clock: ClockDep
) -> ChallengeList:
    """Progress in each period the member took part in, newest first; ``value`` and
    ``target`` are counts, or minor units for spend goals."""
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        programme = programmes.current(session, now=clock.now())
        rows = service.progress_of(session, member.id)
    names = {c.id: name_in(c.name, "es") for c in programme.challenges}
    items = [
        ChallengeOut(
            id=cid,
            name=names.get(cid, cid),
            period=period,
            value=r.value,
            target=r.target,
            percent=maths.percent(r.value, r.target),
            completed_at=r.completed_at,
            points=r.points,
        )
        for (cid, period), r in rows.items()
    ]
    items.sort(key=lambda c: (c.period, c.id), reverse=True)
    return ChallengeList(items=items)


@router.get("/v1/leaderboards/{board_id}", response_model=LeaderboardOut, summary="A leaderboard")
def leaderboard(board_id: Slug, principal: Reader, db: DbDep, clock: ClockDep) -> LeaderboardOut:
    """The top of the board now: opted-in members only, by their chosen names; tied scores
    share a rank."""
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        board = service.board(programme, board_id)
        top, _ = service.standings(session, programme, board, now=now)
    return LeaderboardOut(
        id=board.id,
        name=name_in(board.name, "es"),
        items=[StandingOut(rank=s.rank, display_name=s.display_name, score=s.score) for s in top],
    )
