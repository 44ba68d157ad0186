"""Where each capability says how to erase a member's data from its own tables.

Erasure (:func:`lealta.privacy.service.erase`) cleans the core tables itself; a capability
that stores personal data in tables of its own declares it here, in its own module, so that
adding a capability never means editing the erasure. Two ways:

* an eraser function, for anything custom::

      @registry.eraser("notifications.messages")
      def _erase_messages(session: Session, member_id: int, now: datetime) -> None:
          session.execute(delete(Message).where(Message.member_id == member_id))

* a declaration of columns to scrub, for tables that keep payloads or free text::

      registry.scrub_columns("webhook_deliveries", "request_body", "response_body")
      registry.scrub_columns("inbound_payloads", "body", member_column=None)  # no member link

  The columns (JSON or text) of the member's rows (``member_column``, default
  ``member_id``) are scrubbed of the member's email, name, phone and customer id
  (:mod:`lealta.privacy.scrub`); with ``member_column=None`` every row whose text holds one
  of them is (a table scan: keep it for tables without a member link).

A capability may also add a section to the member's data export (the GDPR access document of
the API, the console and the cockpit, :func:`lealta.members.data_export.export`)::

      @registry.exporter("messages")
      def _export_messages(session: Session, member_id: int) -> list[dict[str, Any]]:
          ...

Erasers run in the erasure's transaction, after the core tables and before the member's
profile is wiped, and must be idempotent (an erasure job may run twice). The scan test in
``tests/test_privacy_erasure.py`` reads every text and JSON column of every table after an
erasure, so a table that was forgotten here fails it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

Eraser = Callable[[Session, int, datetime], None]
"""``(session, member_id, now) -> None``: remove or pseudonymise the member's rows."""

Exporter = Callable[[Session, int], Any]
"""``(session, member_id) -> JSON-ready data``: the capability's section of the export."""


@dataclass(frozen=True, slots=True)
class ColumnScrub:
    """Scrub ``columns`` of table ``table`` (rows of the member by ``member_column``, or any row
    holding one of the member's values when it is ``None``)."""

    table: str
    columns: tuple[str, ...]
    member_column: str | None = "member_id"


CAPABILITY_MODULES: tuple[str, ...] = (
    "lealta.surveys.privacy",
    "lealta.webhooks.privacy",
    "lealta.inbound.privacy",
    "lealta.bulk.privacy",
    "lealta.referrals.privacy",
    "lealta.gamification.privacy",
    "lealta.plans.privacy",
    "lealta.nonmembers.privacy",
    "lealta.workflows.privacy",
    "lealta.segments.privacy",
    "lealta.campaigns.privacy",
)
"""Modules that register erasers, scrubs or export sections; :func:`load` imports them, so an
erasure from the CLI, a job or the API sees every capability whatever was imported before.
A capability with personal data in tables of its own adds its module here."""

_ERASERS: dict[str, Eraser] = {}
_SCRUBS: dict[str, ColumnScrub] = {}
_EXPORTERS: dict[str, Exporter] = {}


def load() -> None:
    """Import :data:`CAPABILITY_MODULES` (each registers itself on import)."""
    for name in CAPABILITY_MODULES:
        importlib.import_module(name)


def eraser(name: str) -> Callable[[Eraser], Eraser]:
    """Register the decorated ``(session, member_id, now)`` function as eraser ``name``
    (registering a name again replaces it)."""

    def register(function: Eraser) -> Eraser:
        _ERASERS[name] = function
        return function

    return register


def register_eraser(name: str, function: Eraser) -> None:
    """:func:`eraser` without the decorator."""
    _ERASERS[name] = function


def scrub_columns(table: str, *columns: str, member_column: str | None = "member_id") -> None:
    """Declare the JSON or text ``columns`` of ``table`` that may hold a member's data."""
    if not columns:
        raise ValueError("name at least one column to scrub")
    _SCRUBS[table] = ColumnScrub(table, tuple(columns), member_column)


def exporter(name: str) -> Callable[[Exporter], Exporter]:
    """Register the decorated ``(session, member_id)`` function as export section ``name``."""

    def register(function: Exporter) -> Exporter:
        _EXPORTERS[name] = function
        return function

    return register


def exporters() -> list[tuple[str, Exporter]]:
    """The registered export sections, by name."""
    load()
    return sorted(_EXPORTERS.items())


def erasers() -> list[tuple[str, Eraser]]:
    """The registered eraser functions, by name."""
    load()
    return sorted(_ERASERS.items())


def scrubs() -> list[ColumnScrub]:
    """The declared column scrubs, by table."""
    load()
    return [_SCRUBS[name] for name in sorted(_SCRUBS)]


def unregister(name: str) -> None:
    """Forget an eraser, a column scrub or an export section (tests)."""
    _ERASERS.pop(name, None)
    _SCRUBS.pop(name, None)
    _EXPORTERS.pop(name, None)
