"""Background work of the privacy capability: large erasures and the retention policy."""

from __future__ import annotations

from sqlalchemy import select

from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import GiveUp, JobContext, task
from lealta.kit.logging import get_logger
from lealta.models import MemberErasure
from lealta.privacy import service

log = get_logger("lealta.privacy")


@task(service.ERASE_TASK, max_attempts=5, timeout=3600.0)
def erase_member(ctx: JobContext, *, erasure_id: int) -> None:
    """Carry out a scheduled erasure (idempotent: a completed one is left as it is)."""
    session = ctx.require_session()
    record = session.scalars(
        select(MemberErasure).where(MemberErasure.id == erasure_id).with_for_update()
    ).first()
    if record is None:
        raise GiveUp(f"erasure {erasure_id} does not exist")
    service.erase(session, record, now=ctx.now, data_dir=ctx.settings.data_dir)
    log.info("member_erased", erasure_id=erasure_id, summary=record.summary)


@periodic("privacy.retention", "40 3 * * *", transactional=False, timeout=3600.0)
def retention(ctx: JobContext) -> None:
    """Erase or pseudonymise members inactive for ``LEALTA_RETENTION_INACTIVE_MONTHS`` (off at
    0), at most ``LEALTA_RETENTION_BATCH`` per run (the next run takes the rest)."""
    months = ctx.settings.retention_inactive_months
    if months <= 0:
        return
    report = service.run_retention(
        ctx.db,
        now=ctx.now,
        months=months,
        action=ctx.settings.retention_action,
        secret=ctx.settings.secret_key,
        data_dir=ctx.settings.data_dir,
        limit=ctx.settings.retention_batch,
        dry_run=False,
    )
    if report.applied:
        log.info("retention_applied", action=report.action, members=report.applied)
