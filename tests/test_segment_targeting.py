"""Earning rules and rewards that target segments (``segments: [...]``): pure and over HTTP."""

# ruff: noqa: F811
from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.programme import service as programmes
from lealta.programme.schema import Programme
from lealta.rewards import service as rewards
from lealta.rules.engine import MemberSnapshot, evaluate
from tests.conftest import T0, app_for
from tests.test_rules_engine import custom
from tests.test_segments import DEMO, populate, quick, recompute  # noqa: F401

TARGETED = Programme.model_validate(
    {
        **DEMO.model_dump(mode="json", exclude_none=True),
        "rules": [
            *DEMO.model_dump(mode="json", exclude_none=True)["rules"],
            {
                "id": "top-visit",
                "name": "Top spender visit",
                "event": "store.visit",
                "points": 7,
                "segments": ["top-spenders"],
            },
        ],
        "rewards": [
            *DEMO.model_dump(mode="json", exclude_none=True)["rewards"],
            {
                "id": "top-gift",
                "type": "experience",
                "name": {"es": "Regalo", "en": "Gift"},
                "cost": 1,
                "segments": ["top-spenders", "champions"],
            },
        ],
    }
)


def _member(*segments: str) -> MemberSnapshot:
    return MemberSnapshot(
        member_id=1, external_id="m", tier="basico", timezone="Europe/Madrid", segments=segments
    )


def test_a_rule_pays_only_members_of_its_segments() -> None:
    paid = evaluate(TARGETED, _member("top-spenders", "active"), custom("store.visit"))
    assert [(p.rule_id, p.points) for p in paid] == [("top-visit", 7)]
    assert evaluate(TARGETED, _member("active"), custom("store.visit")) == []
    assert evaluate(TARGETED, _member(), custom("store.visit")) == []


def test_a_reward_is_locked_outside_its_segments() -> None:
    gift = TARGETED.reward("top-gift")
    assert gift is not None
    common: dict[str, Any] = {
        "tier": "basico", "points_available": 10, "eligible": True, "stock_left": None,
        "redeemed_by_member": 0, "now": T0,
    }  # fmt: skip
    locked = rewards.locked_reasons(TARGETED, gift, segments=("active",), **common)
    assert [lock.code for lock in locked] == ["segment_required"]
    assert locked[0].details == {"segments": ["top-spenders", "champions"]}
    assert rewards.locked_reasons(TARGETED, gift, segments=("champions",), **common) == []


def test_unknown_fields_in_segments_are_refused() -> None:
    bad = DEMO.model_dump(mode="json", exclude_none=True)
    bad["rules"][0]["segments"] = ["Not A Slug"]
    with pytest.raises(ValueError, match="segments"):
        Programme.model_validate(bad)


@pytest.fixture
def targeted_api(
    db: Database, clock: FixedClock, quick: Settings, server_key: str
) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        programmes.apply(session, TARGETED, actor="test", now=T0 - timedelta(days=800))
    app = app_for(quick, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


def test_segment_targeting_end_to_end(
    targeted_api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    api = targeted_api
    populate(api, clock)
    recompute(db, clock)  # the programme's segments, as the scheduled job computes them
    assert {s["key"] for s in api.get("/v1/members/c10/segments").json()["items"]} >= {
        "top-spenders"
    }
    for customer in ("c10", "c1"):
        r = api.post(
            "/v1/events",
            json={
                "id": f"visit-{customer}",
                "type": "store.visit",
                "customer_id": customer,
                "occurred_at": T0.isoformat(),
            },
        )
        assert r.status_code in (200, 201), r.text
    entries = {c: api.get(f"/v1/members/{c}/ledger").json()["items"] for c in ("c10", "c1")}
    assert [e["points"] for e in entries["c10"] if e.get("rule_id") == "top-visit"] == [7]
    assert [e for e in entries["c1"] if e.get("rule_id") == "top-visit"] == []

    def gift(customer: str) -> dict[str, Any]:
        items = api.get(f"/v1/members/{customer}/rewards").json()["items"]
        return next(i for i in items if i["id"] == "top-gift")

    assert gift("c10")["redeemable"] is True
    locked = gift("c1")
    assert locked["redeemable"] is False
    assert "segment_required" in [lock["code"] for lock in locked["locked_reasons"]]
