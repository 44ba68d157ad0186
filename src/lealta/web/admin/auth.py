"""The console session's cookie side: sign in, sign out and the signed-in user.

Users, passwords, roles and lock-out are ``lealta.staff.service``; this module only keeps
what touches the request's session cookie.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request

from lealta.models import AdminUser
from lealta.staff import service as staff_service
from lealta.staff.service import NotSignedIn, Staff

SESSION_KEY = "admin_user_id"
GENERATION_KEY = "admin_session_generation"


def sign_in(request: Request, user: AdminUser) -> None:
    """Start a session: the cookie names the user and their current session generation."""
    request.session.clear()
    request.session[SESSION_KEY] = user.id
    request.session[GENERATION_KEY] = user.session_generation


def sign_out(session: Session, request: Request, user_id: int) -> None:
    """End this session and every other one of the user (a copied cookie stops working)."""
    staff_service.end_sessions_of(session, user_id)
    forget(request)


def forget(request: Request) -> None:
    request.session.pop(SESSION_KEY, None)
    request.session.pop(GENERATION_KEY, None)


def current(session: Session, request: Request) -> Staff:
    """The signed-in user or ``401 not_signed_in`` (pages redirect to the sign-in form).

    The cookie is only good while its generation is the user's current one: signing out, a
    new password, a new role or disabling the user raises it and ends the session.
    """
    user_id = request.session.get(SESSION_KEY)
    staff = staff_service.staff_for_session(session, user_id, request.session.get(GENERATION_KEY))
    if staff is None:
        if user_id is not None:
            forget(request)
        raise NotSignedIn("Sign in to the admin console.")
    return staff
