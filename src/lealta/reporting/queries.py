"""Read-only queries behind the console's core pages: headline figures, member search, audit.

They only read; every write goes through a domain service. Figures are computed on demand
with one aggregate query each, which stays fast with the indexes on members, orders and the
ledger for the volumes a single shop produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy import distinct, func, or_, select
from sqlalchemy.orm import Session

from lealta.coupons import service as coupons
from lealta.models import (
    Account,
    AuditLog,
    Coupon,
    LedgerEntry,
    Member,
    Order,
    Redemption,
)
from lealta.programme.schema import Programme

T = TypeVar("T")

PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 50
MAX_PAGE = 100_000


@dataclass(frozen=True, slots=True)
class TierShare:
    tier_id: str
    name: str
    members: int
    percent: float


@dataclass(frozen=True, slots=True)
class Overview:
    members: int
    active_members: int
    points_outstanding: int
    points_issued: int
    points_redeemed: int
    redemptions: int
    coupons_active: int
    tiers: list[TierShare]


def overview(session: Session, programme: Programme, *, now: datetime, language: str) -> Overview:
    """Headline figures: members, 90-day actives, points outstanding and 30-day flows."""
    month_ago = now - timedelta(days=30)
    quarter_ago = now - timedelta(days=90)
    members = session.scalar(select(func.count()).select_from(Member)) or 0
    active = (
        session.scalar(
            select(func.count(distinct(Order.member_id))).where(
                Order.occurred_at > quarter_ago, Order.occurred_at <= now
            )
        )
        or 0
    )
    outstanding = (
        session.scalar(
            select(func.coalesce(func.sum(Account.points_available + Account.points_pending), 0))
        )
        or 0
    )
    recent = (LedgerEntry.occurred_at > month_ago, LedgerEntry.occurred_at <= now)
    issued = (
        session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
                LedgerEntry.entry_type.in_(("earn", "adjust")), LedgerEntry.points > 0, *recent
            )
        )
        or 0
    )
    redeemed = (
        session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
                LedgerEntry.entry_type == "redeem", *recent
            )
        )
        or 0
    )
    redemptions = (
        session.scalar(
            select(func.count())
            .select_from(Redemption)
            .where(
                Redemption.created_at > month_ago,
                Redemption.created_at <= now,
                Redemption.status != "rolled_back",
            )
        )
        or 0
    )
    coupons_active = (
        session.scalar(
            select(func.count())
            .select_from(Coupon)
            .where(Coupon.status == "active", Coupon.valid_until > now, Coupon.valid_from <= now)
        )
        or 0
    )
    return Overview(
        members=int(members),
        active_members=int(active),
        points_outstanding=int(outstanding),
        points_issued=int(issued),
        points_redeemed=-int(redeemed),
        redemptions=int(redemptions),
        coupons_active=int(coupons_active),
        tiers=tier_distribution(session, programme, language=language, total=int(members)),
    )


def tier_distribution(
    session: Session, programme: Programme, *, language: str, total: int
) -> list[TierShare]:
    """Members per tier of the programme in force; members not yet placed count in the first."""
    if programme.tiers is None:
        return []
    counts: dict[str | None, int] = {
        tier_id: int(n)
        for tier_id, n in session.execute(
            select(Account.tier_id, func.count()).group_by(Account.tier_id)
        )
    }
    levels = programme.tiers.levels
    known = {t.id for t in levels}
    unplaced = sum(n for tier_id, n in counts.items() if tier_id not in known)
    shares = []
    for index, tier in enumerate(levels):
        n = counts.get(tier.id, 0) + (unplaced if index == 0 else 0)
        shares.append(
            TierShare(
                tier_id=tier.id,
                name=tier.name.get(language),
                members=n,
                percent=round(100 * n / total, 1) if total else 0.0,
            )
        )
    return shares


# --- members -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberRow:
    external_id: str
    name: str | None
    email: str | None
    tier_id: str | None
    points_available: int
    enrolled_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    page: int
    pages: int
    total: int

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def clamp_page(raw: str | None) -> int:
    """A page number from the query string; anything odd means the first page."""
    try:
        value = int(raw or 1)
    except ValueError:
        return 1
    return min(max(value, 1), MAX_PAGE)


def search_members(session: Session, query: str, *, page: int) -> Page[MemberRow]:
    """Members whose external id, email or name contains ``query`` (any case), or who own a
    coupon with exactly that code; newest enrolments first, ``PAGE_SIZE`` a page."""
    stmt = select(
        Member.external_id,
        Member.name,
        Member.email,
        Account.tier_id,
        Account.points_available,
        Member.enrolled_at,
    ).join(Account, Account.member_id == Member.id)
    count = select(func.count()).select_from(Member)
    query = query.strip()
    if query:
        needle = query.lower()
        conditions = [
            func.lower(Member.external_id).contains(needle, autoescape=True),
            func.lower(Member.email).contains(needle, autoescape=True),
            func.lower(Member.name).contains(needle, autoescape=True),
        ]
        coupon = coupons.find(session, query)
        if coupon is not None and coupon.member_id is not None:
            conditions.append(Member.id == coupon.member_id)
        stmt = stmt.where(or_(*conditions))
        count = count.where(or_(*conditions))
    total = int(session.scalar(count) or 0)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    rows = session.execute(
        stmt.order_by(Member.enrolled_at.desc(), Member.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    return Page(
        items=[MemberRow(*row) for row in rows],
        page=page,
        pages=pages,
        total=total,
    )


def orders_of(session: Session, member_id: int, *, limit: int = 25) -> list[Order]:
    """The member's most recent orders."""
    return list(
        session.scalars(
            select(Order)
            .where(Order.member_id == member_id)
            .order_by(Order.occurred_at.desc(), Order.id.desc())
            .limit(limit)
        )
    )


def coupon_codes(session: Session, coupon_ids: list[int]) -> dict[int, str]:
    if not coupon_ids:
        return {}
    rows = session.execute(select(Coupon.id, Coupon.code).where(Coupon.id.in_(coupon_ids)))
    return {coupon_id: code for coupon_id, code in rows}


# --- audit ---------------------------------------------------------------------------------


def audit_log(
    session: Session, *, actor: str, action: str, page: int
) -> tuple[Page[AuditLog], list[str]]:
    """Audit rows newest first, filtered by actor (contains, any case) and exact action;
    also every action name recorded so far, for the filter's choices."""
    stmt = select(AuditLog)
    count = select(func.count()).select_from(AuditLog)
    if actor.strip():
        condition = func.lower(AuditLog.actor).contains(actor.strip().lower(), autoescape=True)
        stmt, count = stmt.where(condition), count.where(condition)
    if action.strip():
        stmt, count = (
            stmt.where(AuditLog.action == action.strip()),
            count.where(AuditLog.action == action.strip()),
        )
    total = int(session.scalar(count) or 0)
    pages = max(1, -(-total // AUDIT_PAGE_SIZE))
    page = min(page, pages)
    rows = list(
        session.scalars(
            stmt.order_by(AuditLog.at.desc(), AuditLog.id.desc())
            .offset((page - 1) * AUDIT_PAGE_SIZE)
            .limit(AUDIT_PAGE_SIZE)
        )
    )
    actions = list(session.scalars(select(AuditLog.action).distinct().order_by(AuditLog.action)))
    return Page(items=rows, page=page, pages=pages, total=total), actions
