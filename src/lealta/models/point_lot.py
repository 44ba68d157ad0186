from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column, relationship

from lealta.kit.db import Base
from lealta.models._types import BigId
from lealta.models.ledger_entry import LedgerEntry


class PointLot(Base):
    """Points credited together (one earn or positive adjustment), consumed FIFO.

    ``remaining`` is the only mutable figure; each change to it is explained by a
    :class:`LotAllocation` row pointing at the ledger entry that caused it.
    """

    __tablename__ = "point_lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0", name="ck_point_lots_remaining_nonneg"),
        CheckConstraint("remaining <= points", name="ck_point_lots_remaining_le_points"),
        Index("ix_point_lots_open", "member_id", "remaining", "expires_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"))
    entry: Mapped[LedgerEntry] = relationship(lazy="raise")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    pending: Mapped[bool] = mapped_column(default=False)
    available_at: Mapped[datetime | None]


class LotAllocation(Base):
    """Links a debit entry to the lots it consumed, so expiry, refunds and audits are exact."""

    __tablename__ = "lot_allocations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), index=True)
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    lot_id: Mapped[int] = mapped_column(ForeignKey("point_lots.id"), index=True)
    points: Mapped[int] = mapped_column(BigInteger)
