"""GDPR erasure and the retention of inactive members. Every function takes the caller's
session; none commits.

**Erasure** removes a member's personal data everywhere it is stored and keeps everything the
accounts need: the member row stays (its ``external_id`` becomes a random pseudonym, its
profile is emptied), and so do the ledger, the lots, orders, coupons and redemptions, so
balances, totals and the points liability stay exact and ``lealta ledger verify`` still
holds. Free text and stored payloads that mention the member (events as received and their
responses, outbox messages, audit entries, jobs' arguments, idempotency records, ledger
reasons) are scrubbed of the member's email, name, phone and customer id
(:mod:`lealta.privacy.scrub`); consents and sign-in tokens are deleted; pending messages and
jobs for the member are cancelled; cockpit sessions end. Other capabilities' tables are
cleaned by what they declare in :mod:`lealta.privacy.registry`.

The erasure is recorded in ``member_erasures`` without the data: a pseudonym, an HMAC of the
former customer id (so a repeated request answers "already erased"), who asked, when, and how
many rows were touched. A member with much history is erased by the job
``privacy.erase_member`` (:mod:`lealta.privacy.tasks`) rather than inside the request.

``mode="pseudonymise"`` (the retention policy's gentler option) does the same except that it
keeps what does not identify the person: attributes, tags, consents, language and time zone.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    func,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.jobs import queue as job_queue
from lealta.kit.db import Base, Database
from lealta.kit.errors import InvalidInput, NotFound
from lealta.members import avatars
from lealta.members.login_links import digest, normalise_email
from lealta.models import (
    Account,
    AuditLog,
    Consent,
    Event,
    IdempotencyRecord,
    Job,
    LedgerEntry,
    Member,
    MemberErasure,
    MemberLoginToken,
    OutboxMessage,
    Redemption,
    TierChange,
)
from lealta.models.job import CLAIMABLE
from lealta.privacy import registry
from lealta.privacy.scrub import Needles, needles_for, scrub, scrub_text

ERASE_TASK = "privacy.erase_member"
INLINE_LIMIT = 2000
"""A member with more stored events, messages and ledger entries than this is erased by a job
(the request records the erasure as ``scheduled`` and returns)."""
CHUNK = 500
CHANNELS = ("api", "cli", "console", "cockpit", "retention")
PSEUDONYM_PREFIX = "erased-"
CORE_TABLES = frozenset(
    {
        "members",
        "consents",
        "accounts",
        "events",
        "outbox",
        "ledger_entries",
        "point_lots",
        "lot_allocations",
        "orders",
        "order_items",
        "coupons",
        "coupon_uses",
        "redemptions",
        "tier_changes",
        "audit_log",
        "jobs",
        "idempotency_records",
        "member_login_tokens",
        "member_erasures",
    }
)
"""Tables the erasure handles itself (every other table with a ``member_id`` is swept)."""


class MemberAlreadyErased(NotFound):
    """The member named was erased (their customer id no longer exists)."""

    status_code = 410
    code = "member_erased"


class ErasureNotFound(NotFound):
    code = "erasure_not_found"


@dataclass(frozen=True, slots=True)
class ErasureView:
    """What an erasure answers, with no personal data in it."""

    erasure_id: int
    pseudonym: str
    mode: str
    channel: str
    status: str
    requested_at: datetime
    completed_at: datetime | None
    summary: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "erasure_id": self.erasure_id,
            "pseudonym": self.pseudonym,
            "mode": self.mode,
            "channel": self.channel,
            "status": self.status,
            "requested_at": self.requested_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "summary": dict(self.summary),
        }


def view(record: MemberErasure) -> ErasureView:
    return ErasureView(
        erasure_id=record.id,
        pseudonym=record.pseudonym,
        mode=record.mode,
        channel=record.channel,
        status=record.status,
        requested_at=record.requested_at,
        completed_at=record.completed_at,
        summary={str(k): int(v) for k, v in (record.summary or {}).items()},
    )


def subject_hash(secret: str, external_id: str) -> str:
    """An HMAC of a customer id under the instance's secret: comparable, not reversible."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def is_erased(session: Session, member_id: int) -> bool:
    """Whether an erasure was requested for the member (scheduled or completed)."""
    found = session.scalar(select(MemberErasure.id).where(MemberErasure.member_id == member_id))
    return found is not None


def find_by_subject(session: Session, *, secret: str, external_id: str) -> MemberErasure | None:
    """The erasure of the member who had ``external_id``, if there was one."""
    return session.scalars(
        select(MemberErasure)
        .where(MemberErasure.subject_hash == subject_hash(secret, external_id))
        .order_by(MemberErasure.id.desc())
        .limit(1)
    ).first()


