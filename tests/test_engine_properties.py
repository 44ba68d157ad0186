"""Property tests of the pure engine over random member histories (no database).

A history is a list of steps run against one member, starting from a complete empty state
and threading each outcome's state into the next step: orders (with item categories the
rules read), partial, full and excessive refunds of earlier orders, refunds of unknown
orders, second orders under a recorded id, foreign currencies, custom events, clock jumps
of minutes to more than a year (so releases, expiries and tier reviews happen) and runs of
the points job (``catch_up``). After every step the ledger's invariants must hold; events
that must be refused are refused and change nothing; the engine is deterministic; and a
job run before an event changes nothing of what the event does.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as record_event
from hypothesis import strategies as st

from lealta.engine import core as engine
from lealta.engine.outcome import Crossing, NewEntry, Outcome
from lealta.engine.state import (
    Figures,
    MemberState,
    OrderState,
    Profile,
    Qualifying,
    RuleCounter,
    StateIncomplete,
)
from lealta.kit.errors import LealtaError
from lealta.outbox.events import ThresholdForfeited
from lealta.programme.schema import Programme
from lealta.tiers import maths as tier_maths
from tests.spine_histories import CATEGORIES, CUSTOM_TYPES, PROGRAMMES, capped_rules

HISTORIES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- steps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Jump:
    """The clock moves forward."""

    delta: timedelta


@dataclass(frozen=True)
class Pay:
    """``order.paid`` for a new order (refused when not in the programme's currency)."""

    total_cents: int
    lines: tuple[tuple[str | None, int, int], ...]
    currency: str = "EUR"


@dataclass(frozen=True)
class PayAgain:
    """A second ``order.paid`` naming an order already recorded: always refused."""

    pick: int


@dataclass(frozen=True)
class RefundStep:
    """``order.refunded`` of an earlier order (``pick``) or of an unknown one.

    ``kind``: ``rest`` (no amount: whatever is left), ``exact`` (the amount left), ``part``
    (``fraction`` % of what is left, at least a cent), ``over`` (more than is left),
    ``zero`` (an amount of 0), ``unknown`` (an order the member never had).
    """

    pick: int
    kind: str
    fraction: int = 50
    extra_cents: int = 1
    currency: str | None = None


@dataclass(frozen=True)
class CustomStep:
    type: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    """The points job runs at the current moment (releases, expiries, tier reviews)."""


Step = Jump | Pay | PayAgain | RefundStep | CustomStep | Job

jumps = st.one_of(
    st.integers(0, 36_000).map(lambda s: timedelta(seconds=s)),
    st.integers(1, 45).map(lambda d: timedelta(days=d)),
    st.integers(60, 500).map(lambda d: timedelta(days=d)),
).map(Jump)
totals = st.one_of(
    st.integers(0, 30_000), st.integers(30_000, 300_000), st.integers(300_000, 2_000_000)
)
lines = st.lists(
    st.tuples(st.sampled_from(CATEGORIES), st.integers(1, 3), st.integers(0, 50_000)),
    max_size=3,
).map(tuple)
pays = st.builds(Pay, totals, lines, st.sampled_from(["EUR"] * 9 + ["USD"]))
refunds = st.builds(
    RefundStep,
    pick=st.integers(0, 10_000),
    kind=st.sampled_from(["rest", "exact", "part", "part", "part", "over", "zero", "unknown"]),
    fraction=st.integers(1, 100),
    extra_cents=st.integers(1, 100_000),
    currency=st.sampled_from([None, None, None, "EUR", "USD"]),
)
customs = st.one_of(
    st.builds(CustomStep, st.just("review.posted"), st.integers(1, 5).map(lambda n: {"stars": n})),
    st.builds(CustomStep, st.sampled_from(CUSTOM_TYPES)),
)
actions = st.one_of(
    pays,
    pays,
    pays,
    refunds,
    refunds,
    refunds,
    refunds,
    customs,
    customs,
    st.builds(PayAgain, st.integers(0, 10_000)),
    st.just(Job()),
)
steps = st.lists(st.tuples(jumps, actions), min_size=8, max_size=30).map(
    lambda rounds: [step for pair in rounds for step in pair]
)
starts = st.integers(0, 2 * 365 * 24 * 60).map(
    lambda minutes: datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
)


# --- the run -----------------------------------------------------------------------------------


def initial_state(programme: Programme) -> MemberState:
    """A new member's complete state: nothing is left for a driver to load."""
    return MemberState(
        member_id=1,
        profile=Profile("c1"),
        figures=Figures(),
        lots_complete=True,
        counters={
            rule: RuleCounter(since=datetime(1990, 1, 1, tzinfo=UTC))
            for rule in capped_rules(programme)
        },
        qualifying=Qualifying(),
        tier_entries_paid=frozenset(),
        orders={},
    )


def _load(full: MemberState, state: MemberState, missing: StateIncomplete) -> MemberState:
    """``state`` with the part the engine asked for, taken from the complete ``full``; the
    qualifying history is cut at the window start asked for (older values summed)."""
    if missing.part == "lots":
        return msgspec.structs.replace(state, lots=full.lots, lots_complete=True)
    if missing.part == "orders":
        order_id = missing.detail
        return msgspec.structs.replace(
            state, orders={**state.orders, order_id: full.orders.get(order_id)}
        )
    if missing.part == "counters":
        return msgspec.structs.replace(state, counters=full.counters)
    if missing.part == "tier_entries":
        return msgspec.structs.replace(state, tier_entries_paid=full.tier_entries_paid)
    assert missing.part == "qualifying", missing.part
    q, start = full.qualifying, missing.detail
    assert q is not None and q.horizon is None
    if start is None:
        return msgspec.structs.replace(state, qualifying=q)
    cut = Qualifying(
        horizon=start,
        base=q.base + sum(c.amount for c in q.recent if c.at <= start),
        recent=tuple(c for c in q.recent if c.at > start),
    )
    return msgspec.structs.replace(state, qualifying=cut)


def _money(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def _sum(entries: Sequence[NewEntry], entry_type: str, sign: int = 0) -> int:
    return sum(
        e.points
        for e in entries
        if e.entry_type == entry_type and (sign == 0 or (e.points > 0) == (sign > 0))
    )


class Run:
    """One member's history under one programme, checked after every step.

    ``orders`` is the test's own account of each recorded order (total and refunded, in
    cents), kept apart from the engine's state to say which refunds must be refused.
    """

    def __init__(self, programme: Programme, start: datetime) -> None:
        self.programme = programme
        self.clock = start
        self.state = initial_state(programme)
        self.entries: list[NewEntry] = []
        self.orders: dict[str, list[int]] = {}
        self.crossings: Counter[str] = Counter()
        self.forfeited: Counter[str] = Counter()
        self.rank = 0
        self.serial = 0
        self.seen: set[str] = set()

    # steps

    def run(self, history: Sequence[Step]) -> None:
        for step in history:
            self.step(step)
        self.finish()

    def step(self, step: Step) -> None:
        if isinstance(step, Jump):
            self.clock += step.delta
        elif isinstance(step, Job):
            self.job()
        elif isinstance(step, Pay):
            self.pay(step)
        elif isinstance(step, PayAgain):
            if self.orders:
                order_id = sorted(self.orders)[step.pick % len(self.orders)]
                event = engine.PaidOrder(self.key(), self.clock, order_id, Decimal("10.00"), "EUR")
                self.refused(event, "order_already_recorded")
        elif isinstance(step, RefundStep):
            self.refund(step)
        else:
            self.apply(engine.Custom(self.key(), step.type, self.clock, step.properties))

    def key(self) -> str:
        self.serial += 1
        return f"e{self.serial}"

    def pay(self, step: Pay) -> None:
        order_id = f"O{self.serial + 1}"
        event = engine.PaidOrder(
            key=self.key(),
            occurred_at=self.clock,
            order_id=order_id,
            total=_money(step.total_cents),
            currency=step.currency,
            lines=tuple(
                engine.Line(f"SKU{n}", category, quantity, _money(price))
                for n, (category, quantity, price) in enumerate(step.lines)
            ),
        )
        if step.currency != "EUR":
            self.refused(event, "currency_mismatch")
            return
        self.orders[order_id] = [step.total_cents, 0]
        self.apply(event)
        # The same order again, even as the same event, never earns twice.
        self.refused(event, "order_already_recorded")

    def refund(self, step: RefundStep) -> None:
        if step.kind == "unknown" or not self.orders:
            order_id = f"UNKNOWN{self.serial}"
            # The driver looked the order up and did not find it.
            self.state = msgspec.structs.replace(
                self.state, orders={**self.state.orders, order_id: None}
            )
            event = engine.Refund(self.key(), self.clock, order_id, _money(1), step.currency)
            self.refused(event, "order_not_found")
            return
        order_id = sorted(self.orders)[step.pick % len(self.orders)]
        total, refunded = self.orders[order_id]
        left = total - refunded
        amount: int | None
        if step.kind == "rest":
            amount, error = None, "refund_exceeds_order" if left == 0 else None
        elif step.kind == "exact":
            amount, error = left, "invalid_amount" if left == 0 else None
        elif step.kind == "part":
            amount = max(1, left * step.fraction // 100)
            error = "refund_exceeds_order" if amount > left else None
        elif step.kind == "over":
            amount, error = left + step.extra_cents, "refund_exceeds_order"
        else:
            amount, error = 0, "invalid_amount"
        if step.currency not in (None, "EUR"):
            error = "currency_mismatch"
        event = engine.Refund(
            self.key(),
            self.clock,
            order_id,
            None if amount is None else _money(amount),
            step.currency,
        )
        if error is not None:
            self.refused(event, error)
            return
        self.orders[order_id][1] = total if amount is None else refunded + amount
        self.apply(event)

    # applying

    def refused(self, event: engine.EngineEvent, code: str) -> None:
        """The engine refuses ``event`` with ``code``, and the state is as it was."""
        before = copy.deepcopy(self.state)
        with pytest.raises(LealtaError) as refused:
            engine.apply(self.programme, self.state, event)
        assert refused.value.code == code
        assert self.state == before

    def apply(self, event: engine.EngineEvent) -> None:
        """Apply ``event``; the same input gives the same outcome, and a job run first (at the
        event's moment) splits the outcome without changing it."""
        programme, state = self.programme, self.state
        outcome = engine.apply(programme, state, event)
        assert engine.apply(programme, state, event) == outcome
        caught = engine.catch_up(programme, state, event.occurred_at)
        after = engine.apply(programme, caught.state, event)
        assert after.state == outcome.state
        assert caught.entries + after.entries == outcome.entries
        assert caught.events + after.events == outcome.events
        assert caught.allocations + after.allocations == outcome.allocations
        self.check_partial(event, outcome)
        self.absorb(outcome)

    def check_partial(self, event: engine.EngineEvent, outcome: Outcome) -> None:
        """What the online driver relies on: from a partial state (the lots due by the event's
        moment, nothing else), loading each part the engine asks for, exactly as asked, gives
        the outcome the complete state gives."""
        full = self.state
        state = msgspec.structs.replace(
            full,
            lots=tuple(lot for lot in full.lots if engine.is_due(lot, event.occurred_at)),
            lots_complete=False,
            orders={},
            counters=None,
            qualifying=None,
            tier_entries_paid=None,
        )
        asked: list[str] = []
        for _ in range(10):
            try:
                partial = engine.apply(self.programme, state, event)
                break
            except StateIncomplete as missing:
                window = " window" if missing.part == "qualifying" and missing.detail else ""
                asked.append(missing.part + window)
                state = _load(full, state, missing)
        else:
            raise AssertionError(f"the engine kept asking: {asked}")
        self.seen |= {f"asked for {part}" for part in asked}
        for name in ("entries", "allocations", "lots", "orders", "new_orders", "tier_moves"):
            assert getattr(partial, name) == getattr(outcome, name), name
        assert partial.events == outcome.events
        assert (partial.postings, partial.points_delta) == (outcome.postings, outcome.points_delta)
        assert partial.state.figures == outcome.state.figures
        assert partial.state.next_ref == outcome.state.next_ref

    def job(self) -> None:
        """The job catches up to now; running it twice does nothing more."""
        outcome = engine.catch_up(self.programme, self.state, self.clock)
        assert engine.catch_up(self.programme, self.state, self.clock) == outcome
        again = engine.catch_up(self.programme, outcome.state, self.clock)
        assert again.state == outcome.state
        assert not again.changed
        self.absorb(outcome)

    def absorb(self, outcome: Outcome) -> None:
        running = self.state.figures.balance
        for entry in outcome.entries:
            running += entry.points
            assert entry.balance_after == running, entry
            assert entry.shortfall >= 0
        for move in outcome.tier_moves:
            self.seen.add(f"tier {move.direction} to {move.to_tier}")
        for event in outcome.events:
            self.seen.add(type(event).__name__)
            if isinstance(event, Crossing):
                self.crossings[event.rule_id] += 1
            elif isinstance(event, ThresholdForfeited):
                self.forfeited[event.rule_id] += event.forfeited
        self.entries.extend(outcome.entries)
        self.state = outcome.state
        self.check()

    def finish(self) -> None:
        """Twenty years on, everything pending is released and everything expirable gone."""
        self.clock += timedelta(days=20 * 366)
        self.job()
        fig = self.state.figures
        assert fig.points_pending == 0
        if self.programme.expiry.months is not None:
            assert fig.balance == 0
            assert self.state.lots == ()

    def report(self) -> None:
        """What the history reached, for ``--hypothesis-show-statistics``."""
        kinds = {e.entry_type for e in self.entries}
        kinds |= {"shortfall" for e in self.entries if e.shortfall}
        kinds |= {"tier bonus" for e in self.entries if e.source_type == "tier"}
        refunded = [o for o in self.state.orders.values() if o is not None and o.refunded_minor]
        kinds |= {f"order {o.status}" for o in refunded}
        kinds |= {"threshold crossed" for _ in self.crossings.values()}
        for kind in sorted(kinds | self.seen):
            record_event(kind)

    # invariants

    def check(self) -> None:
        state, fig, entries = self.state, self.state.figures, self.entries
        # Balances: the ledger's sum, and what is left in the lots.
        assert fig.balance == sum(e.points for e in entries)
        assert fig.points_available == sum(lot.remaining for lot in state.lots if not lot.pending)
        assert fig.points_pending == sum(lot.remaining for lot in state.lots if lot.pending)
        for lot in state.lots:
            assert 0 <= lot.remaining <= lot.points
            assert not engine.is_due(lot, self.clock), lot
        for name in (
            "points_available",
            "points_pending",
            "lifetime_earned",
            "lifetime_spent",
            "points_expired",
            "points_shortfall",
            "qualifying_spend_minor",
        ):
            assert getattr(fig, name) >= 0, name
        # Lifetime figures, as `lealta ledger verify` derives them.
        assert fig.lifetime_earned == (
            _sum(entries, "earn") + _sum(entries, "reverse", -1) + _sum(entries, "adjust", 1)
        )
        assert fig.lifetime_spent == -(_sum(entries, "redeem") + _sum(entries, "reverse", 1))
        assert fig.points_expired == -_sum(entries, "expire")
        assert fig.points_shortfall == sum(e.shortfall for e in entries)
        self.check_orders()
        self.check_tiers()
        self.check_caps()

    def check_orders(self) -> None:
        state, fig = self.state, self.state.figures
        recorded = {k: v for k, v in state.orders.items() if v is not None}
        assert sorted(recorded) == sorted(self.orders)
        net = 0
        for order_id, (total, refunded) in self.orders.items():
            order = recorded[order_id]
            assert (order.total_minor, order.refunded_minor) == (total, refunded)
            net += total - refunded
            self.check_order(order)
        assert fig.qualifying_spend_minor == net
        assert fig.orders_count == len(self.orders)
        assert fig.spend_high_water_minor >= fig.qualifying_spend_minor
        for rule in self.programme.thresholds:
            # Each multiple of ``every`` reached by net spend is issued or forfeited, once.
            step = int(rule.every.scaleb(2))
            issued = self.crossings[rule.id] + self.forfeited[rule.id]
            assert issued == fig.spend_high_water_minor // step

    def check_order(self, order: OrderState) -> None:
        """An order earned what its entries say; refunds reverse pro rata, cumulatively, and a
        full refund reverses exactly what the order earned (taken back or owed as shortfall)."""
        own = [e for e in self.entries if e.order_id == order.id]
        assert order.points_earned == sum(e.points for e in own if e.entry_type == "earn")
        reversed_ = sum(-e.points + e.shortfall for e in own if e.entry_type == "reverse")
        assert order.points_reversed == reversed_
        if order.refunded_minor == order.total_minor:
            assert reversed_ == order.points_earned
        else:
            assert reversed_ == order.points_earned * order.refunded_minor // order.total_minor
        if order.refunded_minor == 0:
            assert order.status == "paid"
        elif order.refunded_minor == order.total_minor:
            assert order.status == "refunded"
        else:
            assert order.status == "partially_refunded"

    def check_caps(self) -> None:
        """No capped rule ever gave more than its caps allow (per UTC day, month, ever)."""
        for rule in self.programme.rules:
            caps = rule.caps
            if caps is None:
                continue
            earned = [e for e in self.entries if e.rule_id == rule.id and e.entry_type == "earn"]
            days: Counter[date] = Counter()
            times: Counter[date] = Counter()
            months: Counter[tuple[int, int]] = Counter()
            for e in earned:
                day = e.occurred_at.astimezone(UTC).date()
                days[day] += e.points
                times[day] += 1
                months[(day.year, day.month)] += e.points
            limits = (
                (caps.per_day, max(days.values(), default=0)),
                (caps.times_per_day, max(times.values(), default=0)),
                (caps.per_month, max(months.values(), default=0)),
                (caps.lifetime, sum(e.points for e in earned)),
                (caps.times_lifetime, len(earned)),
            )
            for cap, used in limits:
                assert cap is None or used <= cap, (rule.id, caps, used)

    def check_tiers(self) -> None:
        tiers, fig = self.programme.tiers, self.state.figures
        if tiers is None or (not self.entries and fig.tier_id is None):
            return
        assert self.programme.tier(fig.tier_id) is not None
        rank = tier_maths.rank(tiers, fig.tier_id)
        if tiers.period == "lifetime" and tiers.basis == "spend":
            # Lifetime tiers never go down, and an order upgrades at once.
            assert rank >= self.rank
            value = _money(fig.qualifying_spend_minor)
            assert rank >= tier_maths.rank(tiers, tier_maths.level_for(tiers, value).id)
        self.rank = rank


# --- the properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROGRAMMES))
@HISTORIES
@given(start=starts, history=steps)
def test_random_histories_keep_the_ledger_invariants(
    name: str, start: datetime, history: list[Step]
) -> None:
    run = Run(PROGRAMMES[name], start)
    run.run(history)
    run.report()


def test_a_full_refund_after_spending_records_the_shortfall() -> None:
    """A known history through the same checks: earn, expire, earn again, refund the first."""
    run = Run(PROGRAMMES["fast"], datetime(2026, 1, 10, tzinfo=UTC))
    run.run(
        [
            Pay(20_000, (("ropa", 1, 20_000),)),
            Jump(timedelta(days=100)),
            Pay(10_000, ()),
            RefundStep(0, "rest"),
        ]
    )
    reverse = [e for e in run.entries if e.entry_type == "reverse"]
    # The order's own points expired: the reversal takes the other order's and owes the rest.
    assert [(e.points, e.shortfall) for e in reverse] == [(-100, 100)]
    assert run.state.figures.points_shortfall == 100
    assert run.state.figures.balance == 0


@pytest.mark.parametrize("how", ["spend", "debit"])
def test_a_spend_or_a_debit_catches_up_first_and_never_takes_expired_points(how: str) -> None:
    """Points that expired before a spend (or a manual debit) are expired by it, then the
    spend draws on live points only: it is refused when only expired points would cover it."""
    programme = PROGRAMMES["fast"]  # no return window, points expire after 3 months
    run = Run(programme, datetime(2026, 1, 10, tzinfo=UTC))
    run.step(Pay(20_000, ()))
    run.step(Jump(timedelta(days=60)))
    run.step(Pay(5_000, ()))
    run.step(Jump(timedelta(days=40)))  # the first order's points expired 10 days ago
    old, new = run.state.lots
    assert old.expires_at is not None and old.expires_at < run.clock < new.expires_at  # type: ignore[operator]

    def take(points: int) -> Outcome:
        if how == "spend":
            return engine.spend(
                programme, run.state, points=points, reason="t", actor="t", at=run.clock,
                source_type="spend", source_ref=None,
            )  # fmt: skip
        return engine.adjust(
            programme, run.state, points=-points, reason="t", actor="t", at=run.clock
        )

    outcome = take(new.remaining)
    assert [(e.entry_type, e.points) for e in outcome.entries] == [
        ("expire", -old.remaining),
        ("redeem" if how == "spend" else "adjust", -new.remaining),
    ]
    assert outcome.state.figures.points_available == 0
    assert outcome.state.figures.points_expired == old.remaining
    with pytest.raises(LealtaError) as refused:
        take(new.remaining + 1)
    assert refused.value.code == "insufficient_points"
