"""Roll-up tables behind the programme dashboard (:mod:`lealta.analytics.rollups`).

``analytics_member_days`` holds one member's figures for one UTC day, recomputed from the
ledger and the orders whenever a domain event names the member; the programme-wide tables
(``analytics_daily``, ``analytics_monthly``, ``analytics_cohorts``) are kept as the sum of
those rows by adding the difference each recompute makes, so the dashboard never scans the
ledger. ``analytics_applied`` records the outbox rows already applied.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base


class _Flows:
    """The additive figures of a day (points are positive numbers; ``adjusted`` is signed)."""

    orders: Mapped[int] = mapped_column(Integer, default=0)
    revenue_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    points_redeemed: Mapped[int] = mapped_column(BigInteger, default=0)
    points_expired: Mapped[int] = mapped_column(BigInteger, default=0)
    points_adjusted: Mapped[int] = mapped_column(BigInteger, default=0)


class AnalyticsMember(Base):
    """What the roll-ups know of a member: enrolment day and first purchase day."""

    __tablename__ = "analytics_members"
    __table_args__ = (Index("ix_analytics_members_first_order", "first_order_day"),)

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    enrolled_day: Mapped[date] = mapped_column(Date)
    first_order_day: Mapped[date | None] = mapped_column(Date)
    synced_at: Mapped[datetime]


class AnalyticsMemberDay(_Flows, Base):
    """One member's figures on one UTC day (only days with something to count)."""

    __tablename__ = "analytics_member_days"
    # The buyers of a period (active, repeat, retained): only days with an order, covering.
    __table_args__ = (
        Index(
            "ix_analytics_member_days_buyers",
            "day",
            "member_id",
            "orders",
            postgresql_where=text("orders > 0"),
            sqlite_where=text("orders > 0"),
        ),
    )

    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    enrolled: Mapped[int] = mapped_column(Integer, default=0)


class AnalyticsDaily(_Flows, Base):
    """Programme totals of one UTC day: the sum of that day's member rows."""

    __tablename__ = "analytics_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    new_members: Mapped[int] = mapped_column(Integer, default=0)
    active_members: Mapped[int] = mapped_column(Integer, default=0)


class AnalyticsMonthly(Base):
    """Programme totals of one calendar month (``month`` is its first day)."""

    __tablename__ = "analytics_monthly"

    month: Mapped[date] = mapped_column(Date, primary_key=True)
    active_members: Mapped[int] = mapped_column(Integer, default=0)
    new_members: Mapped[int] = mapped_column(Integer, default=0)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    revenue_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class AnalyticsCohort(Base):
    """Members enrolled in ``cohort`` month who bought in ``month``."""

    __tablename__ = "analytics_cohorts"

    cohort: Mapped[date] = mapped_column(Date, primary_key=True)
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    active_members: Mapped[int] = mapped_column(Integer, default=0)


class AnalyticsApplied(Base):
    """An outbox row whose effect on the roll-ups is applied (a redelivery is skipped)."""

    __tablename__ = "analytics_applied"

    outbox_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    applied_at: Mapped[datetime]
