"""The background work of paid plans: a sweep that ends lapsed plans and starts grace."""

from __future__ import annotations

from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import JobContext, task
from lealta.plans import service
from lealta.plans.provider import provider_for
from lealta.programme import service as programmes

SWEEP_TASK = "plans.sweep"
PROVIDER_CANCEL_TASK = "plans.provider_cancel"


@periodic(SWEEP_TASK, "*/10 * * * *")
def sweep(ctx: JobContext) -> None:
    """Every ten minutes: plans whose benefits ran out end (or enter grace), in batches."""
    session = ctx.require_session()
    programme = programmes.current(session, now=ctx.now)
    service.sweep(session, programme, now=ctx.now)


@task(PROVIDER_CANCEL_TASK, transactional=False, max_attempts=20)
def provider_cancel(ctx: JobContext, *, provider_ref: str) -> None:
    """Cancel a subscription at the payment provider at once (after the member's erasure
    ended it here); retried with backoff while the provider fails."""
    provider_for(ctx.settings).cancel(provider_ref, at_period_end=False)
