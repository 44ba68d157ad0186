"""GDPR erasure, retention and the one-member data export, on SQLite and PostgreSQL.

The central check (:func:`leaks`) reflects the live schema with SQLAlchemy's inspector and
reads EVERY text and JSON column of EVERY table, looking for the erased member's email, name
and phone (any case): a table some capability added without declaring an eraser
(:mod:`lealta.privacy.registry`) fails it. The ledger must still verify and every total
(balances, lifetime figures, orders, lots, liability) must be what it was.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import JSON, String, Text, func, inspect, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import Settings, get_settings
from lealta.jobs import queue as job_queue
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.ledger import service as ledger
from lealta.members import data_export
from lealta.members import service as members
from lealta.members.login_links import LINK_TOPIC
from lealta.models import (
    Account,
    AuditLog,
    Consent,
    Job,
    LedgerEntry,
    Member,
    MemberErasure,
    MemberLoginToken,
    Order,
    OutboxMessage,
    PointLot,
    Survey,
)
from lealta.privacy import registry
from lealta.privacy import service as privacy
from lealta.privacy.scrub import ERASED
from lealta.programme import service as programmes
from tests.conftest import T0
from tests.factories import order_paid, order_refunded
from tests.test_rewards import DEMO, use

MARIA = {
    "external_id": "cust-maria",
    "email": "Maria.Fernandez@Example.com",
    "name": "María Fernández Ruiz",
    "phone": "+34 600 111 222",
}
PEDRO = {
    "external_id": "cust-pedro",
    "email": "pedro.gil@example.org",
    "name": "Pedro Gil Soto",
    "phone": "+34 699 888 777",
}


# --- the scan ------------------------------------------------------------------------------


def _textual(column_type: Any) -> bool:
    return isinstance(column_type, (String, Text, JSON)) or type(column_type).__name__ in {
        "JSONB",
        "JSON",
    }


def leaks(db: Database, person: dict[str, str]) -> list[str]:
    """Every ``table.column`` (with the row's key) whose value holds the person's email, name
    or phone, in any case, across every table of the live schema."""
    needles = [person["email"].lower(), person["name"].lower(), person["phone"].lower()]
    found: list[str] = []
    with db.engine.connect() as conn:
        inspector = inspect(conn)
        for table in inspector.get_table_names():
            if table == "alembic_version":
                continue
            columns = [c["name"] for c in inspector.get_columns(table) if _textual(c["type"])]
            if not columns:
                continue
            quoted = ", ".join(f'"{c}"' for c in columns)
            for row in conn.execute(text(f'SELECT {quoted} FROM "{table}"')):
                for name, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    blob = (
                        value
                        if isinstance(value, str)
                        else json.dumps(value, ensure_ascii=False, default=str)
                    ).lower()
                    for needle in needles:
                        if needle in blob:
                            found.append(f"{table}.{name}: {needle}")
    return found


def totals(db: Database) -> dict[str, Any]:
    """Every figure the erasure must not move."""
    with db.unit_of_work(write=False) as session:
        account = session.execute(
            select(
                func.count(),
                func.sum(Account.points_available),
                func.sum(Account.points_pending),
                func.sum(Account.lifetime_earned),
                func.sum(Account.lifetime_spent),
                func.sum(Account.points_expired),
                func.sum(Account.qualifying_spend_minor),
                func.sum(Account.orders_count),
            )
        ).one()
        return {
            "accounts": tuple(int(v or 0) for v in account),
            "ledger": tuple(
                int(v or 0)
                for v in session.execute(select(func.count(), func.sum(LedgerEntry.points))).one()
            ),
            "orders": tuple(
                int(v or 0)
                for v in session.execute(
                    select(
                        func.count(), func.sum(Order.total_minor), func.sum(Order.refunded_minor)
                    )
                ).one()
            ),
            "lots": tuple(
                int(v or 0)
                for v in session.execute(select(func.count(), func.sum(PointLot.remaining))).one()
            ),
            "tiers": sorted((str(t or "")) for t in session.scalars(select(Account.tier_id))),
        }


def verified(db: Database) -> None:
    with db.unit_of_work(write=False) as session:
        checked, problems = ledger.verify(session)
    assert problems == [] and checked >= 2


# --- building a member with a history everywhere --------------------------------------------


def enrol(client: TestClient, person: dict[str, str], tag: str) -> None:
    created = client.post(
        "/v1/members",
        json={**person, "attributes": {}, "tags": ["vip"], "birthday": "1990-04-02"},
        headers={"Idempotency-Key": f"enrol-{tag}"},
    )
    assert created.status_code == 201, created.text
    consent = client.post(
        f"/v1/members/{person['external_id']}/consents",
        json={"purpose": "marketing_email", "granted": True, "source": "checkout"},
        headers={"Idempotency-Key": f"consent-{tag}"},
    )
    assert consent.status_code == 200, consent.text
    cid = person["external_id"]
    day = T0 - timedelta(days=20)
    events = [
        order_paid(
            f"evt-{tag}-1",
            cid,
            f"ORD-{tag}-1",
            "300.00",
            day,
            items=[{"sku": "ZAP-1", "category": "calzado", "quantity": 1, "unit_price": "300.00"}],
        ),
        order_paid(f"evt-{tag}-2", cid, f"ORD-{tag}-2", "120.00", day + timedelta(days=1)),
        order_refunded(f"evt-{tag}-3", cid, f"ORD-{tag}-1", day + timedelta(days=2), "100.00"),
        {
            "id": f"evt-{tag}-4",
            "type": "review.posted",
            "customer_id": cid,
            "occurred_at": (day + timedelta(days=3)).isoformat(),
            "properties": {
                "note": f"Review by {person['name']} ({person['email']}), call {person['phone']}",
                "contact": {"email": person["email"], "name": person["name"]},
            },
        },
    ]
    for event in events:
        sent = client.post("/v1/events", json=event)
        assert sent.status_code in (200, 201), sent.text
    adjusted = client.post(
        f"/v1/members/{cid}/adjustments",
        json={"points": 700, "reason": f"Goodwill for {person['name']}, ticket {person['email']}"},
        headers={"Idempotency-Key": f"adjust-{tag}"},
    )
    assert adjusted.status_code == 201, adjusted.text
    redeemed = client.post(
        f"/v1/members/{cid}/redemptions",
        json={"reward_id": "coupon-5"},
        headers={"Idempotency-Key": f"redeem-{tag}"},
    )
    assert redeemed.status_code == 201, redeemed.text


def side_records(db: Database, person: dict[str, str]) -> None:
    """What other paths leave behind: a sign-in request and its email, an audit entry about
    the member, a pending job and a pending message naming them."""
    from lealta.audit import service as audit
    from lealta.members import login_links

    with db.unit_of_work() as session:
        member = members.get(session, person["external_id"])
        request = login_links.request_link(
            session, person["email"], client_ip="127.0.0.9", now=T0, minutes=15
        )
        assert request.token is not None
        login_links.queue_link_email(
            session,
            member,
            to=person["email"],
            subject="Sign in",
            body=f"Hello {person['name']}, https://x/me/login/{request.token}",
            now=T0,
            expires_at=T0 + timedelta(minutes=15),
        )
        audit.record(
            session,
            actor="admin:ops@example.com",
            action="member.note",
            target_type="member",
            target_id=person["external_id"],
            reason=f"Called {person['name']}",
            details={"phone": person["phone"], "said": f"write to {person['email']}"},
            now=T0,
        )
        job_queue.enqueue(
            session,
            "notify.send",
            {"member_id": member.id, "to": person["email"]},
            now=T0,
            run_at=T0 + timedelta(days=1),
        )
        job_queue.enqueue(  # a capability that keeps the id as text
            session,
            "notify.digest",
            {"member_id": str(member.id)},
            now=T0,
            run_at=T0 + timedelta(days=1),
        )
        session.add(
            OutboxMessage(
                topic="member.updated",
                member_id=member.id,
                payload={
                    "member": {"external_id": person["external_id"], "email": person["email"]}
                },
                created_at=T0,
                processed_at=None,
            )
        )


def capability_records(db: Database, person: dict[str, str]) -> None:
    """What other capabilities keep: a survey's written answer, a webhook delivery of the
    member's event with the receiver's echo, and a Shopify delivery naming the customer."""
    from lealta.models import InboundDelivery, WebhookDelivery, WebhookEndpoint
    from lealta.surveys import service as surveys
    from tests.test_surveys_maths import DEFINITION

    cid = person["external_id"]
    with db.unit_of_work() as session:
        member = members.get(session, cid)
        survey = session.scalar(select(Survey).where(Survey.key == DEFINITION["key"]))
        if survey is None:
            survey = surveys.create(
                session, surveys.parse(json.dumps(DEFINITION)), actor="test", now=T0
            )
        surveys.answer(
            session, survey, member,
            {"recommend": 9, "delivery": 4, "channel": "web", "comments": person["name"][:20]},
            channel="api", now=T0, programme=programmes.current(session, now=T0),
        )  # fmt: skip
        endpoint = WebhookEndpoint(
            url="https://shop.example/hooks", event_types=["*"], secret="s" * 32,
            created_at=T0, updated_at=T0,
        )  # fmt: skip
        session.add(endpoint)
        session.flush()
        session.add(
            WebhookDelivery(
                endpoint_id=endpoint.id, outbox_id=10_000 + member.id, event_type="order.paid",
                payload={"data": {"customer_id": cid, "email": person["email"]}},
                last_response=f"thanks {person['name']}", created_at=T0, updated_at=T0,
            )
        )  # fmt: skip
        session.add(
            InboundDelivery(
                source="shopify", delivery_id=f"wh-{cid}", topic="orders/paid",
                status="processed", customer_id=cid, request_hash="0" * 64,
                response={"customer": {"email": person["email"]}}, received_at=T0,
            )
        )  # fmt: skip


@pytest.fixture
def world(db: Database, client: TestClient) -> Database:
    use(db, DEMO)
    enrol(client, MARIA, "m")
    enrol(client, PEDRO, "p")
    side_records(db, MARIA)
    side_records(db, PEDRO)
    capability_records(db, MARIA)
    capability_records(db, PEDRO)
    return db


def member_id(db: Database, external_id: str) -> int:
    with db.unit_of_work(write=False) as session:
        return members.get(session, external_id).id


# --- erasure over the API -------------------------------------------------------------------


class TestApiErasure:
    def test_nothing_personal_remains_anywhere_and_every_total_holds(
        self, world: Database, client: TestClient
    ) -> None:
        db = world
        assert leaks(db, MARIA), "the scan must see the member's data before the erasure"
        before = totals(db)
        verified(db)
        maria_id = member_id(db, MARIA["external_id"])

        erased = client.delete(f"/v1/members/{MARIA['external_id']}")

        assert erased.status_code == 200, erased.text
        body = erased.json()
        assert body["status"] == "completed" and body["mode"] == "erase"
        assert body["pseudonym"].startswith("erased-")
        assert body["summary"]["events"] == 4 and body["summary"]["members"] == 1
        assert leaks(db, MARIA) == []
        assert leaks(db, PEDRO), "another member's data is untouched"
        assert totals(db) == before
        verified(db)
        with db.unit_of_work(write=False) as session:
            member = session.get(Member, maria_id)
            assert member is not None
            assert member.external_id == body["pseudonym"]
            assert (member.email, member.name, member.phone, member.birthday) == (None,) * 4
            assert member.tags == [] and member.attributes == {}
            assert session.scalar(select(func.count()).where(Consent.member_id == maria_id)) == 0
            assert (
                session.scalar(select(func.count()).where(MemberLoginToken.member_id == maria_id))
                == 0
            )
            # The stored events now name the pseudonym: replays still find them.
            payloads = [
                r[0]
                for r in session.execute(
                    text("SELECT payload FROM events WHERE member_id = :m"), {"m": maria_id}
                )
            ]
            assert all(body["pseudonym"] in json.dumps(p) for p in payloads)
            job = session.scalars(select(Job).where(Job.task == "notify.send")).all()
            statuses = sorted(j.status for j in job)
            assert statuses == ["discarded", "queued"]  # María's cancelled, Pedro's waiting
            digests = session.scalars(select(Job.status).where(Job.task == "notify.digest")).all()
            assert sorted(digests) == ["discarded", "queued"]
            pending = session.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.member_id == maria_id, OutboxMessage.processed_at.is_(None)
                )
            ).all()
            assert pending == []
            log = session.scalars(select(MemberErasure)).one()
            assert log.member_id == maria_id and log.channel == "api"
            assert log.actor == "apikey:test-server"
            audit_row = session.scalars(
                select(AuditLog).where(AuditLog.action == "member.erase")
            ).one()
            assert audit_row.target_id == body["pseudonym"]
        # The balance reads go on under the pseudonym.
        balance = client.get(f"/v1/members/{body['pseudonym']}/balance")
        assert balance.status_code == 200

    def test_the_old_id_is_gone_and_asking_again_says_so(
        self, world: Database, client: TestClient
    ) -> None:
        first = client.delete(
            f"/v1/members/{MARIA['external_id']}", headers={"Idempotency-Key": "erase-1"}
        )
        assert first.status_code == 200
        assert client.get(f"/v1/members/{MARIA['external_id']}").status_code == 404
        again = client.delete(f"/v1/members/{MARIA['external_id']}")
        assert again.status_code == 410 and again.json()["error"]["code"] == "member_erased"
        replay = client.delete(
            f"/v1/members/{MARIA['external_id']}", headers={"Idempotency-Key": "erase-1"}
        )
        assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
        never = client.delete("/v1/members/nobody-here")
        assert never.status_code == 404 and never.json()["error"]["code"] == "member_not_found"
        with world.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(MemberErasure)) == 1

    def test_a_read_key_cannot_erase_and_a_bad_mode_is_refused(
        self, world: Database, client: TestClient, read_key: str
    ) -> None:
        denied = client.delete(
            f"/v1/members/{MARIA['external_id']}",
            headers={"Authorization": f"Bearer {read_key}"},
        )
        assert denied.status_code == 403
        bad = client.delete(f"/v1/members/{MARIA['external_id']}?mode=shred")
        assert bad.status_code == 422
        with world.unit_of_work(write=False) as session:
            assert session.scalar(select(func.count()).select_from(MemberErasure)) == 0
            stored = members.get(session, MARIA["external_id"]).email
            assert stored is not None and stored.lower() == MARIA["email"].lower()

    def test_pseudonymise_keeps_what_does_not_identify(
        self, world: Database, client: TestClient
    ) -> None:
        done = client.delete(f"/v1/members/{MARIA['external_id']}?mode=pseudonymise")
        assert done.status_code == 200 and done.json()["mode"] == "pseudonymise"
        assert leaks(world, MARIA) == []
        with world.unit_of_work(write=False) as session:
            member = session.get(Member, member_id(world, done.json()["pseudonym"]))
            assert member is not None and member.tags == ["vip"] and member.email is None
            assert session.scalar(select(func.count()).where(Consent.member_id == member.id)) == 1

    def test_the_erasure_log_lists_erasures_without_personal_data(
        self, world: Database, client: TestClient
    ) -> None:
        client.delete(f"/v1/members/{MARIA['external_id']}")
        client.delete(f"/v1/members/{PEDRO['external_id']}")
        page = client.get("/v1/privacy/erasures?limit=1")
        assert page.status_code == 200
        assert len(page.json()["items"]) == 1 and page.json()["next_cursor"]
        rest = client.get(f"/v1/privacy/erasures?before={page.json()['next_cursor']}")
        assert len(rest.json()["items"]) == 1 and rest.json()["next_cursor"] is None
        assert MARIA["external_id"] not in page.text + rest.text


class TestLargeErasure:
    def test_a_large_history_is_erased_by_a_job(
        self,
        world: Database,
        client: TestClient,
        clock: FixedClock,
        settings: Settings,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(privacy, "INLINE_LIMIT", 3)
        before = totals(world)
        scheduled = client.delete(f"/v1/members/{MARIA['external_id']}")
        assert scheduled.status_code == 202, scheduled.text
        assert scheduled.json()["status"] == "scheduled"
        with world.unit_of_work(write=False) as session:
            job = session.scalars(select(Job).where(Job.task == privacy.ERASE_TASK)).one()
            assert job.args == {"erasure_id": scheduled.json()["erasure_id"]}
            # Sessions, links, messages and jobs stop at once.
            tokens = session.scalar(select(func.count()).select_from(MemberLoginToken))
            assert tokens == 1  # María's sign-in link is gone at once; Pedro's stays
        assert leaks(world, MARIA), "the job has not run yet"
        Worker(world, clock=clock, settings=settings, name="gdpr-test").run(until_idle=True)
        assert leaks(world, MARIA) == []
        assert totals(world) == before
        verified(world)
        with world.unit_of_work(write=False) as session:
            log = session.scalars(select(MemberErasure)).one()
            assert log.status == "completed" and log.completed_at is not None


# --- the registry ---------------------------------------------------------------------------


class TestRegistry:
    def test_declared_columns_and_eraser_functions_run(
        self, world: Database, client: TestClient
    ) -> None:
        calls: list[int] = []

        def note(session: Session, member: int, now: Any) -> None:
            calls.append(member)

        registry.register_eraser("test.note", note)
        registry.scrub_columns("programme_versions", "document", member_column=None)
        try:
            maria = member_id(world, MARIA["external_id"])
            assert client.delete(f"/v1/members/{MARIA['external_id']}").status_code == 200
        finally:
            registry.unregister("test.note")
            registry.unregister("programme_versions")
        assert calls == [maria]
        with pytest.raises(ValueError):
            registry.scrub_columns("x")

    def test_an_export_section_joins_the_document(
        self, world: Database, client: TestClient
    ) -> None:
        registry.exporter("loyalty_notes")(lambda session, member: [{"member": member}])
        try:
            got = client.get(f"/v1/members/{PEDRO['external_id']}/data-export").json()
        finally:
            registry.unregister("loyalty_notes")
        assert got["loyalty_notes"] == [{"member": member_id(world, PEDRO["external_id"])}]
        assert got["format"] == data_export.FORMAT
        plain = client.get(f"/v1/members/{PEDRO['external_id']}/data-export").json()
        assert "loyalty_notes" not in plain


# --- export ---------------------------------------------------------------------------------


class TestExport:
    def test_the_api_export_is_the_cockpit_document(
        self, world: Database, client: TestClient, clock: FixedClock
    ) -> None:
        got = client.get(f"/v1/members/{MARIA['external_id']}/data-export")
        assert got.status_code == 200
        assert got.headers["content-type"].startswith("application/json")
        with world.unit_of_work(write=False) as session:
            member = members.get(session, MARIA["external_id"])
            currency = programmes.current(session, now=clock.now()).currency
            same = data_export.export(session, member, currency=currency, now=clock.now())
        assert got.json() == json.loads(json.dumps(same))
        assert got.json()["profile"]["email"].lower() == MARIA["email"].lower()
        assert len(got.json()["orders"]) == 2 and got.json()["consents"]
        missing = client.get("/v1/members/nobody/data-export")
        assert missing.status_code == 404


# --- retention ------------------------------------------------------------------------------


class TestRetention:
    def test_months_ago_clamps_the_day(self) -> None:
        at = T0.replace(month=3, day=31)
        assert privacy.months_ago(at, 1).day == 28 or privacy.months_ago(at, 1).day == 29
        assert privacy.months_ago(at, 12).year == at.year - 1
        assert privacy.months_ago(at, 14).month == 1

    def test_only_members_inactive_for_the_period_are_chosen(
        self, world: Database, client: TestClient, clock: FixedClock
    ) -> None:
        later = T0 + timedelta(days=400)
        # Pedro orders again, late: he stays.
        clock.set(later)
        fresh = order_paid("evt-p-late", PEDRO["external_id"], "ORD-late", "10.00", later)
        assert client.post("/v1/events", json=fresh).status_code in (200, 201)
        with world.unit_of_work(write=False) as session:
            chosen = [
                m.external_id for m in privacy.inactive_members(session, now=later, months=12)
            ]
            assert chosen == [MARIA["external_id"]]
            assert list(privacy.inactive_members(session, now=T0, months=12)) == []

    def test_the_periodic_job_pseudonymises_inactive_members(
        self, world: Database, settings: Settings
    ) -> None:
        later = FixedClock(T0 + timedelta(days=800))
        on = settings.model_copy(
            update={"retention_inactive_months": 12, "retention_action": "pseudonymise"}
        )
        with world.unit_of_work() as session:
            job_queue.enqueue(session, "privacy.retention", {}, now=later.now())
        Worker(world, clock=later, settings=on, name="gdpr-retention").run(until_idle=True)
        assert leaks(world, MARIA) == [] and leaks(world, PEDRO) == []
        verified(world)
        with world.unit_of_work(write=False) as session:
            logs = session.scalars(select(MemberErasure)).all()
            assert sorted(lg.channel for lg in logs) == ["retention", "retention"]
            assert {lg.mode for lg in logs} == {"pseudonymise"}

    def test_the_job_does_nothing_when_retention_is_off(
        self, world: Database, settings: Settings
    ) -> None:
        later = FixedClock(T0 + timedelta(days=800))
        with world.unit_of_work() as session:
            job_queue.enqueue(session, "privacy.retention", {}, now=later.now())
        Worker(world, clock=later, settings=settings, name="gdpr-off").run(until_idle=True)
        assert leaks(world, MARIA)


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli(world: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


class TestCli:
    def test_erase_then_ledger_verify(self, cli: CliRunner, world: Database) -> None:
        before = totals(world)
        refused = cli.invoke(cli_app, ["members", "erase", MARIA["external_id"]], input="n\n")
        assert refused.exit_code != 0 and leaks(world, MARIA)
        done = cli.invoke(cli_app, ["members", "erase", MARIA["external_id"], "--yes"])
        assert done.exit_code == 0, done.output
        assert "erased" in done.output and "erased-" in done.output
        assert leaks(world, MARIA) == [] and totals(world) == before
        check = cli.invoke(cli_app, ["ledger", "verify"])
        assert check.exit_code == 0 and "ledger consistent" in check.output
        again = cli.invoke(cli_app, ["members", "erase", MARIA["external_id"], "--yes"])
        assert again.exit_code == 4 and "member_erased" in again.output

    def test_export_data_prints_the_document(self, cli: CliRunner) -> None:
        out = cli.invoke(cli_app, ["members", "export-data", PEDRO["external_id"]])
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["profile"]["email"] == PEDRO["email"]
        missing = cli.invoke(cli_app, ["members", "export-data", "nobody"])
        assert missing.exit_code == 4

    def test_retention_dry_run_lists_and_changes_nothing(
        self, cli: CliRunner, world: Database
    ) -> None:
        # The members were enrolled at the real "now" of the API's fixed clock (T0, 2026-01);
        # the CLI runs on the system clock, so a 1-month period finds both.
        listed = cli.invoke(cli_app, ["members", "retention", "--months", "1"])
        assert listed.exit_code == 0, listed.output
        assert MARIA["external_id"] in listed.output and "dry run: 2" in listed.output
        assert leaks(world, MARIA)
        off = cli.invoke(cli_app, ["members", "retention"])
        assert off.exit_code == 2 and "retention_off" in off.output
        applied = cli.invoke(
            cli_app, ["members", "retention", "--months", "1", "--action", "erase", "--apply"]
        )
        assert applied.exit_code == 0, applied.output
        assert leaks(world, MARIA) == [] and leaks(world, PEDRO) == []


def test_the_sign_in_email_topic_is_cancelled_for_an_erased_member(
    world: Database, client: TestClient
) -> None:
    client.delete(f"/v1/members/{MARIA['external_id']}")
    with world.unit_of_work(write=False) as session:
        waiting = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.topic == LINK_TOPIC, OutboxMessage.processed_at.is_(None)
            )
        ).all()
        assert len(waiting) == 1 and ERASED not in json.dumps(waiting[0].payload)


def test_the_erasure_log_table_matches_its_migration(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from lealta.kit.db import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "member_erasures" in repr(d)] == []
