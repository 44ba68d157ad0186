"""The points and tiers job: safe to run twice, at any frequency, and in event time.

Due members are handled in chunks, each chunk in one unit of work with its members' accounts
locked, by the engine's :func:`~lealta.engine.core.catch_up` (releases, expiries, tier
reviews); only what is still due is acted on, so two runners (or a rerun) never double an
effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lealta.coupons import service as coupons
from lealta.engine import core as engine
from lealta.events import store
from lealta.events.service import no_crossings
from lealta.kit.db import Database
from lealta.outbox.events import PointsExpired, PointsReleased
from lealta.programme import service as programmes


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
            due = [m for m in store.members_due(session, at=now, limit=batch_size) if m not in seen]
        if not due:
            return report
        seen.update(due)
        # One unit of work per chunk of members: their states loaded (and locked) together,
        # the engine run on each, the outcomes written with one statement per table.
        with db.unit_of_work() as session:
            programme = programmes.current(session, now=now)
            states = store.load_many(session, programme, {m: (now, now) for m in due})
            outcomes = [(m, engine.catch_up(programme, state, now)) for m, state in states.items()]
            store.write_all(
                session, outcomes, now=now, backfill=backfill, on_crossing=no_crossings, bulk=True
            )
        for m, outcome in outcomes:
            for event in outcome.events:
                if isinstance(event, PointsReleased):
                    report.released += event.points
                elif isinstance(event, PointsExpired):
                    report.expired += event.points
            report.tier_changes += int(outcome.state.figures.tier_id != states[m].figures.tier_id)
            report.members += 1
