"""Moving from another loyalty system: members, opening balances (and tiers), in bulk.

``import_members`` reads profiles, attributes, tags and consents (each with the moment it
was given); ``import_balances`` carries each member's balance over as one ledger entry
(``adjust``, ``source_type = 'migration'``, ``source_ref`` the source system's name) with an
optional expiry date, and the tier held with the date it was reached. Both read the file
whole first (a file that is not CSV or lacks a column changes nothing), then work in chunks
of ``chunk_size`` rows, one transaction each, set-based: one query finds the chunk's members,
one statement per table writes them. A rejected row changes nothing and does not stop the
others. Both are idempotent: a member already carried over from the same source system is
``already_imported``, a consent already recorded (same purpose, choice and moment) is not
recorded again; importing the same file twice changes nothing the second time.

``dry_run`` runs exactly the same work and rolls every chunk back: the report says what would
happen, nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, cast

from pydantic import ValidationError
from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.bulk import ops
from lealta.bulk.csvfile import (
    CsvRow,
    check_width,
    parse,
    read_bytes,
    to_attribute,
    to_bool,
    to_datetime,
    to_int,
    to_list,
)
from lealta.bulk.inputs import check_tier, external_id
from lealta.engine.outcome import Outcome
from lealta.events import store
from lealta.events.service import no_crossings
from lealta.kit.db import Database
from lealta.kit.errors import InvalidInput, LealtaError
from lealta.kit.timestamps import check_birthday, check_moment
from lealta.members import attributes as member_attributes
from lealta.members import service as members
from lealta.members.newcomer import NewMember
from lealta.members.schemas import MemberFields
from lealta.models import Consent, LedgerEntry, Member, TierChange
from lealta.programme.schema import Programme

DEFAULT_CHUNK_SIZE = 2000
MAX_REJECTED_KEPT = 10_000
CONSENT_PURPOSES = ("marketing_email", "marketing_sms", "marketing_push", "data_processing")
PROFILE_COLUMNS = ("email", "phone", "name", "birthday", "language", "timezone")
MEMBER_COLUMNS = ("external_id",)
BALANCE_COLUMNS = ("external_id", "points")
MAX_SOURCE = 40

_members = cast(Table, Member.__table__)
_consents = cast(Table, Consent.__table__)
_entries = cast(Table, LedgerEntry.__table__)
_tier_changes = cast(Table, TierChange.__table__)


class RejectedRow(NamedTuple):
    line: int
    code: str
    message: str


@dataclass(slots=True)
class MigrationReport:
    """What an import did (or, in a dry run, would do)."""

    rows_read: int = 0
    created: int = 0
    updated: int = 0
    already_imported: int = 0
    consents: int = 0
    points: int = 0
    tiers: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    rejected_count: int = 0
    dry_run: bool = False
    elapsed_seconds: float = 0.0

    def reject(self, line: int, exc: LealtaError) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REJECTED_KEPT:
            self.rejected.append(RejectedRow(line, exc.code, exc.message))

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_read": self.rows_read,
            "created": self.created,
            "updated": self.updated,
            "already_imported": self.already_imported,
            "consents": self.consents,
            "points": self.points,
            "tiers": self.tiers,
            "rejected": self.rejected_count,
            "dry_run": self.dry_run,
        }


class _DryRun(Exception):
    """Raised at the end of a dry-run chunk so that its unit of work rolls back."""


def check_source(source_system: str) -> str:
    name = source_system.strip()
    if not name or len(name) > MAX_SOURCE:
        raise InvalidInput(
            f"The source system is a name of 1 to {MAX_SOURCE} characters (e.g. 'oldloyalty').",
            code="invalid_source_system",
        )
    return name


def _chunks(
    db: Database,
    rows: Sequence[CsvRow],
    chunk_size: int,
    dry_run: bool,
    work: Callable[[Session, Sequence[CsvRow]], None],
) -> None:
    for start in range(0, len(rows), chunk_size):
        try:
            with db.unit_of_work() as session:
                work(session, rows[start : start + chunk_size])
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass


# --- members -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _MemberRow:
    line: int
    external_id: str
    fields: dict[str, Any]
    tags: list[str]
    attributes: dict[str, Any]
    enrolled_at: datetime | None
    consents: list[tuple[str, bool, datetime]]


def import_members(
    db: Database,
    path: Path,
    *,
    programme: Programme,
    now: datetime,
    actor: str,
    source_system: str,
    dry_run: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> MigrationReport:
    """Create or update the members in the CSV at ``path``.

    Columns: ``external_id`` (required); ``email, phone, name, birthday, language, timezone``;
    ``enrolled_at`` (ISO 8601; when they joined the old programme, default now); ``tags``
    (``vip|newsletter``, added to the member's); ``attr.<name>`` per attribute (typed as the
    programme declares; an empty cell leaves it alone); ``consent.<purpose>`` (true/false) with
    ``consent.<purpose>.at`` (when it was given, default now), for the purposes
    ``marketing_email, marketing_sms, marketing_push, data_processing``. An empty profile cell
    leaves the field as it is. Raises ``invalid_csv_header`` / ``invalid_csv`` (nothing written)
    for a file that cannot be read."""
    started = time.perf_counter()
    source = check_source(source_system)
    header, rows = parse(read_bytes(path), required=MEMBER_COLUMNS)
    report = MigrationReport(dry_run=dry_run)
    consent_source = f"migration:{source}"[:64]

    def work(session: Session, chunk: Sequence[CsvRow]) -> None:
        parsed: list[_MemberRow] = []
        for row in chunk:
            report.rows_read += 1
            try:
                parsed.append(_member_row(row, header, programme, now))
            except LealtaError as exc:
                report.reject(row.line, exc)
        _write_members(session, parsed, now, consent_source, report)

    _chunks(db, rows, chunk_size, dry_run, work)
    if not dry_run:
        with db.unit_of_work() as session:
            audit.record(
                session,
                actor=actor,
                action="import.members",
                target_type="import",
                target_id=source,
                now=now,
                details={"file": path.name, **report.as_dict()},
            )
    report.elapsed_seconds = time.perf_counter() - started
    return report


def _member_row(row: CsvRow, header: list[str], programme: Programme, now: datetime) -> _MemberRow:
    check_width(row)
    ext = external_id(row.get("external_id"))
    raw = {name: row.get(name) for name in PROFILE_COLUMNS if row.get(name)}
    try:
        profile = MemberFields.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"]) or "row"
        raise InvalidInput(f"{loc}: {first['msg']}", code="validation_error") from None
    fields = profile.model_dump(exclude_unset=True, exclude={"attributes", "tags"})
    if profile.birthday is not None:
        check_birthday(profile.birthday, now=now)
    attrs: dict[str, Any] = {}
    for column in header:
        if column.startswith("attr.") and row.get(column):
            name = column.removeprefix("attr.")
            attrs[name] = to_attribute(row.get(column), programme.attributes.get(name), column)
    member_attributes.check(programme, attrs)
    enrolled_at = None
    if row.get("enrolled_at"):
        enrolled_at = check_moment(
            to_datetime(row.get("enrolled_at"), "enrolled_at"), now=now, field="enrolled_at"
        )
    consents = []
    for purpose in CONSENT_PURPOSES:
        column = f"consent.{purpose}"
        if row.get(column):
            at_text = row.get(f"{column}.at")
            at = check_moment(to_datetime(at_text, f"{column}.at"), now=now) if at_text else now
            consents.append((purpose, to_bool(row.get(column), column), at))
    tags = to_list(row.get("tags"))
    if any(len(tag) > 64 for tag in tags) or len(tags) > 100:
        raise InvalidInput("tags: at most 100 tags of 64 characters.", code="invalid_tag")
    return _MemberRow(row.line, ext, fields, tags, attrs, enrolled_at, consents)


def _write_members(
    session: Session,
    parsed: list[_MemberRow],
    now: datetime,
    consent_source: str,
    report: MigrationReport,
) -> None:
    if not parsed:
        return
    wanted = sorted({r.external_id for r in parsed})
    found: dict[str, list[Any]] = {}
    for start in range(0, len(wanted), 1000):
        for row in session.execute(
            select(
                _members.c.id,
                _members.c.external_id,
                _members.c.tags,
                _members.c.attributes,
                *[_members.c[name] for name in PROFILE_COLUMNS],
            )
            .where(_members.c.external_id.in_(wanted[start : start + 1000]))
            .order_by(_members.c.id)
            .with_for_update()
        ):
            found[row.external_id] = [row.id, row._mapping]
    fresh: dict[str, NewMember] = {}
    changes: dict[int, dict[str, Any]] = {}
    for r in parsed:
        if r.external_id in found or r.external_id in fresh:
            current = fresh.get(r.external_id)
            if current is not None:  # twice in the file: the later row adds to the first
                _merge_new(current, r)
                continue
            member_id, values = found[r.external_id]
            change = changes.setdefault(member_id, {})
            for name, value in r.fields.items():
                if values[name] != value:
                    change[name] = value
            tags = sorted(set(change.get("tags", values["tags"] or [])) | set(r.tags))
            if tags != sorted(values["tags"] or []):
                change["tags"] = tags
            attrs = {**(values["attributes"] or {}), **change.get("attributes", {}), **r.attributes}
            if attrs != (values["attributes"] or {}):
                change["attributes"] = attrs
            continue
        member = members.new_member(
            r.external_id, None, channel="migration", at=r.enrolled_at or now, now=now
        )
        _merge_new(member, r)
        fresh[r.external_id] = member
    ids: dict[str, int] = {ext: v[0] for ext, v in found.items()}
    if fresh:
        enrolled, created = members.enrol_many(
            session, list(fresh.values()), now=now, backfill=True
        )
        ids.update(enrolled)
        report.created += len(created)
    changed = {m: c for m, c in changes.items() if c}
    for names in {tuple(sorted(c)) for c in changed.values()}:
        group = [(m, c) for m, c in changed.items() if tuple(sorted(c)) == names]
        session.execute(
            update(_members)
            .where(_members.c.id == bindparam("b_id"))
            .values({name: bindparam(f"b_{name}") for name in (*names, "updated_at")})
            .execution_options(synchronize_session=False),
            [
                {"b_id": m, "b_updated_at": now, **{f"b_{n}": v for n, v in c.items()}}
                for m, c in group
            ],
        )
    report.updated += len(changed)
    report.already_imported += sum(
        1 for r in parsed if r.external_id in found and not changes.get(found[r.external_id][0])
    )
    _write_consents(session, parsed, ids, consent_source, report)


def _merge_new(member: NewMember, r: _MemberRow) -> None:
    for name, value in r.fields.items():
        setattr(member, name, value)
    member.tags = sorted(set(member.tags or []) | set(r.tags))
    member.attributes = {**(member.attributes or {}), **r.attributes}
    if r.enrolled_at is not None:
        member.enrolled_at = r.enrolled_at


def _write_consents(
    session: Session,
    parsed: list[_MemberRow],
    ids: dict[str, int],
    source: str,
    report: MigrationReport,
) -> None:
    wanted = {
        (ids[r.external_id], purpose, granted, at)
        for r in parsed
        for purpose, granted, at in r.consents
        if r.external_id in ids
    }
    if not wanted:
        return
    member_ids = sorted({w[0] for w in wanted})
    have: set[tuple[int, str, bool, datetime]] = set()
    for start in range(0, len(member_ids), 1000):
        for m, purpose, granted, at in session.execute(
            select(
                _consents.c.member_id,
                _consents.c.purpose,
                _consents.c.granted,
                _consents.c.recorded_at,
            ).where(_consents.c.member_id.in_(member_ids[start : start + 1000]))
        ):
            have.add((m, purpose, bool(granted), at))
    new = sorted(wanted - have, key=lambda w: (w[0], w[3], w[1]))
    if new:
        store.insert_rows(
            session,
            _consents,
            [
                {
                    "member_id": m,
                    "purpose": purpose,
                    "granted": granted,
                    "source": source,
                    "recorded_at": at,
                }
                for m, purpose, granted, at in new
            ],
            bulk=True,
        )
    report.consents += len(new)


# --- balances ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _BalanceRow:
    line: int
    external_id: str
    points: int
    expires_at: datetime | None
    tier: str | None
    tier_reached_at: datetime | None


def import_balances(
    db: Database,
    path: Path,
    *,
    programme: Programme,
    now: datetime,
    actor: str,
    source_system: str,
    dry_run: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> MigrationReport:
    """Carry over each member's balance (and tier) from ``source_system``.

    Columns: ``external_id, points`` (required; 0 for a tier alone); ``expires_at`` (ISO 8601
    date or time; absent: the programme's expiry policy counted from now); ``tier`` (a tier
    id of the programme) and ``tier_reached_at`` (default now): the member holds that tier
    since then, kept through the current period plus grace, when its usual review comes. The
    members must exist (``lealta import members`` first): otherwise ``member_not_found``."""
    started = time.perf_counter()
    source = check_source(source_system)
    _, rows = parse(read_bytes(path), required=BALANCE_COLUMNS)
    report = MigrationReport(dry_run=dry_run)

    def work(session: Session, chunk: Sequence[CsvRow]) -> None:
        parsed: list[_BalanceRow] = []
        for row in chunk:
            report.rows_read += 1
            try:
                parsed.append(_balance_row(row, programme, now))
            except LealtaError as exc:
                report.reject(row.line, exc)
        _write_balances(session, programme, parsed, now, source, actor, report)

    _chunks(db, rows, chunk_size, dry_run, work)
    if not dry_run:
        with db.unit_of_work() as session:
            audit.record(
                session,
                actor=actor,
                action="import.balances",
                target_type="import",
                target_id=source,
                now=now,
                details={"file": path.name, **report.as_dict()},
            )
    report.elapsed_seconds = time.perf_counter() - started
    return report


def _balance_row(row: CsvRow, programme: Programme, now: datetime) -> _BalanceRow:
    check_width(row)
    ext = external_id(row.get("external_id"))
    points = to_int(row.get("points"), "points")
    if points < 0:
        raise InvalidInput("points: an opening balance cannot be negative.", code="negative_points")
    expires_text = row.get("expires_at")
    expires_at = to_datetime(expires_text, "expires_at") if expires_text else None
    if expires_at is not None and expires_at <= now:
        raise ops.AlreadyExpired(
            "expires_at: these points expired before the migration; leave them out.",
            details={"expires_at": expires_at.isoformat()},
        )
    tier = row.get("tier") or None
    if tier is not None:
        check_tier(programme, tier)
    reached_text = row.get("tier_reached_at")
    reached = None
    if reached_text:
        if tier is None:
            raise InvalidInput("tier_reached_at: name the tier too.", code="validation_error")
        reached = check_moment(
            to_datetime(reached_text, "tier_reached_at"), now=now, field="tier_reached_at"
        )
    if points == 0 and tier is None:
        raise InvalidInput("Nothing to carry over: no points and no tier.", code="no_change")
    return _BalanceRow(row.line, ext, points, expires_at, tier, reached)


def _write_balances(
    session: Session,
    programme: Programme,
    parsed: list[_BalanceRow],
    now: datetime,
    source: str,
    actor: str,
    report: MigrationReport,
) -> None:
    if not parsed:
        return
    ids = members.member_ids(session, sorted({r.external_id for r in parsed}))
    done_before = _already_migrated(session, sorted(set(ids.values())), source)
    todo: list[_BalanceRow] = []
    seen: set[str] = set()
    for r in parsed:
        m = ids.get(r.external_id)
        if m is None:
            report.reject(
                r.line,
                InvalidInput(
                    f"No member with external id '{r.external_id}' (import members first).",
                    code="member_not_found",
                ),
            )
        elif m in done_before:
            report.already_imported += 1
        elif r.external_id in seen:
            report.reject(
                r.line,
                InvalidInput(
                    f"'{r.external_id}' appears twice in the file; one opening balance each.",
                    code="duplicate_member",
                ),
            )
        else:
            seen.add(r.external_id)
            todo.append(r)
    if not todo:
        return
    states = store.load_many(session, programme, {ids[r.external_id]: (now, now) for r in todo})
    done: list[tuple[int, Outcome]] = []
    for r in todo:
        m = ids[r.external_id]
        try:
            outcome = ops.opening_balance(
                programme,
                states[m],
                points=r.points,
                expires_at=r.expires_at,
                tier_id=r.tier,
                tier_reached_at=r.tier_reached_at,
                source_system=source,
                actor=actor,
                at=now,
            )
        except LealtaError as exc:
            report.reject(r.line, exc)
            continue
        done.append((m, outcome))
        report.points += r.points
        report.tiers += bool(outcome.tier_moves)
    report.created += len(done)
    if done:
        store.write_all(session, done, now=now, backfill=True, on_crossing=no_crossings, bulk=True)


def _already_migrated(session: Session, member_ids: list[int], source: str) -> set[int]:
    """Members carried over from ``source`` before: an opening entry or a migrated tier."""
    found: set[int] = set()
    reason = f"Migrated from {source}"
    for start in range(0, len(member_ids), 1000):
        part = member_ids[start : start + 1000]
        found.update(
            session.scalars(
                select(_entries.c.member_id).where(
                    _entries.c.member_id.in_(part),
                    and_(
                        _entries.c.source_type == ops.MIGRATION_SOURCE,
                        _entries.c.source_ref == source,
                    ),
                )
            )
        )
        found.update(
            session.scalars(
                select(_tier_changes.c.member_id).where(
                    _tier_changes.c.member_id.in_(part), _tier_changes.c.reason == reason
                )
            )
        )
    return found


__all__ = ["MigrationReport", "import_balances", "import_members"]
