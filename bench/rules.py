"""(vi) Rule evaluation in-process: ``evaluate(compiled demo programme, snapshot, facts)``.

No server and no database: the demo programme is compiled once, and a fixed mix of events is
evaluated round after round. The baseline is ``EventIn.model_validate`` of the very same events
as JSON payloads (what POST /v1/events does to every request before any rule runs), timed in
the same loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from lealta.demo.programme import DEMO_PROGRAMME
from lealta.events.schemas import EventIn
from lealta.rules.engine import (
    CompiledProgramme,
    EventFacts,
    Item,
    MemberSnapshot,
    RuleUsage,
    compile_programme,
    evaluate,
)

MADRID = ZoneInfo("Europe/Madrid")
ORDINARY_DAY = datetime(2026, 11, 20, 18, 30, tzinfo=MADRID)
BLACK_FRIDAY = datetime(2026, 11, 28, 12, 0, tzinfo=MADRID)  # inside the double-weekend window


@dataclass(frozen=True)
class Case:
    """One event as the API receives it (``payload``) and as rules see it (``facts``)."""

    label: str
    payload: dict[str, Any]
    member: MemberSnapshot
    facts: EventFacts
    expect: frozenset[str]  # rule ids of the postings ``evaluate`` must return


@dataclass
class Timing:
    count: int
    elapsed: float

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def micros(self) -> float:
        return self.elapsed / self.count * 1e6 if self.count else float("nan")


@dataclass
class RulesResult:
    events: int
    evaluate: Timing
    validate: Timing
    mismatches: list[str] = field(default_factory=list)


def _member(n: int, tier: str, **usage: RuleUsage) -> MemberSnapshot:
    return MemberSnapshot(
        member_id=n,
        external_id=f"rules-{n:04d}",
        tier=tier,
        qualifying_spend_minor={"basico": 12_000, "plata": 180_000, "oro": 720_000}.get(
            tier, 2_100_000
        ),
        orders_count=3 + n,
        timezone="Europe/Madrid",
        usage=usage,
    )


def _cents(text: str) -> int:
    units, _, cents = text.partition(".")
    return int(units) * 100 + int(cents or 0)


def _order(
    n: int, member: MemberSnapshot, total: str, items: Sequence[tuple[str, str, int, str]],
    at: datetime, expect: set[str], label: str,
) -> Case:  # fmt: skip
    """``items`` are (sku, category, quantity, unit price); total as a decimal string."""
    payload = {
        "id": f"rules-e-{n}",
        "type": "order.paid",
        "customer_id": member.external_id,
        "occurred_at": at.isoformat(),
        "order": {
            "id": f"rules-O-{n}",
            "total": total,
            "currency": "EUR",
            "channel": "web",
            "items": [
                {"sku": sku, "category": cat, "quantity": qty, "unit_price": price}
                for sku, cat, qty, price in items
            ],
        },
    }
    facts = EventFacts(
        event_type="order.paid",
        occurred_at=at,
        properties={},
        event_id=f"rules-e-{n}",
        order_id=f"rules-O-{n}",
        order_total_minor=_cents(total),
        currency="EUR",
        channel="web",
        items=tuple(Item(sku, cat, qty, _cents(price)) for sku, cat, qty, price in items),
    )
    return Case(label, payload, member, facts, frozenset(expect))


def _custom(
    n: int, member: MemberSnapshot, event_type: str, properties: dict[str, Any],
    expect: set[str], label: str,
) -> Case:  # fmt: skip
    payload = {
        "id": f"rules-e-{n}",
        "type": event_type,
        "customer_id": member.external_id,
        "occurred_at": ORDINARY_DAY.isoformat(),
        "properties": properties,
    }
    facts = EventFacts(
        event_type=event_type,
        occurred_at=ORDINARY_DAY,
        properties=properties,
        event_id=f"rules-e-{n}",
    )
    return Case(label, payload, member, facts, frozenset(expect))


def demo_mix() -> list[Case]:
    """Eight events: five orders (one in the Black-Friday window) and three engagement events."""
    shoes, tee, bag = ("ZAP-101", "calzado", 1, "79.90"), ("CAM-7", "camisetas", 2, "20.05"), (
        "BOL-3", "complementos", 1, "35.50",
    )  # fmt: skip
    return [
        _order(1, _member(1, "basico"), "120.00", [shoes, tee], ORDINARY_DAY,
               {"base", "shoes-bonus"}, "order 120 € with shoes"),
        _order(2, _member(2, "plata"), "79.90", [shoes], ORDINARY_DAY,
               {"base"}, "order 79.90 € with shoes (under 100 €)"),
        _order(3, _member(3, "oro"), "155.60", [tee, bag, ("PAN-2", "pantalones", 1, "60.00")],
               ORDINARY_DAY, {"base"}, "order 155.60 € without shoes"),
        _order(4, _member(4, "basico"), "35.50", [bag], ORDINARY_DAY,
               {"base"}, "order 35.50 €"),
        _order(5, _member(5, "oro", **{"shoes-bonus": RuleUsage(points_month=100)}), "210.00",
               [shoes, ("ZAP-205", "calzado", 1, "130.10")], BLACK_FRIDAY,
               {"base", "shoes-bonus", "double-weekend"}, "Black-Friday order 210 € with shoes"),
        _custom(6, _member(6, "plata"), "review.posted", {"product": "ZAP-101", "stars": 4},
                {"review"}, "review with stars"),
        _custom(7, _member(7, "basico", review=RuleUsage(points_day=50, times_day=1)),
                "review.posted", {"product": "CAM-7", "stars": 5},
                set(), "review with stars, daily cap reached"),
        # Referrals earn through the programme's referral scheme (not its rules) since the
        # referrals issue; an attended store event is the third kind of engagement here.
        _custom(8, _member(8, "platino"), "event.attended", {"store": "Valencia"},
                {"event-attendance"}, "store event attended by a Platino member"),
    ]  # fmt: skip


def check(compiled: CompiledProgramme, cases: Sequence[Case]) -> list[str]:
    """Each case earns from exactly the rules expected and its payload validates."""
    problems = []
    for case in cases:
        got = {p.rule_id for p in evaluate(compiled, case.member, case.facts)}
        if got != case.expect:
            problems.append(f"{case.label}: rules {sorted(got)}, expected {sorted(case.expect)}")
        EventIn.model_validate(case.payload)  # raises if the payload is not a valid event
    return problems


def timed(
    fn: Callable[..., object], calls: Sequence[tuple[Any, ...]], *, rounds: int, budget: float
) -> Timing:
    """``rounds`` passes over ``calls`` (``fn(*args)`` each), stopping early after ``budget`` s."""
    done = 0
    start = time.perf_counter()
    deadline = start + budget
    for _ in range(rounds):
        for args in calls:
            fn(*args)
        done += len(calls)
        if time.perf_counter() >= deadline:
            break
    return Timing(done, time.perf_counter() - start)


def rule_evaluation(*, rounds: int, budget: float) -> RulesResult:
    compiled = compile_programme(DEMO_PROGRAMME)
    cases = demo_mix()
    mismatches = check(compiled, cases)
    evaluations = [(compiled, c.member, c.facts) for c in cases]
    validations = [(c.payload,) for c in cases]
    warm = max(1, rounds // 50)
    timed(evaluate, evaluations, rounds=warm, budget=budget)
    evaluated = timed(evaluate, evaluations, rounds=rounds, budget=budget)
    timed(EventIn.model_validate, validations, rounds=warm, budget=budget)
    same = evaluated.count // len(cases)  # the same number of events, even if cut short
    validated = timed(EventIn.model_validate, validations, rounds=same, budget=budget)
    return RulesResult(len(cases), evaluated, validated, mismatches)
