"""Workflows: validation with exact paths, the compiled plan (pure), start rules (re-entry,
cooldown, goals, consent), the API with its 4xx codes, the dry run, the CLI and the console
pages in Spanish and English."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Base, Database
from lealta.kit.errors import LealtaError
from lealta.models import Member, WorkflowRun
from lealta.programme import service as programmes
from lealta.workflows import plan, runs
from lealta.workflows.schema import Workflow
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks
from tests.test_notify import Mailbox
from tests.test_notify import mail as mail
from tests.test_notify import mailbox as mailbox
from tests.test_notify import notify_settings as notify_settings
from tests.test_notify import provider as provider
from tests.test_workflows import api as api
from tests.test_workflows import apply, document, member, pay, subjects, work

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- validation (pure) -----------------------------------------------------------------------


def _problem(doc: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(LealtaError) as caught:
        programmes.validate(doc)
    first = caught.value.details[0]
    return first["path"], first["message"]


def _with_steps(index: int, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    doc = document()
    doc["workflows"][index] = {**doc["workflows"][index], "steps": steps, **extra}
    return doc


def test_validation_errors_name_the_exact_path() -> None:
    path, message = _problem(
        _with_steps(
            2,
            [
                {"type": "stop"},
                {"type": "tag", "tag": "x"},
                {
                    "type": "branch",
                    "if": "true",
                    "else": [{"type": "send_message", "template": "nope"}],
                },
            ],
        )
    )
    assert path == "workflows.2.steps.2.else.0.template"
    assert "unknown template 'nope'" in message
    path, message = _problem(_with_steps(0, [{"type": "issue_coupon", "reward": "tote-bag"}]))
    assert (path, message) == ("workflows.0.steps.0.reward", "reward 'tote-bag' is not a coupon")
    path, message = _problem(_with_steps(1, [{"type": "issue_reward", "reward": "ghost"}]))
    assert (path, message) == ("workflows.1.steps.0.reward", "unknown reward 'ghost'")
    path, _ = _problem(_with_steps(1, [{"type": "branch", "if": "member.tier ==", "then": []}]))
    assert path == "workflows.1.steps.0.if"
    path, _ = _problem(_with_steps(1, [{"type": "stop"}], condition="(("))
    assert path == "workflows.1.condition"
    path, message = _problem(_with_steps(1, [{"type": "wait"}]))
    assert path.startswith("workflows.1.steps.0") and "needs 'for' or 'until'" in message
    path, _ = _problem(_with_steps(1, [{"type": "award_points", "points": 0}]))
    assert path.startswith("workflows.1.steps.0")
    doc = document()
    doc["workflows"][1]["id"] = doc["workflows"][0]["id"]
    assert _problem(doc) == ("workflows.1.id", "duplicate id 'points-earned'")
    doc = document()
    doc["workflows"][0]["trigger"] = {"kind": "inactivity"}
    assert _problem(doc)[0].startswith("workflows.0.trigger")
    # Custom templates are the team's own keys.
    programmes.validate(_with_steps(0, [{"type": "send_message", "template": "custom_vip"}]))


def test_the_plan_jumps_forward_over_branches() -> None:
    workflow = Workflow.model_validate(
        {
            "id": "w",
            "name": "W",
            "trigger": {"kind": "event", "event": "order.paid"},
            "steps": [
                {
                    "type": "branch",
                    "if": "member.tier == 'oro'",
                    "then": [{"type": "tag", "tag": "a"}],
                    "else": [{"type": "tag", "tag": "b"}],
                },
                {"type": "stop"},
            ],
        }
    )
    program = plan.compile_steps(workflow.steps)
    assert [(i.path, i.kind, i.jump) for i in program] == [
        ("steps.0", "branch", 3),
        ("steps.0.then.0", "tag", None),
        ("steps.0.then.end", "jump", 4),
        ("steps.0.else.0", "tag", None),
        ("steps.1", "stop", None),
    ]
    assert all(i.jump is None or i.jump > n for n, i in enumerate(program))
    env = plan.env(member={"tier": "oro"}, trigger={}, run={}, now=T0, timezone="Nope/Zone")
    assert plan.test("member.tier == 'oro'", env) and not plan.test("member.missing > 1", env)
    assert plan.best_channel({"marketing_sms": True}) == "sms"
    assert plan.best_channel({"marketing_email": False}) == "inapp"
    assert plan.matches("coupon", {"coupon": {"code": "A"}}, {"code": "A"})
    assert not plan.matches("coupon", {"coupon": {"code": "A"}}, {"code": "B"})
    assert not plan.matches("coupon", {}, {"code": "A"})


# --- runs: re-entry, goals, consent ------------------------------------------------------------


def _runs(db: Database, workflow_id: str) -> list[WorkflowRun]:
    with db.unit_of_work(write=False) as session:
        return list(
            session.scalars(
                select(WorkflowRun)
                .where(WorkflowRun.workflow_id == workflow_id)
                .order_by(WorkflowRun.id)
            )
        )


def test_one_run_at_a_time_cooldown_and_the_goal_ends_the_run_as_a_conversion(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    member(api, "rosa", name="Rosa")
    clock.set(T0 - timedelta(days=100))
    pay(api, "rosa", "10.00", T0 - timedelta(days=100))
    work(db, clock, notify_settings)
    clock.set(T0)
    mail.messages.clear()
    with db.unit_of_work() as session:
        assert runs.start_time_triggered(session, now=clock.now())["reactivation"] == 1
    with db.unit_of_work() as session:  # the member is in the workflow: no second run
        version, _ = runs.in_force(session, clock.now())
        member_id = session.scalar(select(Member.id).where(Member.external_id == "rosa"))
        due = select(Member.id.label("member_id"), Member.external_id.label("occurrence"))
        assert (
            runs.start_many(
                session,
                workflow_id="reactivation",
                version=version,
                due=due.where(Member.id == member_id),
                now=clock.now(),
            )
            == 0
        )
    work(db, clock, notify_settings)
    assert subjects(mail, "rosa") == ["Te echamos de menos"]
    (run,) = _runs(db, "reactivation")
    assert run.status == "waiting" and not run.converted
    clock.set(T0 + timedelta(days=2))
    pay(api, "rosa", "30.00", clock.now())  # the goal: an order
    work(db, clock, notify_settings)
    (run,) = _runs(db, "reactivation")
    assert run.status == "completed" and run.converted and run.exit_reason == "goal"
    listed = api.get("/v1/workflows").json()
    reactivation = next(w for w in listed["items"] if w["id"] == "reactivation")
    assert reactivation["converted"] == 1 and reactivation["conversion_percent"] == 100.0
    # Cooldown: a workflow with one does not start again within it.
    doc = document()
    flow = next(w for w in doc["workflows"] if w["id"] == "points-earned")
    flow["reentry"] = {"allowed": True, "cooldown": {"days": 1}}
    apply(db, doc, clock.now())
    pay(api, "rosa", "11.00", clock.now())
    pay(api, "rosa", "12.00", clock.now())
    work(db, clock, notify_settings)
    started_today = [r for r in _runs(db, "points-earned") if r.started_at == clock.now()]
    assert len(started_today) == 1


def test_a_withdrawn_consent_exits_the_run_before_the_next_marketing_email(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    member(api, "luis", name="Luis")
    pay(api, "luis", "500.00", T0)
    work(db, clock, notify_settings)
    assert len(mail.to("luis@example.com")) == 2  # points and the coupon
    withdrawn = api.post(
        "/v1/members/luis/consents",
        json={"purpose": "marketing_email", "granted": False},
        headers={"Idempotency-Key": "w1"},
    )
    assert withdrawn.status_code in (200, 201), withdrawn.text
    clock.set(T0 + timedelta(days=8))
    work(db, clock, notify_settings)
    assert len(mail.to("luis@example.com")) == 2
    (run,) = _runs(db, "every-500-coupon")
    assert run.status == "exited" and run.exit_reason == "consent_withdrawn"
    detail = api.get(f"/v1/workflows/runs/{run.id}").json()
    assert [s["outcome"] for s in detail["steps"]][-1] == "no_consent"


# --- API --------------------------------------------------------------------------------------


def test_api_lists_reads_runs_and_answers_4xx(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    member(api, "eva", name="Eva")
    pay(api, "eva", "40.00", T0)
    work(db, clock, notify_settings)
    listed = api.get("/v1/workflows").json()
    assert [w["id"] for w in listed["items"]][:3] == [
        "points-earned",
        "tier-up",
        "every-500-coupon",
    ]
    earned = next(w for w in listed["items"] if w["id"] == "points-earned")
    assert earned["runs_30d"] == 1 and earned["paused"] is False and earned["enabled"] is True
    one = api.get("/v1/workflows/every-500-coupon").json()
    assert one["definition"]["steps"][1]["for"] == {"days": 7, "hours": 0, "minutes": 0}
    member_runs = api.get("/v1/members/eva/workflow-runs").json()["items"]
    assert [(r["workflow_id"], r["status"]) for r in member_runs] == [
        ("points-earned", "completed")
    ]
    runs_of = api.get("/v1/workflows/points-earned/runs?status=completed").json()["items"]
    assert runs_of[0]["customer_id"] == "eva" and runs_of[0]["programme_version"] == 1
    detail = api.get(f"/v1/workflows/runs/{runs_of[0]['id']}").json()
    assert [(s["path"], s["outcome"]) for s in detail["steps"]] == [("steps.0", "queued")]
    # 4xx, never 500.
    assert api.get("/v1/workflows/nope").json()["error"]["code"] == "workflow_not_found"
    assert api.get("/v1/workflows/nope/runs").status_code == 404
    assert api.get("/v1/workflows/runs/999999").json()["error"]["code"] == (
        "workflow_run_not_found"
    )
    assert api.get("/v1/workflows/runs/0").status_code == 422
    assert api.get("/v1/members/ghost/workflow-runs").status_code == 404
    assert api.get("/v1/workflows/points-earned/runs?status=bogus").status_code == 422
    assert api.post("/v1/workflows/points-earned/pause").status_code == 400
    missing = api.post("/v1/workflows/nope/pause", headers={"Idempotency-Key": "x1"})
    assert missing.status_code == 404
    again = api.post("/v1/workflows/tier-up/pause", headers={"Idempotency-Key": "k1"})
    replay = api.post("/v1/workflows/tier-up/pause", headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
    assert api.get("/v1/workflows/tier-up").json()["paused"] is True
    bad = api.post("/v1/workflows/tier-up/dry-run", json={"customer_id": "ghost"})
    assert bad.status_code == 404 and bad.json()["error"]["code"] == "member_not_found"
    assert api.post("/v1/workflows/tier-up/dry-run", json={"who": "x"}).status_code == 422


def test_dry_run_tells_what_would_happen_to_maria_without_effects(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings, mail: Mailbox
) -> None:
    member(api, "maria", name="María")
    work(db, clock, notify_settings)
    dry = api.post(
        "/v1/workflows/every-500-coupon/dry-run",
        json={
            "customer_id": "maria",
            "payload": {
                "rule_id": "every-500",
                "reward_id": "coupon-20-threshold",
                "crossed": "500",
                "coupon_code": "LEA-TEST",
            },
        },
    ).json()
    assert dry["would_start"] is True and dry["triggered"] is True
    assert [(s["path"], s["outcome"]) for s in dry["steps"]] == [
        ("steps.0", "would_send"),
        ("steps.1", "would_wait"),
        ("steps.2", "else"),
        ("steps.2.else.0", "would_send"),
        ("steps.2.else.1", "would_wait"),
        ("steps.2.else.2", "else"),
    ]
    assert dry["steps"][0]["detail"]["subject"] == "Tienes un regalo: 20 % de descuento"
    assert "LEA-TEST" in dry["steps"][0]["detail"]["text"]
    waited = api.post(
        "/v1/workflows/every-500-coupon/dry-run",
        json={
            "customer_id": "maria",
            "waited": True,
            "payload": {"rule_id": "every-500", "coupon_code": "LEA-TEST"},
        },
    ).json()
    assert [s["outcome"] for s in waited["steps"]][2:] == ["then", "would_send"]
    other_rule = api.post(
        "/v1/workflows/every-500-coupon/dry-run",
        json={"customer_id": "maria", "payload": {"rule_id": "other"}},
    ).json()
    assert other_rule["triggered"] is False and other_rule["would_start"] is False
    birthday = api.post("/v1/workflows/birthday/dry-run", json={"customer_id": "maria"}).json()
    assert birthday["triggered"] is False  # not her birthday
    assert [s["outcome"] for s in birthday["steps"]] == ["then", "would_issue", "would_send"]
    work(db, clock, notify_settings)
    assert mail.messages == []
    assert _runs(db, "every-500-coupon") == []


# --- CLI --------------------------------------------------------------------------------------


def test_cli_lists_pauses_resumes_and_dry_runs(
    api: TestClient, db: Database, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEALTA_DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "250")
    member(api, "cli", name="Cli")
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["workflows", "list"])
    assert listed.exit_code == 0, listed.output
    assert "every-500-coupon" in listed.output
    paused = runner.invoke(cli_app, ["workflows", "pause", "tier-up"])
    assert paused.exit_code == 0 and "paused" in paused.output
    shown = runner.invoke(cli_app, ["workflows", "show", "tier-up"])
    assert '"paused": true' in shown.output
    assert runner.invoke(cli_app, ["workflows", "resume", "tier-up"]).exit_code == 0
    assert runner.invoke(cli_app, ["workflows", "pause", "nope"]).exit_code == 4
    dry = runner.invoke(
        cli_app,
        ["workflows", "dry-run", "points-earned", "cli", "--payload", '{"points_delta": 12}'],
    )
    assert dry.exit_code == 0, dry.output
    assert "Has ganado 12 puntos" in dry.output
    assert (
        runner.invoke(
            cli_app, ["workflows", "dry-run", "points-earned", "cli", "--payload", "{"]
        ).exit_code
        == 2
    )
    assert runner.invoke(cli_app, ["workflows", "runs", "--member", "cli"]).exit_code == 0


# --- console ----------------------------------------------------------------------------------


@pytest.fixture
def console(
    api: TestClient, db: Database, clock: FixedClock, notify_settings: Settings
) -> Iterator[Any]:
    with db.unit_of_work() as session:
        create_staff(session, ("admin", "read_only"), now=clock.now(), domain="shop.test")
    yield app_for(notify_settings, db=db, clock=clock)


def _signed_in(site: Any, role: str, lang: str) -> TestClient:
    client = TestClient(site, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set("lealta_lang", lang)
    token = CSRF.search(client.get("/admin/login").text)
    assert token
    signed = client.post(
        "/admin/login",
        data={"email": f"{role}@shop.test", "password": PASSWORD, "csrf_token": token[1]},
    )
    assert signed.status_code == 303, signed.text
    return client


@pytest.mark.parametrize("lang", ["es", "en"])
def test_console_pages_in_both_languages_pause_and_dry_run(
    console: Any,
    api: TestClient,
    db: Database,
    clock: FixedClock,
    notify_settings: Settings,
    lang: str,
) -> None:
    member(api, "maria", name="María")
    pay(api, "maria", "500.00", T0)
    work(db, clock, notify_settings)
    admin = _signed_in(console, "admin", lang)
    leaks = english_leaks if lang == "es" else spanish_leaks
    listed = admin.get("/admin/workflows")
    assert listed.status_code == 200
    assert leaks(listed.text) == []
    assert ("Flujos automáticos" if lang == "es" else "Workflows") in listed.text
    page = admin.get("/admin/workflows/every-500-coupon")
    assert page.status_code == 200 and leaks(page.text) == []
    assert ("Esperar a coupon.used" if lang == "es" else "Wait for coupon.used") in page.text
    run_link = re.search(r'href="(/admin/workflows/runs/\d+)"', page.text)
    assert run_link
    run_page = admin.get(run_link[1])
    assert run_page.status_code == 200 and leaks(run_page.text) == []
    token = CSRF.search(page.text)
    assert token
    tried = admin.post(
        "/admin/workflows/every-500-coupon/dry-run",
        data={
            "csrf_token": token[1],
            "member": "maria",
            "payload": '{"rule_id": "every-500", "coupon_code": "LEA-X"}',
        },
    )
    assert tried.status_code == 200 and "dry-result" in tried.text
    assert leaks(tried.text) == []
    refused = admin.post(
        "/admin/workflows/every-500-coupon/dry-run",
        data={"csrf_token": token[1], "member": "ghost", "payload": "{"},
    )
    assert refused.status_code == 422 and "dry-error" in refused.text
    assert leaks(refused.text) == []
    switched = admin.post(
        "/admin/workflows/tier-up/switch", data={"csrf_token": token[1], "paused": "true"}
    )
    assert switched.status_code == 303
    after = admin.get("/admin/workflows/tier-up")
    assert ("Flujo en pausa" if lang == "es" else "Workflow paused") in after.text
    assert admin.get("/admin/workflows/nope").status_code == 404
    assert "application/json" not in admin.get("/admin/workflows/nope").headers["content-type"]
    reader = _signed_in(console, "read_only", lang)
    assert reader.get("/admin/workflows").status_code == 200
    forbidden = reader.post(
        "/admin/workflows/tier-up/switch", data={"csrf_token": token[1], "paused": "false"}
    )
    assert forbidden.status_code in (403, 400)


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
def test_the_workflow_tables_match_their_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "workflow" in repr(d) or "coupons" in repr(d)] == []
