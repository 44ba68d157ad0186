"""The console's Referrals page: the funnel (links handed out, visits, sign-ups, qualified,
rewarded, flagged), the review queue of flagged referrals with approve / reject (audited),
and the latest referrals filtered by status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from lealta.kit.errors import LealtaError
from lealta.kit.http import ClockDep, DbDep
from lealta.programme import service as programmes
from lealta.referrals import maths, service
from lealta.staff.service import require
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import FLASH, show
from lealta.web.security import check_csrf

router = APIRouter(prefix="/admin/referrals", include_in_schema=False)

RECENT = 100


@router.get("")
def referrals_page(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    status: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    require(staff, "view")
    chosen = status if status in maths.STATUSES else ""
    with db.unit_of_work(write=False) as session:
        programme = programmes.current(session, now=clock.now())
        funnel = service.funnel(session)
        queue = service.list_referrals(session, status="flagged", limit=RECENT)
        recent = service.list_referrals(session, status=chosen or None, limit=RECENT)
    context = {
        "enabled": programme.referrals.enabled,
        "funnel": funnel,
        "queue": queue,
        "recent": recent,
        "status": chosen,
        "statuses": maths.STATUSES,
    }
    return show(request, staff, "admin/referrals.html", context)


def _review(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    referral_id: int,
    csrf_token: str,
    *,
    approve: bool,
    reason: str,
) -> Response:
    require(staff, "marketing")
    check_csrf(request, csrf_token)
    try:
        with db.unit_of_work() as session:
            now = clock.now()
            programme = programmes.current(session, now=now)
            if approve:
                service.approve(
                    session, referral_id, actor=staff.actor, programme=programme, now=now
                )
            else:
                service.reject(
                    session, referral_id, actor=staff.actor, programme=programme, now=now,
                    reason=reason.strip() or None,
                )  # fmt: skip
    except LealtaError:
        request.session[FLASH] = {
            "kind": "error",
            "text": "Referral %(id)s was already reviewed or no longer exists.",
            "values": {"id": referral_id},
        }
        return RedirectResponse("/admin/referrals", status_code=303)
    request.session[FLASH] = {
        "kind": "ok",
        "text": "Referral %(id)s approved." if approve else "Referral %(id)s rejected.",
        "values": {"id": referral_id},
    }
    return RedirectResponse("/admin/referrals", status_code=303)


@router.post("/{referral_id}/approve")
def approve_referral(
    request: Request,
    referral_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    return _review(request, db, clock, staff, referral_id, csrf_token, approve=True, reason="")


@router.post("/{referral_id}/reject")
def reject_referral(
    request: Request,
    referral_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    return _review(request, db, clock, staff, referral_id, csrf_token, approve=False, reason=reason)
