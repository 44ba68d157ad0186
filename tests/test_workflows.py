"""Workflows end to end: the demo programme's templates run by real workers against a real
SMTP server (aiosmtpd on loopback), with a fixed clock, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import date, timedelta
from importlib.resources import files
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.config import Settings
from lealta.demo.programme import DEMO_PROGRAMME_TEXT
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Member, Message, WorkflowRun, WorkflowStep
from lealta.programme import service as programmes
from lealta.surveys import service as surveys
from lealta.workflows import runs
from tests.conftest import T0
from tests.factories import order_paid
from tests.test_notify import Mailbox, _api, _parts
from tests.test_notify import mail as mail
from tests.test_notify import mailbox as mailbox
from tests.test_notify import notify_settings as notify_settings
from tests.test_notify import provider as provider

_KEYS = itertools.count()


def document(**changes: Any) -> dict[str, Any]:
    """The demo programme (no pending days), time-triggered workflows switched on."""
    doc = programmes.parse_text(DEMO_PROGRAMME_TEXT)
    doc["pending"] = {"days": 0}
    for workflow in doc["workflows"]:
        workflow["enabled"] = True
    doc.update(changes)
    return doc


def apply(db: Database, doc: dict[str, Any], at: Any) -> None:
    with db.unit_of_work() as session:
        programmes.apply(session, programmes.validate(doc), actor="test", now=at)


@pytest.fixture
def api(
    db: Database, clock: FixedClock, notify_settings: Settings, server_key: str
) -> Iterator[TestClient]:
    apply(db, document(), T0 - timedelta(days=400))
    with db.unit_of_work() as session:
        text = (files("lealta.demo") / "survey.yaml").read_text(encoding="utf-8")
        surveys.create(session, surveys.parse(text), actor="test", now=T0 - timedelta(days=400))
    with _api(db, clock, notify_settings, server_key) as client:
        yield client


def work(db: Database, clock: FixedClock, settings: Settings) -> None:
    """A new worker (as after a restart) runs until nothing is due; twice, for the jobs the
    first round's jobs enqueued."""
    for _ in range(3):
        Worker(db, clock=clock, settings=settings, name="wf-test", schedule=False).run(
            until_idle=True
        )


def member(
    api: TestClient, external_id: str, *, language: str = "es", consent: bool = True, **fields: Any
) -> None:
    body = {
        "external_id": external_id,
        "email": f"{external_id}@example.com",
        "name": fields.pop("name", external_id.title()),
        "language": language,
        "timezone": "Europe/Madrid",
        "consents": [{"purpose": "marketing_email", "granted": consent}],
        **fields,
    }
    created = api.post("/v1/members", json=body, headers={"Idempotency-Key": f"m-{external_id}"})
    assert created.status_code in (200, 201), created.text


def pay(api: TestClient, customer: str, total: str, at: Any) -> None:
    n = next(_KEYS)
    paid = api.post("/v1/events", json=order_paid(f"e{n}", customer, f"o{n}", total, at))
    assert paid.status_code in (200, 201), paid.text


def subjects(mail: Mailbox, who: str) -> list[str]:
    return sorted(str(m["Subject"]) for m in mail.to(f"{who}@example.com"))


def body(mail: Mailbox, who: str, subject_part: str) -> str:
    found = [m for m in mail.to(f"{who}@example.com") if subject_part in str(m["Subject"])]
    assert len(found) == 1, [str(m["Subject"]) for m in mail.to(f"{who}@example.com")]
    return _parts(found[0])["plain"]


def time_triggers(db: Database, clock: FixedClock) -> dict[str, int]:
    with db.unit_of_work() as session:
        return runs.start_time_triggered(session, now=clock.now())


# --- event-triggered templates ---------------------------------------------------------------


