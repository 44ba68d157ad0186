"""Member operations. Every function takes the caller's session; none commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import ARRAY, Select, String, Table, and_, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from lealta.events import store
from lealta.kit.db import CoalescedReads, Database, UTCDateTime, fetch
from lealta.kit.errors import Conflict, NotFound
from lealta.kit.money import from_minor
from lealta.kit.timestamps import check_birthday
from lealta.members.newcomer import NewMember
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
from lealta.outbox import service as outbox
from lealta.outbox.events import MemberEnrolled
from lealta.programme import service as programmes
from lealta.programme.schema import Programme


class MemberNotFound(NotFound):
    code = "member_not_found"


class MemberExists(Conflict):
    code = "member_exists"


# --- the statements of the hot reads ---------------------------------------------------------
# Built once, with bound parameters, and run on the session's Core connection: no ORM entity
# loading (about 1 ms of CPU per statement here), no statement building and no cache key to
# compute per request; psycopg prepares them on each connection after a few runs.

_members = cast(Table, Member.__table__)
_accounts = cast(Table, Account.__table__)
_lots = cast(Table, PointLot.__table__)

_NOW = bindparam("now", type_=UTCDateTime())
# in_force_digest takes a bound parameter as well as a moment.
_DIGEST = programmes.in_force_digest(
    cast(datetime, bindparam("programme_at", type_=UTCDateTime()))
).label("digest")

MEMBER_READ: Select[Any] = (
    select(
        _members.c.id,
        _members.c.external_id,
        _members.c.language,
        _members.c.timezone,
        _members.c.attributes,
        _members.c.tags,
        _members.c.enrolled_at,
        *_accounts.c,
        _DIGEST,
    )
    .join_from(_members, _accounts, _accounts.c.member_id == _members.c.id)
    .where(_members.c.external_id == bindparam("external_id"))
)
"""A member with its account and the programme in force (``external_id``, ``programme_at``)."""


def _open_lots(lots: Any) -> Any:
    """The member's lots with points left that expire after ``:now``."""
    return and_(lots.c.member_id == _members.c.id, lots.c.remaining > 0, lots.c.expires_at > _NOW)


_soonest = _lots.alias("soonest")
_NEXT_EXPIRY_AT = (
    select(func.min(_soonest.c.expires_at))
    .where(_open_lots(_soonest))
    .correlate(_members)
    .scalar_subquery()
)
_BALANCE_COLUMNS = (
    _members.c.id,
    _accounts.c.points_available,
    _accounts.c.points_pending,
    _accounts.c.lifetime_earned,
    _accounts.c.lifetime_spent,
    _accounts.c.points_expired,
    _accounts.c.points_shortfall,
    _accounts.c.qualifying_spend_minor,
    _accounts.c.tier_id,
    _DIGEST,
    _NEXT_EXPIRY_AT.label("next_expiry_at"),
    select(func.sum(_lots.c.remaining))
    .where(_open_lots(_lots), _lots.c.expires_at == _NEXT_EXPIRY_AT)
    .correlate(_members)
    .scalar_subquery()
    .label("next_expiry_points"),
    select(func.coalesce(func.sum(_lots.c.remaining), 0))
    .where(_open_lots(_lots), _lots.c.expires_at <= bindparam("horizon", type_=UTCDateTime()))
    .correlate(_members)
    .scalar_subquery()
    .label("expiring_soon"),
)
BALANCE_READ: Select[Any] = (
    select(*_BALANCE_COLUMNS)
    .join_from(_members, _accounts, _accounts.c.member_id == _members.c.id)
    .where(_members.c.external_id == bindparam("external_id"))
)
"""A member's balance in one statement: the account, the programme in force, the next expiry
(date and points) and the points expiring by ``horizon`` (``external_id``, ``programme_at``,
``now``, ``horizon``)."""
# The keys as rows to join (``unnest``): PostgreSQL's one plan for "= ANY" of an array of
# unknown length scans small tables whole.
_wanted = (
    func.unnest(bindparam("keys", type_=ARRAY(String)))
    .table_valued("external_id")
    .render_derived(name="wanted")
)
BALANCE_READ_MANY: Select[Any] = (
    select(*_BALANCE_COLUMNS, _members.c.external_id)
    .join_from(_wanted, _members, _members.c.external_id == _wanted.c.external_id)
    .join(_accounts, _accounts.c.member_id == _members.c.id)
)
""":data:`BALANCE_READ` of several members at once (PostgreSQL: ``keys``, an array of
external ids), each row with its ``external_id``: the balance reads that arrive together
(:class:`~lealta.kit.db.CoalescedReads`)."""

