"""The pure part of workflows: steps compiled to a flat program, conditions, waits, channels.

No session, no clock. A workflow's nested steps become a list of :class:`Instr`; a run keeps
its position (``pc``) in that list. A ``branch`` is an instruction that jumps to its ``else``
block when its condition is false, and its ``then`` block ends with a jump past the ``else``
block. Jumps only go forward, so a run always ends, and a position is never executed twice
in one run (which is what makes "one effect per (run, position)" hold).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lealta.rules.cel import Expression, compile_expression
from lealta.workflows.schema import Branch, Wait, Workflow

CONSENT_ORDER = (("email", "marketing_email"), ("sms", "marketing_sms"), ("push", "marketing_push"))
"""The channels ``best`` tries, in order, with the consent each needs."""


@dataclass(frozen=True, slots=True)
class Instr:
    """One position of a compiled workflow: a step (``jump`` is the else-block of a branch)
    or a bare jump (``step`` None)."""

    path: str
    step: Any
    jump: int | None = None

    @property
    def kind(self) -> str:
        return "jump" if self.step is None else str(self.step.type)


def compile_steps(steps: Sequence[Any], prefix: str = "steps") -> list[Instr]:
    """The flat program of ``steps`` (see the module docstring)."""
    out: list[Instr] = []

    def emit(block: Sequence[Any], where: str) -> None:
        for i, step in enumerate(block):
            path = f"{where}.{i}"
            if isinstance(step, Branch):
                at = len(out)
                out.append(Instr(path, step))
                emit(step.then, f"{path}.then")
                jump_at = len(out)
                out.append(Instr(f"{path}.then.end", None))
                else_start = len(out)
                emit(step.otherwise, f"{path}.else")
                out[at] = Instr(path, step, jump=else_start)
                out[jump_at] = Instr(f"{path}.then.end", None, jump=len(out))
            else:
                out.append(Instr(path, step))

    emit(steps, prefix)
    return out


@lru_cache(maxsize=512)
def expression(source: str) -> Expression:
    """A compiled CEL expression, kept (sources were checked when the programme was applied)."""
    return compile_expression(source)


def test(source: str, env: Mapping[str, Any]) -> bool:
    """Whether a condition holds; an error at run time (a missing field) counts as false."""
    return expression(source).test(env)


def time_env(now: datetime, timezone: str) -> dict[str, Any]:
    """The ``time`` variable, as earning rules see it, in the member's timezone."""
    try:
        zone: Any = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    local = now.astimezone(zone)
    return {
        "weekday": local.weekday(),
        "hour": local.hour,
        "day": local.day,
        "month": local.month,
        "year": local.year,
        "date": local.date().isoformat(),
        "timestamp": now.astimezone(UTC),
    }


def env(
    *,
    member: Mapping[str, Any],
    trigger: Mapping[str, Any],
    run: Mapping[str, Any],
    now: datetime,
    timezone: str,
) -> dict[str, Any]:
    """What workflow conditions see: ``member``, ``trigger`` (the payload and its ``type``),
    ``run`` (``waited``, ``coupon``…) and ``time``."""
    return {
        "member": dict(member),
        "trigger": dict(trigger),
        "run": dict(run),
        "time": time_env(now, timezone),
    }


def should_start(workflow: Workflow, environment: Mapping[str, Any]) -> bool:
    """The trigger's filter and the workflow's condition, both true (or absent)."""
    trigger = workflow.trigger
    flt = getattr(trigger, "filter", None)
    if flt is not None and not test(flt, environment):
        return False
    return workflow.condition is None or test(workflow.condition, environment)


def wait_until(step: Wait, now: datetime) -> datetime:
    """When a wait ends by itself (its moment, its duration, or an event wait's timeout)."""
    if step.until is not None:
        return step.until.astimezone(UTC)
    assert step.duration is not None
    return now + step.duration.delta()


def best_channel(consents: Mapping[str, bool]) -> str:
    """The first of e-mail, SMS and push the member consented to; else the in-app inbox
    (which needs no consent: the member reads it signed in)."""
    for channel, purpose in CONSENT_ORDER:
        if consents.get(purpose):
            return channel
    return "inapp"


def matches(kind: str, run_vars: Mapping[str, Any], payload: Mapping[str, Any]) -> bool:
    """Whether an event ``payload`` is the one a wait or goal of kind ``kind`` listens for:
    any event of the member (``member``), or one about the run's coupon (``coupon``)."""
    if kind == "member":
        return True
    coupon = run_vars.get("coupon") or {}
    code = coupon.get("code") if isinstance(coupon, Mapping) else None
    return code is not None and code in (payload.get("code"), payload.get("coupon_code"))
