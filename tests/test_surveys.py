"""Surveys end to end on the configured database (SQLite or PostgreSQL): the API, the points
on completion, one response per member (also when submits race on PostgreSQL), summaries per
tier and per month computed by hand, the signed public page, the cockpit and the console."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from lealta.cli import app as cli_app
from lealta.config import Settings
from lealta.kit.clock import FixedClock
from lealta.kit.db import Base, Database
from lealta.models import (
    Account,
    LedgerEntry,
    Member,
    OutboxMessage,
    Survey,
    SurveyAnswer,
    SurveyResponse,
)
from lealta.programme import service as programmes
from lealta.surveys import service as surveys
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, add_member, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks
from tests.test_cockpit import cockpit_settings, mail, mailbox, sign_in  # noqa: F401
from tests.test_rewards import DEMO, use
from tests.test_surveys_maths import DEFINITION

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
GOOD = {"recommend": 10, "delivery": 4, "channel": "web", "comments": "Muy bien"}


def _create(client: TestClient, **change: Any) -> Any:
    return client.post("/v1/surveys", json={**DEFINITION, **change})


def _answer(client: TestClient, member: str, answers: dict[str, Any], key: str) -> Any:
    return client.post(
        "/v1/surveys/satisfaction/responses",
        json={"member": member, "answers": answers},
        headers={"Idempotency-Key": key},
    )


def _count(db: Database, model: Any, *where: Any) -> int:
    with db.unit_of_work(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _points(db: Database, member_id: int) -> int:
    with db.unit_of_work(write=False) as session:
        account = session.get(Account, member_id)
        assert account is not None
        return account.points_available


def test_the_survey_tables_match_their_migration(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert [d for d in diff if "survey" in repr(d)] == []


def test_create_read_update_and_refusals(client: TestClient) -> None:
    made = _create(client)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["key"] == "satisfaction" and body["accepting_answers"] is True
    assert body["responses"] == 0 and body["points"] == 50
    assert _create(client).json()["error"]["code"] == "survey_exists"
    bad = _create(client, key="other", questions=[{"id": "x", "kind": "choice", "label": "?"}])
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "validation_error"
    listed = client.get("/v1/surveys").json()["items"]
    assert [s["key"] for s in listed] == ["satisfaction"]
    renamed = client.put(
        "/v1/surveys/satisfaction", json={**DEFINITION, "name": "Renamed", "points": 70}
    )
    assert renamed.status_code == 200 and renamed.json()["points"] == 70
    moved = client.put("/v1/surveys/satisfaction", json={**DEFINITION, "key": "other"})
    assert moved.json()["error"]["code"] == "survey_key_changed"
    assert client.get("/v1/surveys/nope").json()["error"]["code"] == "survey_not_found"
    closed = client.post("/v1/surveys/satisfaction/close")
    assert closed.json()["status"] == "closed" and closed.json()["accepting_answers"] is False
    assert client.post("/v1/surveys/satisfaction/reopen").json()["accepting_answers"] is True


def test_an_answer_credits_the_points_once_and_writes_nothing_when_refused(
    client: TestClient, db: Database
) -> None:
    use(db, DEMO)
    member_id = add_member(db, "ana", "ana@example.com")
    assert _create(client).status_code == 201
    before = _points(db, member_id)

    bad = _answer(client, "ana", {"recommend": 12, "delivery": 4}, "k0")
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "survey_answers_invalid"
    assert {d["question"]: d["code"] for d in error["details"]} == {
        "recommend": "out_of_range",
        "channel": "required",
    }
    assert _count(db, SurveyResponse) == 0 and _count(db, SurveyAnswer) == 0
    assert _points(db, member_id) == before

    done = _answer(client, "ana", GOOD, "k1")
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["answers"] == GOOD and body["points"] == 50 and body["channel"] == "api"
    assert _points(db, member_id) == before + 50
    with db.unit_of_work(write=False) as session:
        entry = session.get(LedgerEntry, body["ledger_entry_id"])
        assert entry is not None
        assert (entry.source_type, entry.source_ref, entry.points) == ("survey", "satisfaction", 50)
        event = session.scalars(
            select(OutboxMessage).where(OutboxMessage.topic == "survey.answered")
        ).one()
        assert event.payload["nps"] == 10 and event.member_id == member_id

    replay = _answer(client, "ana", GOOD, "k1")
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    again = _answer(client, "ana", {**GOOD, "recommend": 3}, "k2")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "survey_already_answered"
    assert _points(db, member_id) == before + 50
    assert _count(db, SurveyResponse) == 1

    changed = client.put(
        "/v1/surveys/satisfaction",
        json={**DEFINITION, "questions": DEFINITION["questions"][:2]},
    )
    assert changed.json()["error"]["code"] == "survey_answered"
    assert client.post("/v1/surveys/satisfaction/close").status_code == 200
    add_member(db, "bea", "bea@example.com")
    late = _answer(client, "bea", GOOD, "k3")
    assert late.status_code == 409 and late.json()["error"]["code"] == "survey_closed"
    missing = client.post(
        "/v1/surveys/satisfaction/responses", json={"member": "ana", "answers": GOOD}
    )
    assert missing.status_code == 400


def test_summaries_per_tier_and_month_match_a_hand_count(
    client: TestClient, db: Database, clock: FixedClock
) -> None:
    use(db, DEMO)
    assert _create(client).status_code == 201
    # (member, tier, month offset, nps, rating, choice)
    answers = [
        ("m1", "gold", 0, 10, 5, "web"),
        ("m2", "gold", 0, 9, 4, "web"),
        ("m3", "gold", 40, 2, 1, "shop"),
        ("m4", None, 0, 7, 3, "shop"),
        ("m5", None, 40, 6, 2, "web"),
    ]
    for n, (member, tier, days, score, rating, choice) in enumerate(answers):
        member_id = add_member(db, member, f"{member}@example.com")
        if tier:
            with db.unit_of_work() as session:
                account = session.get(Account, member_id)
                assert account is not None
                account.tier_id = tier
        clock.set(T0 + timedelta(days=days))
        made = _answer(
            client, member, {"recommend": score, "delivery": rating, "channel": choice}, f"s{n}"
        )
        assert made.status_code == 201, made.text
    everyone = client.get("/v1/surveys/satisfaction/summary").json()
    (group,) = everyone["groups"]
    questions = {q["question"]: q for q in group["questions"]}
    # 5 answers: promoters 10, 9 (2); passives 7 (1); detractors 2, 6 (2) -> 40 % - 40 % = 0.
    assert questions["recommend"]["nps"] == {
        "responses": 5, "promoters": 2, "passives": 1, "detractors": 2, "score": "0.0",
    }  # fmt: skip
    assert questions["delivery"]["mean"] == "3.00"  # (5 + 4 + 1 + 3 + 2) / 5
    assert questions["channel"]["distribution"] == {"web": 3, "shop": 2}
    assert questions["comments"]["answers"] == 0

    by_tier = client.get("/v1/surveys/satisfaction/summary?by=tier").json()["groups"]
    scores = {g["group"]: g["questions"][0]["nps"]["score"] for g in by_tier}
    # gold: 2 promoters, 1 detractor of 3 -> 33.3; no tier: 1 passive, 1 detractor -> -50.
    assert scores == {"gold": "33.3", "-": "-50.0"}

    by_month = client.get("/v1/surveys/satisfaction/summary?by=month").json()["groups"]
    first, later = T0.strftime("%Y-%m"), (T0 + timedelta(days=40)).strftime("%Y-%m")
    counts = {g["group"]: g["questions"][0]["answers"] for g in by_month}
    assert counts == {first: 3, later: 2}

    window = client.get(
        "/v1/surveys/satisfaction/summary",
        params={
            "from": (T0 + timedelta(days=1)).isoformat(),
            "to": (T0 + timedelta(days=60)).isoformat(),
        },
    ).json()["groups"][0]["questions"][0]["nps"]
    assert window["responses"] == 2 and window["score"] == "-100.0"  # the 2 and the 6
    reversed_period = client.get(
        "/v1/surveys/satisfaction/summary",
        params={"from": T0.isoformat(), "to": (T0 - timedelta(days=1)).isoformat()},
    )
    assert reversed_period.json()["error"]["code"] == "invalid_period"

    page = client.get("/v1/surveys/satisfaction/responses?limit=2").json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    seen = [r["member"] for r in page["items"]]
    while page["next_cursor"]:
        page = client.get(
            "/v1/surveys/satisfaction/responses", params={"limit": 2, "cursor": page["next_cursor"]}
        ).json()
        seen += [r["member"] for r in page["items"]]
    assert sorted(seen) == ["m1", "m2", "m3", "m4", "m5"]


@pytest.mark.postgres_only
def test_racing_submits_answer_once_and_credit_once(
    client: TestClient, db: Database, clock: FixedClock
) -> None:
    use(db, DEMO)
    member_id = add_member(db, "racer", "racer@example.com")
    assert _create(client).status_code == 201
    with db.unit_of_work(write=False) as session:
        survey = surveys.get(session, "satisfaction")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def submit() -> None:
        barrier.wait()
        try:
            with db.unit_of_work() as session:
                member = session.get(Member, member_id)
                programme = programmes.current(session, now=clock.now())
                found = session.get(Survey, survey.id)
                assert found is not None and member is not None
                surveys.answer(
                    session, found, member, GOOD, channel="api", now=clock.now(),
                    programme=programme,
                )  # fmt: skip
            outcomes.append("ok")
        except surveys.AlreadyAnswered:
            outcomes.append("already")

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["already"] * 7 + ["ok"]
    assert _count(db, SurveyResponse) == 1
    assert _count(db, LedgerEntry, LedgerEntry.source_type == "survey") == 1
    assert _points(db, member_id) == 50


# --- pages ------------------------------------------------------------------------------


@pytest.fixture
def site(db: Database, clock: FixedClock, cockpit_settings: Settings) -> Any:  # noqa: F811
    use(db, DEMO)
    with db.unit_of_work() as session:
        create_staff(session, ("admin", "read_only"), now=clock.now(), domain="shop.test")
        surveys.create(session, surveys.parse(_yaml()), actor="test", now=clock.now())
    return app_for(cockpit_settings, db=db, clock=clock)


def _yaml() -> str:
    import json

    return json.dumps(DEFINITION)


@pytest.fixture
def web(site: Any) -> Iterator[TestClient]:
    with TestClient(site, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def _console(site: Any, role: str, lang: str) -> TestClient:
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


def _form(page: str) -> str:
    found = CSRF.search(page)
    assert found, page
    return found.group(1)


def test_the_cockpit_form_shows_problems_then_thanks_with_points(
    web: TestClient,
    db: Database,
    mail: Any,  # noqa: F811
) -> None:
    member_id = add_member(db, "ana", "ana@example.com")
    sign_in(web, mail, "ana@example.com")
    web.cookies.set("lealta_lang", "es")
    listed = web.get("/me/surveys")
    assert listed.status_code == 200 and "Satisfacción" in listed.text
    assert english_leaks(listed.text) == []
    form = web.get("/me/surveys/satisfaction")
    assert form.status_code == 200 and english_leaks(form.text) == []
    token = _form(form.text)
    failed = web.post(
        "/me/surveys/satisfaction",
        data={"csrf_token": token, "q_recommend": "11", "q_channel": "web", "q_comments": "Hola"},
    )
    assert failed.status_code == 422
    assert "Elige un número del 0 al 10." in failed.text
    assert "Esta pregunta necesita una respuesta." in failed.text  # delivery
    assert ">Hola</textarea>" in failed.text  # what was typed is kept
    assert english_leaks(failed.text) == []
    assert _count(db, SurveyResponse) == 0
    done = web.post(
        "/me/surveys/satisfaction",
        data={"csrf_token": token, "q_recommend": "9", "q_delivery": "5", "q_channel": "shop"},
    )
    assert done.status_code == 303 and done.headers["location"] == "/me/surveys"
    after = web.get("/me/surveys")
    assert "Has ganado 50 puntos" in after.text and "Respondida" in after.text
    assert _points(db, member_id) == 50
    again = web.get("/me/surveys/satisfaction")
    assert again.status_code == 303
    assert "Ya has respondido" in web.get(again.headers["location"]).text
    web.cookies.set("lealta_lang", "en")
    english = web.get("/me/surveys")
    assert "Satisfaction" in english.text and spanish_leaks(english.text) == []
    forged = web.post("/me/surveys/satisfaction", data={"csrf_token": "x", "q_recommend": "1"})
    assert forged.status_code == 403 and "<html" in forged.text.lower()


def test_the_signed_link_answers_without_signing_in(
    web: TestClient,
    db: Database,
    client: TestClient,
    cockpit_settings: Settings,  # noqa: F811
) -> None:
    member_id = add_member(db, "eva", "eva@example.com")
    with db.unit_of_work() as session:
        from lealta.models import Member

        member = session.get(Member, member_id)
        assert member is not None
        member.language = "en"
    link = web.get("/v1/surveys/satisfaction/link", params={"member": "eva"},
                   headers={"Authorization": client.headers["Authorization"]})  # fmt: skip
    assert link.status_code == 200, link.text
    path = link.json()["url"].removeprefix("http://testserver")
    assert path.startswith("/s/")
    page = web.get(path)
    assert page.status_code == 200 and "How was your" not in page.text  # name is DEFINITION's
    assert "Satisfaction" in page.text and spanish_leaks(page.text) == []
    assert page.headers["Cache-Control"] == "no-store"
    token = _form(page.text)
    failed = web.post(path, data={"csrf_token": token, "q_recommend": "5"})
    assert failed.status_code == 422 and "This question needs an answer." in failed.text
    done = web.post(
        path,
        data={"csrf_token": token, "q_recommend": "8", "q_delivery": "3", "q_channel": "web"},
    )
    assert done.status_code == 200 and "You have earned 50 points" in done.text
    with db.unit_of_work(write=False) as session:
        response = session.scalars(select(SurveyResponse)).one()
        assert (response.member_id, response.channel) == (member_id, "link")
    second = web.get(path)
    assert "You have already answered this survey" in second.text
    tampered = web.get(path[:-3] + "abc")
    assert tampered.status_code == 400 and "no es válido" in tampered.text  # no member: es
    assert "<html" in tampered.text.lower()


def test_the_console_adds_a_survey_and_shows_its_results(
    site: Any, db: Database, client: TestClient
) -> None:
    for n, score in enumerate((10, 4)):
        add_member(db, f"c{n}", f"c{n}@example.com")
        assert _answer(client, f"c{n}", {**GOOD, "recommend": score}, f"c{n}").status_code == 201
    es = _console(site, "admin", "es")
    listed = es.get("/admin/surveys")
    assert listed.status_code == 200 and english_leaks(listed.text) == []
    bad = es.post(
        "/admin/surveys",
        data={"csrf_token": _form(listed.text), "definition": "key: x\nquestions: []\nname: n"},
    )
    assert bad.status_code == 422 and "problem-path" in bad.text and "questions" in bad.text
    assert english_leaks(bad.text) == []
    broken = es.post(
        "/admin/surveys", data={"csrf_token": _form(listed.text), "definition": "a: ["}
    )
    assert broken.status_code == 422 and "line" in broken.text
    added = es.post(
        "/admin/surveys",
        data={
            "csrf_token": _form(listed.text),
            "definition": _yaml().replace("satisfaction", "second"),
        },
    )
    assert added.status_code == 303 and added.headers["location"] == "/admin/surveys/second"
    results = es.get("/admin/surveys/satisfaction")
    assert results.status_code == 200 and english_leaks(results.text) == []
    assert 'data-kpi="nps"' in results.text and ">0<" in results.text.replace(" ", "")  # 1 P, 1 D
    per_tier = es.get("/admin/surveys/satisfaction?by=tier&from=2000-01-01&to=2999-01-01")
    assert per_tier.status_code == 200 and "Nivel" in per_tier.text
    wrong = es.get("/admin/surveys/satisfaction?from=yesterday")
    assert wrong.status_code == 200 and "AAAA-MM-DD" in wrong.text
    exported = es.get("/admin/surveys/satisfaction/summary.csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = exported.text.splitlines()
    assert rows[0].startswith("group,question,kind")
    assert any(r.startswith("all,recommend,nps,2,10,1,") for r in rows)
    link = es.post(
        "/admin/surveys/satisfaction/link",
        data={"csrf_token": _form(results.text), "member": "nobody"},
    )
    assert link.status_code == 422 and "Ningún socio" in link.text
    en = _console(site, "read_only", "en")
    page = en.get("/admin/surveys/satisfaction")
    assert page.status_code == 200 and spanish_leaks(page.text) == []
    assert "Make the link" not in page.text  # marketing only
    refused = en.post("/admin/surveys", data={"csrf_token": _form(page.text), "definition": "x"})
    assert refused.status_code == 403


def test_the_cli_adds_lists_and_summarises(
    db: Database, settings: Settings, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEALTA_DATABASE_URL", settings.database_url)
    from lealta.config import get_settings

    get_settings.cache_clear()
    file = tmp_path / "s.json"
    file.write_text(_yaml())
    runner = CliRunner()
    added = runner.invoke(cli_app, ["surveys", "add", str(file)])
    assert added.exit_code == 0, added.output
    assert runner.invoke(cli_app, ["surveys", "add", str(file)]).exit_code == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: b\nname: B\nquestions: []\n")
    refused = runner.invoke(cli_app, ["surveys", "add", str(bad)])
    assert refused.exit_code == 2 and "questions" in refused.output
    listed = runner.invoke(cli_app, ["surveys", "list"])
    assert "satisfaction" in listed.output
    summary = runner.invoke(cli_app, ["surveys", "summary", "satisfaction", "--json"])
    assert summary.exit_code == 0 and '"nps"' in summary.output
    assert runner.invoke(cli_app, ["surveys", "summary", "nope"]).exit_code == 4
    get_settings.cache_clear()
