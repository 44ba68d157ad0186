"""Campaigns end to end at the service edge, on SQLite and PostgreSQL: the audience drawn at
launch (segment minus exclusions minus erased members, arms from ``assign``), throttled
sending by the minute tick, holdout, attribution (ledger, coupons, messages), pause/resume/
cancel, a retried tick repeating nothing, priority suppression, consent and caps, boosts,
the end of the window, and the seed campaigns of the demo programme."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from lealta.campaigns import service
from lealta.campaigns.schema import Campaign
from lealta.config import Settings
from lealta.experiments.assign import assign
from lealta.kit.db import Database
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.models import AuditLog, Coupon, LedgerEntry, Member, Message
from lealta.models.campaign import CampaignRecipient, CampaignState
from lealta.models.privacy import MemberErasure
from lealta.programme import service as programmes
from lealta.segments import service as segments
from lealta.segments.schema import Segment as SegmentDef
from tests.conftest import T0

DEMO_TEXT = Path(__file__).parents[1].joinpath("src/lealta/demo/programme.yaml").read_text()
DEMO = programmes.validate(programmes.parse_text(DEMO_TEXT))
START = T0 + timedelta(hours=1)


@pytest.fixture
def ready(db: Database) -> Database:
    """The demo programme in force, members c01..c12 (c11 without e-mail consent, c12 with
    no e-mail at all), static segments ``aud`` (c01..c10, c11, c12) and ``vip`` (c08..c10)."""
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=T0 - timedelta(days=30))
        for i in range(1, 13):
            members.create(
                session,
                MemberCreate(
                    external_id=f"c{i:02d}",
                    email=None if i == 12 else f"c{i:02d}@example.com",
                    language="en" if i % 2 else "es",
                    consents=[{"purpose": "marketing_email", "granted": i != 11}],
                ),
                now=T0 - timedelta(days=10),
            )
        for key, ids in (("aud", range(1, 13)), ("vip", range(8, 11))):
            segments.create(session, SegmentDef(id=key, name=key, kind="static"), actor="t", now=T0)
            segments.upload(
                session, key, [f"c{i:02d}" for i in ids], mode="replace", actor="t", now=T0
            )
    return db


def campaign(**extra: Any) -> Campaign:
    data: dict[str, Any] = {
        "id": "spring",
        "name": "Spring",
        "segment": "aud",
        "starts_at": START.isoformat(),
        "steps": [
            {"type": "award_points", "points": 50, "reason": "spring bonus"},
            {"type": "issue_coupon", "reward": "coupon-5"},
            {"type": "send_message", "template": "we_miss_you"},
        ],
    }
    data.update(extra)
    return Campaign.model_validate(data)


def save(db: Database, data: Campaign) -> None:
    with db.unit_of_work() as session:
        service.create(session, data, actor="test", now=T0)


def rows(db: Database, campaign_id: str = "spring") -> dict[str, CampaignRecipient]:
    with db.unit_of_work(write=False) as session:
        found = session.execute(
            select(CampaignRecipient, Member.external_id)
            .join(Member, Member.id == CampaignRecipient.member_id)
            .where(CampaignRecipient.campaign_id == campaign_id)
        ).all()
        for r, _ in found:
            session.expunge(r)
    return {ext: r for r, ext in found}


def state(db: Database, campaign_id: str = "spring") -> str:
    with db.unit_of_work(write=False) as session:
        return service.get(session, campaign_id).status


def member_id(db: Database, ext: str) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(Member.id).where(Member.external_id == ext)) or 0)


def test_launch_draws_the_segment_minus_exclusions_and_erased_with_assigned_arms(
    ready: Database, settings: Settings
) -> None:
    db = ready
    with db.unit_of_work() as session:
        session.add(
            MemberErasure(
                member_id=member_id(db, "c03"), pseudonym="erased-x", subject_hash="h",
                mode="erase", channel="api", actor="test", requested_at=T0,
                status="completed", summary={},
            )
        )  # fmt: skip
    experiment = {
        "holdout_percent": 20,
        "variants": [{"id": "a", "weight": 1}, {"id": "b", "weight": 1}],
    }
    save(db, campaign(exclude_segments=["vip"], experiment=experiment))
    # Not yet: the window has not opened.
    assert service.tick(db, settings, now=T0) == {}
    assert state(db) == "scheduled"
    service.tick(db, settings, now=START)
    found = rows(db)
    assert set(found) == {f"c{i:02d}" for i in (1, 2, 4, 5, 6, 7, 11, 12)}
    for ext, r in found.items():
        assert r.arm == assign("spring", member_id(db, ext), Campaign.model_validate(
            {**campaign().model_dump(mode="json"), "experiment": experiment}
        ).experiment)  # fmt: skip
        assert r.assigned_at == START
    with db.unit_of_work(write=False) as session:
        row = service.get(session, "spring")
        assert row.audience_size == 8 and row.launched_at == START
    # A second launch of the same campaign draws nothing more.
    with db.unit_of_work() as session:
        assert service.launch(session, "spring", now=START) == -1
    assert len(rows(db)) == 8


def test_throttled_sending_holdout_attribution_and_retry(
    ready: Database, settings: Settings
) -> None:
    db = ready
    data = campaign(
        throttle={"per_minute": 4},
        experiment={"holdout_percent": 30, "variants": [{"id": "control"}]},
        multiplier={"factor": "2", "days": 7},
    )
    save(db, data)
    done = service.tick(db, settings, now=START)
    assert done == {"spring": 4}
    processed = [r for r in rows(db).values() if r.status != "pending"]
    assert len(processed) == 4
    minute = START + timedelta(minutes=1)
    assert service.tick(db, settings, now=minute) == {"spring": 4}
    # The same tick again (a retried job) processes nothing twice.
    before = rows(db)
    with db.unit_of_work(write=False) as session:
        entries_before = session.scalar(select(func.count()).select_from(LedgerEntry))
    later = START + timedelta(minutes=2)
    assert service.tick(db, settings, now=later) == {"spring": 4}
    after = rows(db)
    for ext, r in before.items():
        if r.status != "pending":
            assert after[ext].status == r.status and after[ext].reached_at == r.reached_at
    assert state(db) == "completed"
    assert service.tick(db, settings, now=later + timedelta(minutes=1)) == {}
    found = rows(db)
    holdout = {e for e, r in found.items() if r.arm == "holdout"}
    control = {e for e, r in found.items() if r.arm == "control"}
    assert holdout and control and len(found) == 12
    with db.unit_of_work(write=False) as session:
        entries = session.execute(
            select(LedgerEntry.source_type, LedgerEntry.source_ref, LedgerEntry.points)
        ).all()
        coupons = session.execute(select(Coupon.code, Coupon.source, Coupon.member_id)).all()
        assert session.scalar(select(func.count()).select_from(LedgerEntry)) >= entries_before
    for ext, r in found.items():
        assert r.reached_at is not None
        mid = member_id(db, ext)
        mine = [e for e in entries if e.source_ref == f"campaign:spring:{mid}"]
        if ext in holdout:
            assert r.status == "held_out" and not mine and r.message_id is None
            assert "coupon_code" not in r.detail and "multiplier" not in r.detail
        elif ext in ("c11", "c12"):  # no consent; no e-mail address (no channel carries it)
            assert r.status == "no_consent" and not mine
        else:
            assert r.status == "sent", (ext, r.status, r.reason)
            assert [(e.source_type, e.points) for e in mine] == [("campaign", 50)]
            assert (r.detail["coupon_code"], "campaign", mid) in coupons
            assert r.message_id is not None
            until = datetime.fromisoformat(r.detail["multiplier"]["until"])
            assert r.detail["multiplier"]["factor"] == "2"
            assert until == r.reached_at + timedelta(days=7)
    with db.unit_of_work(write=False) as session:
        messages = session.execute(select(Message.member_id, Message.effect_key)).all()
    sent = {e for e, r in found.items() if r.status == "sent"}
    assert len(messages) == len(sent)
    assert all(k.startswith("campaign:spring:") and k.endswith(":2") for _, k in messages)


def test_pause_resume_cancel_and_audit(ready: Database, settings: Settings) -> None:
    db = ready
    save(db, campaign(throttle={"per_minute": 3}))
    service.tick(db, settings, now=START)
    with db.unit_of_work() as session:
        service.pause(session, "spring", actor="ana", now=START)
    assert service.tick(db, settings, now=START + timedelta(minutes=1)) == {"spring": 0}
    assert sum(r.status != "pending" for r in rows(db).values()) == 3
    with db.unit_of_work() as session, pytest.raises(service.CampaignStatusConflict):
        service.pause(session, "spring", actor="ana", now=START)
    with db.unit_of_work() as session:
        service.resume(session, "spring", actor="ana", now=START)
    assert service.tick(db, settings, now=START + timedelta(minutes=2)) == {"spring": 3}
    with db.unit_of_work() as session:
        service.cancel(session, "spring", actor="ana", now=START)
    statuses = [r.status for r in rows(db).values()]
    assert statuses.count("cancelled") == 6 and "pending" not in statuses
    assert state(db) == "cancelled"
    assert service.tick(db, settings, now=START + timedelta(minutes=3)) == {}
    with db.unit_of_work(write=False) as session:
        actions = list(
            session.scalars(
                select(AuditLog.action)
                .where(AuditLog.target_type == "campaign")
                .order_by(AuditLog.id)
            )
        )
    assert actions == [
        "campaign.create", "campaign.pause", "campaign.resume", "campaign.cancel",
    ]  # fmt: skip


def test_ends_at_cancels_what_is_left(ready: Database, settings: Settings) -> None:
    db = ready
    save(
        db, campaign(throttle={"per_minute": 5}, ends_at=(START + timedelta(minutes=1)).isoformat())
    )
    service.tick(db, settings, now=START)
    service.tick(db, settings, now=START + timedelta(minutes=1))
    statuses = [r.status for r in rows(db).values()]
    assert statuses.count("cancelled") == 7 and state(db) == "completed"


def test_higher_priority_campaign_suppresses_overlap(ready: Database, settings: Settings) -> None:
    db = ready
    ends = (START + timedelta(days=7)).isoformat()
    save(db, campaign(id="big", segment="vip", priority=500, ends_at=ends))
    save(db, campaign(id="small", priority=100))
    save(
        db,
        campaign(
            id="same",
            segment="vip",
            priority=500,
            starts_at=(START + timedelta(minutes=5)).isoformat(),
        ),
    )
    service.tick(db, settings, now=START)
    small = rows(db, "small")
    vip = {"c08", "c09", "c10"}
    for ext, r in small.items():
        if ext in vip:
            assert r.status == "suppressed" and "big" in (r.reason or "")
            assert r.reached_at is None
        else:
            assert r.status != "suppressed"
    assert all(r.status == "sent" for r in rows(db, "big").values())
    # Equal priority: the earlier launched campaign wins.
    service.tick(db, settings, now=START + timedelta(minutes=5))
    assert {r.status for r in rows(db, "same").values()} == {"suppressed"}


def test_frequency_cap_and_consent(ready: Database, database_url: str) -> None:
    db = ready
    capped = Settings(
        database_url=database_url, env="test", log_level="WARNING", notify_cap_messages=1
    )
    with db.unit_of_work() as session:
        session.add(
            Message(
                member_id=member_id(db, "c01"), template_key="we_miss_you", channel="email",
                language="en", status="sent", effect_key="earlier", context={},
                created_at=START, updated_at=START, due_at=START, sent_at=START,
            )
        )  # fmt: skip
    save(db, campaign(steps=[{"type": "send_message", "template": "we_miss_you"}]))
    service.tick(db, capped, now=START + timedelta(minutes=1))
    found = rows(db)
    assert found["c01"].status == "capped"
    assert found["c11"].status == "no_consent"
    assert found["c02"].status == "sent"
    # An in-app channel after e-mail: the capped member gets the inbox message instead.
    save(
        db,
        campaign(
            id="inbox", channels=["email", "inapp"], priority=0,
            steps=[{"type": "send_message", "template": "we_miss_you"}],
        ),
    )  # fmt: skip
    service.tick(db, capped, now=START + timedelta(hours=30))
    inbox = rows(db, "inbox")
    assert inbox["c11"].status == "sent"
    with db.unit_of_work(write=False) as session:
        channel = session.scalar(
            select(Message.channel).where(Message.id == inbox["c11"].message_id)
        )
    assert channel == "inapp"


def test_notify_refusal_and_reads_flow_back(ready: Database, settings: Settings) -> None:
    from lealta.models import Consent
    from lealta.notify import service as notify

    db = ready
    steps = [{"type": "send_message", "template": "we_miss_you"}]
    save(db, campaign(channels=["email", "inapp"], steps=steps))
    service.tick(db, settings, now=START)
    assert state(db) == "completed"
    found = rows(db)
    inbox, mail = found["c11"], found["c02"]  # c11: no e-mail consent → in-app
    assert inbox.status == mail.status == "sent"
    later = START + timedelta(hours=1)
    with db.unit_of_work() as session:
        session.add(
            Consent(member_id=mail.member_id, purpose="marketing_email", granted=False,
                    source="test", recorded_at=START)
        )  # fmt: skip
        session.flush()
        assert notify.prepare(session, settings, int(mail.message_id or 0), now=START).status == (
            "no_consent"
        )
        notify.prepare(session, settings, int(inbox.message_id or 0), now=START)
        notify.mark_read(session, inbox.member_id, inbox.message_id, now=later)
    # The next minute's tick carries both back, though the campaign has completed.
    service.tick(db, settings, now=later)
    found = rows(db)
    assert found["c11"].opened_at == later and found["c11"].status == "sent"
    assert found["c02"].status == "no_consent" and found["c02"].opened_at is None


def test_boosts_for(ready: Database, settings: Settings) -> None:
    db = ready
    ends = START + timedelta(days=3)
    save(
        db,
        campaign(
            multiplier={"factor": "1.5", "days": 7},
            ends_at=ends.isoformat(),
            throttle={"per_minute": 3},
        ),
    )
    service.tick(db, settings, now=START)  # launched; the first three members reached
    c01, c11 = member_id(db, "c01"), member_id(db, "c11")
    with db.unit_of_work(write=False) as session:
        boosts = service.boosts_for(session, [c01, c11], START + timedelta(days=1))
        assert boosts == {c01: [("spring", Decimal("1.5"), ends)]}  # capped at ends_at
        assert service.boosts_for(session, [c01], ends) == {}
        recipient = session.scalars(
            select(CampaignRecipient).where(CampaignRecipient.member_id == c01)
        ).one()
        assert (recipient.boost_factor, recipient.boost_until) == ("1.5", ends)
    assert state(db) == "running"
    cancelled_at = START + timedelta(hours=2)
    with db.unit_of_work() as session:
        service.cancel(session, "spring", actor="t", now=cancelled_at)
    with db.unit_of_work(write=False) as session:
        # Cancelling ends the boosts it gave: in force before, not after.
        assert service.boosts_for(session, [c01], START + timedelta(hours=1)) != {}
        assert service.boosts_for(session, [c01], START + timedelta(days=1)) == {}


def test_check_refuses_bad_references_with_paths() -> None:
    base = DEMO.model_dump(mode="json", by_alias=True, exclude_none=True)
    good = campaign(segment="inactive").model_dump(mode="json", by_alias=True, exclude_none=True)
    cases = [
        ({"segment": "nope"}, "campaigns.0.segment: unknown segment 'nope'"),
        ({"exclude_segments": ["x"]}, "campaigns.0.exclude_segments.0: unknown segment 'x'"),
        ({"steps": [{"type": "issue_coupon", "reward": "tote-bag"}]}, "campaigns.0.steps.0.reward"),
        ({"steps": [{"type": "send_message", "template": "nope"}]}, "campaigns.0.steps.0.template"),
        ({"steps": [{"type": "stop"}]}, "campaigns.0.steps.0.type: a campaign is sent once"),
        ({"steps": [{"type": "wait", "for": {"days": 1}}]}, "campaigns.0.steps.0.type"),
        (
            {
                "experiment": {
                    "variants": [{"id": "a", "steps": [{"type": "issue_reward", "reward": "zz"}]}]
                }
            },
            "campaigns.0.experiment.variants.0.steps.0.reward",
        ),
    ]
    for change, message in cases:
        with pytest.raises(programmes.ProgrammeInvalid, match=message.replace(".", r"\.")):
            programmes.validate({**base, "campaigns": [{**good, **change}]})
    with pytest.raises(programmes.ProgrammeInvalid, match=r"campaigns\.1\.id: duplicate"):
        programmes.validate({**base, "campaigns": [good, good]})


def test_seed_campaigns_validate_and_launch_on_demo_data(
    ready: Database, settings: Settings
) -> None:
    db = ready
    assert len(DEMO.campaigns) >= 4
    assert all(not c.enabled for c in DEMO.campaigns)
    assert any(c.experiment is not None and c.experiment.holdout_percent == 10
               and len(c.experiment.variants) == 2 for c in DEMO.campaigns)  # fmt: skip
    service.tick(db, settings, now=START)
    with db.unit_of_work(write=False) as session:
        mirrored = {r.campaign_id: r for r in session.scalars(select(CampaignState))}
    assert {c.id for c in DEMO.campaigns} <= set(mirrored)
    assert all(mirrored[c.id].status == "scheduled" for c in DEMO.campaigns)  # drafts
    for seed in DEMO.campaigns:
        with db.unit_of_work() as session:
            service.request_launch(session, seed.id, actor="test", now=START)
    service.tick(db, settings, now=START + timedelta(minutes=1))
    with db.unit_of_work(write=False) as session:
        for seed in DEMO.campaigns:
            row = service.get(session, seed.id)
            assert row.status in ("running", "completed"), (seed.id, row.status)
            assert row.audience_size is not None


def test_privacy_export_and_erasure(ready: Database, settings: Settings) -> None:
    from lealta.privacy import registry

    db = ready
    save(db, campaign())
    service.tick(db, settings, now=START)
    registry.load()
    exporters = dict(registry.exporters())
    erasers = dict(registry.erasers())
    c01 = member_id(db, "c01")
    with db.unit_of_work(write=False) as session:
        exported = exporters["campaigns"](session, c01)
    assert exported[0]["campaign"] == "spring" and exported[0]["status"] == "sent"
    assert exported[0]["coupon_code"]
    with db.unit_of_work() as session:
        erasers["campaigns.recipients"](session, c01, START)
    assert "c01" not in rows(db) and "c02" in rows(db)


def test_seed_campaigns_launch_on_the_generated_demo_data(
    db: Database, database_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lealta.cli import app as cli_app
    from lealta.config import get_settings
    from lealta.kit.clock import SystemClock

    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        up = CliRunner().invoke(cli_app, ["demo", "up"])
    finally:
        get_settings.cache_clear()
    assert up.exit_code == 0, up.output
    now = SystemClock().now()
    # Drafts: a tick mirrors them and sends nothing.
    assert service.tick(db, settings, now=now) == {}
    with db.unit_of_work() as session:
        segments.recompute_all(session, now=now)
        for seed in DEMO.campaigns:
            service.request_launch(session, seed.id, actor="test", now=now)
    service.tick(db, settings, now=now)
    with db.unit_of_work(write=False) as session:
        sizes = {s.id: service.get(session, s.id).audience_size for s in DEMO.campaigns}
        counts = service.counts(session, [s.id for s in DEMO.campaigns])
        points = session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.source_type == "campaign")
        )
    assert all(n for n in sizes.values()), sizes
    reactivation = counts["reactivation-inactive"]
    assert set(reactivation["arms"]) == {"holdout", "reminder", "coupon"}
    assert reactivation["status"].get("held_out", 0) > 0
    assert reactivation["status"].get("sent", 0) > 0
    assert points and points > 0
