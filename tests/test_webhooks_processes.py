"""Kill test for webhooks on PostgreSQL: a ``lealta worker`` process is SIGKILLed while it
waits on a webhook request; a second worker takes the leases back and every event still
reaches the receiver at least once (duplicates carry the same ``Lealta-Webhook-Id``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from lealta.kit.db import Database
from lealta.models import Job, WebhookDelivery
from lealta.outbox import events as domain
from lealta.outbox.service import emit
from lealta.webhooks import service
from tests.factories import add_member
from tests.test_jobs_processes import WorkerProcess, _until, processes  # noqa: F401
from tests.webhook_receiver import Receiver, running

pytestmark = pytest.mark.postgres_only

EVENTS = 20


def _statuses(db: Database) -> list[str]:
    with db.unit_of_work(write=False) as session:
        return list(session.scalars(select(WebhookDelivery.status)))


def test_every_webhook_is_delivered_after_a_worker_is_killed_mid_delivery(
    db: Database,
    database_url: str,
    processes: list[WorkerProcess],  # noqa: F811
) -> None:
    now = datetime.now(UTC)
    member_id = add_member(db, "cus_kill", None)
    with running(Receiver(delay=30.0)) as receiver:
        with db.unit_of_work() as session:
            service.create_endpoint(
                session, url=receiver.url, event_types=["order.paid"], now=now, actor="test"
            )
            for n in range(EVENTS):
                event = domain.OrderPaid(
                    event_id=f"ord_{n}", customer_id="cus_kill", points_delta=n
                )
                emit(session, event, member_id=member_id, now=now, backfill=False)
        env = {"LEALTA_JOB_LEASE_SECONDS": "3", "LEALTA_WORKER_POLL_SECONDS": "0.1"}
        first = WorkerProcess(database_url, "--concurrency", "2", **env)
        processes.append(first)
        # The receiver holds the first requests for 30 s: the worker is mid-delivery.
        assert _until(lambda: receiver.pending >= 1, 60), first.log()
        first.kill()  # SIGKILL: no clean-up of any kind
        receiver.delay = 0.0
        second = WorkerProcess(database_url, "--concurrency", "2", **env)
        processes.append(second)
        assert _until(lambda: _statuses(db).count("succeeded") == EVENTS, 90), (
            second.log(),
            _statuses(db),
        )
        assert second.stop() == 0, second.log()
        received = [r.headers["Lealta-Webhook-Id"] for r in receiver.requests]
    with db.unit_of_work(write=False) as session:
        sent = set(session.scalars(select(WebhookDelivery.payload["id"].as_string())))
    assert len(sent) == EVENTS
    with db.unit_of_work(write=False) as session:
        errors = session.scalars(
            select(Job.last_error).where(Job.task == "webhooks.deliver", Job.attempts == 2)
        ).all()
    # The requests in flight at the kill were taken back from the dead worker and sent again.
    assert errors and all(e and e.startswith("lease expired: worker") for e in errors)
    assert set(received) >= sent  # every event at least once
    assert len(received) >= EVENTS
