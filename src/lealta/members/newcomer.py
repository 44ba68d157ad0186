"""A customer about to be enrolled by a bulk path, as plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


@dataclass(eq=False)
class NewMember:
    """The columns of a ``members`` row not inserted yet (the id excepted), unset ones None.

    The bulk paths (the batch driver of imports and ``lealta demo up``, the migration import,
    the simulator) make one per new customer, and :func:`lealta.members.service.enrol_many`
    inserts them with one statement. An ORM ``Member`` costs several times as much to fill,
    every attribute being instrumented, and none of these paths adds it to a session. A test
    keeps the fields equal to the table's columns."""

    external_id: str
    enrolled_at: datetime
    created_at: datetime
    updated_at: datetime
    enrolment_channel: str | None = None
    language: str | None = None
    timezone: str | None = None
    attributes: dict[str, Any] | None = None
    tags: list[str] | None = None
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    birthday: date | None = None
    avatar_path: str | None = None
    session_generation: int | None = None
    plan_id: str | None = None
    plan_until: datetime | None = None
