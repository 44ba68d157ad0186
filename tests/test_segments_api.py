"""``/v1/segments`` over HTTP: CRUD, preview before saving, the recompute job, members
(cursor pages and CSV), segments of a member, static uploads and the errors."""

# ruff: noqa: F811
from __future__ import annotations

import csv
import io
from typing import Any

from fastapi.testclient import TestClient

from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from tests.test_segments import api, drain, populate, quick  # noqa: F401


def test_create_preview_recompute_page_and_export(
    api: TestClient,
    db: Database,
    clock: FixedClock,
    quick: Settings,
) -> None:
    populate(api, clock)
    body: dict[str, Any] = {
        "id": "loyal-buyers",
        "name": {"es": "Compradores fieles", "en": "Loyal buyers"},
        "cel": 'metrics.orders_365d >= 3 && metrics.activity != "inactive"',
    }
    r = api.post("/v1/segments/preview", json=body)
    assert r.status_code == 200, r.text
    # 3+ orders: c3..c10; not inactive (ordered within 180 days): c1..c6 → c3..c6.
    assert r.json() == {
        "count": 4, "sample": ["c3", "c4", "c5", "c6"], "entering": 4, "leaving": 0,
        "current": 0,
    }  # fmt: skip
    r = api.post("/v1/segments", json=body, headers={"Idempotency-Key": "seg-1"})
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "api"
    again = api.post("/v1/segments", json=body, headers={"Idempotency-Key": "seg-1"})
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    drain(db, clock, quick)  # the recompute job enqueued with it
    got = api.get("/v1/segments/loyal-buyers").json()
    assert got["members"] == 4 and got["counts"] == [4]

    page = api.get("/v1/segments/loyal-buyers/members", params={"limit": 3}).json()
    assert len(page["items"]) == 3 and page["next_cursor"]
    rest = api.get(
        "/v1/segments/loyal-buyers/members", params={"limit": 3, "cursor": page["next_cursor"]}
    ).json()
    ids = [i["customer_id"] for i in page["items"] + rest["items"]]
    assert sorted(ids) == ["c3", "c4", "c5", "c6"] and rest["next_cursor"] is None

    r = api.get("/v1/segments/loyal-buyers/members", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][0] == "customer_id" and [x[0] for x in rows[1:]] == ids

    mine = api.get("/v1/members/c4/segments").json()["items"]
    assert {s["key"] for s in mine} == {"loyal-buyers"}

    # Narrow it: the preview says who would leave, the PUT saves, the job applies it.
    narrower = {**body, "cel": "metrics.orders_365d >= 5 && metrics.days_since_last_order < 180"}
    p = api.post("/v1/segments/preview", json=narrower).json()
    assert (p["count"], p["entering"], p["leaving"], p["current"]) == (2, 0, 2, 4)
    assert api.put("/v1/segments/loyal-buyers", json=narrower).status_code == 200
    drain(db, clock, quick)
    assert api.get("/v1/segments/loyal-buyers").json()["members"] == 2


def test_errors_are_machine_readable(api: TestClient, db: Database, clock: FixedClock) -> None:
    populate(api, clock)
    bad = api.post(
        "/v1/segments", json={"id": "x", "all": [{"field": "nope", "op": "eq", "value": 1}]}
    )
    assert bad.status_code == 422 and "unknown field" in bad.text
    cel = api.post("/v1/segments/preview", json={"id": "x", "cel": "member.tier.size() > 1"})
    assert cel.status_code == 422 and "CEL subset" in cel.text
    assert api.get("/v1/segments/missing").json()["error"]["code"] == "segment_not_found"
    with db.unit_of_work() as session:
        from lealta.segments import service

        service.recompute_all(session, now=clock.now(), keys=["active"])
    r = api.put(
        "/v1/segments/active", json={"id": "active", "all": [{"field": "tier", "value": "oro"}]}
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "segment_read_only"
    r = api.post("/v1/segments/active/members", json={"customer_ids": ["c1"]})
    assert r.status_code == 409 and r.json()["error"]["code"] == "segment_not_static"


def test_static_upload_over_the_api(api: TestClient, clock: FixedClock) -> None:
    populate(api, clock)
    assert api.post("/v1/segments", json={"id": "press", "kind": "static"}).status_code == 201
    r = api.post("/v1/segments/press/members", json={"customer_ids": ["c1", "c2", "ghost"]})
    assert r.json() == {"members": 2, "entered": 2, "left": 0, "unknown": ["ghost"]}
    r = api.post("/v1/segments/press/members", json={"customer_ids": ["c2"], "mode": "remove"})
    assert r.json() == {"members": 1, "entered": 0, "left": 1, "unknown": []}
    assert [s["key"] for s in api.get("/v1/members/c2/segments").json()["items"]] == []
    assert [s["key"] for s in api.get("/v1/members/c1/segments").json()["items"]] == ["press"]


def test_data_export_lists_segments_and_erasure_removes_memberships(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    populate(api, clock)
    with db.unit_of_work() as session:
        from lealta.segments import service

        service.recompute_all(session, now=clock.now(), keys=["active", "frequent"])
    exported = api.get("/v1/members/c3/data-export")
    assert exported.status_code == 200, exported.text
    assert {s["segment"] for s in exported.json()["segments"]} == {"active"}
    erased = api.delete("/v1/members/c5", headers={"Idempotency-Key": "erase-c5"})
    assert erased.status_code in (200, 202), erased.text
    drain(db, clock, quick)
    members = api.get("/v1/segments/frequent/members").json()["items"]
    assert "c5" not in [m["customer_id"] for m in members] and len(members) == 6


def test_reward_eligibility_can_read_member_segments(
    api: TestClient, db: Database, clock: FixedClock
) -> None:
    from datetime import timedelta

    from lealta.programme import service as programmes
    from tests.conftest import T0
    from tests.test_segments import DEMO

    populate(api, clock)
    document = DEMO.model_dump(mode="json", exclude_none=True)
    document["rewards"].append(
        {
            "id": "press-gift", "type": "free_shipping", "name": {"es": "Regalo", "en": "Gift"},
            "cost": 10,
            "coupon": {"free_shipping": True, "valid_days": 30},
            "eligibility": '"press" in member.segments',
        }
    )  # fmt: skip
    with db.unit_of_work() as session:
        programmes.apply(
            session, programmes.validate(document), actor="test", now=T0 - timedelta(days=1)
        )
    assert api.post("/v1/segments", json={"id": "press", "kind": "static"}).status_code == 201
    api.post("/v1/segments/press/members", json={"customer_ids": ["c2"]})

    def locks(customer: str) -> list[str]:
        items = api.get(f"/v1/members/{customer}/rewards").json()["items"]
        gift = next(i for i in items if i["id"] == "press-gift")
        return [lock["code"] for lock in gift["locked_reasons"]]

    assert "not_eligible" not in locks("c2")
    assert "not_eligible" in locks("c3")
