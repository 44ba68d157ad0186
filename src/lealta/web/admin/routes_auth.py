"""Console sign-in and sign-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lealta.kit.http import ClockDep, DbDep, SettingsDep
from lealta.staff import service as staff_users
from lealta.web import i18n
from lealta.web.admin import auth
from lealta.web.admin.deps import StaffDep
from lealta.web.security import check_csrf
from lealta.web.templating import render

router = APIRouter(prefix="/admin", include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only local console paths: never redirect off-site."""
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return "/admin"


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return render(request, "admin/login.html", {"next": _safe_next(next)})


@router.post("/login")
def login(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/admin",
) -> Response:
    check_csrf(request, csrf_token)
    refused: staff_users.InvalidCredentials | None = None
    with db.unit_of_work() as session:
        try:
            user = staff_users.authenticate(
                session,
                email,
                password,
                now=clock.now(),
                max_attempts=settings.admin_lockout_attempts,
                lock_minutes=settings.admin_lockout_minutes,
            )
            auth.sign_in(request, user)
        except staff_users.InvalidCredentials as exc:
            # Caught inside the unit of work so the failed attempt (and a lock) is committed;
            # raising out of it would roll the counter back and nobody would ever be locked.
            refused = exc
    if refused is not None:
        # One answer for a wrong password, an unknown email and a locked account.
        _ = i18n.gettext_for(i18n.negotiate(request))
        message = _(
            "Wrong email or password. After %(attempts)s failed attempts, signing in is"
            " paused for %(minutes)s minutes.",
            attempts=settings.admin_lockout_attempts,
            minutes=settings.admin_lockout_minutes,
        )
        return render(
            request,
            "admin/login.html",
            {"error": message, "email": email, "next": _safe_next(next)},
            status_code=refused.status_code,
        )
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(
    request: Request, db: DbDep, staff: StaffDep, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Sign out everywhere: every session of this user ends, copied cookies included."""
    check_csrf(request, csrf_token)
    with db.unit_of_work() as session:
        auth.sign_out(session, request, staff.id)
    return RedirectResponse("/admin/login", status_code=303)
