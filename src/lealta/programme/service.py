"""Programme versions: parse and validate a document, apply it as a new version, read the one
in force, compare versions.

A document is validated twice over: its shape by Pydantic and its CEL by compiling every
expression, and every problem is reported with its exact path (``tiers.levels.1.threshold``).
Applied versions are never changed; the newest whose activation time has come governs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import ScalarSelect, func, select
from sqlalchemy.orm import Session

from lealta.audit import service as audit
from lealta.kit.errors import InvalidInput, NotFound
from lealta.kit.idempotency import request_hash
from lealta.models import ProgrammeVersion
from lealta.programme.diff import Change, diff
from lealta.programme.schema import DEFAULT_PROGRAMME, Programme
from lealta.rules.engine import ProgrammeCompileError, compile_programme

_NAMED_PATH = re.compile(r"^([a-z_]+(?:\.[\w-]+)+): (.+)$", re.DOTALL)

# Parsed documents by content digest: a version's document never changes once applied.
_cache: dict[str, Programme] = {}


class ProgrammeInvalid(InvalidInput):
    code = "invalid_programme"
    # What went wrong, for pages that say it in the reader's language: ``syntax`` (with
    # ``line``/``column`` when known), ``not_mapping`` or ``invalid`` (see ``details``).
    kind: str = "invalid"
    line: int | None = None
    column: int | None = None


class VersionNotFound(NotFound):
    code = "programme_version_not_found"


@dataclass(frozen=True, slots=True)
class Applied:
    version: int
    activated_at: datetime
    changes: list[Change]


def parse_text(text: str, *, source: str = "document") -> dict[str, Any]:
    """YAML (or JSON, which is YAML) text to a mapping; syntax errors name line and column."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        invalid = ProgrammeInvalid(
            f"{source} is not valid YAML/JSON{where}.",
            details=[{"path": "", "message": str(exc).splitlines()[0]}],
        )
        invalid.kind = "syntax"
        if mark:
            invalid.line, invalid.column = mark.line + 1, mark.column + 1
        raise invalid from exc
    if not isinstance(data, dict):
        invalid = ProgrammeInvalid(
            f"{source} must be a mapping at the top level.",
            details=[{"path": "", "message": "expected a mapping"}],
        )
        invalid.kind = "not_mapping"
        raise invalid
    return data


def validate(document: dict[str, Any]) -> Programme:
    """The programme, or ``422 invalid_programme`` listing every problem with its path."""
    try:
        programme = Programme.model_validate(document)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            path = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            # Cross-reference checks run on the whole document and name their path themselves.
            named = _NAMED_PATH.match(message)
            if named:
                inner, message = named.group(1), named.group(2)
                path = f"{path}.{inner}" if path else inner
            problem: dict[str, Any] = {"path": path, "message": message, "type": err["type"]}
            if err.get("ctx") and err["type"] != "value_error":
                problem["ctx"] = {str(k): str(v) for k, v in err["ctx"].items()}
            problems.append(problem)
        _raise(problems)
    except InvalidInput as exc:  # raised by our own field validators (e.g. currency)
        _raise([{"path": "currency", "message": exc.message}])
    try:
        compile_programme(programme)
    except ProgrammeCompileError as exc:
        _raise([{"path": exc.path, "message": exc.message}])
    return programme


def _raise(problems: list[dict[str, Any]]) -> None:
    first = problems[0]
    where = first["path"] or "document"
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise ProgrammeInvalid(f"{where}: {first['message']}{more}", details=problems)


def current(session: Session, *, now: datetime | None = None) -> Programme:
    """The newest version whose activation time has come; parsed once and cached."""
    return by_digest(session, session.scalar(select(in_force_digest(now or datetime.now(UTC)))))


