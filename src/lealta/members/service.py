"""Member operations. Every function takes the caller's session; none commits."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lealta.kit.errors import Conflict, NotFound
from lealta.kit.money import from_minor
from lealta.kit.timestamps import check_birthday
from lealta.members.schemas import (
    BalanceOut,
    ConsentIn,
    ConsentOut,
    MemberCreate,
    MemberFields,
    MemberOut,
    NextExpiry,
)
from lealta.models import Account, Consent, Member, PointLot


class MemberNotFound(NotFound):
    code = "member_not_found"


class MemberExists(Conflict):
    code = "member_exists"


def get(session: Session, external_id: str) -> Member:
    """The member with this shop id, or ``404 member_not_found``."""
    member = session.scalars(select(Member).where(Member.external_id == external_id)).first()
    if member is None:
        raise MemberNotFound(
            f"No member with external id '{external_id}'.", details={"external_id": external_id}
        )
    return member


def get_with_account(
    session: Session, external_id: str, *extra: Any
) -> tuple[Member, Account, tuple[Any, ...]]:
    """The member and its points account in one statement, with the values of any ``extra``
    scalar expressions (e.g. the programme in force), or ``404 member_not_found``."""
    row = session.execute(
        select(Member, Account, *extra)
        .join(Account, Account.member_id == Member.id)
        .where(Member.external_id == external_id)
        .limit(1)
    ).first()
    if row is None:
        raise MemberNotFound(
            f"No member with external id '{external_id}'.", details={"external_id": external_id}
        )
    return row[0], row[1], tuple(row[2:])


def find(session: Session, external_id: str) -> Member | None:
    return session.scalars(select(Member).where(Member.external_id == external_id)).first()


def find_by_email(session: Session, email: str, *, limit: int = 20) -> list[Member]:
    """Members with this email (any case); emails are not unique, so possibly several."""
    return list(
        session.scalars(
            select(Member)
            .where(func.lower(Member.email) == email.strip().lower())
            .order_by(Member.id)
            .limit(limit)
        )
    )


def create(
    session: Session, data: MemberCreate, *, now: datetime, enrolled_at: datetime | None = None
) -> Member:
    """Enrol a new member (``409 member_exists`` if the external id is taken)."""
    member = _new_member(data.external_id, data.enrolment_channel, enrolled_at or now, now)
    _apply_fields(member, data, now=now)
    if not _insert(session, member, now):
        raise MemberExists(
            f"A member with external id '{data.external_id}' already exists.",
            details={"external_id": data.external_id},
        )
    for consent in data.consents:
        record_consent(session, member, consent, now=now)
    return member


def update(session: Session, member: Member, data: MemberFields, *, now: datetime) -> Member:
    """Set the fields present in ``data``; absent fields stay as they are."""
    _apply_fields(member, data, now=now)
    member.updated_at = now
    session.flush()
    return member


def get_or_enrol(
    session: Session,
    external_id: str,
    *,
    profile: MemberFields | None,
    channel: str,
    at: datetime,
    now: datetime,
    auto_enrol: bool,
) -> Member:
    """The member, enrolled implicitly on a first event when the programme allows it.

    Two first events for one new customer may race: the loser's insert fails on the unique
    external id inside a savepoint and it reads the winner's row.
    """
    member = find(session, external_id)
    if member is not None:
        return member
    if not auto_enrol:
        raise MemberNotFound(
            f"No member with external id '{external_id}' (implicit enrolment is off).",
            details={"external_id": external_id},
        )
    member = _new_member(external_id, channel, at, now)
    if profile is not None:
        _apply_fields(member, profile, now=now)
    if not _insert(session, member, now):
        return get(session, external_id)
    return member


def _insert(session: Session, member: Member, now: datetime) -> bool:
    """Insert the member and its account in a savepoint; False if the external id is taken
    (possibly by a concurrent transaction that just committed)."""
    try:
        with session.begin_nested():
            session.add(member)
            session.flush()
            session.add(_new_account(member.id, now))
            session.flush()
    except IntegrityError:
        return False
    return True


def record_consent(session: Session, member: Member, consent: ConsentIn, *, now: datetime) -> None:
    session.add(
        Consent(
            member_id=member.id,
            purpose=consent.purpose,
            granted=consent.granted,
            source=consent.source,
            recorded_at=now,
        )
    )
    session.flush()


def current_consents(session: Session, member_id: int) -> list[ConsentOut]:
    latest: dict[str, Consent] = {}
    for row in session.scalars(
        select(Consent).where(Consent.member_id == member_id).order_by(Consent.id)
    ):
        latest[row.purpose] = row
    return [
        ConsentOut(purpose=c.purpose, granted=c.granted, source=c.source, recorded_at=c.recorded_at)
        for c in sorted(latest.values(), key=lambda c: c.purpose)
    ]


def to_out(session: Session, member: Member) -> MemberOut:
    return MemberOut(
        external_id=member.external_id,
        email=member.email,
        phone=member.phone,
        name=member.name,
        birthday=member.birthday,
        language=member.language,
        timezone=member.timezone,
        attributes=dict(member.attributes or {}),
        tags=list(member.tags or []),
        enrolled_at=member.enrolled_at,
        enrolment_channel=member.enrolment_channel,
        consents=current_consents(session, member.id),
        created_at=member.created_at,
        updated_at=member.updated_at,
    )


def balance(
    session: Session,
    member: Member,
    currency: str,
    *,
    now: datetime | None = None,
    warn_days: int = 30,
    account: Account | None = None,
) -> BalanceOut:
    """Balance buckets; with ``now``, also what expires soon and the next expiry date."""
    account = account or session.get(Account, member.id)
    if account is None:  # pragma: no cover - every member is created with an account
        raise MemberNotFound("The member has no points account.")
    out = balance_of(member.external_id, account, currency)
    if now is None:
        return out
    rows = session.execute(
        select(PointLot.expires_at, func.sum(PointLot.remaining))
        .where(
            PointLot.member_id == member.id,
            PointLot.remaining > 0,
            PointLot.expires_at.is_not(None),
            PointLot.expires_at > now,
        )
        .group_by(PointLot.expires_at)
        .order_by(PointLot.expires_at)
    ).all()
    horizon = now + timedelta(days=warn_days)
    out.expiring_soon = sum(int(points) for at, points in rows if at is not None and at <= horizon)
    if rows:
        out.next_expiry = NextExpiry(at=rows[0][0], points=int(rows[0][1]))
    return out


def balance_of(external_id: str, account: Account, currency: str) -> BalanceOut:
    return BalanceOut(
        external_id=external_id,
        available=account.points_available,
        pending=account.points_pending,
        lifetime_earned=account.lifetime_earned,
        lifetime_spent=account.lifetime_spent,
        expired=account.points_expired,
        shortfall=account.points_shortfall,
        qualifying_spend=str(from_minor(account.qualifying_spend_minor, currency)),
        currency=currency,
        tier=account.tier_id,
    )


def _new_member(external_id: str, channel: str, enrolled_at: datetime, now: datetime) -> Member:
    return Member(
        external_id=external_id,
        language="es",
        timezone="Europe/Madrid",
        attributes={},
        tags=[],
        enrolled_at=enrolled_at,
        enrolment_channel=channel,
        created_at=now,
        updated_at=now,
    )


def _new_account(member_id: int, now: datetime) -> Account:
    return Account(
        member_id=member_id,
        points_available=0,
        points_pending=0,
        lifetime_earned=0,
        lifetime_spent=0,
        points_expired=0,
        points_shortfall=0,
        qualifying_spend_minor=0,
        spend_high_water_minor=0,
        orders_count=0,
        updated_at=now,
    )


def _apply_fields(member: Member, data: MemberFields, *, now: datetime) -> None:
    check_birthday(data.birthday, now=now)
    values: dict[str, Any] = data.model_dump(
        exclude_unset=True, include=set(MemberFields.model_fields)
    )
    for name, value in values.items():
        if value is None and name in ("language", "timezone", "attributes", "tags"):
            continue
        if name == "attributes":
            merged = dict(member.attributes or {})
            merged.update(value)
            value = {k: v for k, v in merged.items() if v is not None}
        if name == "tags":
            value = sorted(set(value))
        setattr(member, name, value)
