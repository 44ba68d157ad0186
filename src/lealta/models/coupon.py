from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212]+")


def normalise(code: str) -> str:
    """The lookup key of a code (its ``code_key``), however it was typed or stored: upper-case,
    with spaces and dashes removed (``lea-7k3m 9q2x`` and ``LEA-7K3M-9Q2X`` are one code).

    Patterns may only hold ``A-Z``, ``0-9``, ``-`` and ``#``, so dropping the dashes loses
    nothing but the grouping; the unique index on ``coupons.code_key`` (this form) makes sure
    two codes that differ only in their dashes are never both issued.
    """
    return _SEPARATORS.sub("", code).upper()


def _code_key(context: DefaultExecutionContext) -> str:
    return normalise(str(context.get_current_parameters()["code"]))  # type: ignore[no-untyped-call]


COUPON_SOURCES = (
    "redemption", "threshold", "admin", "workflow", "referral", "challenge", "campaign",
)  # fmt: skip
COUPON_STATUSES = ("active", "redeemed", "expired", "void")


class Coupon(Base):
    """A unique code worth a discount; amounts in integer minor units of ``currency``.

    ``uses`` only moves through a conditional ``UPDATE`` (``uses < uses_allowed``), and the
    CHECK below backs it, so a single-use coupon is used once however many tills race.
    ``percent_off`` is the exact decimal as text (SQLite has no true decimal type).
    """

    __tablename__ = "coupons"
    __table_args__ = (
        CheckConstraint(
            "status IN ('active', 'redeemed', 'expired', 'void')", name="ck_coupons_status"
        ),
        CheckConstraint(
            "source IN ('redemption', 'threshold', 'admin', 'workflow', 'referral', 'challenge',"
            " 'campaign')",
            name="ck_coupons_source",
        ),
        CheckConstraint("uses >= 0 AND uses <= uses_allowed", name="ck_coupons_uses"),
        Index("ix_coupons_member_status", "member_id", "status"),
        Index("ix_coupons_code_key", "code_key", unique=True),
        Index("ix_coupons_status_valid_until", "status", "valid_until"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    # The code as looked up (``normalise`` above: upper-case, no dashes or spaces);
    # unique, so two codes differing only in their dashes never coexist.
    code_key: Mapped[str] = mapped_column(String(64), default=_code_key)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    reward_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    percent_off: Mapped[str | None] = mapped_column(String(16))
    amount_off_minor: Mapped[int | None] = mapped_column(BigInteger)
    free_shipping: Mapped[bool] = mapped_column(default=False)
    minimum_order_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    skus: Mapped[list[str] | None] = mapped_column(JSONType)
    categories: Mapped[list[str] | None] = mapped_column(JSONType)
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    uses_allowed: Mapped[int] = mapped_column(default=1)
    uses: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime]


class CouponUse(Base):
    """One use of a coupon on an order; a rollback stamps ``rolled_back_at`` (kept for audit).

    At most one live use per (coupon, order): a partial unique index on both databases.
    """

    __tablename__ = "coupon_uses"
    __table_args__ = (
        Index(
            "uq_coupon_uses_live_order",
            "coupon_id",
            "order_ref",
            unique=True,
            sqlite_where=text("rolled_back_at IS NULL"),
            postgresql_where=text("rolled_back_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    coupon_id: Mapped[int] = mapped_column(ForeignKey("coupons.id"), index=True)
    order_ref: Mapped[str] = mapped_column(String(128))
    discount_minor: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[datetime]
    rolled_back_at: Mapped[datetime | None]
