"""``lealta webhooks …``: endpoints and the delivery log from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.models import WebhookDelivery
from lealta.webhooks import service

app = typer.Typer(help="Outbound webhooks: endpoints and deliveries.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

EXIT_CODES = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 413: 2, 422: 2}
ACTOR = "cli"


def _db() -> Database:
    return Database(get_settings().database_url)


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
    return typer.Exit(EXIT_CODES.get(exc.status_code, 1))


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="http:// or https:// URL that receives events.")],
    event: Annotated[
        list[str] | None,
        typer.Option("--event", "-e", help="An event type to send (repeat); default: all (*)."),
    ] = None,
    description: Annotated[str, typer.Option(help="A note for people.")] = "",
) -> None:
    """Register an endpoint and print its signing secret (shown this once)."""
    database = _db()
    try:
        with database.unit_of_work() as session:
            endpoint = service.create_endpoint(
                session,
                url=url,
                event_types=event or ["*"],
                description=description,
                now=SystemClock().now(),
                actor=ACTOR,
            )
            endpoint_id, secret, filters = endpoint.id, endpoint.secret, endpoint.event_types
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    console.print(f"endpoint {endpoint_id}: {url} ({', '.join(filters)})", highlight=False)
    console.print(
        f"secret (store it now, it is not shown again): {secret}", highlight=False, soft_wrap=True
    )


@app.command("list")
def list_endpoints() -> None:
    """Every endpoint with its filters and state."""
    database = _db()
    try:
        with database.unit_of_work(write=False) as session:
            endpoints = service.list_endpoints(session)
            table = Table("id", "url", "events", "state", "failures", title="Webhook endpoints")
            for e in endpoints:
                state = "enabled" if e.enabled else f"disabled {e.disabled_reason or ''}".strip()
                table.add_row(
                    str(e.id), e.url, ", ".join(e.event_types), state, str(e.consecutive_failures)
                )
    finally:
        database.dispose()
    console.print(table)


@app.command("remove")
def remove(endpoint_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Delete an endpoint and its delivery log."""
    database = _db()
    try:
        with database.unit_of_work() as session:
            service.remove_endpoint(session, endpoint_id, now=SystemClock().now(), actor=ACTOR)
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    console.print(f"endpoint {endpoint_id} removed")


@app.command("deliveries")
def deliveries(
    endpoint: Annotated[int | None, typer.Option(min=1, help="Only this endpoint.")] = None,
    status: Annotated[
        str | None, typer.Option(help="pending, retrying, succeeded or dead.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """The delivery log, newest first: status, attempts, newest status code and error."""
    if status is not None and status not in ("pending", "retrying", "succeeded", "dead"):
        raise _fail(
            LealtaError("--status is pending, retrying, succeeded or dead.", code="invalid_status")
        )
    database = _db()
    try:
        with database.unit_of_work(write=False) as session:
            rows = service.list_deliveries(
                session, endpoint_id=endpoint, status=status, limit=limit
            )
            table = _table(rows)
    finally:
        database.dispose()
    console.print(table)


def _table(rows: list[WebhookDelivery]) -> Table:
    table = Table(
        "id", "endpoint", "event", "type", "status", "attempts", "HTTP", "ms", "error",
        title="Webhook deliveries, newest first",
    )  # fmt: skip
    for d in rows:
        table.add_row(
            str(d.id),
            str(d.endpoint_id),
            str(d.payload.get("id", "")),
            d.event_type,
            d.status,
            str(d.attempts),
            str(d.last_status_code or ""),
            str(d.last_duration_ms if d.last_duration_ms is not None else ""),
            (d.last_error or "")[:60],
        )
    return table


@app.command("replay")
def replay(delivery_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Send a delivery again now, with a fresh set of retries (a worker sends it)."""
    database = _db()
    try:
        with database.unit_of_work() as session:
            delivery = service.replay(session, delivery_id, now=SystemClock().now(), actor=ACTOR)
            status = delivery.status
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    console.print(f"delivery {delivery_id}: {status}")