def member_to_erase(session: Session, external_id: str, *, secret: str) -> Member:
    """The member with ``external_id``; ``410 member_erased`` when they were erased already,
    ``404 member_not_found`` when there never was one."""
    member = session.scalars(select(Member).where(Member.external_id == external_id)).first()
    if member is not None:
        return member
    if find_by_subject(session, secret=secret, external_id=external_id) is not None:
        raise MemberAlreadyErased(
            "This member's personal data was erased; the customer id no longer exists."
        )
    raise NotFound(f"No member with external id '{external_id}'.", code="member_not_found")


def linked_rows(session: Session, member_id: int) -> int:
    """How many stored events, messages and ledger entries name the member (the erasure's
    size)."""
    total = 0
    for model in (Event, OutboxMessage, LedgerEntry):
        column = _table(model).c.member_id
        total += int(session.scalar(select(func.count()).where(column == member_id)) or 0)
    return total


def request_erasure(
    session: Session,
    member: Member,
    *,
    secret: str,
    channel: str,
    actor: str,
    now: datetime,
    mode: str = "erase",
    data_dir: Path | None = None,
    inline_limit: int | None = None,
) -> MemberErasure:
    """Erase ``member`` now, or schedule it when large; audited. Erasing a member already
    erased (or scheduled) returns that erasure and does nothing more.

    Whatever the size, the member's sessions end, their sign-in links stop working, and
    their pending messages and jobs are cancelled within this transaction.
    """
    if mode not in ("erase", "pseudonymise"):
        raise InvalidInput("mode is 'erase' or 'pseudonymise'.", code="invalid_erasure_mode")
    if channel not in CHANNELS:
        raise InvalidInput(f"Unknown erasure channel '{channel}'.", code="invalid_channel")
    existing = session.scalars(
        select(MemberErasure).where(MemberErasure.member_id == member.id)
    ).first()
    if existing is not None:
        return existing
    record = MemberErasure(
        member_id=member.id,
        pseudonym=PSEUDONYM_PREFIX + secrets.token_hex(8),
        subject_hash=subject_hash(secret, member.external_id),
        mode=mode,
        channel=channel,
        actor=actor[:200],
        status="scheduled",
        requested_at=now,
        completed_at=None,
        summary={},
    )
    session.add(record)
    session.flush()
    _stop_activity(session, member, now)
    limit = INLINE_LIMIT if inline_limit is None else inline_limit
    if linked_rows(session, member.id) <= limit:
        erase(session, record, now=now, data_dir=data_dir)
    else:
        job_queue.enqueue(
            session,
            ERASE_TASK,
            {"erasure_id": record.id},
            now=now,
            dedupe_key=f"{ERASE_TASK}:{member.id}",
        )
    audit.record(
        session,
        actor=actor,
        action="member.erase" if mode == "erase" else "member.pseudonymise",
        target_type="member",
        target_id=record.pseudonym,
        now=now,
        details={"erasure_id": record.id, "channel": channel, "status": record.status},
    )
    return record


def _stop_activity(session: Session, member: Member, now: datetime) -> None:
    """End the member's sessions and links, cancel their pending messages and jobs."""
    session.execute(
        update(Member)
        .where(Member.id == member.id)
        .values(session_generation=Member.session_generation + 1)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(MemberLoginToken)
        .where(MemberLoginToken.member_id == member.id)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.member_id == member.id, OutboxMessage.processed_at.is_(None))
        .values(processed_at=now)
        .execution_options(synchronize_session=False)
    )
    # Jobs naming the member in a ``member_id`` argument (read in Python: a capability may
    # store it as a number or as text, and a JSON cast would fail on the other kind).
    waiting = session.execute(
        select(Job.id, Job.args).where(
            Job.status.in_(CLAIMABLE),
            Job.task != ERASE_TASK,
            func.lower(sql_cast(Job.args, Text)).contains("member_id"),
        )
    ).all()
    mine = [
        row.id
        for row in waiting
        if isinstance(row.args, dict) and str(row.args.get("member_id")) == str(member.id)
    ]
    if mine:
        session.execute(
            update(Job)
            .where(Job.id.in_(mine), Job.status.in_(CLAIMABLE))
            .values(status="discarded", finished_at=now)
            .execution_options(synchronize_session=False)
        )