def test_purchase_points_and_tier_up_in_each_members_language_exactly_once(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    member(api, "maria", name="María")
    member(api, "john", language="en", name="John")
    member(api, "nomail", consent=False)
    pay(api, "maria", "120.00", T0)
    pay(api, "john", "1200.00", T0)
    pay(api, "nomail", "120.00", T0)
    work(db, clock, notify_settings)
    assert subjects(mail, "maria") == ["Has ganado 120 puntos"]
    assert "Hola María, has ganado 120 puntos" in body(mail, "maria", "Has ganado")
    assert subjects(mail, "john") == [
        "A gift for you: 20% off",
        "A gift for you: 20% off",
        "Congratulations! You are now Silver",
        "You earned 1,200 points",
    ]
    assert mail.to("nomail@example.com") == []
    # "best" channel without any marketing consent: the in-app inbox.
    inbox = api.get("/v1/members/nomail/messages").json()["items"]
    assert [(m["template"], m["channel"]) for m in inbox] == [("points_earned", "inapp")]
    # Redelivery (a new worker, the same outbox) sends nothing more.
    work(db, clock, notify_settings)
    assert len(mail.to("maria@example.com")) == 1
    assert len(mail.to("john@example.com")) == 4


def _coupon_code(text: str) -> str:
    found = re.search(r"LEA-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", text)
    assert found, text
    return found.group(0)


def test_every_500_coupon_used_within_7_days_thanks_with_survey_link_and_no_reminder(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    member(api, "ana", name="Ana")
    pay(api, "ana", "500.00", T0)
    work(db, clock, notify_settings)
    gift = body(mail, "ana", "Tienes un regalo")
    code = _coupon_code(gift)
    assert "20 % de descuento" in gift
    clock.set(T0 + timedelta(days=3))
    used = api.post(
        f"/v1/coupons/{code}/redeem",
        json={
            "order_id": "o-use",
            "customer_id": "ana",
            "cart": {"total": "80.00", "currency": "EUR"},
        },
        headers={"Idempotency-Key": "use-1"},
    )
    assert used.status_code == 201, used.text
    work(db, clock, notify_settings)
    thanks = body(mail, "ana", "Gracias por usar tu cupón")
    assert code in thanks
    link = re.search(r"https://loyal\.tienda\.test/s/(\S+)", thanks)
    assert link, thanks
    key, member_id = surveys.read_link(notify_settings.secret_key, link.group(1), now=clock.now())
    with db.unit_of_work() as session:
        ana = session.scalar(select(Member.id).where(Member.external_id == "ana"))
    assert (key, member_id) == ("nps-2026", ana)
    clock.set(T0 + timedelta(days=40))
    work(db, clock, notify_settings)
    assert not [m for m in mail.to("ana@example.com") if "te espera" in str(m["Subject"])]
    with db.unit_of_work() as session:
        run = session.scalars(
            select(WorkflowRun).where(WorkflowRun.workflow_id == "every-500-coupon")
        ).one()
        assert run.status == "completed"
        outcomes = [
            (s.path, s.outcome)
            for s in session.scalars(select(WorkflowStep).where(WorkflowStep.run_id == run.id))
        ]
    assert outcomes == [
        ("steps.0", "queued"),
        ("steps.1", "waiting"),
        ("steps.1", "arrived"),
        ("steps.2", "then"),
        ("steps.2.then.0", "queued"),
    ]


def test_unused_coupon_reminder_after_7_days_resumes_on_a_restarted_worker(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    member(api, "tom", language="en", name="Tom")
    pay(api, "tom", "510.00", T0)
    work(db, clock, notify_settings)
    code = _coupon_code(body(mail, "tom", "A gift for you"))
    clock.set(T0 + timedelta(days=6, hours=23))
    work(db, clock, notify_settings)
    assert not [m for m in mail.to("tom@example.com") if "waiting" in str(m["Subject"])]
    # The programme changes meanwhile: the run finishes on the version it started on.
    changed = document()
    flow = next(w for w in changed["workflows"] if w["id"] == "every-500-coupon")
    flow["steps"] = [{"type": "stop"}]
    apply(db, changed, T0 + timedelta(days=6, hours=23))
    clock.set(T0 + timedelta(days=7, minutes=1))
    work(db, clock, notify_settings)  # a new worker instance: the wait is a row, not memory
    reminder = body(mail, "tom", "is waiting")
    assert code in reminder
    assert str(mail.to("tom@example.com")[-1]["Subject"]) == f"Your coupon {code} is waiting"
    work(db, clock, notify_settings)
    assert len([m for m in mail.to("tom@example.com") if "waiting" in str(m["Subject"])]) == 1
    with db.unit_of_work() as session:
        run = session.scalars(
            select(WorkflowRun).where(WorkflowRun.workflow_id == "every-500-coupon")
        ).one()
        assert run.status == "waiting" and run.wait_event == "coupon.used"
        assert run.programme_version == 1


# --- time-triggered templates ----------------------------------------------------------------


def test_near_tier_birthday_reactivation_and_expiring_points(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    apply(
        db,
        document(expiry={"months": 1, "round_to": "none", "warn_days": 30}, thresholds=[]),
        T0 - timedelta(days=200),
    )
    clock.set(T0 - timedelta(days=95))
    member(api, "gone", name="Gonzalo")
    pay(api, "gone", "50.00", T0 - timedelta(days=95))
    work(db, clock, notify_settings)
    clock.set(T0 - timedelta(days=10))
    member(api, "near", name="Nerea")
    pay(api, "near", "4800.00", T0 - timedelta(days=10))
    member(api, "cumple", name="Carmen", birthday=date(1990, 1, 5).isoformat())
    work(db, clock, notify_settings)
    mail.messages.clear()
    clock.set(T0)
    started = time_triggers(db, clock)
    assert started["near-tier"] == 1 and started["birthday"] == 1
    work(db, clock, notify_settings)
    # Near Oro (4.800 of 5.000 €), and the 10-day-old order's points expire within 30 days
    # (1-month expiry in this document).
    assert subjects(mail, "near") == [
        "4.800 puntos caducan pronto",
        "Te faltan 200,00 € para subir a nivel Oro",
    ]
    greeting = body(mail, "cumple", "Feliz cumpleaños")
    assert "Carmen" in greeting
    birthday_code = _coupon_code(greeting)
    coupon = api.get(f"/v1/coupons/{birthday_code}").json()
    assert coupon["percent_off"] in ("5", "5.0", "5.00") or float(coupon["percent_off"]) == 5
    assert "Te echamos de menos" in subjects(mail, "gone")
    # Looking again (the next sweep) fires nothing twice.
    before = len(mail.messages)
    time_triggers(db, clock)
    work(db, clock, notify_settings)
    assert len(mail.messages) == before


# --- pause, goal ------------------------------------------------------------------------------


def test_a_paused_workflow_starts_no_runs_and_resumes(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    member(api, "pia", name="Pía")
    paused = api.post("/v1/workflows/points-earned/pause", headers={"Idempotency-Key": "p1"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["paused"] is True
    pay(api, "pia", "20.00", T0)
    work(db, clock, notify_settings)
    assert mail.to("pia@example.com") == []
    resumed = api.post("/v1/workflows/points-earned/resume", headers={"Idempotency-Key": "r1"})
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    pay(api, "pia", "30.00", T0)
    work(db, clock, notify_settings)
    assert subjects(mail, "pia") == ["Has ganado 30 puntos"]
    with db.unit_of_work() as session:
        sent = session.scalars(select(Message).where(Message.template_key == "points_earned"))
        assert len(list(sent)) == 1
