"""``/v1/campaigns`` over HTTP: validation errors with codes and paths (never a 500), CRUD
of API campaigns, read-only programme campaigns, preview, launch through the real job,
pause/resume/cancel conflicts, recipients pages and CSV, idempotent replays, scopes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lealta.campaigns import service
from lealta.config import Settings
from lealta.jobs.worker import Worker
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.members import service as members
from lealta.members.schemas import MemberCreate
from lealta.programme import service as programmes
from tests.conftest import T0, app_for

DEMO = programmes.validate(
    programmes.parse_text(
        Path(__file__).parents[1].joinpath("src/lealta/demo/programme.yaml").read_text()
    )
)


@pytest.fixture
def quick(database_url: str) -> Settings:
    return Settings(
        database_url=database_url, env="test", log_level="WARNING", worker_poll_seconds=0.01
    )


@pytest.fixture
def api(db: Database, clock: FixedClock, quick: Settings, server_key: str) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        programmes.apply(session, DEMO, actor="test", now=T0 - timedelta(days=30))
        for i in range(1, 8):
            members.create(
                session,
                MemberCreate(
                    external_id=f"m{i}",
                    email=f"m{i}@example.com",
                    consents=[{"purpose": "marketing_email", "granted": True}],
                ),
                now=T0 - timedelta(days=5),
            )
    app = app_for(quick, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {server_key}"
        yield c


def body(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "flash",
        "name": "Flash sale",
        "enabled": False,
        "starts_at": (T0 + timedelta(days=1)).isoformat(),
        "channels": ["email", "inapp"],
        "throttle": {"per_minute": 3},
        "steps": [
            {"type": "award_points", "points": 25},
            {"type": "send_message", "template": "we_miss_you"},
        ],
        "experiment": {"holdout_percent": 20, "variants": [{"id": "a"}, {"id": "b"}]},
    }
    data.update(extra)
    return data


@pytest.mark.parametrize(
    ("change", "status", "code", "fragment"),
    [
        ({"steps": []}, 422, "campaign_invalid", "needs content"),
        ({"segment": "nope"}, 422, "campaign_invalid", "segment: unknown segment 'nope'"),
        ({"steps": [{"type": "stop"}]}, 422, "campaign_invalid",
         "steps.0.type: a campaign is sent"),
        ({"steps": [{"type": "issue_coupon", "reward": "vip-dinner"}]}, 422, "campaign_invalid",
         "steps.0.reward: reward 'vip-dinner' is not a coupon"),
        ({"steps": [{"type": "send_message", "template": "x", "channel": "sms"}]}, 422,
         "campaign_invalid", "steps.0.template: unknown template"),
        ({"steps": "many"}, 422, "campaign_invalid", "steps"),
        ({"starts_at": "tomorrow"}, 422, "campaign_invalid", "starts_at"),
        ({"ends_at": T0.isoformat()}, 422, "campaign_invalid", "ends_at: must be after"),
        ({"throttle": {"per_minute": 0}}, 422, "campaign_invalid", "throttle.per_minute"),
        ({"experiment": {"variants": [{"id": "holdout"}]}}, 422, "campaign_invalid",
         "reserved for the holdout"),
        ({"id": "Bad Id!"}, 422, "campaign_invalid", "id"),
    ],
)  # fmt: skip
def test_validation_errors_have_codes_and_paths(
    api: TestClient, change: dict[str, Any], status: int, code: str, fragment: str
) -> None:
    for path in ("/v1/campaigns", "/v1/campaigns/preview"):
        r = api.post(path, json=body(**change))
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        assert fragment in r.json()["error"]["message"], r.json()


def test_not_json_object_and_unknown_ids_are_4xx(api: TestClient) -> None:
    r = api.post("/v1/campaigns", content=b"[1, 2]", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert api.get("/v1/campaigns/nope").json()["error"]["code"] == "campaign_not_found"
    assert api.post("/v1/campaigns/nope/pause").status_code == 404
    r = api.get("/v1/campaigns/flash/recipients", params={"cursor": "%%%"})
    assert r.status_code in (404, 422)


def test_crud_preview_launch_send_and_controls(
    api: TestClient, db: Database, clock: FixedClock, quick: Settings
) -> None:
    r = api.post("/v1/campaigns/preview", json=body())
    assert r.status_code == 200, r.text
    preview = r.json()
    assert preview["count"] == 7 and sum(preview["arms"].values()) == 7
    assert set(preview["arms"]) <= {"holdout", "a", "b"} and len(preview["sample"]) == 7
    r = api.post("/v1/campaigns", json=body(), headers={"Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "scheduled" and r.json()["source"] == "api"
    replay = api.post("/v1/campaigns", json=body(), headers={"Idempotency-Key": "k1"})
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert api.post("/v1/campaigns", json=body()).json()["error"]["code"] == "campaign_exists"
    r = api.put("/v1/campaigns/flash", json=body(name="Flash sale 2"))
    assert r.status_code == 200 and r.json()["definition"]["name"] == "Flash sale 2"
    r = api.put("/v1/campaigns/flash", json=body(id="other"))
    assert r.json()["error"]["code"] == "campaign_id_changed"
    # Programme campaigns are listed, read-only, yet can be launched.
    listed = {c["id"]: c for c in api.get("/v1/campaigns").json()["items"]}
    assert listed["welcome-silver"]["source"] == "programme"
    r = api.put("/v1/campaigns/welcome-silver", json=body(id="welcome-silver"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "campaign_read_only"
    assert api.delete("/v1/campaigns/welcome-silver").status_code == 409
    # A draft is launched on request: the job draws the audience.
    assert api.post("/v1/campaigns/flash/pause").json()["error"]["code"] == "campaign_status"
    r = api.post("/v1/campaigns/flash/launch")
    assert r.status_code == 200 and r.json()["launch_requested"] is True
    Worker(db, clock=clock, settings=quick, name="cmp", schedule=False).run(until_idle=True)
    got = api.get("/v1/campaigns/flash").json()
    assert got["status"] == "running" and got["audience_size"] == 7
    assert got["counts"] == {"pending": 7}
    assert api.post("/v1/campaigns/flash/launch").json()["error"]["code"] == "campaign_status"
    assert api.put("/v1/campaigns/flash", json=body()).json()["error"]["code"] == "campaign_status"
    assert api.delete("/v1/campaigns/flash").json()["error"]["code"] == "campaign_status"
    service.tick(db, quick, now=clock.now())
    got = api.get("/v1/campaigns/flash").json()
    assert got["counts"]["pending"] == 4
    assert sum(sum(v.values()) for v in got["arms"].values()) == 7
    assert api.post("/v1/campaigns/flash/pause").json()["status"] == "paused"
    assert api.post("/v1/campaigns/flash/resume").json()["status"] == "running"
    r = api.post("/v1/campaigns/flash/cancel", headers={"Idempotency-Key": "c1"})
    assert r.json()["status"] == "cancelled" and r.json()["counts"]["cancelled"] == 4
    again = api.post("/v1/campaigns/flash/cancel", headers={"Idempotency-Key": "c1"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert api.post("/v1/campaigns/flash/cancel").json()["error"]["code"] == "campaign_status"
    # Recipients: pages in draw order, then CSV.
    first = api.get("/v1/campaigns/flash/recipients", params={"limit": 5}).json()
    assert len(first["items"]) == 5 and first["next_cursor"]
    rest = api.get(
        "/v1/campaigns/flash/recipients", params={"limit": 5, "cursor": first["next_cursor"]}
    ).json()
    assert len(rest["items"]) == 2 and rest["next_cursor"] is None
    ids = [i["customer_id"] for i in first["items"] + rest["items"]]
    assert sorted(ids) == [f"m{i}" for i in range(1, 8)]
    only = api.get("/v1/campaigns/flash/recipients", params={"status": "cancelled"}).json()
    assert len(only["items"]) == 4
    bad = api.get("/v1/campaigns/flash/recipients", params={"status": "nope"})
    assert bad.status_code == 422
    csv_text = api.get("/v1/campaigns/flash/recipients", params={"format": "csv"}).text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("customer_id,arm,status") and len(lines) == 8


def test_scopes_and_delete(api: TestClient, read_key: str) -> None:
    assert api.post("/v1/campaigns", json=body()).status_code == 201
    reader = {"Authorization": f"Bearer {read_key}"}
    assert api.get("/v1/campaigns", headers=reader).status_code == 200
    assert api.post("/v1/campaigns/flash/launch", headers=reader).status_code == 403
    assert api.delete("/v1/campaigns/flash", headers=reader).status_code == 403
    assert api.delete("/v1/campaigns/flash").status_code == 204
    assert api.get("/v1/campaigns/flash").status_code == 404
