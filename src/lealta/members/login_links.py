"""Member sign-in links for the cockpit: rate-limited requests, one-use tokens, the email.

Every function takes the caller's session and none commits. The member is always the one
the link or the signed-in session names; nothing here takes a member id from a URL or a form.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from lealta.kit.errors import LealtaError
from lealta.models import Member, MemberLoginToken, OutboxMessage

EMAIL_LIMIT = 3
IP_LIMIT = 10
RATE_WINDOW = timedelta(minutes=15)
LINK_TOPIC = "cockpit.sign_in_link"
# Namespaces of the PostgreSQL advisory locks that make the two rate limits atomic.
_LOCK_EMAIL = 741_001
_LOCK_IP = 741_002


class NotSignedIn(LealtaError):
    status_code = 401
    code = "not_signed_in"


class TooManyRequests(LealtaError):
    status_code = 429
    code = "too_many_requests"


class LinkInvalid(LealtaError):
    """The sign-in link is unknown, used or expired; ``code`` says which."""

    status_code = 400
    code = "link_invalid"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def normalise_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True, slots=True)
class LinkRequest:
    """What :func:`request_link` decided: a member and the raw token to email, or nothing."""

    member: Member | None
    token: str | None


def request_link(
    session: Session, email: str, *, client_ip: str, now: datetime, minutes: int
) -> LinkRequest:
    """Record a request for a sign-in link and, when a member has that email, a token.

    The answer the visitor sees never depends on whether the email is known. Raises
    ``429 too_many_requests`` past :data:`EMAIL_LIMIT` requests for one address or
    :data:`IP_LIMIT` from one client within :data:`RATE_WINDOW`; refused requests are not
    recorded, so they do not extend the wait.
    """
    address = normalise_email(email)
    email_hash = digest(address)
    since = now - RATE_WINDOW
    client_ip = client_ip[:64]
    # Count and insert under a lock per address and per client (always in this order, so
    # two requests never wait on each other crosswise): parallel requests queue here, and
    # each sees the rows the ones before it committed. No burst can pass the limits.
    _serialise(session, _LOCK_EMAIL, email_hash)
    _serialise(session, _LOCK_IP, digest(client_ip))
    per_email = session.scalar(
        select(func.count()).where(
            MemberLoginToken.email_hash == email_hash, MemberLoginToken.created_at > since
        )
    )
    per_ip = session.scalar(
        select(func.count()).where(
            MemberLoginToken.client_ip == client_ip, MemberLoginToken.created_at > since
        )
    )
    if int(per_email or 0) >= EMAIL_LIMIT or int(per_ip or 0) >= IP_LIMIT:
        raise TooManyRequests("Too many sign-in links were requested. Wait a few minutes.")
    member = (
        session.scalars(
            select(Member).where(func.lower(Member.email) == address).order_by(Member.id).limit(1)
        ).first()
        if address
        else None
    )
    token = secrets.token_urlsafe(32) if member is not None else None
    session.add(
        MemberLoginToken(
            member_id=member.id if member is not None else None,
            token_hash=digest(token) if token is not None else None,
            email_hash=email_hash,
            client_ip=client_ip,
            created_at=now,
            expires_at=now + timedelta(minutes=minutes),
            used_at=None,
        )
    )
    session.flush()
    return LinkRequest(member, token)


def _serialise(session: Session, space: int, value_hash: str) -> None:
    """Hold a transaction-scoped lock on one (``space``, hash) key until commit.

    PostgreSQL: ``pg_advisory_xact_lock``. SQLite needs nothing: a writing unit of work
    starts with ``BEGIN IMMEDIATE`` and so already holds the database's only write lock.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(bytes.fromhex(value_hash[:8]), "big", signed=True)
    session.execute(
        text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": space, "key": key}
    )


def queue_link_email(
    session: Session,
    member: Member,
    *,
    to: str,
    subject: str,
    body: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Write the sign-in email to the outbox, in the transaction that recorded the token.

    The request returns without talking to the mail server (its timing must not depend on
    whether the address is a member's); :func:`claim_link_emails` hands it to the sender.
    """
    session.add(
        OutboxMessage(
            topic=LINK_TOPIC,
            member_id=member.id,
            payload={
                "to": to,
                "subject": subject,
                "text": body,
                "expires_at": expires_at.isoformat(),
            },
            created_at=now,
            processed_at=None,
        )
    )
    session.flush()


@dataclass(frozen=True, slots=True)
class LinkEmail:
    member_id: int | None
    to: str
    subject: str
    text: str


def claim_link_emails(session: Session, *, now: datetime, limit: int = 20) -> list[LinkEmail]:
    """Take the unsent sign-in emails (oldest first) for sending, each exactly once.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite writers are
    serialised) and marked processed; the link is wiped from the stored payload, so the raw
    token does not stay in the database. Emails whose link has already expired are dropped.
    """
    rows = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.topic == LINK_TOPIC, OutboxMessage.processed_at.is_(None))
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claimed: list[LinkEmail] = []
    for row in rows:
        payload = row.payload
        live = datetime.fromisoformat(str(payload.get("expires_at"))) > now
        if live:
            claimed.append(
                LinkEmail(
                    row.member_id, str(payload["to"]), str(payload["subject"]), str(payload["text"])
                )
            )
        row.processed_at = now
        row.payload = {"sent": live}
    session.flush()
    return claimed


def end_sessions(session: Session, member_id: int) -> None:
    """End every cockpit session of the member (their cookies name an older generation)."""
    session.execute(
        update(Member)
        .where(Member.id == member_id)
        .values(session_generation=Member.session_generation + 1)
        .execution_options(synchronize_session=False)
    )


def check_link(session: Session, token: str, *, now: datetime) -> MemberLoginToken:
    """The link's row if it can still sign in; otherwise ``LinkInvalid`` with the reason."""
    row = session.scalars(
        select(MemberLoginToken).where(MemberLoginToken.token_hash == digest(token))
    ).first()
    if row is None or row.member_id is None:
        raise LinkInvalid("This sign-in link is not valid.", code="link_unknown")
    if row.used_at is not None:
        raise LinkInvalid("This sign-in link was already used.", code="link_used")
    if row.expires_at <= now:
        raise LinkInvalid("This sign-in link has expired.", code="link_expired")
    return row


def consume_link(session: Session, token: str, *, now: datetime) -> int:
    """Use the link once: a conditional UPDATE wins for exactly one submission.

    Returns the member id; ``LinkInvalid`` (unknown, used or expired) otherwise.
    """
    hashed = digest(token)
    claimed = session.execute(
        update(MemberLoginToken)
        .where(
            MemberLoginToken.token_hash == hashed,
            MemberLoginToken.used_at.is_(None),
            MemberLoginToken.expires_at > now,
            MemberLoginToken.member_id.is_not(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        check_link(session, token, now=now)  # raises with the precise reason
        raise LinkInvalid("This sign-in link was already used.", code="link_used")
    member_id = session.scalar(
        select(MemberLoginToken.member_id).where(MemberLoginToken.token_hash == hashed)
    )
    assert member_id is not None
    return member_id
