"""``lealta admin …``: console users from the command line (the first admin starts here)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lealta.config import get_settings
from lealta.kit.clock import SystemClock
from lealta.kit.db import Database
from lealta.kit.errors import LealtaError
from lealta.models import ROLES
from lealta.staff import service as staff_users

app = typer.Typer(help="Admin console users.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

EXIT_CODES = {401: 3, 403: 3, 404: 4, 409: 5, 422: 2}


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")],
    name: Annotated[str, typer.Option(help="Display name (default: the email).")] = "",
    password: Annotated[
        str | None,
        typer.Option(help="At least 10 characters; asked for (hidden, twice) when omitted."),
    ] = None,
) -> None:
    """Create a console user who signs in at /admin."""
    if role not in ROLES:
        err.print(f"[red]error[/red] [bold]invalid_role[/bold]: use one of {', '.join(ROLES)}.")
        raise typer.Exit(2)
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    database = Database(get_settings().database_url)
    try:
        with database.unit_of_work() as session:
            user = staff_users.create_user(
                session,
                email=email,
                name=name,
                role=role,
                password=password,
                now=SystemClock().now(),
                actor="cli",
            )
            created = (user.email, user.role)
    except LealtaError as exc:
        err.print(f"[red]error[/red] [bold]{exc.code}[/bold]: {exc.message}")
        raise typer.Exit(EXIT_CODES.get(exc.status_code, 1)) from None
    finally:
        database.dispose()
    console.print(f"[green]created[/green] {created[0]} ({created[1]})", highlight=False)


@app.command("list-users")
def list_users() -> None:
    """List console users, their roles and whether they may sign in."""
    database = Database(get_settings().database_url)
    now = SystemClock().now()
    try:
        with database.unit_of_work(write=False) as session:
            users = staff_users.list_users(session)
    finally:
        database.dispose()
    table = Table("email", "name", "role", "status", "last sign-in")
    for u in users:
        if u.disabled:
            status = "disabled"
        elif u.locked_until is not None and u.locked_until > now:
            status = "locked"
        else:
            status = "active"
        table.add_row(
            u.email,
            u.name,
            u.role,
            status,
            u.last_login_at.isoformat(timespec="seconds") if u.last_login_at else "",
        )
    console.print(table)
