"""Console sign-in and sign-out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from lealta.kit.http import ClockDep, DbDep, SettingsDep
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
    _ = request
    refused: auth.InvalidCredentials | auth.AccountLocked | None = None
    with db.unit_of_work() as session:
        try:
            user = auth.authenticate(
                session,
                email,
                password,
                now=clock.now(),
                max_attempts=settings.admin_lockout_attempts,
                lock_minutes=settings.admin_lockout_minutes,
            )
            auth.sign_in(request, user)
        except (auth.InvalidCredentials, auth.AccountLocked) as exc:
            # Caught inside the unit of work so the failed attempt (and a lock) is committed;
            # raising out of it would roll the counter back and nobody would ever be locked.
            refused = exc
    if refused is not None:
        return render(
            request,
            "admin/login.html",
            {"error": refused.message, "email": email, "next": _safe_next(next)},
            status_code=refused.status_code,
        )
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, staff: StaffDep, csrf_token: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf_token)
    auth.sign_out(request)
    return RedirectResponse("/admin/login", status_code=303)
