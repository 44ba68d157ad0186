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

Even so a call costs some 20 µs, most of it converting the values. CEL is pure (no clock, no
state, no functions of ours), so an expression remembers its plain results (bool, number,
string, null) by the exact values it was handed: an order of the same total against the same
condition is not worked out twice.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
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
    _results: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    """Plain results by the frozen bindings that gave them (see :func:`memo_key_of`), or by the
    key of them an activation's ``memo_key`` made (behind ``_BY_PARTS``: the two never meet)."""
    _reads: tuple[tuple[str, frozenset[str] | None], ...] = field(
        init=False, compare=False, repr=False
    )
    """Each of ``names`` with its ``fields`` entry (None: read whole), for ``memo_key``."""

    def __post_init__(self) -> None:
        reads = tuple((name, self.fields.get(name)) for name in self.names or ())
        object.__setattr__(self, "_reads", reads)

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """The result as plain Python, or raises :class:`CelRuntimeError`.

        ``activation`` holds plain values (dict, list, str, int, float, bool, datetime); it may
        compute its values lazily (only the variables the expression names are read).
        """
        try:
            # An activation that can key what it would hand over (see Activation.memo_key)
            # does so without building it: the bindings are built only on a miss.
            memo_key = getattr(activation, "memo_key", None)
            bindings: dict[str, Any] | None = None
            if memo_key is not None and self.names is not None:
                part_key = memo_key(self._reads)
                key = None if part_key is None else (_BY_PARTS, part_key)
            else:
                bindings = self.bindings(activation)
                key = memo_key_of(bindings)
            results = self._results
            if key is not None:
                known = results.get(key, _UNKNOWN)
                if known is not _UNKNOWN:
                    return known
            if bindings is None:
                bindings = self.bindings(activation)
            value = self._program.execute(bindings)
        except Exception as exc:  # the bindings raise KeyError, TypeError, ValueError, …
            raise CelRuntimeError(f"{self.source}: {exc}") from exc
        if key is not None and type(value) in _PLAIN:  # never a list or map a caller could change
            if len(results) >= _RESULTS_KEPT:
                results.clear()
            results[key] = value
        return value

    def bindings(self, activation: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``activation`` the expression can observe."""
        if self.names is None:
            return dict(activation)
        # An activation that can hand over part of a map variable does (see Activation.part).
        part = getattr(activation, "part", None)
        out: dict[str, Any] = {}
        for name in self.names:
            if name not in activation:
                continue
            keys = self.fields.get(name)
            if keys is not None and part is not None:
                out[name] = part(name, keys)
                continue
            value = activation[name]
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


_UNKNOWN = object()
_BY_PARTS = object()
"""Heads the keys made by an activation's ``memo_key`` (a ``memo_key_of`` key never starts so)."""
_RESULTS_KEPT = 65_536
"""Results an expression keeps (then it starts over): a few MB at most."""
_PLAIN = frozenset((bool, int, float, str, type(None)))
_SCALARS = frozenset((bool, int, str, bytes, type(None), timedelta))


def memo_key_of(value: Any) -> Any:
    """A hashable key that is equal for two values only if CEL sees them as the same (type
    included: ``1``, ``1.0`` and ``True`` are equal in Python, not in CEL); None for a value
    of a type not handled here (its result is then not remembered)."""
    kind = type(value)
    if kind in _SCALARS:
        return (kind, value)
    if kind is float:
        # -0.0 == 0.0 and NaN != NaN: the text tells them apart (and a NaN never matches).
        return (kind, value) if value else (kind, repr(value))
    # Containers freeze their plain members inline: one call per container, not per value.
    scalars = _SCALARS
    if kind is dict:
        items = []
        for k, v in value.items():
            fk = (str, k) if type(k) is str else memo_key_of(k)
            fv = (type(v), v) if type(v) in scalars else memo_key_of(v)
            if fk is None or fv is None:
                return None
            items.append((fk, fv))
        return (kind, tuple(items))
    if kind is list or kind is tuple:
        parts = []
        for v in value:
            fv = (type(v), v) if type(v) in scalars else memo_key_of(v)
            if fv is None:
                return None
            parts.append(fv)
        return (kind, tuple(parts))
    if kind is datetime or kind is time:
        # The offset and zone too: equal instants may differ in zone.
        return (kind, value.isoformat(), value.tzinfo)
    if kind is date:
        return (kind, value)
    return None


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