def in_force_digest(now: datetime) -> ScalarSelect[str]:
    """The digest of the version in force at ``now`` (NULL: none yet), as a scalar subquery, so
    that a hot read finds its programme in the statement that reads its member."""
    return (
        select(ProgrammeVersion.digest)
        .where(ProgrammeVersion.activated_at <= now)
        .order_by(ProgrammeVersion.version.desc())
        .limit(1)
        .scalar_subquery()
    )


def by_digest(session: Session, digest: str | None) -> Programme:
    """The programme stored under ``digest`` (None: the default rules). Documents are parsed
    once per process: a digest names one document forever, so the cache never goes stale, and
    a newly applied version is read the moment its digest is in force."""
    if digest is None:
        return DEFAULT_PROGRAMME
    programme = _cache.get(digest)
    if programme is None:
        document = session.scalar(
            select(ProgrammeVersion.document).where(ProgrammeVersion.digest == digest).limit(1)
        )
        programme = Programme.model_validate(document)
        _cache[digest] = programme
    return programme


def cached(digest: str | None) -> Programme | None:
    """:func:`by_digest` without the database: the programme if this process has read it."""
    return DEFAULT_PROGRAMME if digest is None else _cache.get(digest)


def in_force(session: Session, *, now: datetime) -> ProgrammeVersion | None:
    """The stored version governing at ``now`` (None: nothing applied yet, the default rules)."""
    return session.scalars(
        select(ProgrammeVersion)
        .where(ProgrammeVersion.activated_at <= now)
        .order_by(ProgrammeVersion.version.desc())
        .limit(1)
    ).first()


def changes_from_latest(session: Session, programme: Programme) -> list[Change]:
    """What applying ``programme`` would change against the newest stored version (a dry run)."""
    _, previous = _latest(session)
    return diff(previous, programme.model_dump(mode="json"))


def _latest(session: Session) -> tuple[int, dict[str, Any]]:
    """The newest version number and document (0 and the default document when none)."""
    row = session.execute(
        select(ProgrammeVersion.version, ProgrammeVersion.document)
        .order_by(ProgrammeVersion.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, DEFAULT_PROGRAMME.model_dump(mode="json")
    return row.version, row.document


def apply(
    session: Session,
    programme: Programme,
    *,
    actor: str,
    now: datetime,
    activate_at: datetime | None = None,
) -> int:
    """Store ``programme`` as the next version, in force from ``activate_at`` (default now)."""
    return apply_with_diff(
        session, programme, actor=actor, now=now, activate_at=activate_at
    ).version


def apply_with_diff(
    session: Session,
    programme: Programme,
    *,
    actor: str,
    now: datetime,
    activate_at: datetime | None = None,
) -> Applied:
    """Apply and return the changes against the previous version (audited)."""
    latest_version, previous = _latest(session)
    version = latest_version + 1
    document = programme.model_dump(mode="json")
    activated_at = activate_at or now
    session.add(
        ProgrammeVersion(
            version=version,
            document=document,
            digest=request_hash(document),
            applied_by=actor,
            activated_at=activated_at,
            created_at=now,
        )
    )
    changes = diff(previous, document)
    audit.record(
        session,
        actor=actor,
        action="programme.apply",
        target_type="programme",
        target_id=str(version),
        now=now,
        details={"changes": len(changes), "activated_at": activated_at.isoformat()},
    )
    session.flush()
    return Applied(version, activated_at, changes)


def versions(session: Session) -> list[ProgrammeVersion]:
    return list(session.scalars(select(ProgrammeVersion).order_by(ProgrammeVersion.version.desc())))


def version(session: Session, number: int) -> ProgrammeVersion:
    row = session.scalars(
        select(ProgrammeVersion).where(ProgrammeVersion.version == number)
    ).one_or_none()
    if row is None:
        raise VersionNotFound(f"No programme version {number}.", details={"version": number})
    return row


def latest_number(session: Session) -> int:
    return int(session.scalar(select(func.max(ProgrammeVersion.version))) or 0)


def dumps(programme: Programme, fmt: str = "yaml") -> str:
    document = programme.model_dump(mode="json", exclude_defaults=True)
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False)
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
