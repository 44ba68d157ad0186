"""``lealta apikey origin …`` (where a publishable key may be used from) and ``lealta inbound
member-token`` (the token that proves a member to a publishable key)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from lealta.config import get_settings
from lealta.inbound import service
from lealta.inbound.tokens import member_token
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.kit.ids import is_valid

origin_app = typer.Typer(
    help="Browser origins a publishable key may be used from (CORS).", no_args_is_help=True
)
app = typer.Typer(help="Inbound adapters: Shopify, track/identify.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

EXIT_CODES = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 413: 2, 422: 2}
ACTOR = "cli"


def _fail(exc: LealtaError) -> typer.Exit:
    err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}", highlight=False)
    return typer.Exit(EXIT_CODES.get(exc.status_code, 1))


@origin_app.command("add")
def origin_add(
    prefix: Annotated[str, typer.Argument(help="The publishable key's prefix.")],
    origin: Annotated[str, typer.Argument(help="scheme://host[:port], e.g. https://shop.es")],
) -> None:
    """Allow a browser origin to use the publishable key PREFIX."""
    database = Database(get_settings().database_url)
    try:
        with database.unit_of_work() as session:
            value = service.allow_origin(
                session, prefix, origin, now=SystemClock().now(), actor=ACTOR
            )
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    console.print(f"key {prefix} may be used from [bold]{value}[/bold]", highlight=False)


@origin_app.command("remove")
def origin_remove(
    prefix: Annotated[str, typer.Argument(help="The publishable key's prefix.")],
    origin: Annotated[str, typer.Argument(help="The origin to stop allowing.")],
) -> None:
    """Stop allowing a browser origin for the publishable key PREFIX."""
    database = Database(get_settings().database_url)
    try:
        with database.unit_of_work() as session:
            removed = service.forbid_origin(
                session, prefix, origin, now=SystemClock().now(), actor=ACTOR
            )
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    console.print("removed" if removed else "was not allowed", highlight=False)


@origin_app.command("list")
def origin_list(
    prefix: Annotated[str, typer.Argument(help="The publishable key's prefix.")],
) -> None:
    """The origins the publishable key PREFIX may be used from."""
    database = Database(get_settings().database_url)
    try:
        with database.unit_of_work(write=False) as session:
            origins = service.list_origins(session, prefix)
    except LealtaError as exc:
        raise _fail(exc) from None
    finally:
        database.dispose()
    for value in origins:
        print(value)


@app.command("member-token")
def token(
    external_id: Annotated[str, typer.Argument(help="The member's external id.")],
) -> None:
    """Print the member token of EXTERNAL_ID (hex HMAC-SHA256 under
    LEALTA_MEMBER_TOKEN_SECRET), as a shop's server would compute it."""
    secret = get_settings().member_token_secret
    if not secret:
        raise _fail(
            LealtaError("Set LEALTA_MEMBER_TOKEN_SECRET first.", code="member_tokens_disabled")
        )
    if not is_valid(external_id.strip()):
        raise _fail(LealtaError("Not a valid external id.", code="invalid_external_id"))
    print(member_token(secret, external_id.strip()))
