from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class ChangeOut(BaseModel):
    path: str
    kind: str
    old: Any = None
    new: Any = None


class VersionOut(BaseModel):
    version: int
    applied_by: str
    activated_at: datetime
    created_at: datetime


class ProgrammeOut(BaseModel):
    version: int | None
    activated_at: datetime | None
    document: dict[str, Any]


class ApplyResult(BaseModel):
    version: int | None
    dry_run: bool
    activated_at: datetime | None
    changes: list[ChangeOut]
