"""events: the event id is the natural key of an event; coupons: a dash-less code key

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27

``events.idempotency_key`` holds the ``Idempotency-Key`` header when one was sent, else the
event id, so one event id sent twice with two header keys was processed twice. The new
``events.external_id`` holds the event's own ``id`` (NULL for an event sent without one) under
a unique index: one event id is processed once, whatever header comes with it.

``coupons.code_key`` is the code as looked up (upper-case, dashes and spaces removed), so a
code typed ``lea7k3m9q2x`` finds ``LEA-7K3M-9Q2X``; its unique index keeps two codes that
differ only in their dashes from ever coexisting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))
    _backfill()
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_external_id", ["external_id"], unique=True)

    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_key", sa.String(length=64), nullable=True))
    _backfill_code_keys()
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.alter_column("code_key", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index("ix_coupons_code_key", ["code_key"], unique=True)


def _code_key(code: str) -> str:
    # Frozen copy of ``lealta.coupons.codes.normalise`` as of this revision.
    return re.sub(r"[\s\-\u2010-\u2015\u2212]+", "", code).upper()


def _backfill_code_keys() -> None:
    """Each coupon's key; should two stored codes differ only in their dashes, the later one
    keeps its code as key (it has dashes, so it equals no other key) and stays findable by
    its exact code."""
    bind = op.get_bind()
    coupons = sa.table(
        "coupons",
        sa.column("id", sa.Integer()),
        sa.column("code", sa.String(64)),
        sa.column("code_key", sa.String(64)),
    )
    seen: set[str] = set()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(coupons.c.id, coupons.c.code)
            .where(coupons.c.id > last)
            .order_by(coupons.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for row_id, code in rows:
            last = row_id
            key = _code_key(code)
            if key in seen or not key:
                # Lower-case never matches a normalised (upper-case) look-up key.
                key = code if code not in seen else f"dup:{row_id}"
            seen.add(key)
            updates.append({"row_id": row_id, "code_key": key})
        bind.execute(
            coupons.update()
            .where(coupons.c.id == sa.bindparam("row_id"))
            .values(code_key=sa.bindparam("code_key")),
            updates,
        )


def _backfill() -> None:
    """Copy each stored event's own ``id`` from its payload; the first event with an id wins
    (a later duplicate, processed before this fix, keeps NULL so the unique index holds)."""
    bind = op.get_bind()
    events = sa.table(
        "events",
        sa.column("id", sa.Integer()),
        sa.column("payload", sa.JSON()),
        sa.column("external_id", sa.String(200)),
    )
    seen: set[str] = set()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(events.c.id, events.c.payload)
            .where(events.c.id > last)
            .order_by(events.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for row_id, payload in rows:
            last = row_id
            event_id = payload.get("id") if isinstance(payload, dict) else None
            if isinstance(event_id, str) and event_id and event_id not in seen:
                seen.add(event_id)
                updates.append({"row_id": row_id, "external_id": event_id})
        if updates:
            bind.execute(
                events.update()
                .where(events.c.id == sa.bindparam("row_id"))
                .values(external_id=sa.bindparam("external_id")),
                updates,
            )


def downgrade() -> None:
    with op.batch_alter_table("coupons", schema=None) as batch_op:
        batch_op.drop_index("ix_coupons_code_key")
        batch_op.drop_column("code_key")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_external_id")
        batch_op.drop_column("external_id")