_EXPIRING = (
    select(_lots.c.expires_at, func.sum(_lots.c.remaining).label("points"))
    .where(
        _lots.c.member_id == bindparam("member_id"),
        _lots.c.remaining > 0,
        _lots.c.expires_at > _NOW,
    )
    .group_by(_lots.c.expires_at)
    .order_by(_lots.c.expires_at)
)

# The warning window (days) of the programme this process last found in force. The balance
# statement sums what expires within it, which is right as long as that programme governs
# (checked against the digest read in the same statement); after a change of window, one
# more statement sums the new one, and the next reads use it.
_warn_days = 30


def _not_found(external_id: str) -> MemberNotFound:
    return MemberNotFound(
        f"No member with external id '{external_id}'.", details={"external_id": external_id}
    )


def get(session: Session, external_id: str) -> Member:
    """The member with this shop id, or ``404 member_not_found``."""
    member = session.scalars(select(Member).where(Member.external_id == external_id)).first()
    if member is None:
        raise _not_found(external_id)
    return member


def read_member(session: Session, external_id: str, *, programme_at: datetime) -> Any:
    """The member, its account figures and the digest of the programme in force at
    ``programme_at`` (None: the default rules), in one Core statement; or ``404
    member_not_found``. The row has the columns of :data:`MEMBER_READ` by name, so it serves
    wherever a member or an account is read (:class:`MemberView`, :class:`AccountView`)."""
    rows = fetch(
        session, MEMBER_READ, {"external_id": external_id, "programme_at": programme_at}, named=True
    )
    if not rows:
        raise _not_found(external_id)
    return rows[0]


def read_balance(
    session: Session, external_id: str, *, now: datetime, programme_at: datetime
) -> BalanceOut:
    """The balance of the shop's ``external_id`` at ``now`` under the programme in force at
    ``programme_at``, usually in one Core statement (:data:`BALANCE_READ`); or ``404
    member_not_found``."""
    global _warn_days
    warn_days = _warn_days
    params = {**_balance_params(now, programme_at, warn_days), "external_id": external_id}
    rows = fetch(session, BALANCE_READ, params, named=True)
    if not rows:
        raise _not_found(external_id)
    row = rows[0]
    programme = programmes.by_digest(session, row.digest)
    if programme.expiry.warn_days == warn_days:
        return _balance_read(external_id, row, programme)
    _warn_days = programme.expiry.warn_days  # the row counted another window
    out = balance_of(external_id, row, programme.currency)
    return with_expiry(session, out, row.id, now=now, warn_days=_warn_days)


async def read_balance_hot(
    db: Database, external_id: str, *, now: datetime, programme_at: datetime
) -> BalanceOut | None:
    """:func:`read_balance` on the event loop (PostgreSQL, :class:`~lealta.kit.db.HotReads`),
    the same answer, read together with the balance reads that arrive meanwhile
    (:data:`BALANCE_READ_MANY`); or None where it takes the session: on SQLite, while the
    pool is not open in this loop, or under a programme version or warning window this
    process has not read yet (:func:`read_balance` reads it, and the next read is hot)."""
    if db.hot_reads is None:
        return None
    warn_days = _warn_days
    reads = db.hot_reads.coalesced(BALANCE_READ_MANY, column="external_id")
    try:
        row = await reads.row(external_id, _balance_params(now, programme_at, warn_days))
    except CoalescedReads.Unavailable:
        return None
    if row is None:
        raise _not_found(external_id)
    programme = programmes.cached(row.digest)
    if programme is None or programme.expiry.warn_days != warn_days:
        return None
    return _balance_read(external_id, row, programme)


