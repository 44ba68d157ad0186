"""``/admin/gamification``: badges awarded, challenge completion rates and a preview of each
leaderboard (read-only; the definitions live in the programme document)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lealta.gamification import service
from lealta.kit.db import Database
from lealta.kit.http import ClockDep, DbDep
from lealta.programme import service as programmes
from lealta.programme.schema import name_in
from lealta.staff.service import require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import show
from lealta.web.templating import templates

router = APIRouter(prefix="/admin/gamification", include_in_schema=False)


def member_badges(request: Request, member_id: int) -> list[dict[str, Any]]:
    """The member 360's badges: every badge of the programme in force, earned or not."""
    db = getattr(request.app.state, "db", None)
    clock = getattr(request.app.state, "clock", None)
    if not isinstance(db, Database) or clock is None:
        return []
    lang = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=clock.now())
        held = service.badges_of(session, member_id)
        return [
            {
                "name": name_in(b.name, lang),
                "icon": b.icon,
                "earned": b.id in held,
                "awarded_at": held[b.id].awarded_at if b.id in held else None,
                "points": held[b.id].points if b.id in held else 0,
            }
            for b in programme.badges
            if b.active or b.id in held
        ]


templates.env.globals.update(member_badges=member_badges)


@router.get("")
def gamification_page(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "view")
    lang = i18n.negotiate(request)
    now = clock.now()
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=now)
        awarded = service.badge_counts(session)
        rates = service.challenge_rates(session)
        boards = [
            {
                "name": name_in(b.name, lang),
                "rows": service.standings(session, programme, b, now=now)[0],
            }
            for b in programme.leaderboards
        ]
    badges = [
        {"id": b.id, "name": name_in(b.name, lang), "icon": b.icon, "points": b.points,
         "awarded": awarded.get(b.id, 0)}
        for b in programme.badges
    ]  # fmt: skip
    challenges = []
    for c in programme.challenges:
        started, done = rates.get(c.id, (0, 0))
        challenges.append(
            {
                "id": c.id,
                "name": name_in(c.name, lang),
                "started": started,
                "done": done,
                "rate": round(100 * done / started) if started else 0,
            }
        )
    context = {"badges": badges, "challenges": challenges, "boards": boards}
    return show(request, staff, "admin/gamification.html", context)
