"""Segments over a population with known recency, frequency and value: memberships, RFM
quintiles and entered/left events against hand-computed expectations, after a full
recompute and member by member (the outbox subscriber run by a real worker)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.config import Settings
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.models import Member, OutboxMessage, Segment
from lealta.programme import service as programmes
from lealta.segments import service
from lealta.segments.schema import Condition, Group
from lealta.segments.schema import Segment as SegmentDef
from tests.conftest import T0, app_for
from tests.factories import order_paid

DEMO = programmes.validate(
    programmes.parse_text(
        Path(__file__).parents[1].joinpath("src/lealta/demo/programme.yaml").read_text()
    )
)
LAST_ORDER_DAYS = [5, 30, 60, 95, 120, 170, 185, 250, 300, 340]
"""Member c<i> (i = 1..10) last ordered this many days before T0, placed i orders (one a
day before that) of 10·i € each: recency falls, frequency and value rise with i. c11 never
ordered."""


@pytest.fixture
def quick(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, env="test", log_level="WARNING", worker_poll_seconds=0.01
    )


@pytest.fixture
def api(db: Database, clock: FixedClock, quick: Settings, server_key: str) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=T0 - timedelta(days=800))
    app = app_for(quick, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


def post(api: TestClient, clock: FixedClock, payload: dict[str, Any]) -> None:
    clock.set(T0)
    r = api.post("/v1/events", json=payload)
    assert r.status_code in (200, 201), r.text


def drain(db: Database, clock: FixedClock, settings: Settings) -> None:
    Worker(db, clock=clock, settings=settings, name="segments-test", schedule=False).run(
        until_idle=True
    )


def populate(api: TestClient, clock: FixedClock) -> None:
    for i, days in enumerate(LAST_ORDER_DAYS, start=1):
        for k in range(i):
            at = T0 - timedelta(days=days + k, hours=1)
            post(api, clock, order_paid(f"e{i}-{k}", f"c{i}", f"o{i}-{k}", f"{10 * i}.00", at))
    r = api.post("/v1/members", json={"external_id": "c11", "email": "c11@example.com"})
    assert r.status_code == 201, r.text
    clock.set(T0)


def members_of(db: Database, key: str) -> set[str]:
    with db.unit_of_work(write=False) as session:
        row = service.get(session, key)
        return {
            m.external_id for m, _ in service.members_page(session, row, after=None, limit=1000)
        }


def events(db: Database, topic: str, key: str) -> list[tuple[str, bool]]:
    with db.unit_of_work(write=False) as session:
        rows = session.execute(
            select(Member.external_id, OutboxMessage.payload, OutboxMessage.backfill)
            .join(Member, Member.id == OutboxMessage.member_id)
            .where(OutboxMessage.topic == topic)
            .order_by(OutboxMessage.id)
        ).all()
    return [(ext, bf) for ext, payload, bf in rows if payload["segment_key"] == key]


def recompute(db: Database, clock: FixedClock, keys: list[str] | None = None) -> dict[str, Any]:
    with db.unit_of_work() as session:
        done = service.recompute_all(session, now=clock.now(), keys=keys)
    return {d.key: d for d in done}


def cs(*ids: int) -> set[str]:
    return {f"c{i}" for i in ids}


def test_shipped_segments_match_hand_computed_recency_frequency_and_value(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    populate(api, clock)
    done = recompute(db, clock)
    assert members_of(db, "active") == cs(1, 2, 3)
    assert members_of(db, "at-risk") == cs(4, 5, 6)
    assert members_of(db, "inactive") == cs(7, 8, 9, 10, 11)
    # Spend in the last 365 days is 10·i² €: c10 alone is the top 10 % of the ten buyers.
    assert members_of(db, "top-spenders") == cs(10)
    # Orders per year >= 4: c4..c10 (c10's ten orders run from 340 to 349 days ago).
    assert members_of(db, "frequent") == cs(4, 5, 6, 7, 8, 9, 10)
    # R quintiles (recent = 5): {c1,c2}=5 {c3,c4}=4 …; F and M: {c9,c10}=5 {c7,c8}=4.
    # R >= 4 is c1..c4, F and M >= 4 is c7..c10: no member is a champion.
    assert members_of(db, "champions") == set()
    assert done["active"].entered == 3 and done["active"].left == 0
    # The first computation's entries are marked backfill (a new segment is no trigger).
    assert events(db, "segment.entered", "active") == [(c, True) for c in ("c1", "c2", "c3")]


def test_rfm_quintiles_are_ntile_over_buyers(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    populate(api, clock)
    expected_r = {1: 5, 2: 5, 3: 4, 4: 4, 5: 3, 6: 3, 7: 2, 8: 2, 9: 1, 10: 1}
    expected_f = {i: (i + 1) // 2 for i in range(1, 11)}
    with db.unit_of_work(write=False) as session:
        for field, expected in (
            ("rfm_r", expected_r),
            ("rfm_f", expected_f),
            ("rfm_m", expected_f),
        ):
            for score in range(1, 6):
                data = SegmentDef(id="probe", all=[Condition(field=field, op="eq", value=score)])
                got = service.preview(session, data, now=clock.now())
                want = sorted(f"c{i}" for i, s in expected.items() if s == score)
                assert sorted(got.sample) == want, (field, score)
        recent_big = SegmentDef(
            id="probe",
            any=[
                Group(
                    all=[
                        Condition(field="rfm_r", op="gte", value=4),
                        Condition(field="orders", op="gte", value=3),
                    ]
                ),
                Condition(field="spend", op="gt", value=800, days=365),
            ],
        )
        got = service.preview(session, recent_big, now=clock.now())
        # (R >= 4 and 3+ orders) is c3, c4; spend > 800 € is 10·i² > 800: c9, c10.
        assert sorted(got.sample) == ["c10", "c3", "c4", "c9"]
        assert got.count == 4


def test_recompute_diffs_and_incremental_updates_emit_entered_and_left(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    populate(api, clock)
    recompute(db, clock)
    # Time passes: 40 days later c3 (60 → 100 days) is at risk, c6 (170 → 210) inactive.
    clock.set(T0 + timedelta(days=40))
    done = recompute(db, clock, ["active", "at-risk", "inactive"])
    assert members_of(db, "active") == cs(1, 2)
    assert members_of(db, "at-risk") == cs(3, 4, 5)
    assert members_of(db, "inactive") == cs(6, 7, 8, 9, 10, 11)
    assert (done["at-risk"].entered, done["at-risk"].left) == (1, 1)
    assert events(db, "segment.left", "active") == [("c3", False)]
    assert events(db, "segment.entered", "at-risk")[-1] == ("c3", False)
    assert events(db, "segment.left", "at-risk") == [("c6", False)]

    # c8 orders again: the subscriber moves it from inactive to active, member by member.
    drain(db, clock, quick)
    r = api.post(
        "/v1/events",
        json=order_paid("e-new", "c8", "o-new", "25.00", clock.now() - timedelta(hours=1)),
    )
    assert r.status_code == 201, r.text
    drain(db, clock, quick)
    assert members_of(db, "active") == cs(1, 2, 8)
    assert "c8" not in members_of(db, "inactive")
    assert events(db, "segment.entered", "active")[-1] == ("c8", False)
    assert events(db, "segment.left", "inactive")[-1] == ("c8", False)

    # A full recompute afterwards agrees with the incremental result and changes nothing.
    done = recompute(db, clock, ["active", "inactive"])
    assert (done["active"].entered, done["active"].left) == (0, 0)
    assert members_of(db, "active") == cs(1, 2, 8)


def test_static_list_upload_and_programme_segments_are_read_only(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    populate(api, clock)
    recompute(db, clock)
    with db.unit_of_work() as session:
        service.create(
            session, SegmentDef(id="vip-list", kind="static"), actor="t", now=clock.now()
        )
        result, unknown = service.upload(
            session, "vip-list", ["c1", "c2", "nobody"], mode="replace", actor="t", now=clock.now()
        )
    assert unknown == ["nobody"] and result.entered == 2
    with db.unit_of_work() as session:
        result, _ = service.upload(
            session, "vip-list", ["c2", "c5"], mode="replace", actor="t", now=clock.now()
        )
    assert (result.entered, result.left) == (1, 1)
    assert members_of(db, "vip-list") == cs(2, 5)
    with db.unit_of_work() as session:
        sources = {r.key: r.source for r in session.scalars(select(Segment))}
        assert sources["active"] == "programme" and sources["vip-list"] == "api"
        with pytest.raises(service.SegmentReadOnly):
            service.remove(session, "active", actor="t", now=clock.now())


def test_rules_can_target_segments_through_member_segments(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    populate(api, clock)
    document = DEMO.model_dump(mode="json", exclude_none=True)
    document["rules"].append(
        {
            "id": "winback",
            "name": "Win back",
            "event": "winback.visit",
            "kind": "points",
            "points": 70,
            "condition": '"at-risk" in member.segments',
        }
    )
    with db.unit_of_work() as session:
        programmes.apply(
            session, programmes.validate(document), actor="test", now=T0 - timedelta(days=1)
        )
    recompute(db, clock, ["at-risk", "active"])
    got = {}
    for customer in ("c4", "c1"):
        r = api.post(
            "/v1/events",
            json={
                "id": f"visit-{customer}", "type": "winback.visit", "customer_id": customer,
                "occurred_at": (T0 - timedelta(minutes=5)).isoformat(), "properties": {},
            },
        )  # fmt: skip
        assert r.status_code == 201, r.text
        got[customer] = r.json()["points_delta"]
    assert got == {"c4": 70, "c1": 0}