def erase(
    session: Session, record: MemberErasure, *, now: datetime, data_dir: Path | None = None
) -> MemberErasure:
    """Carry out the erasure ``record`` describes (idempotent: a completed one is left as is).

    Returns the record, now ``completed``, with the rows touched per table in ``summary``.
    """
    if record.status == "completed":
        return record
    member = session.get(Member, record.member_id, with_for_update=True)
    if member is None:  # pragma: no cover - the member row is never deleted
        raise ErasureNotFound("The erased member's row is gone.")
    full = record.mode == "erase"
    needles = needles_for(
        pseudonym=record.pseudonym,
        external_id=None if member.external_id == record.pseudonym else member.external_id,
        erased=[member.email, member.name, member.phone],
    )
    summary: dict[str, int] = {}

    def count(table: str, n: int) -> None:
        if n:
            summary[table] = summary.get(table, 0) + n

    _stop_activity(session, member, now)
    if member.email:
        email_hash = digest(normalise_email(member.email))
        count(
            "member_login_tokens",
            _rowcount(
                session.execute(
                    delete(MemberLoginToken)
                    .where(MemberLoginToken.email_hash == email_hash)
                    .execution_options(synchronize_session=False)
                )
            ),
        )
    if full:
        count(
            "consents",
            _rowcount(
                session.execute(
                    delete(Consent)
                    .where(Consent.member_id == member.id)
                    .execution_options(synchronize_session=False)
                )
            ),
        )
    if needles:
        member_rows: list[tuple[Table, tuple[str, ...]]] = [
            (_table(Event), ("payload", "response")),
            (_table(OutboxMessage), ("payload",)),
            (_table(LedgerEntry), ("reason", "source_ref", "actor", "details")),
            (_table(TierChange), ("reason",)),
            (_table(Redemption), ("fulfilment",)),
        ]
        for table, columns in member_rows:
            count(table.name, _scrub_rows(session, table, columns, needles, member_id=member.id))
        # Tables without a member link: rows whose text holds one of the member's values.
        anywhere: list[tuple[Table, tuple[str, ...]]] = [
            (_table(OutboxMessage), ("payload",)),
            (_table(AuditLog), ("target_id", "reason", "details")),
            (_table(Job), ("args", "last_error")),
            (_table(IdempotencyRecord), ("key", "scope", "response")),
        ]
        for table, columns in anywhere:
            count(table.name, _scrub_rows(session, table, columns, needles, member_id=None))
        declared: set[str] = set()
        for spec in registry.scrubs():
            found = Base.metadata.tables.get(spec.table)
            if found is None:
                continue
            declared.add(found.name)
            linked = spec.member_column is not None and spec.member_column in found.c
            count(
                found.name,
                _scrub_rows(
                    session,
                    found,
                    spec.columns,
                    needles,
                    member_id=member.id if linked else None,
                    member_column=spec.member_column or "member_id",
                ),
            )
        # Any other table with a ``member_id``: its text and JSON columns of the member's
        # rows (a capability that declared nothing is still covered for what it links).
        for other in Base.metadata.sorted_tables:
            if other.name in CORE_TABLES or other.name in declared:
                continue
            if "member_id" not in other.c or len(other.primary_key.columns) != 1:
                continue
            columns = tuple(
                c.name
                for c in other.c
                if isinstance(c.type, (String, Text, JSON)) and not c.primary_key
            )
            if columns:
                count(
                    other.name,
                    _scrub_rows(session, other, columns, needles, member_id=member.id),
                )
    for _, function in registry.erasers():
        function(session, member.id, now)
    picture = member.avatar_path
    member.external_id = record.pseudonym
    member.email = None
    member.phone = None
    member.name = None
    member.birthday = None
    member.avatar_path = None
    if full:
        member.attributes = {}
        member.tags = []
    member.updated_at = now
    summary["members"] = 1
    if picture and data_dir is not None:
        avatars.remove_avatar_file(picture, data_dir=data_dir)
    record.status = "completed"
    record.completed_at = now
    record.summary = summary
    session.flush()
    return record


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _holds(column: Any, needles: Needles) -> ColumnElement[bool]:
    text = func.lower(sql_cast(column, Text))
    return or_(*(text.contains(value, autoescape=True) for value in needles.values))


