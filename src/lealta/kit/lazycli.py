"""Typer command groups whose subcommands are imported when first used.

Importing every command module up front made every ``lealta`` invocation pay for the whole
application (2 to 3 s of imports: the web console, analytics with NumPy, every service) before
doing anything; ``lealta simulate`` and ``lealta import orders`` are measured against a raw
bulk load that starts in a tenth of that. A group made with :func:`lazy_group` names some of
its subcommands by ``"module:attribute"`` and imports the module only when that subcommand
runs, or when ``--help`` lists it (this is Click's documented "lazily loading subcommands"
pattern, on Typer's group class so that help keeps Typer's formatting).

The attribute is a :class:`typer.Typer` (a subgroup) or a plain function (one command).
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import typer
from rich.console import Console
from typer import _click as click  # Typer vendors Click: its groups are typed with it
from typer.core import TyperGroup


class LazyGroup(TyperGroup):
    """A Typer group with subcommands imported on first use (see :func:`lazy_group`)."""

    lazy: ClassVar[dict[str, str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        eager = super().list_commands(ctx)
        return [*eager, *(name for name in self.lazy if name not in eager)]

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a database error that escapes it is one clear line on stderr
        and exit code :data:`DATABASE_ERROR_EXIT` instead of a traceback."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            stop = _database_error(exc)
            if stop is None:
                raise
            raise stop from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = self.commands.get(cmd_name)
        if found is None and cmd_name in self.lazy:
            found = self.commands[cmd_name] = _load(self.lazy[cmd_name], cmd_name)
        return found


DATABASE_ERROR_EXIT = 6
"""Exit code of a command stopped by the database (unreachable, missing tables, a timeout)."""

_MISSING_SCHEMA = ("no such table", "does not exist")


def _database_error(exc: Exception) -> typer.Exit | None:
    """The exit for SQLAlchemy's wrapped driver errors (None for anything else). SQLAlchemy
    is not imported for this: a command that never loaded it raised none of its errors."""
    errors = sys.modules.get("sqlalchemy.exc")
    if errors is None or not isinstance(exc, errors.DBAPIError):
        return None
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    hint = ""
    if any(marker in reason for marker in _MISSING_SCHEMA):
        hint = " The database has no Lealta schema, or an older one: run `lealta db upgrade`."
    Console(stderr=True).print(
        f"[red]error[/red] [bold]database_error[/bold]: {reason}.{hint}", highlight=False
    )
    return typer.Exit(DATABASE_ERROR_EXIT)


def lazy_group(commands: dict[str, str]) -> type[LazyGroup]:
    """A group class for ``typer.Typer(cls=...)`` with these lazy subcommands
    (name -> ``"module:attribute"``)."""
    return type("LazyGroup", (LazyGroup,), {"lazy": dict(commands)})


@contextmanager
def long_lived_imports() -> Iterator[None]:
    """Import without the cyclic garbage collector, then freeze what the imports built.

    Importing a command's modules creates hundreds of thousands of objects (classes,
    functions, SQLAlchemy tables, Pydantic validators) that live as long as the process, and
    the collector, triggered by the allocations, walked them again and again while they were
    being made: about a seventh of a command's start-up. Frozen, they are never walked again
    (:func:`gc.freeze`, the pattern CPython documents for long-lived start-up objects)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _load(target: str, name: str) -> click.Command:
    module, _, attribute = target.partition(":")
    with long_lived_imports():
        found = getattr(importlib.import_module(module), attribute)
    if isinstance(found, typer.Typer):
        command: click.Command = typer.main.get_group(found)
    else:
        single = typer.Typer(add_completion=False)
        single.command(name)(found)
        command = typer.main.get_command(single)
    command.name = name
    return command
