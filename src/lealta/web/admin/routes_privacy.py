"""Console pages for GDPR: erase a member (with a typed confirmation) and download one
member's data as JSON, both audited. The work is the privacy service's, as over the API."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from lealta.audit import service as audit
from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.members import data_export
from lealta.members import service as members
from lealta.models import Event, LedgerEntry, Order
from lealta.privacy import service as privacy
from lealta.programme import service as programmes
from lealta.staff.service import require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import done, member_url, show
from lealta.web.security import check_csrf

router = APIRouter(prefix="/admin", include_in_schema=False)


def _erase_page(
    request: Request,
    db: DbDep,
    staff: StaffDep,
    external_id: str,
    *,
    typed: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    with db.unit_of_work(write=False) as session:
        member = members.get(session, external_id)
        counts = {
            "orders": session.scalar(
                select(func.count()).select_from(Order).where(Order.member_id == member.id)
            ),
            "entries": session.scalar(
                select(func.count())
                .select_from(LedgerEntry)
                .where(LedgerEntry.member_id == member.id)
            ),
            "events": session.scalar(
                select(func.count()).select_from(Event).where(Event.member_id == member.id)
            ),
        }
        session.expunge(member)
    return show(
        request,
        staff,
        "admin/privacy_erase.html",
        {
            "member": member,
            "member_url": member_url(member.external_id),
            "counts": counts,
            "typed": typed,
            "erase_error": error,
        },
        status_code=status_code,
    )


@router.get("/members/{external_id}/erase")
def erase_form(request: Request, external_id: str, db: DbDep, staff: StaffDep) -> Response:
    """What erasure removes and keeps, and a form asking to type the member's id."""
    require(staff, "admin")
    return _erase_page(request, db, staff, external_id)


@router.post("/members/{external_id}/erase")
def erase(
    request: Request,
    external_id: str,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Erase the member once the typed id matches (a mistyped id changes nothing)."""
    check_csrf(request, csrf_token)
    require(staff, "admin")
    _ = i18n.gettext_for(i18n.negotiate(request))
    if confirm.strip() != external_id:
        return _erase_page(
            request,
            db,
            staff,
            external_id,
            typed=confirm,
            error=_("Type the member's external id exactly to confirm the erasure."),
            status_code=422,
        )
    with db.unit_of_work() as session:
        member = members.get(session, external_id)
        record = privacy.request_erasure(
            session,
            member,
            secret=settings.secret_key,
            channel="console",
            actor=staff.actor,
            now=clock.now(),
            data_dir=settings.data_dir,
        )
        pseudonym, status = record.pseudonym, record.status
    if status == "completed":
        return done(
            request,
            member_url(pseudonym),
            "The member's personal data was erased. The account is now %(pseudonym)s.",
            pseudonym=pseudonym,
        )
    return done(
        request,
        member_url(pseudonym),
        "Erasure scheduled: a background job is removing the member's history (%(pseudonym)s).",
        pseudonym=pseudonym,
    )


@router.get("/members/{external_id}/data-export")
def data_export_file(
    request: Request, external_id: str, db: DbDep, clock: ClockDep, staff: StaffDep
) -> Response:
    """The member's data as the JSON document of the API and the cockpit; audited."""
    require(staff, "support")
    now = clock.now()
    with db.unit_of_work() as session:
        member = members.get(session, external_id)
        programme = programmes.current(session, now=now)
        data = data_export.export(session, member, currency=programme.currency, now=now)
        audit.record(
            session,
            actor=staff.actor,
            action="member.data_export",
            target_type="member",
            target_id=member.external_id,
            now=now,
        )
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            "Content-Disposition": (
                f'attachment; filename="member-data-{now.date().isoformat()}.json"'
            ),
            "Cache-Control": "no-store",
        },
    )