def _scrub_rows(
    session: Session,
    table: Table,
    columns: tuple[str, ...],
    needles: Needles,
    *,
    member_id: int | None,
    member_column: str = "member_id",
) -> int:
    """Scrub ``columns`` of the member's rows (or, without ``member_id``, of every row whose
    text holds a needle); returns how many rows changed."""
    present = [c for c in columns if c in table.c]
    if not present:
        return 0
    pk = list(table.primary_key.columns)
    if len(pk) != 1:  # pragma: no cover - every table here has a single-column key
        raise ValueError(f"{table.name}: erasure needs a single-column primary key")
    key = pk[0]
    if member_id is not None:
        where: ColumnElement[bool] = table.c[member_column] == member_id
    else:
        where = or_(*(_holds(table.c[c], needles) for c in present))
    changed = 0
    last: Any = None
    while True:
        stmt = select(key, *(table.c[c] for c in present)).where(where).order_by(key).limit(CHUNK)
        if last is not None:
            stmt = stmt.where(key > last)
        rows = session.execute(stmt).all()
        if not rows:
            break
        for row in rows:
            values: dict[str, Any] = {}
            for name in present:
                old = row._mapping[name]
                if old is None:
                    continue
                new = (
                    scrub(old, needles)
                    if isinstance(table.c[name].type, JSON) or not isinstance(old, str)
                    else scrub_text(old, needles)
                )
                if new != old:
                    values[name] = _fit(table, name, new)
            if values:
                session.execute(update(table).where(key == row[0]).values(**values))
                changed += 1
        last = rows[-1][0]
        if len(rows) < CHUNK:
            break
    return changed


def _fit(table: Table, name: str, value: Any) -> Any:
    """A replaced text may be longer than the column allows (a pseudonym for a short id)."""
    length = getattr(table.c[name].type, "length", None)
    if isinstance(value, str) and length is not None and len(value) > length:
        return value[:length]
    return value


# --- retention -------------------------------------------------------------------------------


def months_ago(now: datetime, months: int) -> datetime:
    """``now`` minus ``months`` calendar months (the day clamped to the month's length)."""
    month_index = now.year * 12 + (now.month - 1) - months
    year, month = divmod(month_index, 12)
    month += 1
    day = now.day
    while True:
        try:
            return now.replace(year=year, month=month, day=day)
        except ValueError:
            day -= 1


def inactive_members(
    session: Session, *, now: datetime, months: int, limit: int = 1000
) -> Iterator[Member]:
    """Members with no activity since ``months`` ago and not yet erased, oldest first.

    Activity is enrolment, any ledger entry, an order or any stored event (all in event
    time); a member who only signed in to the cockpit counts as inactive.
    """
    if months < 1:
        raise InvalidInput("The retention period is at least one month.", code="invalid_retention")
    cutoff = months_ago(now, months)
    stmt = (
        select(Member)
        .join(Account, Account.member_id == Member.id, isouter=True)
        .where(
            Member.enrolled_at < cutoff,
            or_(Account.last_order_at.is_(None), Account.last_order_at < cutoff),
            not_(
                exists().where(
                    and_(LedgerEntry.member_id == Member.id, LedgerEntry.occurred_at >= cutoff)
                )
            ),
            not_(exists().where(and_(Event.member_id == Member.id, Event.occurred_at >= cutoff))),
            not_(exists().where(MemberErasure.member_id == Member.id)),
        )
        .order_by(Member.enrolled_at, Member.id)
        .limit(limit)
    )
    yield from session.scalars(stmt)


@dataclass(frozen=True, slots=True)
class RetentionCandidate:
    """A member due for retention (shown by the dry run: no personal data but the id)."""

    member_id: int
    external_id: str
    enrolled_at: datetime
    last_order_at: datetime | None


@dataclass(frozen=True, slots=True)
class RetentionReport:
    cutoff: datetime
    action: str
    candidates: list[RetentionCandidate]
    applied: int


def run_retention(
    db: Database,
    *,
    now: datetime,
    months: int,
    action: str,
    secret: str,
    data_dir: Path | None,
    limit: int,
    dry_run: bool,
) -> RetentionReport:
    """List (``dry_run``) or erase/pseudonymise up to ``limit`` inactive members, one unit of
    work each, so a failure leaves the ones before it done."""
    with db.unit_of_work(write=False) as session:
        found = [
            RetentionCandidate(m.id, m.external_id, m.enrolled_at, None)
            for m in inactive_members(session, now=now, months=months, limit=limit)
        ]
        orders = {
            row.member_id: row.last_order_at
            for row in session.execute(
                select(Account.member_id, Account.last_order_at).where(
                    Account.member_id.in_([c.member_id for c in found])
                )
            )
        }
    candidates = [
        RetentionCandidate(c.member_id, c.external_id, c.enrolled_at, orders.get(c.member_id))
        for c in found
    ]
    applied = 0
    if not dry_run:
        for candidate in candidates:
            with db.unit_of_work() as session:
                member = session.get(Member, candidate.member_id)
                if member is None or is_erased(session, member.id):
                    continue
                request_erasure(
                    session,
                    member,
                    secret=secret,
                    channel="retention",
                    actor="system:retention",
                    now=now,
                    mode=action,
                    data_dir=data_dir,
                )
                applied += 1
    return RetentionReport(months_ago(now, months), action, candidates, applied)
