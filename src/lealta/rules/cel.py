"""CEL (Common Expression Language) for rule conditions: compiled once, evaluated safely.

We use cel-python; nothing here ever calls ``eval``. An expression that fails to parse is a
programme validation error pointing at its path; one that fails at run time (a missing
property, a type mismatch) counts as "does not apply" rather than breaking ingestion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import CELEvalError

from lealta.kit.logging import get_logger

log = get_logger("lealta.rules")


class CelCompileError(ValueError):
    """An expression that is not valid CEL; ``str()`` says where."""


@dataclass(frozen=True)
class Expression:
    source: str
    _program: Any

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The result as plain Python, or raises :class:`CelRuntimeError`."""
        try:
            result = self._program.evaluate(_to_cel(activation))
        except Exception as exc:  # cel-python raises a variety of its own errors
            raise CelRuntimeError(f"{self.source}: {exc}") from exc
        if isinstance(result, CELEvalError):
            raise CelRuntimeError(f"{self.source}: {result}")
        return _from_cel(result)

    def test(self, activation: Mapping[str, Any]) -> bool:
        """True only if the expression evaluates to boolean true; errors mean false."""
        try:
            return self.evaluate(activation) is True
        except CelRuntimeError as exc:
            log.debug("cel_condition_error", error=str(exc))
            return False


class CelRuntimeError(ValueError):
    pass


_env = celpy.Environment()


def compile_expression(source: str) -> Expression:
    try:
        ast = _env.compile(source)
        program = _env.program(ast)
    except Exception as exc:  # CELParseError and friends
        message = str(exc).strip().splitlines()
        raise CelCompileError(f"invalid CEL expression: {message[0] if message else exc}") from exc
    return Expression(source, program)


def _to_cel(value: Any) -> Any:
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float | Decimal):
        return celtypes.DoubleType(float(value))
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, datetime):
        return celtypes.TimestampType(value)
    if isinstance(value, date):
        return celtypes.StringType(value.isoformat())
    if isinstance(value, Mapping):
        return celtypes.MapType({celtypes.StringType(k): _to_cel(v) for k, v in value.items()})
    if isinstance(value, list | tuple | set | frozenset):
        return celtypes.ListType([_to_cel(v) for v in value])
    if value is None:
        return None
    return celtypes.StringType(str(value))


def _from_cel(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.ListType):
        return [_from_cel(v) for v in value]
    if isinstance(value, celtypes.MapType):
        return {str(k): _from_cel(v) for k, v in value.items()}
    return value
