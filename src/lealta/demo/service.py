"""``lealta demo up``: a ready-to-explore database in one command, safe to run again.

Steps, each skipped when already done: apply the demo programme (when no programme version
exists), enrol the demo members and replay their year of history through
:mod:`lealta.events.batch`, the batch driver (when there are no members at all). Members and history
load in one unit of work, so an interrupted load leaves nothing and the next run starts over.

Every run then issues a fresh ``demo`` API key and revokes the previous ones: only key
digests are stored, so an old key cannot be shown again, and a new one costs nothing.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lealta.analytics import rollups
from lealta.apikeys import service as apikeys
from lealta.demo.data import DEFAULT_MEMBERS, DEFAULT_SEED, generate
from lealta.demo.programme import DEMO_PROGRAMME
from lealta.events import batch
from lealta.events.service import IngestContext
from lealta.jobs.service import run_due
from lealta.kit.db import Database
from lealta.kit.errors import Conflict
from lealta.members import service as members
from lealta.models import AdminUser, Member, ProgrammeVersion
from lealta.programme import service as programmes
from lealta.staff import service as staff_users
from lealta.surveys import service as surveys

ACTOR = "demo"
API_KEY_NAME = "demo"
ADMIN_EMAIL = "admin@lealta.local"

ProgressCallback = Callable[[int, int], None]
"""Called with ``(events_done, events_total)`` while the history loads."""


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What ``up`` did; ``api_key`` is the only copy of the new key's secret."""

    programme_version: int | None
    members_created: int
    events_ingested: int
    api_key: str
    api_key_prefix: str
    keys_revoked: int
    elapsed_seconds: float
    admin_email: str = ADMIN_EMAIL
    admin_password: str = ""


def up(
    db: Database,
    *,
    now: datetime,
    seed: int = DEFAULT_SEED,
    member_count: int = DEFAULT_MEMBERS,
    on_progress: ProgressCallback | None = None,
) -> DemoReport:
    """Bring the (already migrated) database to a demo state and issue a ``demo`` API key."""
    started = time.perf_counter()
    with db.unit_of_work() as session:
        version = None
        if not _has_programme(session):
            version = programmes.apply(session, DEMO_PROGRAMME, actor=ACTOR, now=now)
    created = ingested = 0
    with db.unit_of_work() as session:
        if not _has_members(session):
            created, ingested = _load(session, now, seed, member_count, on_progress)
            _survey(session, now, seed)
    # Members whose last event is older than the return window or an expiry date are brought
    # up to now, as the scheduled job would have done live (still history: backfill).
    run_due(db, now=now, backfill=True)
    if created:
        # The dashboard has the whole history from the first page: its roll-ups are computed
        # here, set-wise, rather than as the worker works through the history's outbox rows
        # (which then change nothing, the facts being replaced rather than added).
        with db.unit_of_work() as session:
            rollups.rebuild(session, now=now)
    with db.unit_of_work() as session:
        revoked = 0
        for row in apikeys.list_keys(session):
            if row.name == API_KEY_NAME and row.revoked_at is None:
                apikeys.revoke(session, row.prefix, now=now)
                revoked += 1
        key_row, key = apikeys.create(session, name=API_KEY_NAME, scope="server", now=now)
        password = _demo_admin(session, now)
    return DemoReport(
        programme_version=version,
        members_created=created,
        events_ingested=ingested,
        api_key=key,
        api_key_prefix=key_row.prefix,
        keys_revoked=revoked,
        elapsed_seconds=time.perf_counter() - started,
        admin_email=ADMIN_EMAIL,
        admin_password=password,
    )


def _demo_admin(session: Session, now: datetime) -> str:
    """Create the demo console admin, or give it a fresh password (hashes cannot be shown)."""
    password = secrets.token_urlsafe(12)
    user = session.scalars(select(AdminUser).where(AdminUser.email == ADMIN_EMAIL)).one_or_none()
    if user is None:
        staff_users.create_user(
            session,
            email=ADMIN_EMAIL,
            name="Demo admin",
            role="admin",
            password=password,
            now=now,
            actor=ACTOR,
        )
    else:
        staff_users.set_password(session, user, password, now=now)
        user.role = "admin"
        user.disabled = False
    return password


def _load(
    session: Session,
    now: datetime,
    seed: int,
    member_count: int,
    on_progress: ProgressCallback | None,
) -> tuple[int, int]:
    programme = programmes.current(session)
    if programme.currency != DEMO_PROGRAMME.currency:
        raise Conflict(
            f"The programme in force runs in {programme.currency}; the demo history is in"
            f" {DEMO_PROGRAMME.currency}. Use an empty database for the demo.",
            code="demo_currency_mismatch",
        )
    data = generate(now, seed=seed, members=member_count)
    for profile, enrolled_at in data.members:
        members.create(session, profile, now=now, enrolled_at=enrolled_at)
    ctx = IngestContext(programme=programme, now=now, actor=ACTOR, backfill=True)
    total = len(data.events)
    for start in range(0, total, _CHUNK):
        chunk = [
            batch.Item(index=i, event=item.event, key=item.key)
            for i, item in enumerate(data.events[start : start + _CHUNK], start=start)
        ]
        batch.run_items(session, chunk, ctx)
        refused = [item for item in chunk if item.status == "rejected"]
        if refused:  # the generator made an event the engine refuses: a bug, say which
            assert refused[0].error is not None
            raise refused[0].error
        if on_progress is not None:
            on_progress(min(start + _CHUNK, total), total)
    return len(data.members), total


_CHUNK = 2000
SURVEY_ANSWERS = 60


def _survey(session: Session, now: datetime, seed: int) -> None:
    """The demo NPS survey, answered by :data:`SURVEY_ANSWERS` members over the last 60 days
    (scores drawn so the NPS is positive but not perfect)."""
    text = (files("lealta.demo") / "survey.yaml").read_text(encoding="utf-8")
    survey = surveys.create(session, surveys.parse(text), actor=ACTOR, now=now)
    programme = programmes.current(session, now=now)
    rng = random.Random(seed)
    candidates = session.scalars(select(Member).order_by(Member.id).limit(400)).all()
    comments = ("Más tallas, por favor.", "Envíos más rápidos.", "Me encanta la app.", "")
    for member in rng.sample(list(candidates), min(SURVEY_ANSWERS, len(candidates))):
        at = now - timedelta(days=rng.randint(0, 60), minutes=rng.randint(0, 600))
        if at <= member.enrolled_at:
            continue
        answers = {
            "recommend": rng.choices(range(11), weights=[1, 1, 1, 1, 2, 2, 3, 6, 8, 9, 8])[0],
            "quality": rng.choices(range(1, 6), weights=[1, 1, 3, 6, 5])[0],
            "channel": rng.choice(["web", "app", "store"]),
            "comments": rng.choice(comments),
        }
        surveys.answer(
            session, survey, member, answers, channel="link", now=at, programme=programme,
            backfill=True,
        )  # fmt: skip


def _has_programme(session: Session) -> bool:
    return session.scalar(select(func.count()).select_from(ProgrammeVersion)) != 0


def _has_members(session: Session) -> bool:
    return session.scalar(select(func.count()).select_from(Member)) != 0
