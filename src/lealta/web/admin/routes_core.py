"""The console's core pages: the overview and the audit log; members, users and API keys
live in their own modules and are mounted here, so the app includes one router."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lealta.kit.http import ClockDep, DbDep
from lealta.programme import service as programmes
from lealta.reporting import queries
from lealta.staff.service import require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import show
from lealta.web.admin.routes_access import router as access_router
from lealta.web.admin.routes_members import router as members_router

router = APIRouter(include_in_schema=False)


@router.get("/admin")
def overview(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "view")
    language = i18n.negotiate(request)
    with db.unit_of_work(write=False) as session:
        now = clock.now()
        programme = programmes.current(session, now=now)
        figures = queries.overview(session, programme, now=now, language=language)
    return show(
        request,
        staff,
        "admin/overview.html",
        {"figures": figures, "programme_name": programme.name},
    )


@router.get("/admin/audit")
def audit_log(
    request: Request,
    db: DbDep,
    staff: StaffDep,
    actor: str = "",
    action: str = "",
    page: str = "1",
) -> Response:
    require(staff, "view")
    actor, action = actor[:200], action[:64]
    with db.unit_of_work(write=False) as session:
        result, actions = queries.audit_log(
            session, actor=actor, action=action, page=queries.clamp_page(page)
        )
    return show(
        request,
        staff,
        "admin/audit.html",
        {"result": result, "actions": actions, "actor": actor, "action": action},
    )


router.include_router(members_router)
router.include_router(access_router)
