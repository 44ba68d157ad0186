"""Campaigns in the background: the minute tick (mirror, launch, throttled send) and the
"launch now" job."""

from __future__ import annotations

from lealta.campaigns import service
from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import GiveUp, JobContext, task
from lealta.kit.logging import get_logger

log = get_logger("lealta.campaigns")

TICK = "campaigns.tick"
LAUNCH = "campaigns.launch"


@periodic(TICK, "* * * * *", transactional=False, timeout=600.0)
def tick(ctx: JobContext) -> None:
    """Mirror the programme's campaigns, launch the due ones and send the next slice of
    each running one (``throttle.per_minute``)."""
    done = service.tick(ctx.db, ctx.settings, now=ctx.now)
    if any(done.values()):
        log.info("campaigns_sent", **done)


@task(LAUNCH, transactional=False, timeout=1800.0)
def launch(ctx: JobContext, *, campaign_id: str) -> None:
    """Draw the audience of a campaign asked to launch now (then send its first slice)."""
    if not isinstance(campaign_id, str):
        raise GiveUp("campaign_id must be a string")
    with ctx.db.unit_of_work() as session:
        try:
            size = service.launch(session, campaign_id, now=ctx.now)
        except service.CampaignNotFound:
            return
    if size >= 0:
        log.info("campaign_launched", campaign=campaign_id, audience=size)
