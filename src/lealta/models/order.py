from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base
from lealta.models._types import BigId


class Order(Base):
    """A paid order as the shop reported it; amounts in integer minor units."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_member_time", "member_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str | None] = mapped_column(String(32))
    store: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    sku: Mapped[str] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(128))
    quantity: Mapped[int]
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
