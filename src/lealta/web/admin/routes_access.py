"""Console pages for who may get in: console users and API keys (the ``admin`` role only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from lealta.apikeys import service as apikeys
from lealta.audit import service as audit
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError, NotFound
from lealta.kit.http import ClockDep, DbDep
from lealta.models import ROLES, AdminUser
from lealta.staff import service as staff_users
from lealta.staff.service import Staff, require
from lealta.web import i18n
from lealta.web.admin.deps import StaffDep
from lealta.web.admin.pages import done, show
from lealta.web.security import check_csrf

router = APIRouter(prefix="/admin", include_in_schema=False)

MAX_KEY_NAME = 100


# --- users ---------------------------------------------------------------------------------


@router.get("/users")
def users_page(request: Request, db: DbDep, clock: ClockDep, staff: StaffDep) -> Response:
    require(staff, "admin")
    return _users(request, db, staff, clock.now())


@router.post("/users")
def create_user(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "admin")
    _ = i18n.gettext_for(i18n.negotiate(request))
    form = {"email": email, "name": name, "role": role}
    error: str | None = None
    if len(email) > 320 or len(name) > 200 or len(password) > 200:
        error = _("A value is too long.")
    elif role not in ROLES:
        error = _("Choose a role.")
    else:
        try:
            with db.unit_of_work() as session:
                staff_users.create_user(
                    session,
                    email=email,
                    name=name,
                    role=role,
                    password=password,
                    now=clock.now(),
                    actor=staff.actor,
                )
        except LealtaError as exc:
            error = _user_error(exc, _)
    if error is not None:
        return _users(request, db, staff, clock.now(), error=error, form=form, status_code=422)
    return done(request, "/admin/users", "User %(email)s created.", email=email.strip().lower())


@router.post("/users/{user_id}/role")
def change_role(
    request: Request,
    user_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "admin")
    _ = i18n.gettext_for(i18n.negotiate(request))
    if role not in ROLES:
        return _users(request, db, staff, clock.now(), error=_("Choose a role."), status_code=422)
    if user_id == staff.id:
        return _users(
            request,
            db,
            staff,
            clock.now(),
            error=_("You cannot change your own role; ask another admin."),
            status_code=422,
        )
    with db.unit_of_work() as session:
        user = _get_user(session, user_id)
        previous = user.role
        user.role = role
        staff_users.end_sessions(user)  # the user signs in again under the new role
        audit.record(
            session,
            actor=staff.actor,
            action="admin_user.role",
            target_type="admin_user",
            target_id=user.email,
            now=clock.now(),
            details={"from": previous, "to": role},
        )
        email = user.email
    return done(
        request, "/admin/users", "%(email)s now has the role %(role)s.", email=email, role=role
    )


@router.post("/users/{user_id}/disable")
def disable_user(
    request: Request,
    user_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    return _set_disabled(request, user_id, db, clock.now(), staff, csrf_token, disabled=True)


@router.post("/users/{user_id}/enable")
def enable_user(
    request: Request,
    user_id: int,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    return _set_disabled(request, user_id, db, clock.now(), staff, csrf_token, disabled=False)


def _set_disabled(
    request: Request,
    user_id: int,
    db: Database,
    now: datetime,
    staff: Staff,
    csrf_token: str,
    *,
    disabled: bool,
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "admin")
    _ = i18n.gettext_for(i18n.negotiate(request))
    if user_id == staff.id:
        return _users(
            request,
            db,
            staff,
            now,
            error=_("You cannot disable your own account."),
            status_code=422,
        )
    with db.unit_of_work() as session:
        user = _get_user(session, user_id)
        user.disabled = disabled
        staff_users.end_sessions(user)
        if not disabled:
            # Re-enabling also lifts a lock-out: the admin vouches for the person.
            user.failed_attempts = 0
            user.locked_until = None
        audit.record(
            session,
            actor=staff.actor,
            action="admin_user.disable" if disabled else "admin_user.enable",
            target_type="admin_user",
            target_id=user.email,
            now=now,
        )
        email = user.email
    text = "%(email)s can no longer sign in." if disabled else "%(email)s can sign in again."
    return done(request, "/admin/users", text, email=email)


def _get_user(session: Session, user_id: int) -> AdminUser:
    user = session.get(AdminUser, user_id)
    if user is None:
        raise NotFound("No such console user.", code="admin_user_not_found")
    return user


def _users(
    request: Request,
    db: Database,
    staff: Staff,
    now: datetime,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    _ = i18n.gettext_for(i18n.negotiate(request))
    with db.unit_of_work(write=False) as session:
        users = list(session.scalars(select(AdminUser).order_by(AdminUser.email)))
    return show(
        request,
        staff,
        "admin/users.html",
        {
            "users": users,
            "roles": ROLES,
            "role_label": {
                "admin": _("Admin"),
                "marketer": _("Marketer"),
                "support": _("Support"),
                "read_only": _("Read-only"),
            },
            "now": now,
            "error": error,
            "form": form or {"email": "", "name": "", "role": "support"},
        },
        status_code=status_code,
    )


def _user_error(exc: LealtaError, _: Any) -> str:
    messages = {
        "weak_password": _("Passwords need at least %(n)s characters.", n=staff_users.MIN_PASSWORD),
        "invalid_email": _("Give a valid email address."),
        "invalid_role": _("Choose a role."),
        "user_exists": _("A user with this email already exists."),
    }
    return str(messages.get(exc.code, exc.message))


# --- API keys ------------------------------------------------------------------------------


@router.get("/api-keys")
def api_keys_page(request: Request, db: DbDep, staff: StaffDep) -> Response:
    require(staff, "admin")
    return _keys(request, db, staff)


@router.post("/api-keys")
def create_api_key(
    request: Request,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "",
) -> Response:
    """Create a key and show its secret on this response only; it is never stored."""
    check_csrf(request, csrf_token)
    require(staff, "admin")
    _ = i18n.gettext_for(i18n.negotiate(request))
    label = name.strip()
    error = None
    if not label or len(label) > MAX_KEY_NAME or "\x00" in label:
        error = _("Give the key a name of 1 to 100 characters (who uses it, e.g. webshop).")
    elif scope not in apikeys.SCOPES:
        error = _("Choose a scope.")
    if error is not None:
        return _keys(
            request, db, staff, error=error, form={"name": name, "scope": scope}, status_code=422
        )
    with db.unit_of_work() as session:
        now = clock.now()
        row, secret = apikeys.create(
            session,
            name=label,
            scope=next(s for s in apikeys.SCOPES if s == scope),
            now=now,
        )
        audit.record(
            session,
            actor=staff.actor,
            action="api_key.create",
            target_type="api_key",
            target_id=row.prefix,
            now=now,
            details={"name": label, "scope": row.scope},
        )
        created = {"name": row.name, "prefix": row.prefix, "scope": row.scope}
    return show(
        request,
        staff,
        "admin/api_keys_created.html",
        {"created": created, "secret": secret},
        status_code=201,
    )


@router.post("/api-keys/{prefix}/revoke")
def revoke_api_key(
    request: Request,
    prefix: str,
    db: DbDep,
    clock: ClockDep,
    staff: StaffDep,
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf_token)
    require(staff, "admin")
    with db.unit_of_work() as session:
        now = clock.now()
        row = apikeys.revoke(session, prefix, now=now)
        audit.record(
            session,
            actor=staff.actor,
            action="api_key.revoke",
            target_type="api_key",
            target_id=row.prefix,
            now=now,
            details={"name": row.name},
        )
        name = row.name
    return done(request, "/admin/api-keys", "API key %(name)s revoked.", name=name)


def _keys(
    request: Request,
    db: Database,
    staff: Staff,
    *,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    with db.unit_of_work(write=False) as session:
        keys = sorted(apikeys.list_keys(session), key=lambda k: (k.revoked_at is not None, -k.id))
    return show(
        request,
        staff,
        "admin/api_keys.html",
        {
            "keys": keys,
            "scopes": apikeys.SCOPES,
            "error": error,
            "form": form or {"name": "", "scope": "server"},
        },
        status_code=status_code,
    )