def _balance_params(now: datetime, programme_at: datetime, warn_days: int) -> dict[str, Any]:
    """The parameters of :data:`BALANCE_READ` (with ``external_id``) and of
    :data:`BALANCE_READ_MANY` but the member's id."""
    return {"programme_at": programme_at, "now": now, "horizon": now + timedelta(days=warn_days)}


def _balance_read(external_id: str, row: Any, programme: Programme) -> BalanceOut:
    """The balance from a row of :data:`BALANCE_READ` whose expiring points were counted
    within ``programme``'s warning window."""
    out = balance_of(external_id, row, programme.currency)
    if row.next_expiry_at is not None:
        out.next_expiry = NextExpiry(at=row.next_expiry_at, points=int(row.next_expiry_points))
    out.expiring_soon = int(row.expiring_soon)
    return out


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
    session: Session,
    data: MemberCreate,
    *,
    now: datetime,
    enrolled_at: datetime | None = None,
    backfill: bool | None = None,
) -> Member:
    """Enrol a new member (``409 member_exists`` if the external id is taken) and announce it
    (``member.enrolled``, with the referral code it came with). An enrolment dated in the past
    (the demo, a load) is announced as backfill unless ``backfill`` says otherwise."""
    member = _new_member(data.external_id, data.enrolment_channel, enrolled_at or now, now)
    _apply_fields(member, data, now=now)
    if not _insert(session, member, now):
        raise MemberExists(
            f"A member with external id '{data.external_id}' already exists.",
            details={"external_id": data.external_id},
        )
    for consent in data.consents:
        record_consent(session, member, consent, now=now)
    if backfill is None:
        backfill = enrolled_at is not None and enrolled_at < now
    outbox.emit(
        session,
        MemberEnrolled(
            customer_id=member.external_id, at=member.enrolled_at, referral_code=data.referral_code
        ),
        member_id=member.id,
        now=now,
        backfill=backfill,
    )
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
    backfill: bool = False,
    referral_code: str | None = None,
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
    outbox.emit(
        session,
        MemberEnrolled(customer_id=external_id, at=at, referral_code=referral_code),
        member_id=member.id,
        now=now,
        backfill=backfill,
    )
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
    account: AccountView | None = None,
) -> BalanceOut:
    """Balance buckets; with ``now``, also what expires soon and the next expiry date."""
    figures = account or session.get(Account, member.id)
    if figures is None:  # pragma: no cover - every member is created with an account
        raise MemberNotFound("The member has no points account.")
    out = balance_of(member.external_id, figures, currency)
    if now is None:
        return out
    return with_expiry(session, out, member.id, now=now, warn_days=warn_days)


def with_expiry(
    session: Session, out: BalanceOut, member_id: int, *, now: datetime, warn_days: int
) -> BalanceOut:
    """``out`` with the points expiring within ``warn_days`` of ``now`` and the next expiry
    (date and points), from the member's open lots in one Core statement."""
    rows = session.connection().execute(_EXPIRING, {"member_id": member_id, "now": now}).all()
    horizon = now + timedelta(days=warn_days)
    out.expiring_soon = sum(int(points) for at, points in rows if at <= horizon)
    if rows:
        out.next_expiry = NextExpiry(at=rows[0][0], points=int(rows[0][1]))
    return out


class MemberView(Protocol):
    """A member as the reads see it: a ``Member``, or a row of :data:`MEMBER_READ`."""

    id: int
    external_id: str
    language: str
    timezone: str
    attributes: dict[str, Any]
    tags: list[str]
    enrolled_at: datetime


class AccountView(Protocol):
    """An account as the reads see it: an ``Account``, or a row of :data:`MEMBER_READ` (a
    row of :data:`BALANCE_READ` has the figures :func:`balance_of` reads)."""

    member_id: int
    points_available: int
    points_pending: int
    lifetime_earned: int
    lifetime_spent: int
    points_expired: int
    points_shortfall: int
    qualifying_spend_minor: int
    orders_count: int
    last_order_at: datetime | None
    tier_id: str | None
    tier_since: datetime | None
    tier_held_until: datetime | None


