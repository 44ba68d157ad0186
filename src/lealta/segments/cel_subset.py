"""The CEL subset a segment may be written in, translated to the condition list.

The ``cel`` bindings Lealta uses compile and evaluate expressions but expose no syntax tree,
so a segment's CEL is read by this small parser instead, and only this subset is accepted
(anything else is refused with the reason, never guessed):

- comparisons ``<path> <op> <literal>`` with ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``;
  ``<path> in [<literal>, ...]``; ``"<tag>" in member.tags``;
- joined with ``&&`` and ``||`` and grouped with parentheses (``&&`` binds tighter);
- paths: ``member.tier``, ``member.language``, ``member.tags``, ``member.attributes.<key>``,
  ``member.consent.<purpose>``, ``metrics.<field>`` for the other fields of
  :data:`lealta.segments.schema.FIELDS`, with the window as a suffix for windowed ones
  (``metrics.orders_365d``, ``metrics.spend_90d``; none means the default 365 days).

Example: ``member.tier == "oro" && metrics.orders_365d >= 3``.
"""

from __future__ import annotations

import re
from typing import Any

from lealta.segments.schema import FIELDS, Condition, Group

_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"[^"\\\n]*"|'[^'\\\n]*')|(?P<number>-?\d+(?:\.\d+)?)"""
    r"""|(?P<op>&&|\|\||==|!=|<=|>=|<|>|\(|\)|\[|\]|,|\.)|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"""
)
_OPS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}
_WINDOW = re.compile(r"^(?P<field>[a-z_]+?)_(?P<days>\d+)d$")


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = source.rstrip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                raise ValueError(f"CEL subset: unexpected {text[pos:].strip()[:20]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise ValueError(
                f"CEL subset: expected {value or 'more'}, found {token[1] if token else 'end'}"
            )
        self.i += 1
        return token

    def expr(self) -> Group | Condition:
        parts = [self.conj()]
        while self.peek() == ("op", "||"):
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else Group(any=parts)

    def conj(self) -> Group | Condition:
        parts = [self.unary()]
        while self.peek() == ("op", "&&"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else Group(all=parts)

    def unary(self) -> Group | Condition:
        if self.peek() == ("op", "("):
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        return self.comparison()

    def literal(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1]
        if kind == "number":
            return float(text) if "." in text else int(text)
        if kind == "name" and text in ("true", "false"):
            return text == "true"
        if (kind, text) == ("op", "["):
            items = [self.literal()]
            while self.peek() == ("op", ","):
                self.take()
                items.append(self.literal())
            self.take("]")
            return items
        raise ValueError(f"CEL subset: expected a literal, found {text!r}")

    def path(self) -> list[str]:
        parts = [self.take()[1]]
        while self.peek() == ("op", "."):
            self.take()
            kind, text = self.take()
            if kind != "name":
                raise ValueError(f"CEL subset: bad path after {'.'.join(parts)}")
            parts.append(text)
        return parts

    def comparison(self) -> Condition:
        token = self.peek()
        if token is not None and token[0] == "string":
            tag = self.literal()
            self.take("in")
            if self.path() != ["member", "tags"]:
                raise ValueError("CEL subset: only '\"tag\" in member.tags' tests membership")
            return Condition(field="tag", op="has", value=tag)
        if token is None or token[0] != "name":
            raise ValueError(f"CEL subset: expected a path, found {token[1] if token else 'end'}")
        path = self.path()
        op_token = self.take()
        if op_token == ("name", "in"):
            op = "in"
        elif op_token[1] in _OPS:
            op = _OPS[op_token[1]]
        else:
            raise ValueError(f"CEL subset: unsupported operator {op_token[1]!r}")
        value = self.literal()
        return _condition(path, op, value)


def _condition(path: list[str], op: str, value: Any) -> Condition:
    base: dict[str, Any] = {"op": op, "value": value}
    if path[:1] == ["member"] and len(path) == 2 and path[1] in ("tier", "language"):
        return Condition(field=path[1], **base)
    if path[:2] == ["member", "attributes"] and len(path) == 3:
        return Condition(field="attribute", key=path[2], **base)
    if path[:2] == ["member", "consent"] and len(path) == 3:
        return Condition(field="consent", key=path[2], **base)
    if path[:1] == ["metrics"] and len(path) == 2:
        name = path[1]
        if name in FIELDS and name not in ("tier", "language", "tag", "attribute", "consent"):
            return Condition(field=name, **base)
        match = _WINDOW.match(name)
        if match and match["field"] in FIELDS and FIELDS[match["field"]].window:
            return Condition(field=match["field"], days=int(match["days"]), **base)
        if match and match["field"] == "points_expiring":
            return Condition(field="points_expiring", days=int(match["days"]), **base)
    raise ValueError(f"CEL subset: unknown path {'.'.join(path)!r}")


def translate(source: str) -> Group:
    """The condition group equivalent to ``source``; ValueError (with why) outside the subset."""
    parser = _Parser(source)
    if not parser.tokens:
        raise ValueError("CEL subset: empty expression")
    try:
        node = parser.expr()
    except ValueError as exc:
        raise ValueError(str(exc).replace("Value error, ", "")) from None
    if parser.peek() is not None:
        raise ValueError(f"CEL subset: unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    return node if isinstance(node, Group) else Group(all=[node])
