"""The ``lealta`` command imports a command's module only when that command runs."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lealta.cli import app
from lealta.config import get_settings
from lealta.kit.lazycli import DATABASE_ERROR_EXIT, LazyGroup

DOMAIN = ("lealta.models", "lealta.web", "lealta.analytics", "lealta.engine", "lealta.kit.db")


def _loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(m for m in sys.modules if m.startswith('lealta')))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(done.stdout.split())


def test_importing_the_command_loads_no_domain_package() -> None:
    loaded = _loaded_after("import lealta.cli")
    assert not [m for m in loaded if m.startswith(DOMAIN)]


def test_a_command_loads_only_what_it_uses() -> None:
    loaded = _loaded_after(
        "from lealta.cli import app\n"
        "try:\n    app(['simulate', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert "lealta.simulator.cli" in loaded
    assert not [m for m in loaded if m.startswith(("lealta.web", "lealta.analytics"))]
    # The simulator imports the engine when it runs, not to show its help.
    assert "lealta.engine.core" not in loaded
    assert "lealta.engine.core" in _loaded_after(
        "from lealta.cli import app\n"
        "try:\n    app(['simulate', '-p', '/nonexistent.yaml', '-o', '/nonexistent.csv'])\n"
        "except SystemExit:\n    pass"
    )


def test_the_application_imports_scipy_only_for_what_needs_it() -> None:
    """``scipy.stats`` was about a fifth of a server process's start (``make run``, every
    worker process); only experiment results and the CLV fit use SciPy."""
    probe = (
        "import sys\nimport lealta.app\nprint('scipy' in sys.modules)\n"
        "from lealta.experiments import stats\n"
        "print(round(stats.wilson(30, 100, 0.95)[0], 4), 'scipy.stats' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["False", "0.2189", "True"]


def test_every_lazy_command_resolves_and_help_lists_it() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    context = typer.Context(group)
    groups = [group]
    while groups:
        current = groups.pop()
        assert isinstance(current, typer.core.TyperGroup)
        for name in current.list_commands(context):
            command = current.get_command(context, name)
            assert command is not None, name
            assert command.name == name
            if isinstance(command, typer.core.TyperGroup):
                groups.append(command)
    shown = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert shown.exit_code == 0
    for name in [*LazyGroup.lazy, *type(group).lazy]:
        assert f" {name} " in shown.output
    origin = CliRunner().invoke(app, ["apikey", "origin", "--help"])
    assert origin.exit_code == 0, origin.output
    assert "apikey origin [OPTIONS]" in origin.output


def test_a_database_error_is_one_line_and_exit_6_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = tmp_path / "orders.csv"
    history.write_text("customer_id,order_id,occurred_at,amount,currency\n", encoding="utf-8")
    runner = CliRunner()
    # A database file without the schema: the hint says how to make it.
    monkeypatch.setenv("LEALTA_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    get_settings.cache_clear()
    done = runner.invoke(app, ["import", "orders", str(history)])
    assert done.exit_code == DATABASE_ERROR_EXIT, done.output
    assert "database_error" in done.output and "no such table" in done.output
    assert "lealta db upgrade" in done.output
    assert "Traceback" not in done.output
    # A server that refuses connections: the driver's reason, no schema hint.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("LEALTA_DATABASE_URL", f"postgresql://lealta@127.0.0.1:{port}/x")
    get_settings.cache_clear()
    done = runner.invoke(app, ["import", "orders", str(history)])
    assert done.exit_code == DATABASE_ERROR_EXIT, done.output
    assert "database_error" in done.output and "refused" in done.output.lower()
    assert "db upgrade" not in done.output


def test_other_errors_still_propagate() -> None:
    group = typer.main.get_group(app)
    assert isinstance(group, LazyGroup)
    runner = CliRunner()
    done = runner.invoke(app, ["simulate", "-p", "/nonexistent.yaml", "-o", "/nonexistent.csv"])
    assert done.exit_code == 2  # the command's own error (unreadable design), unchanged


def test_a_lazy_command_is_imported_without_collections_and_then_frozen() -> None:
    """The modules a command imports are built with the collector off, then frozen (never
    walked again), and the collector is left as it was (on, or off if it was off)."""
    probe = (
        "import gc\n"
        "import lealta.kit.lazycli as lazy\n"
        "from lealta.cli import app\n"
        "marks = []\n"
        "load = lazy._load\n"
        "def traced(*args):\n"
        "    marks.append('load')\n"
        "    found = load(*args)\n"
        "    marks.append('loaded')\n"
        "    return found\n"
        "lazy._load = traced\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and marks.append('gc'))\n"
        "{disable}"
        "assert gc.get_freeze_count() == 0\n"
        "try:\n    app(['report', '--help'])\nexcept SystemExit:\n    pass\n"
        "during = marks[marks.index('load'):marks.index('loaded')].count('gc')\n"
        "print(during, gc.get_freeze_count(), gc.isenabled())\n"
    )
    for disable, enabled in (("", "True"), ("gc.disable()\n", "False")):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(disable=disable)],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        during, frozen, after = done.stdout.splitlines()[-1].split()
        # Importing the reports allocates far past every threshold, and nothing collected.
        assert int(during) == 0
        assert int(frozen) > 100_000
        assert after == enabled