def balance_of(external_id: str, account: AccountView, currency: str) -> BalanceOut:
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


def _new_values(
    external_id: str, channel: str, enrolled_at: datetime, now: datetime
) -> dict[str, Any]:
    """A new member's columns before its profile fields (one source for both kinds)."""
    return {
        "external_id": external_id,
        "language": "es",
        "timezone": "Europe/Madrid",
        "attributes": {},
        "tags": [],
        "enrolled_at": enrolled_at,
        "enrolment_channel": channel,
        "created_at": now,
        "updated_at": now,
    }


def _new_member(external_id: str, channel: str, enrolled_at: datetime, now: datetime) -> Member:
    return Member(**_new_values(external_id, channel, enrolled_at, now))


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


def _apply_fields(member: Member | NewMember, data: MemberFields, *, now: datetime) -> None:
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


def new_member(
    external_id: str, profile: MemberFields | None, *, channel: str, at: datetime, now: datetime
) -> NewMember:
    """The member a first event enrols, as plain data for :func:`enrol_many`: defaults, then
    the event's profile fields."""
    member = NewMember(**_new_values(external_id, channel, at, now))
    if profile is not None:
        _apply_fields(member, profile, now=now)
    return member


def enrol_many(
    session: Session,
    new: Sequence[NewMember],
    *,
    now: datetime,
    backfill: bool = False,
    looked_up: bool = False,
) -> tuple[dict[str, int], set[int]]:
    """Insert the members in ``new`` (built by :func:`new_member`) that do not exist yet, with
    their accounts; returns every one's member id and the ids this call created. Each
    enrolment is announced (``member.enrolled``; ``backfill`` for a load of the past).

    Set-based: one insert per table, whatever the number of customers (the batch driver
    enrols a chunk's new customers at once). A customer enrolled concurrently by another
    transaction is found, not created (the caller decides what that means). ``looked_up``:
    the caller has just looked ``new`` up in this transaction and found none of them, so
    they are not looked up again (one enrolled since is still found: the insert skips it).
    """
    wanted = [m.external_id for m in new]
    ids = {} if looked_up else member_ids(session, wanted)
    fresh = [m for m in new if m.external_id not in ids]
    created: dict[str, int] = {}
    if fresh:
        inserted = store.insert_new(
            session, _members, [_columns(m) for m in fresh], ("id", "external_id")
        )
        created = {ext: member_id for member_id, ext in inserted}
        if created:
            # Plain rows, COPY on PostgreSQL: no account can exist for a member just created.
            account = _columns(_new_account(0, now))
            store.insert_rows(
                session,
                _accounts,
                [{**account, "member_id": member_id} for member_id in created.values()],
                bulk=True,
            )
        ids.update(created)
        outbox.emit_many(
            session,
            [
                (
                    MemberEnrolled(customer_id=m.external_id, at=m.enrolled_at),
                    created[m.external_id],
                )
                for m in fresh
                if m.external_id in created
            ],
            now=now,
            backfill=backfill,
        )
        missing = [m.external_id for m in fresh if m.external_id not in created]
        if missing:  # enrolled meanwhile by another transaction
            ids.update(member_ids(session, missing))
    return ids, set(created.values())


def member_ids(session: Session, external_ids: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(external_ids), 1000):
        part = external_ids[start : start + 1000]
        found.update(
            {
                ext: member_id
                for member_id, ext in session.execute(
                    select(Member.id, Member.external_id).where(Member.external_id.in_(part))
                )
            }
        )
    return found


def _columns(row: NewMember | Account) -> dict[str, Any]:
    """The row's column values for a Core insert, column defaults filled in as a flush would."""
    table = _members if isinstance(row, NewMember) else cast(Table, type(row).__table__)
    values: dict[str, Any] = {}
    # The object's own attributes: unset ones are None (a new ORM object's, as getattr says).
    given = vars(row)
    for c in table.columns:
        value = given.get(c.key)
        if value is None and isinstance(c.default, ScalarElementColumnDefault):
            value = c.default.arg
        if c.key == "id" and value is None:
            continue
        values[c.key] = value
    return values
