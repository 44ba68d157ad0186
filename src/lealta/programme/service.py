"""Programme versions: apply a document, read the one in force."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lealta.models import ProgrammeVersion
from lealta.programme.schema import DEFAULT_PROGRAMME, Programme

_cache: dict[tuple[str, int], Programme] = {}


def current(session: Session) -> Programme:
    """The newest version in force; parsed once per version and cached."""
    row = session.execute(
        select(ProgrammeVersion.id, ProgrammeVersion.version, ProgrammeVersion.document)
        .order_by(ProgrammeVersion.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return DEFAULT_PROGRAMME
    key = (str(session.get_bind().engine.url), row.version)
    programme = _cache.get(key)
    if programme is None:
        programme = Programme.model_validate(row.document)
        _cache[key] = programme
    return programme


def apply(session: Session, programme: Programme, *, actor: str, now: datetime) -> int:
    """Store ``programme`` as the next version, in force from ``now``; returns its number."""
    latest = session.scalar(select(func.max(ProgrammeVersion.version))) or 0
    version = latest + 1
    session.add(
        ProgrammeVersion(
            version=version,
            document=programme.model_dump(mode="json"),
            applied_by=actor,
            activated_at=now,
            created_at=now,
        )
    )
    session.flush()
    return version
