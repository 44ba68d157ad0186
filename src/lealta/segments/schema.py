"""The ``segments`` section of the programme document, and the condition language.

A segment is a group of conditions, ``all`` (every one holds) or ``any`` (at least one),
nested freely; each condition is ``{field, op, value}`` plus the parameters its field takes
(a window in ``days`` or a calendar ``period``, an attribute ``key``, a consent
``purpose``). The catalogue of fields is :data:`FIELDS`; :mod:`lealta.segments.compiler`
turns a definition into one SQL query. A definition may instead be written in ``cel``, in the
documented subset :mod:`lealta.segments.cel_subset` translates to the same conditions.

``kind: static`` segments hold an uploaded list of customer ids instead of conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from lealta.programme.types import Cel, Model, Name, Slug

Op = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between", "is_set", "is_not_set",
    "has", "not_has",
]  # fmt: skip
OPS: tuple[str, ...] = (
    "eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between", "is_set", "is_not_set",
    "has", "not_has",
)  # fmt: skip
Period = Literal["this_month", "last_month", "this_year", "last_year"]
PERIODS: tuple[str, ...] = ("this_month", "last_month", "this_year", "last_year")
ACTIVITY_BANDS: tuple[str, ...] = ("active", "at_risk", "inactive")
DEFAULT_WINDOW_DAYS = 365
DEFAULT_EXPIRING_DAYS = 30
DEFAULT_ACTIVE_DAYS = 90
DEFAULT_INACTIVE_DAYS = 180


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What a field compares: ``number``, ``text``, ``band`` (activity), ``bool``
    (consent) or ``list`` (tags); which parameters it takes; whether it depends on the
    whole population (RFM, deciles: not re-evaluated member by member)."""

    kind: Literal["number", "text", "band", "bool", "list"]
    window: bool = False
    key: bool = False
    population: bool = False
    money: bool = False


FIELDS: dict[str, FieldSpec] = {
    "tier": FieldSpec("text"),
    "language": FieldSpec("text"),
    "tag": FieldSpec("list"),
    "attribute": FieldSpec("text", key=True),
    "consent": FieldSpec("bool", key=True),
    "enrolled_days": FieldSpec("number"),
    "days_since_last_order": FieldSpec("number"),
    "activity": FieldSpec("band"),
    "orders": FieldSpec("number", window=True),
    "spend": FieldSpec("number", window=True, money=True),
    "aov": FieldSpec("number", window=True, money=True),
    "frequency": FieldSpec("number", window=True),
    "rfm_r": FieldSpec("number", window=True, population=True),
    "rfm_f": FieldSpec("number", window=True, population=True),
    "rfm_m": FieldSpec("number", window=True, population=True),
    "spend_decile": FieldSpec("number", window=True, population=True),
    "points_balance": FieldSpec("number"),
    "points_expiring": FieldSpec("number"),
    "referrals": FieldSpec("number", window=True),
    "reviews": FieldSpec("number", window=True),
    "clv": FieldSpec("number", money=True),
    "probability_alive": FieldSpec("number"),
}
"""Every field a condition may name. ``orders``/``spend``/``aov``/``frequency`` (orders per
year) are over the last ``days`` (default 365) or a calendar ``period``; ``spend``, ``aov`` and
``clv`` are in currency units; ``rfm_*`` are quintiles 1-5 (5 = most recent, most frequent,
highest spend) among members who ever ordered; ``spend_decile`` is 1-10 among members who
spent in the window (10 = top 10 %); ``points_expiring`` is within ``days`` (default 30);
``activity`` is ``active`` (ordered within ``active_days``), ``at_risk`` or ``inactive`` (no
order within ``inactive_days``, never ordered included); ``referrals``/``reviews`` count
``referral.*`` and ``review.posted`` events (all time unless ``days``); ``clv`` and
``probability_alive`` come from the latest successful CLV fit."""

Scalar = str | int | float | bool


class Condition(Model):
    """One test of a member: ``{field, op, value}`` and the field's parameters."""

    field: str = Field(description="One of the fields listed in the segments documentation.")
    op: Op = "eq"
    value: Scalar | list[Scalar] | None = None
    days: int | None = Field(default=None, ge=1, le=3660, description="Window in days.")
    period: Period | None = None
    key: Slug | None = Field(default=None, description="Attribute name or consent purpose.")
    active_days: int = Field(default=DEFAULT_ACTIVE_DAYS, ge=1, le=3660)
    inactive_days: int = Field(default=DEFAULT_INACTIVE_DAYS, ge=1, le=3660)

    @model_validator(mode="after")
    def _shape(self) -> Condition:
        check_condition(self)
        return self


class Group(Model):
    """Conditions that must ``all`` hold, or of which ``any`` must hold (exactly one list)."""

    all: list[Condition | Group] | None = Field(default=None, max_length=50)
    any: list[Condition | Group] | None = Field(default=None, max_length=50)

    @model_validator(mode="after")
    def _one(self) -> Group:
        if (self.all is None) == (self.any is None):
            raise ValueError("a group has exactly one of 'all' or 'any'")
        if not (self.all or self.any):
            raise ValueError("a group needs at least one condition")
        return self

    @property
    def items(self) -> list[Condition | Group]:
        return list(self.all if self.all is not None else self.any or [])


