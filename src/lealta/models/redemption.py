from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

REDEMPTION_STATUSES = ("issued", "fulfilled", "rolled_back")


class Redemption(Base):
    """A member exchanged points for a reward: the debit, the coupon or the fulfilment.

    ``entry_id`` is the ``redeem`` ledger entry (absent for rewards that cost nothing); a
    rollback restores exactly the lots it consumed.
    """

    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint(
            "status IN ('issued', 'fulfilled', 'rolled_back')", name="ck_redemptions_status"
        ),
        CheckConstraint("points >= 0", name="ck_redemptions_points_nonneg"),
        Index("ix_redemptions_member_reward", "member_id", "reward_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    reward_id: Mapped[str] = mapped_column(String(64))
    reward_type: Mapped[str] = mapped_column(String(24))
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id"))
    value_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    fulfilment: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime]
    rolled_back_at: Mapped[datetime | None]
