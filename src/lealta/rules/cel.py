"""CEL (Common Expression Language) for rule conditions: compiled once, evaluated safely.

We use ``common-expression-language`` (Python bindings of the Rust ``cel-interpreter``);
nothing here ever calls ``eval``. An expression that fails to parse is a programme
validation error pointing at its path; one that fails at run time (a missing property, a
type mismatch) counts as "does not apply" rather than breaking ingestion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cel

from lealta.kit.logging import get_logger

log = get_logger("lealta.rules")


class CelCompileError(ValueError):
    """An expression that is not valid CEL; ``str()`` says where."""


class CelRuntimeError(ValueError):
    pass


@dataclass(frozen=True)
class Expression:
    source: str
    _program: cel.Program

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The result as plain Python, or raises :class:`CelRuntimeError`.

        ``activation`` holds plain values (dict, list, str, int, float, bool, datetime).
        """
        try:
            return self._program.execute(dict(activation))
        except Exception as exc:  # the bindings raise KeyError, TypeError, ValueError, …
            raise CelRuntimeError(f"{self.source}: {exc}") from exc

    def test(self, activation: Mapping[str, Any]) -> bool:
        """True only if the expression evaluates to boolean true; errors mean false."""
        try:
            return self.evaluate(activation) is True
        except CelRuntimeError as exc:
            log.debug("cel_condition_error", error=str(exc))
            return False


def compile_expression(source: str) -> Expression:
    try:
        program = cel.compile(source)
    except Exception as exc:  # ValueError with the parser's message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        detail = first.split("ERROR: ", 1)[-1].replace("<input>:", "at ")
        raise CelCompileError(f"invalid CEL expression: {detail}") from exc
    return Expression(source, program)
