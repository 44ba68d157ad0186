"""Member export: one CSV row per member with the figures a CRM or spreadsheet needs.

Rows are streamed from the database (``yield_per``) into a temporary file beside the target,
which replaces the target only once complete, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import os
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.money import from_minor
from lealta.models import Account, Member, PointLot
from lealta.programme import service as programmes

MEMBER_COLUMNS = (
    "external_id",
    "tier",
    "available_points",
    "lifetime_points",
    "qualifying_spend",
    "pending_points",
    "spent_points",
    "expired_points",
    "shortfall_points",
    "next_expiry_at",
    "next_expiry_points",
)
_BATCH = 1000


class ExportFileError(LealtaError):
    code = "unwritable_file"


def export_members(db: Database, path: Path, *, now: datetime | None = None) -> int:
    """Write every member to ``path`` as CSV, ordered by external id; returns the row count.

    Columns: the tier id held (the entry tier for members not placed yet; empty only when the
    programme has no tiers), every balance bucket of the account
    (``lifetime_points`` is the net lifetime earned, reversals deducted; ``spent_points``,
    ``expired_points``, ``shortfall_points``), ``qualifying_spend`` as a decimal in the
    programme's currency, and the next expiry: the earliest date (ISO 8601, UTC) at which
    points still held expire, after ``now`` when given, and how many points expire then
    (both empty when none). Raises ``unwritable_file`` when the file cannot be written.
    """
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    open_lot = (
        (PointLot.member_id == Member.id)
        & (PointLot.remaining > 0)
        & PointLot.expires_at.is_not(None)
    )
    if now is not None:
        open_lot = open_lot & (PointLot.expires_at > now)
    next_at = select(func.min(PointLot.expires_at)).where(open_lot).correlate(Member)
    next_points = (
        select(func.sum(PointLot.remaining))
        .where(open_lot, PointLot.expires_at == next_at.scalar_subquery())
        .correlate(Member)
    )
    try:
        with db.unit_of_work(write=False) as session, partial.open("w", newline="") as out:
            programme = programmes.current(session, now=now)
            currency = programme.currency
            levels = [level.id for level in programme.tiers.levels] if programme.tiers else []
            writer = csv.writer(out)
            writer.writerow(MEMBER_COLUMNS)
            rows = session.execute(
                select(
                    Member.external_id,
                    Account.tier_id,
                    Account.points_available,
                    Account.lifetime_earned,
                    Account.qualifying_spend_minor,
                    Account.points_pending,
                    Account.lifetime_spent,
                    Account.points_expired,
                    Account.points_shortfall,
                    next_at.scalar_subquery(),
                    next_points.scalar_subquery(),
                )
                .join(Account, Account.member_id == Member.id)
                .order_by(Member.external_id)
                .execution_options(yield_per=_BATCH)
            )
            for (
                external_id,
                tier,
                available,
                lifetime,
                spend_minor,
                pending,
                spent,
                expired,
                shortfall,
                expiry_at,
                expiry_points,
            ) in rows:
                writer.writerow(
                    (
                        external_id,
                        _tier(tier, levels),
                        available,
                        lifetime,
                        format(from_minor(spend_minor, currency), "f"),
                        pending,
                        spent,
                        expired,
                        shortfall,
                        _iso(expiry_at),
                        "" if expiry_points is None else int(expiry_points),
                    )
                )
                count += 1
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ExportFileError(
            f"Cannot write '{path}': {exc.strerror or exc}.", details={"path": str(path)}
        ) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def _tier(stored: str | None, levels: list[str]) -> str:
    """The tier a member holds: the one recorded, or the entry tier for a member with none
    recorded yet (placed on first contact with the tiers) or one a programme edit removed."""
    if not levels:
        return ""
    return stored if stored in levels else levels[0]


def _iso(at: datetime | None) -> str:
    if at is None:
        return ""
    if at.tzinfo is None:  # SQLite hands back naive UTC from an aggregate
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
