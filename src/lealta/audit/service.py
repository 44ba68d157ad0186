from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from lealta.models import AuditLog


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    now: datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit row in the caller's transaction (it commits or vanishes with the act)."""
    session.add(
        AuditLog(
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            reason=reason,
            details=details or {},
            at=now,
        )
    )
