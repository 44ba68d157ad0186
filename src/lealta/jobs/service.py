"""The points and tiers job: safe to run twice, at any frequency, and in event time.

Each due member is handled in its own unit of work under the account lock, and only what
is still due is acted on, so two runners (or a rerun) never double an effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lealta.coupons import service as coupons
from lealta.kit.db import Database
from lealta.ledger import lifecycle
from lealta.ledger import service as ledger
from lealta.programme import service as programmes
from lealta.tiers import service as tiers


@dataclass(slots=True)
class JobReport:
    members: int = 0
    released: int = 0
    expired: int = 0
    tier_changes: int = 0
    coupons_expired: int = 0


def run_due(
    db: Database, *, now: datetime, batch_size: int = 500, backfill: bool = False
) -> JobReport:
    """Expire coupons past their date, then release pending points, expire due lots and run
    due tier reviews, up to ``now``. ``backfill`` marks the domain events when this catches
    up loaded history (the demo loader) rather than running live."""
    report = JobReport()
    with db.unit_of_work() as session:
        report.coupons_expired = coupons.expire_coupons(session, now)
    seen: set[int] = set()
    while True:
        with db.unit_of_work(write=False) as session:
            due = [
                m for m in lifecycle.members_due(session, at=now, limit=batch_size) if m not in seen
            ]
        if not due:
            return report
        for member_id in due:
            seen.add(member_id)
            with db.unit_of_work() as session:
                programme = programmes.current(session, now=now)
                account = ledger.lock_account(session, member_id)
                tier_before = account.tier_id
                report.released += lifecycle.release_pending(
                    session, account, at=now, now=now, backfill=backfill
                )
                expired = lifecycle.expire_due(session, account, at=now, now=now, backfill=backfill)
                report.expired += -sum(e.points for e in expired)
                tiers.review(session, programme, account, at=now, now=now, backfill=backfill)
                report.tier_changes += int(account.tier_id != tier_before)
            report.members += 1
