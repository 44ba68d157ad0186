from __future__ import annotations

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base


class RewardCounter(Base):
    """Units of a reward handed out and not rolled back; the stock check's single row.

    Redemptions take a unit with a conditional ``UPDATE ... WHERE issued < :stock`` so two
    members can never take the last unit together; rollbacks give it back.
    """

    __tablename__ = "reward_counters"
    __table_args__ = (CheckConstraint("issued >= 0", name="ck_reward_counters_issued_nonneg"),)

    reward_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued: Mapped[int] = mapped_column(default=0)
