"""The CLV fit as a background job: nightly, and on demand (CLI, console).

``analytics.fit_clv`` runs :func:`lealta.analytics.clv_store.run_fit` outside any one
transaction (it writes the predictions in chunks). :func:`request_fit` enqueues it once per
minute at most (a dedupe key), so a button pressed twice starts one fit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from lealta.analytics import clv_store
from lealta.jobs import queue
from lealta.jobs.periodic import periodic
from lealta.jobs.tasks import JobContext

NIGHTLY = "15 2 * * *"
TIMEOUT_SECONDS = 3600.0


@periodic(clv_store.FIT_TASK, NIGHTLY, transactional=False, timeout=TIMEOUT_SECONDS, max_attempts=3)
def fit_clv(ctx: JobContext) -> None:
    """Fit the model on the histories up to the job's start and store it."""
    clv_store.run_fit(ctx.db, now=ctx.now, actor=f"job:{ctx.job_id}")


def request_fit(session: Session, *, now: datetime) -> int:
    """Enqueue a fit now (in the caller's transaction); the job's id."""
    minute = now.replace(second=0, microsecond=0).isoformat()
    return queue.enqueue(
        session, clv_store.FIT_TASK, {}, now=now, dedupe_key=f"{clv_store.FIT_TASK}:{minute}"
    )
