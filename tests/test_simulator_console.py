"""The simulator in the console (upload, job, report) and the CLV fit button, in es and en.

The run's job is executed here with its real handler (the worker's part), then the page read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from bench.orders import write_history
from fastapi.testclient import TestClient
from sqlalchemy import select

from lealta.analytics import clv_store
from lealta.config import Settings
from lealta.jobs import queue
from lealta.jobs.tasks import JobContext
from lealta.kit.clock import FixedClock
from lealta.kit.db import Database
from lealta.kit.timestamps import EARLIEST
from lealta.models import AuditLog, Job, SimulatorRun
from lealta.programme import service as programmes
from lealta.simulator import runs, service
from tests.conftest import T0, app_for
from tests.factories import PASSWORD, create_staff
from tests.i18n_leaks import english_leaks, spanish_leaks

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo-programme.yaml"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def orders_csv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("console") / "orders.csv"
    write_history(path, 400, customers=80, end=T0 - timedelta(days=2), seed=5)
    return path.read_bytes()


def _login(c: TestClient, role: str) -> str:
    match = CSRF.search(c.get("/admin/login", follow_redirects=True).text)
    assert match is not None
    r = c.post(
        "/admin/login",
        data={"email": f"{role}@example.com", "password": PASSWORD, "csrf_token": match.group(1)},
    )
    assert r.status_code == 303, r.text
    page = c.get("/admin/simulator")
    found = CSRF.search(page.text)
    return found.group(1) if found else ""


@pytest.fixture
def console(db: Database, clock: FixedClock, settings: Settings) -> Iterator[TestClient]:
    with db.unit_of_work() as session:
        create_staff(session, ["marketer", "support"], now=T0)
        programmes.apply(
            session, service.read_programme(DEMO), actor="test", now=T0, activate_at=EARLIEST
        )
    app = app_for(settings, db=db, clock=clock)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as c:
        yield c


def _run_job(db: Database, clock: FixedClock, settings: Settings, run_id: int) -> None:
    with db.unit_of_work(write=False) as session:
        job = session.scalars(select(Job).where(Job.task == runs.TASK)).one()
        assert job.args == {"run_id": run_id}
    ctx = JobContext(
        db=db, clock=clock, settings=settings, job_id=job.id, task=runs.TASK, attempt=1,
        now=clock.now(),
    )  # fmt: skip
    runs.run_job(ctx, run_id=run_id)


def test_upload_compare_and_read_the_report(
    console: TestClient, db: Database, clock: FixedClock, settings: Settings, orders_csv: bytes
) -> None:
    token = _login(console, "marketer")
    page = console.get("/admin/simulator?lang=es")
    assert page.status_code == 200
    assert "Simulador del programa" in page.text and not english_leaks(page.text)
    generous = DEMO.read_text(encoding="utf-8").replace(
        "points_per_unit: 1 ", "points_per_unit: 3 "
    )
    r = console.post(
        "/admin/simulator",
        data={"csrf_token": token, "design_a": "version:1", "design_b": "upload"},
        files={
            "orders": ("history.csv", orders_csv, "text/csv"),
            "file_b": ("generous.yaml", generous.encode(), "application/yaml"),
        },
    )
    assert r.status_code == 303, r.text
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    waiting = console.get(f"/admin/simulator/runs/{run_id}?lang=en")
    assert waiting.status_code == 200
    assert 'http-equiv="refresh"' in waiting.text and "<progress" in waiting.text

    _run_job(db, clock, settings, run_id)
    with db.unit_of_work(write=False) as session:
        run = session.get_one(SimulatorRun, run_id)
        assert run.status == "done" and run.orders_csv is None  # the upload is not kept
        assert session.scalars(
            select(AuditLog).where(AuditLog.action == "simulator.run")
        ).one_or_none()
    # The console's figures are the CLI's for the same file and designs.
    path = Path(settings.data_dir) / "same.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orders_csv)
    direct = service.simulate(service.read_programme(DEMO), path, service.Options(as_of=T0))
    stored = runs.projections(run)
    assert stored[0].points_issued == direct.points_issued
    assert stored[0].members_per_tier == direct.members_per_tier
    assert stored[1].points_issued > stored[0].points_issued

    en = console.get(f"/admin/simulator/runs/{run_id}?lang=en")
    assert en.status_code == 200
    assert 'http-equiv="refresh"' not in en.text
    assert 'data-figure="liability" class="worse"' in en.text
    assert en.text.count("<svg") == 6
    assert "Moda Mediterránea (v1)" in en.text and "generous.yaml" in en.text
    assert not spanish_leaks(en.text)
    es = console.get(f"/admin/simulator/runs/{run_id}?lang=es")
    assert "Pasivo" in es.text and "Mezcla de niveles por mes" in es.text
    assert "Miembros en el segmento Cerca de un premio (400-499 puntos)" in es.text
    assert not english_leaks(es.text)
    download = console.get(f"/admin/simulator/runs/{run_id}/report.html")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    listing = console.get("/admin/simulator?lang=en")
    assert f'href="/admin/simulator/runs/{run_id}"' in listing.text


@pytest.mark.parametrize(
    ("data", "files", "expected"),
    [
        ({"design_a": "version:1"}, {}, "Elige el historial de pedidos"),
        (
            {"design_a": "version:1"},
            {"orders": ("o.csv", b"customer_id,amount\nc,1\n", "text/csv")},
            "le faltan las columnas: order_id, occurred_at, currency",
        ),
        ({"design_a": "version:99"}, None, "No programme version 99"),
        ({"design_a": "upload"}, None, "Diseño A: elige un archivo YAML o JSON."),
        (
            {"design_a": "upload"},
            {"file_a": ("bad.yaml", b"name: [unclosed\n", "application/yaml")},
            "bad.yaml",
        ),
    ],
)
def test_bad_input_is_a_form_error_and_nothing_is_stored(
    console: TestClient,
    db: Database,
    orders_csv: bytes,
    data: dict[str, str],
    files: dict[str, tuple[str, bytes, str]] | None,
    expected: str,
) -> None:
    token = _login(console, "marketer")
    sent = files if files is not None else {"orders": ("o.csv", orders_csv, "text/csv")}
    if files and "orders" not in files and "file_a" in files:
        sent = {**files, "orders": ("o.csv", orders_csv, "text/csv")}
    r = console.post(
        "/admin/simulator?lang=es", data={"csrf_token": token, **data}, files=sent or None
    )
    assert r.status_code == 422, r.text
    assert expected in r.text
    assert 'id="simulator-error"' in r.text
    # the form comes back with the choices made, in the language asked for
    assert "Ejecutar la simulación" in r.text
    with db.unit_of_work(write=False) as session:
        assert session.scalars(select(SimulatorRun)).first() is None
        assert session.scalars(select(Job).where(Job.task == runs.TASK)).first() is None


def test_support_staff_cannot_simulate(console: TestClient) -> None:
    _login(console, "support")
    r = console.get("/admin/simulator")
    assert r.status_code == 403
    assert "/admin/simulator" not in console.get("/admin").text


def test_clv_button_queues_a_fit(
    console: TestClient, db: Database, clock: FixedClock, client: TestClient
) -> None:
    assert client.post("/v1/members", json={"external_id": "ana"}).status_code == 201
    token = _login(console, "marketer")
    card = console.get("/admin/members/ana?lang=en").text
    assert "has not been fitted yet" in card and 'id="clv-fit"' in card
    r = console.post("/admin/clv/fit", data={"csrf_token": token, "back": "/admin/members/ana"})
    assert r.status_code == 303 and r.headers["location"] == "/admin/members/ana"
    with db.unit_of_work(write=False) as session:
        jobs = list(session.scalars(select(Job).where(Job.task == clv_store.FIT_TASK)))
    assert len(jobs) == 1
    again = console.post("/admin/clv/fit", data={"csrf_token": token, "back": "//evil.test"})
    assert again.headers["location"] == "/admin"
    with db.unit_of_work(write=False) as session:
        assert queue.get(session, jobs[0].id).status == "queued"