class Segment(Model):
    """One segment shipped in the programme (conditions compiled to SQL), or a static list."""

    id: Slug
    name: Name | None = None
    description: Name | None = None
    kind: Literal["dynamic", "static"] = "dynamic"
    all: list[Condition | Group] | None = Field(default=None, max_length=50)
    any: list[Condition | Group] | None = Field(default=None, max_length=50)
    cel: Cel | None = Field(
        default=None, description="Conditions in the documented CEL subset (instead of all/any)."
    )

    @model_validator(mode="after")
    def _rules(self) -> Segment:
        given = sum(x is not None for x in (self.all, self.any, self.cel))
        if self.kind == "static":
            if given:
                raise ValueError("a static segment has no conditions (members are uploaded)")
            return self
        if given != 1:
            raise ValueError("a dynamic segment has exactly one of 'all', 'any' or 'cel'")
        if self.cel is not None:
            from lealta.segments.cel_subset import translate

            translate(self.cel)  # raises ValueError with the reason
        elif not (self.all or self.any):
            raise ValueError("a dynamic segment needs at least one condition")
        return self

    def group(self) -> Group | None:
        """The conditions as one group (the CEL form translated); None for a static list."""
        if self.kind == "static":
            return None
        if self.cel is not None:
            from lealta.segments.cel_subset import translate

            return translate(self.cel)
        return Group(all=self.all) if self.all is not None else Group(any=self.any)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_condition(c: Condition) -> None:
    """``ValueError`` when a condition's op, value or parameters do not fit its field."""
    spec = FIELDS.get(c.field)
    if spec is None:
        raise ValueError(f"unknown field '{c.field}' (one of: {', '.join(FIELDS)})")
    if spec.key and c.key is None:
        raise ValueError(f"field '{c.field}' needs a 'key'")
    if not spec.key and c.key is not None:
        raise ValueError(f"field '{c.field}' takes no 'key'")
    if (c.days is not None or c.period is not None) and not (
        spec.window or c.field == "points_expiring"
    ):
        raise ValueError(f"field '{c.field}' takes no window")
    if c.days is not None and c.period is not None:
        raise ValueError("give 'days' or 'period', not both")
    if c.period is not None and spec.population:
        raise ValueError(f"field '{c.field}' takes a window in 'days' only")
    if c.field == "points_expiring" and c.period is not None:
        raise ValueError("field 'points_expiring' takes 'days' only")
    if c.active_days >= c.inactive_days:
        raise ValueError("'active_days' must be less than 'inactive_days'")
    allowed = {
        "number": ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "between"),
        "text": ("eq", "ne", "in", "not_in", "is_set", "is_not_set"),
        "band": ("eq", "ne", "in", "not_in"),
        "bool": ("eq", "ne"),
        "list": ("has", "not_has"),
    }[spec.kind]
    if c.field == "attribute":
        allowed = (*allowed, "gt", "gte", "lt", "lte")
    if c.field in ("days_since_last_order", "clv", "probability_alive"):
        allowed = (*allowed, "is_set", "is_not_set")
    if c.op not in allowed:
        raise ValueError(f"op '{c.op}' does not apply to field '{c.field}' ({', '.join(allowed)})")
    value = c.value
    if c.op in ("is_set", "is_not_set"):
        if value is not None:
            raise ValueError(f"op '{c.op}' takes no value")
        return
    if value is None:
        raise ValueError(f"op '{c.op}' needs a value")
    if c.op in ("in", "not_in", "between"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"op '{c.op}' needs a non-empty list")
        if c.op == "between" and len(value) != 2:
            raise ValueError("op 'between' needs [low, high]")
        items = value
    else:
        if isinstance(value, list):
            raise ValueError(f"op '{c.op}' needs a single value")
        items = [value]
    for item in items:
        if spec.kind == "number" and not _is_number(item):
            raise ValueError(f"field '{c.field}' compares numbers, not {item!r}")
        if spec.kind == "bool" and not isinstance(item, bool):
            raise ValueError(f"field '{c.field}' compares true or false")
        if spec.kind in ("text", "list") and c.field != "attribute" and not isinstance(item, str):
            raise ValueError(f"field '{c.field}' compares text, not {item!r}")
        if spec.kind == "band" and item not in ACTIVITY_BANDS:
            raise ValueError(f"activity is one of {', '.join(ACTIVITY_BANDS)}")
        if c.field == "attribute" and c.op in ("gt", "gte", "lt", "lte") and not _is_number(item):
            raise ValueError("an attribute compared with gt/gte/lt/lte needs a number")


def walk(group: Group) -> list[Condition]:
    """Every condition of ``group``, depth first."""
    found: list[Condition] = []
    for item in group.items:
        found.extend(walk(item) if isinstance(item, Group) else [item])
    return found


def is_population_relative(group: Group) -> bool:
    """Whether membership depends on other members (RFM, deciles): such segments are kept
    by the scheduled recompute only, not re-evaluated member by member."""
    return any(FIELDS[c.field].population for c in walk(group))


def check(programme: Any) -> None:
    """Cross-references of the section, as ValueError."""
    seen: set[str] = set()
    tiers = {t.id for t in programme.tiers.levels} if programme.tiers else set()
    for i, segment in enumerate(programme.segments):
        if segment.id in seen:
            raise ValueError(f"segments.{i}.id: duplicate segment '{segment.id}'")
        seen.add(segment.id)
        group = segment.group()
        if group is None:
            continue
        for c in walk(group):
            if c.field != "tier" or not tiers:
                continue
            values = c.value if isinstance(c.value, list) else [c.value]
            for v in values:
                if v is not None and v not in tiers:
                    raise ValueError(f"segments.{i}: unknown tier '{v}'")
