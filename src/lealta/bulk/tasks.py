"""The background job of bulk operations (registered in the worker's ``TASK_MODULES``)."""

from __future__ import annotations

from lealta.bulk import service
from lealta.jobs.tasks import GiveUp, JobContext, task


@task(service.RUN_TASK, transactional=False, timeout=3600.0, max_attempts=10)
def run_operation(ctx: JobContext, *, operation_id: int) -> None:
    """Work through the operation's pending rows (resumable: at-least-once is safe, as rows
    already applied are never applied again)."""
    try:
        service.run(ctx.db, operation_id, clock=ctx.clock)
    except service.BulkOperationNotFound as exc:
        raise GiveUp(exc.message) from None
