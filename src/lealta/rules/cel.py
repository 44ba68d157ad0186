"""CEL (Common Expression Language) for rule conditions: compiled once, evaluated safely.

We use ``common-expression-language`` (Python bindings of the Rust ``cel-interpreter``);
nothing here ever calls ``eval``. An expression that fails to parse is a programme
validation error pointing at its path; one that fails at run time (a missing property, a
type mismatch) counts as "does not apply" rather than breaking ingestion.

Evaluating is cheap; handing the variables to the interpreter is not (every value of the
activation is converted to a CEL value on each call, about a microsecond per map entry). So
an expression is handed only what it can read: the variables it names (as the parser reports
them) and, of a variable it only ever reads as ``name.field``, only those fields. What the
expression can observe is unchanged, so the result is the same as with the whole activation.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The bindings' package imports its own command-line REPL (prompt_toolkit, pygments, typer)
# when it is imported: about 0.1 s of every process start, for a tool Lealta never uses. An
# empty module stands in for it (unless the bindings were imported already).
if "cel" not in sys.modules:
    sys.modules.setdefault("cel.cli", types.ModuleType("cel.cli"))

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
    names: tuple[str, ...] | None = None
    """The variables the expression names (a superset: comprehension variables too); None
    when unknown, and then it is given the whole activation."""
    fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Variables read only as ``name.field`` (never whole, never called on): the fields read.
    Of a map-valued variable listed here the expression is given only these keys."""

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The result as plain Python, or raises :class:`CelRuntimeError`.

        ``activation`` holds plain values (dict, list, str, int, float, bool, datetime); it may
        compute its values lazily (only the variables the expression names are read).
        """
        try:
            return self._program.execute(self.bindings(activation))
        except Exception as exc:  # the bindings raise KeyError, TypeError, ValueError, …
            raise CelRuntimeError(f"{self.source}: {exc}") from exc

    def bindings(self, activation: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``activation`` the expression can observe."""
        if self.names is None:
            return dict(activation)
        out: dict[str, Any] = {}
        for name in self.names:
            if name not in activation:
                continue
            value = activation[name]
            keys = self.fields.get(name)
            if keys is not None and isinstance(value, dict):
                value = {k: value[k] for k in keys if k in value}
            out[name] = value
        return out

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
    try:
        names: tuple[str, ...] | None = tuple(sorted(str(n) for n in program.variables()))
    except Exception:  # pragma: no cover - an older binding without variables()
        names = None
    return Expression(source, program, names, field_reads(source, names or ()))


# Only plain quoted strings without escapes are tokenised; anything fancier (raw, bytes or
# triple-quoted strings, backslashes, backquoted field names) and no field is pruned.
_TOKEN = re.compile(
    r"""(?P<string>'[^'\n]*'|"[^"\n]*")|(?P<comment>//[^\n]*)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"""
    r"""|(?P<number>[0-9][A-Za-z0-9_.]*)|(?P<space>\s+)|(?P<other>.)""",
    re.DOTALL,
)
_FANCY = re.compile(r"""\\|`|'''|\"\"\"|[rRbB]['"]""")


def field_reads(source: str, names: tuple[str, ...] | list[str]) -> dict[str, frozenset[str]]:
    """For each of ``names`` that ``source`` only ever reads as ``name.field`` (the field not
    called as a method), the fields it reads; names used in any other way are left out.

    Conservative by construction: a name preceded by ``.`` is a field, not the variable; any
    other occurrence (whole, indexed, called on, in a comprehension's range) rules the
    variable out, and so does any lexical form this small tokenizer does not handle."""
    if _FANCY.search(source):
        return {}
    tokens: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup or "other"
        if kind in ("space", "comment"):
            continue
        tokens.append((kind, match.group()))
    wanted = set(names)
    reads: dict[str, set[str]] = {}
    whole: set[str] = set()
    for i, (kind, text) in enumerate(tokens):
        if kind != "name" or text not in wanted:
            continue
        if i > 0 and tokens[i - 1] == ("other", "."):
            continue  # a field of something else, not the variable
        after = tokens[i + 1 : i + 4]
        if (
            len(after) >= 2
            and after[0] == ("other", ".")
            and after[1][0] == "name"
            and (len(after) < 3 or after[2] != ("other", "("))
        ):
            reads.setdefault(text, set()).add(after[1][1])
        else:
            whole.add(text)
    return {name: frozenset(keys) for name, keys in reads.items() if name not in whole}
