"""The programme simulator in the console, in real Chromium: a bad file is a form error, a
good one runs as a job and shows the report; Spanish and English, phone and desktop widths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.orders import write_history
from playwright.sync_api import Page, expect
from sqlalchemy import select

from lealta.jobs.tasks import JobContext
from lealta.kit.clock import SystemClock
from lealta.kit.timestamps import EARLIEST
from lealta.models import Job
from lealta.programme import service as programmes
from lealta.simulator import runs, service
from lealta.staff import service as staff_users
from tests.browser.conftest import DESKTOP, PHONE, LiveServer, shoot

PASSWORD = "correct horse battery"
DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo-programme.yaml"


def _no_sideways_scroll(page: Page) -> None:
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    if width > PHONE["width"]:
        wide = page.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
            " > 390).slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"
        )
        raise AssertionError(f"{width} px wide: {wide}")
    page.set_viewport_size(DESKTOP)


def _run_the_job(live_server: LiveServer) -> None:
    db = live_server.db
    with db.unit_of_work(write=False) as session:
        job = session.scalars(select(Job).where(Job.task == runs.TASK)).one()
    ctx = JobContext(
        db=db, clock=SystemClock(), settings=live_server.settings, job_id=job.id,
        task=runs.TASK, attempt=1, now=datetime.now(UTC),
    )  # fmt: skip
    runs.run_job(ctx, **job.args)


def test_a_marketer_simulates_two_designs(
    live_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    with live_server.db.unit_of_work() as session:
        staff_users.create_user(
            session, email="mkt@shop.test", name="Marta Marketing", role="marketer",
            password=PASSWORD, now=now,
        )  # fmt: skip
        programmes.apply(
            session, service.read_programme(DEMO), actor="test", now=now, activate_at=EARLIEST
        )
    orders = tmp_path / "historial.csv"
    write_history(orders, 300, customers=60, end=now - timedelta(days=2), seed=9)
    bad = tmp_path / "malo.csv"
    bad.write_text("cliente,importe\nc1,10\n", encoding="utf-8")
    generous = tmp_path / "generoso.yaml"
    generous.write_text(
        DEMO.read_text(encoding="utf-8").replace("points_per_unit: 1 ", "points_per_unit: 3 "),
        encoding="utf-8",
    )

    page.goto(f"{live_server.url}/admin/login")
    page.fill("input[name=email]", "mkt@shop.test")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/admin/login'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin**")
    page.get_by_role("link", name="Simulador", exact=True).click()
    page.wait_for_url("**/admin/simulator")
    expect(page.get_by_role("heading", name="Simulador del programa")).to_be_visible()
    _no_sideways_scroll(page)

    # A file without the required columns: the form answers with the problem, nothing runs.
    page.set_input_files("input[name=orders]", str(bad))
    page.get_by_role("button", name="Ejecutar la simulación").click()
    expect(page.locator("#simulator-error")).to_contain_text("le faltan las columnas")
    shoot(page, "admin-simulator-error")
    _no_sideways_scroll(page)

    # After the error, the same form works: version 1 against an uploaded design.
    page.set_input_files("input[name=orders]", str(orders))
    page.select_option("select[name=design_b]", "upload")
    page.set_input_files("input[name=file_b]", str(generous))
    page.get_by_role("button", name="Ejecutar la simulación").click()
    page.wait_for_url("**/admin/simulator/runs/*")
    expect(page.locator("#simulator-progress")).to_be_visible()
    run_url = page.url

    _run_the_job(live_server)
    page.goto(run_url)
    summary = page.locator("#simulator-summary")
    expect(summary).to_be_visible()
    expect(summary.locator("tr[data-figure=liability]")).to_have_class("worse")
    expect(summary).to_contain_text("Pasivo")
    expect(summary).to_contain_text("generoso.yaml")
    assert page.locator("svg.chart").count() == 6
    shoot(page, "admin-simulator-report")
    _no_sideways_scroll(page)

    page.goto(run_url + "?lang=en")
    expect(page.locator("#simulator-summary")).to_contain_text("Liability")
    expect(page.get_by_role("heading", name="Tier mix by month").first).to_be_visible()
    _no_sideways_scroll(page)
