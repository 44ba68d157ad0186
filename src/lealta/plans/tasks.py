"""The background work of paid plans: a sweep that ends lapsed plans and starts grace."""

from __future__ import annotations

from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import JobContext
from lealta.plans import service
from lealta.programme import service as programmes

SWEEP_TASK = "plans.sweep"


@periodic(SWEEP_TASK, "*/10 * * * *")
def sweep(ctx: JobContext) -> None:
    """Every ten minutes: plans whose benefits ran out end (or enter grace), in batches."""
    session = ctx.require_session()
    programme = programmes.current(session, now=ctx.now)
    service.sweep(session, programme, now=ctx.now)
