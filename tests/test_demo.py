"""``lealta demo up`` on the test database: loads once, stays consistent, re-runs cheaply."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from lealta.analytics import rollups
from lealta.apikeys import service as apikeys
from lealta.cli import app as cli_app
from lealta.config import get_settings
from lealta.demo.data import generate
from lealta.kit.db import Base, Database
from lealta.kit.errors import Unauthorized
from lealta.ledger import service as ledger
from lealta.members import service as members
from lealta.models import (
    Account,
    Event,
    LedgerEntry,
    Member,
    OutboxMessage,
    ProgrammeVersion,
    SurveyResponse,
)
from lealta.programme import service as programmes
from lealta.tiers import service as tiers

KEY = re.compile(r"lea_[0-9a-f]+_[A-Za-z0-9_-]+")


@pytest.fixture
def cli(db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def _count(db: Database, model: type[Base]) -> int:
    with db.unit_of_work(write=False) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_demo_up_twice(cli: CliRunner, db: Database) -> None:
    first = cli.invoke(cli_app, ["demo", "up"])
    assert first.exit_code == 0, first.output
    assert "http://127.0.0.1:8000/docs" in first.output
    assert "curl" in first.output
    first_key = KEY.search(first.output)
    assert first_key is not None

    members_after_first = _count(db, Member)
    events_after_first = _count(db, Event)
    entries_after_first = _count(db, LedgerEntry)
    assert members_after_first >= 250
    with db.unit_of_work(write=False) as session:
        checked, problems = ledger.verify(session)
        assert checked == members_after_first and problems == []
        programme = programmes.current(session)
        assert programme.name == "Moda Mediterránea"
        assert programme.tiers is not None and len(programme.tiers.levels) == 4
        maria = members.get(session, "cust-0001")
        assert maria.name is not None and maria.name.startswith("María")
        assert members.balance(session, maria, "EUR").qualifying_spend == "3000.00"
        account = session.get(Account, maria.id)
        assert account is not None
        status = tiers.status(session, programme, maria, account, now=datetime.now(UTC))
        assert status is not None
        # Seed 000: "María — Plata (3.000 €) — 60 % hacia Oro — 2.000 € más"
        assert status.progress.current.id == "plata"
        assert status.progress.next is not None and status.progress.next.id == "oro"
        assert status.progress.percent == 60
        assert status.progress.needed == 2000
        assert status.progress.estimated_date is not None
        types = set(session.scalars(select(Event.event_type).distinct()))
        assert {"order.paid", "order.refunded", "review.posted"} <= types
        assert apikeys.authenticate(session, first_key.group()).name == "demo"
        # The demo NPS survey, answered by some members (50 points each, in the ledger).
        answered = session.scalar(select(func.count()).select_from(SurveyResponse))
        assert answered is not None and 40 <= answered <= 60
        survey_points = session.scalar(
            select(func.sum(LedgerEntry.points)).where(LedgerEntry.source_type == "survey")
        )
        assert survey_points == 50 * answered
        assert not session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.topic == "survey.answered", OutboxMessage.backfill.is_(False))
        )

    # The dashboard's roll-ups hold the whole history at once, before any worker has run:
    # every member, and the rows a rebuild computes.
    with db.unit_of_work(write=False) as session:
        loaded = rollups.snapshot(session)
    assert len(loaded["analytics_members"]) == members_after_first
    assert len(loaded["analytics_monthly"]) >= 12
    with db.unit_of_work() as session:
        rollups.rebuild(session, now=datetime.now(UTC))
    with db.unit_of_work(write=False) as session:
        assert rollups.snapshot(session) == loaded

    second = cli.invoke(cli_app, ["demo", "up"])
    assert second.exit_code == 0, second.output
    second_key = KEY.search(second.output)
    assert second_key is not None and second_key.group() != first_key.group()
    assert _count(db, Member) == members_after_first
    assert _count(db, Event) == events_after_first
    assert _count(db, LedgerEntry) == entries_after_first
    assert _count(db, ProgrammeVersion) == 1
    with db.unit_of_work(write=False) as session:
        assert ledger.verify(session)[1] == []
        assert apikeys.authenticate(session, second_key.group()).scope == "server"
        with pytest.raises(Unauthorized):
            apikeys.authenticate(session, first_key.group())


def test_generated_history_is_deterministic_and_in_the_past() -> None:
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    a, b = generate(now), generate(now)
    assert [(e.key, e.event) for e in a.events] == [(e.key, e.event) for e in b.events]
    assert [m for m, _ in a.members] == [m for m, _ in b.members]
    times = [e.event.occurred_at for e in a.events]
    assert times == sorted(times) and times[-1] < now
    assert len({e.key for e in a.events}) == len(a.events)
    enrolled = {m.external_id: at for m, at in a.members}
    for e in a.events:
        assert e.event.occurred_at >= enrolled[e.event.customer_id]
    languages = {m.language for m, _ in a.members}
    assert languages == {"es", "en"}
