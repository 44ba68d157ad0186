"""Keyset pagination, newest first on ``(occurred_at, id)``, with opaque cursors.

Keyset pages stay fast at any depth and never skip or repeat a row when new rows arrive.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from lealta.kit.errors import InvalidInput


class _Timed(Protocol):
    id: Any
    occurred_at: Any


T = TypeVar("T", bound=_Timed)


def encode_cursor(occurred_at: datetime, row_id: int) -> str:
    raw = json.dumps([occurred_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, raw_id = json.loads(base64.urlsafe_b64decode(padded))
        when, row_id = datetime.fromisoformat(at), int(raw_id)
        # A forged cursor must not reach the database as a naive time or an out-of-range id.
        if when.tzinfo is None or not 0 <= row_id < 2**63:
            raise ValueError("cursor out of range")
        return when, row_id
    except (ValueError, TypeError) as exc:
        raise InvalidInput("The cursor is not one this API issued.", code="invalid_cursor") from exc


def newest_first(
    session: Session,
    stmt: Select[T],
    model: type[T],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[T], str | None]:
    """One page of ``stmt`` (selecting ``model``) and the cursor of the next page, if any."""
    occurred: InstrumentedAttribute[datetime] = model.occurred_at
    ident: InstrumentedAttribute[int] = model.id
    if cursor:
        at, row_id = decode_cursor(cursor)
        stmt = stmt.where((occurred < at) | ((occurred == at) & (ident < row_id)))
    rows = list(session.scalars(stmt.order_by(occurred.desc(), ident.desc()).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].occurred_at, rows[-1].id)
