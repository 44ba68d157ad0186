"""Staff users of the admin console: argon2 password hashes, lock-out after repeated
failures, roles and session generations.

Roles, from most to least power: ``admin`` (everything, users and API keys), ``marketer``
(programme, rewards), ``support`` (members, adjustments, coupons, the till), ``read_only``
(the pages that need only ``view``: no till, users or API keys; no action). The console's
navigation shows a role only the pages it may open. :func:`require` is the one check used
on every page and action. The cookie side of a console session (sign in, sign out, the
current user) lives in ``web/admin/auth.py`` and calls this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.kit.errors import Conflict, Forbidden, InvalidInput, LealtaError
from lealta.models import ROLES, AdminUser

_hasher = PasswordHasher()
MIN_PASSWORD = 10

# What each role may do; a page or action names the capability it needs.
CAPABILITIES: dict[str, frozenset[str]] = {
    "admin": frozenset({"view", "support", "marketing", "admin"}),
    "marketer": frozenset({"view", "marketing"}),
    "support": frozenset({"view", "support"}),
    "read_only": frozenset({"view"}),
}


class NotSignedIn(LealtaError):
    status_code = 401
    code = "not_signed_in"


class InvalidCredentials(LealtaError):
    """A wrong password, an unknown or disabled email, or a locked account: one answer for all,
    so the response never tells whether an account exists or is locked."""

    status_code = 401
    code = "invalid_credentials"


REFUSED = "Wrong email or password, or too many failed attempts."


@dataclass(frozen=True, slots=True)
class Staff:
    """The signed-in admin user, as pages see it."""

    id: int
    email: str
    name: str
    role: str

    @property
    def actor(self) -> str:
        return f"admin:{self.email}"

    def can(self, capability: str) -> bool:
        return capability in CAPABILITIES.get(self.role, frozenset())


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(
            f"Passwords need at least {MIN_PASSWORD} characters.", code="weak_password"
        )
    return _hasher.hash(password)


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
    now: datetime,
    actor: str = "cli",
) -> AdminUser:
    """Create a console user (``409 user_exists`` if the email is taken)."""
    email = email.strip().lower()
    if role not in ROLES:
        raise InvalidInput(
            f"Unknown role '{role}'; use one of {', '.join(ROLES)}.", code="invalid_role"
        )
    if "@" not in email or len(email) > 320:
        raise InvalidInput("Give a valid email address.", code="invalid_email")
    user = AdminUser(
        email=email,
        name=name.strip() or email,
        role=role,
        password_hash=hash_password(password),
        failed_attempts=0,
        disabled=False,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError:
        raise Conflict(f"A user with email {email} exists.", code="user_exists") from None
    audit.record(
        session,
        actor=actor,
        action="admin_user.create",
        target_type="admin_user",
        target_id=email,
        now=now,
        details={"role": role},
    )
    return user


def set_password(session: Session, user: AdminUser, password: str, *, now: datetime) -> None:
    """A new password; it also ends every session of the user."""
    user.password_hash = hash_password(password)
    user.failed_attempts = 0
    user.locked_until = None
    end_sessions(user)


def end_sessions(user: AdminUser) -> None:
    """End every console session of ``user`` (their cookies name an older generation)."""
    user.session_generation = AdminUser.session_generation + 1


def authenticate(
    session: Session,
    email: str,
    password: str,
    *,
    now: datetime,
    max_attempts: int,
    lock_minutes: int,
) -> AdminUser:
    """The user for these credentials. Failures count; at ``max_attempts`` the account locks.

    Each attempt is counted *before* the password is checked, by one conditional ``UPDATE``
    that also refuses a locked account; the row stays locked until the transaction ends, so
    parallel guesses queue and at most ``max_attempts`` of them are ever checked against the
    hash before the lock. A locked account refuses the right password too, until the lock
    ends. An unknown email, a disabled user, a locked account and a wrong password all get the
    same ``401 invalid_credentials`` after the same hashing work.
    """
    user_id = session.scalar(
        select(AdminUser.id).where(func.lower(AdminUser.email) == email.strip().lower())
    )
    attempt = None
    if user_id is not None:
        attempt = session.execute(
            update(AdminUser)
            .where(
                AdminUser.id == user_id,
                AdminUser.disabled.is_(False),
                or_(AdminUser.locked_until.is_(None), AdminUser.locked_until <= now),
            )
            .values(failed_attempts=AdminUser.failed_attempts + 1)
            .returning(AdminUser.failed_attempts)
            .execution_options(synchronize_session=False)
        ).scalar_one_or_none()
    user = session.get(AdminUser, user_id, populate_existing=True) if attempt is not None else None
    if user is None or attempt is None:
        _hasher.hash(password)  # same work either way: no timing hint that the email exists
        raise InvalidCredentials(REFUSED)
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        if attempt >= max_attempts:
            user.locked_until = now + timedelta(minutes=lock_minutes)
            user.failed_attempts = 0
            audit.record(
                session,
                actor=f"admin:{user.email}",
                action="admin_user.locked",
                target_type="admin_user",
                target_id=user.email,
                now=now,
            )
        raise InvalidCredentials(REFUSED) from None
    user.failed_attempts = 0
    user.locked_until = None
    user.last_login_at = now
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def end_sessions_of(session: Session, user_id: int) -> None:
    """End every console session of the user with ``user_id`` (signing out does this)."""
    session.execute(
        update(AdminUser)
        .where(AdminUser.id == user_id)
        .values(session_generation=AdminUser.session_generation + 1)
        .execution_options(synchronize_session=False)
    )


def staff_for_session(session: Session, user_id: object, generation: object) -> Staff | None:
    """The user a console cookie names, or None when it no longer signs anyone in.

    The cookie is only good while its generation is the user's current one: signing out, a
    new password, a new role or disabling the user raises it and ends the session.
    """
    user = session.get(AdminUser, user_id) if isinstance(user_id, int) else None
    if (
        user is None
        or user.disabled
        or not isinstance(generation, int)
        or generation != user.session_generation
    ):
        return None
    return Staff(user.id, user.email, user.name, user.role)


def list_users(session: Session) -> list[AdminUser]:
    """Every console user, by email."""
    return list(session.scalars(select(AdminUser).order_by(AdminUser.email)))


def require(staff: Staff, capability: str) -> None:
    """``403 forbidden`` unless the user's role grants ``capability``."""
    if not staff.can(capability):
        raise Forbidden(
            f"Your role ({staff.role}) does not allow this.",
            code="forbidden_for_role",
            details={"needs": capability},
        )
