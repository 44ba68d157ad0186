"""Programme as code: validation with exact paths, versions, diffs, activation, the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lealta.kit.clock import FixedClock
from lealta.programme.cli import app as programme_cli
from lealta.programme.schema import json_schema

ROOT = Path(__file__).parents[1]
DEMO_FILE = ROOT / "examples" / "demo-programme.yaml"


def demo_document() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DEMO_FILE.read_text())
    return data


def test_the_demo_programme_file_applies_and_is_in_force(client: TestClient) -> None:
    r = client.put("/v1/programme", json=demo_document())
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1
    current = client.get("/v1/programme").json()
    assert current["version"] == 1
    tiers = current["document"]["tiers"]["levels"]
    assert [(t["id"], t["threshold"], t["multiplier"]) for t in tiers] == [
        ("basico", "0", "1"),
        ("plata", "1000", "1.5"),
        ("oro", "5000", "2"),
        ("platino", "15000", "2.5"),
    ]


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d["tiers"]["levels"][1].update(threshold=-5), "tiers.levels.1.threshold"),
        (lambda d: d["rules"][0].update(condition="event.properties.( >"), "rules.0.condition"),
        (lambda d: d["rules"][0].update(kind="bogus"), "rules.0.kind"),
        (lambda d: d.update(currency="EURO"), "currency"),
        (lambda d: d["rewards"][0].update(cost="lots"), "rewards.0.cost"),
        (lambda d: d["rules"][1].update(tiers=["diamante"]), "rules.1.tiers"),
        (lambda d: d.update(colour="blue"), "colour"),
    ],
)
def test_bad_documents_are_refused_with_the_exact_path(
    client: TestClient, mutate: Any, path: str
) -> None:
    document = demo_document()
    mutate(document)
    r = client.put("/v1/programme", json=document)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_programme"
    paths = [p["path"] for p in error["details"]]
    assert any(p == path or p.startswith(path) for p in paths), paths
    assert client.get("/v1/programme/versions").json() == []


def test_dry_run_diffs_without_storing_and_apply_keeps_versions(
    client: TestClient, clock: FixedClock
) -> None:
    assert client.put("/v1/programme", json=demo_document()).status_code == 200
    changed = demo_document()
    changed["earning"]["points_per_unit"] = 2
    changed["rules"] = [r for r in changed["rules"] if r["id"] != "survey"]
    dry = client.put("/v1/programme", params={"dry_run": "true"}, json=changed).json()
    assert dry["dry_run"] is True and dry["version"] is None
    kinds = {(c["path"], c["kind"]) for c in dry["changes"]}
    assert ("earning.points_per_unit", "changed") in kinds
    assert ("rules.survey", "removed") in kinds
    assert len(client.get("/v1/programme/versions").json()) == 1
    applied = client.put("/v1/programme", json=changed).json()
    assert applied["version"] == 2
    versions = client.get("/v1/programme/versions").json()
    assert [v["version"] for v in versions] == [2, 1]
    old = client.get("/v1/programme/versions/1").json()
    assert old["document"]["earning"]["points_per_unit"] == "1"
    assert client.get("/v1/programme/versions/9").status_code == 404


def test_a_version_activates_at_its_time(client: TestClient, clock: FixedClock) -> None:
    client.put("/v1/programme", json=demo_document())
    later = demo_document()
    later["earning"]["points_per_unit"] = 3
    at = clock.now() + timedelta(days=7)
    r = client.put("/v1/programme", params={"activate_at": at.isoformat()}, json=later)
    assert r.status_code == 200
    assert client.get("/v1/programme").json()["version"] == 1
    clock.set(at)
    assert client.get("/v1/programme").json()["version"] == 2


def test_json_schema_is_published_and_the_committed_copy_is_current(client: TestClient) -> None:
    schema = client.get("/v1/programme/schema").json()
    assert schema["title"] == "Programme"
    committed = json.loads((ROOT / "docs" / "programme.schema.json").read_text())
    assert committed == json_schema(), (
        "run: lealta programme schema --output docs/programme.schema.json"
    )


def test_cli_validate_reports_paths_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(programme_cli, ["validate", str(DEMO_FILE)])
    assert ok.exit_code == 0, ok.output
    assert "4 tiers" in ok.output
    bad = demo_document()
    bad["tiers"]["levels"][2]["threshold"] = 10  # below plata's 1000
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad, allow_unicode=True))
    result = runner.invoke(programme_cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "tiers" in result.output and "higher threshold" in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    result = runner.invoke(programme_cli, ["validate", str(broken)])
    assert result.exit_code == 2
    assert "line" in result.output


def test_a_retried_put_with_the_same_key_stores_one_version(client: TestClient) -> None:
    first = client.put(
        "/v1/programme", json=demo_document(), headers={"Idempotency-Key": "deploy-42"}
    )
    assert first.status_code == 200, first.text
    again = client.put(
        "/v1/programme", json=demo_document(), headers={"Idempotency-Key": "deploy-42"}
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert len(client.get("/v1/programme/versions").json()) == 1
    other = {**demo_document(), "name": "Another"}
    reused = client.put("/v1/programme", json=other, headers={"Idempotency-Key": "deploy-42"})
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert len(client.get("/v1/programme/versions").json()) == 1
