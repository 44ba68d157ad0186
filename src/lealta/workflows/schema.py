"""The ``workflows`` section of the programme document.

A workflow is a trigger (a domain event, or a time-based trigger found set-wise by
:mod:`lealta.workflows.finders`), an optional CEL ``condition`` and a list of ``steps``. Steps
are a discriminated union on ``type``; ``branch`` nests two step lists. A run executes the
steps of the programme version it started on (see :mod:`lealta.workflows.runs`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from lealta.programme.types import Cel, EventType, Model, Name, Slug, Text
from lealta.workflows.triggers import TimeTrigger

CHANNELS = ("email", "sms", "push", "inapp", "best")
CUSTOM_TEMPLATE_PREFIX = "custom_"


class EventTrigger(Model):
    """Start a run when a domain event of type ``event`` happens to a member."""

    kind: Literal["event"] = "event"
    event: EventType = Field(description="order.paid, tier.changed, coupon.used, a custom type…")
    filter: Cel | None = Field(
        default=None, description="CEL over ``trigger`` (the event payload); true = start."
    )


Trigger = Annotated[EventTrigger | TimeTrigger, Field(discriminator="kind")]


class Duration(Model):
    """A span of days, hours and minutes (all default 0)."""

    days: Annotated[int, Field(ge=0, le=3650)] = 0
    hours: Annotated[int, Field(ge=0, le=10_000)] = 0
    minutes: Annotated[int, Field(ge=0, le=100_000)] = 0

    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes)


class AwardPoints(Model):
    type: Literal["award_points"]
    points: Annotated[int, Field(ge=1, le=10_000_000)]
    reason: Text = "workflow"


class DeductPoints(Model):
    type: Literal["deduct_points"]
    points: Annotated[int, Field(ge=1, le=10_000_000)]
    reason: Text = "workflow"


class IssueCoupon(Model):
    type: Literal["issue_coupon"]
    reward: Slug = Field(description="A coupon (or free shipping) reward of the programme.")


class IssueReward(Model):
    type: Literal["issue_reward"]
    reward: Slug = Field(description="Any reward: a coupon is issued, others are announced.")


class SendMessage(Model):
    type: Literal["send_message"]
    template: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,99}$")]
    channel: Literal["email", "sms", "push", "inapp", "best"] = Field(
        default="best", description="best: the first of email, sms, push the member consented to."
    )
    survey: Slug | None = Field(default=None, description="Adds a signed link, ``survey_url``.")


class CallWebhook(Model):
    type: Literal["call_webhook"]
    event: EventType = Field(
        description="Topic sent to the configured webhook endpoints (e.g. workflow.vip_call)."
    )


class Tag(Model):
    type: Literal["tag"]
    tag: Slug


class Untag(Model):
    type: Literal["untag"]
    tag: Slug


class SetAttribute(Model):
    type: Literal["set_attribute"]
    name: Slug
    value: str | int | float | bool | None


class WaitEvent(Model):
    """Wait until ``event`` happens to the member (``match: coupon``: for the run's coupon)."""

    event: EventType
    match: Literal["member", "coupon"] = "member"


class Wait(Model):
    """Wait ``for`` a duration, ``until`` a moment, or ``until_event`` (``for`` is then the
    timeout). Afterwards ``run.waited`` is true when the awaited event arrived."""

    type: Literal["wait"]
    duration: Duration | None = Field(default=None, alias="for")
    until: AwareDatetime | None = None
    until_event: WaitEvent | None = None

    model_config = Model.model_config | {"populate_by_name": True}

    @model_validator(mode="after")
    def _one_way(self) -> Wait:
        if self.until is not None and (self.duration or self.until_event):
            raise ValueError("a wait has 'until', or 'for' (with an optional 'until_event')")
        if self.until is None and self.duration is None:
            raise ValueError("a wait needs 'for' or 'until' (an event wait needs a timeout)")
        if self.duration is not None and self.duration.delta() <= timedelta(0):
            raise ValueError("'for' must be longer than zero")
        return self


class Stop(Model):
    type: Literal["stop"]


class Branch(Model):
    type: Literal["branch"]
    condition: Cel = Field(alias="if")
    then: list[Step] = Field(default_factory=list, max_length=50)
    otherwise: list[Step] = Field(default_factory=list, alias="else", max_length=50)

    model_config = Model.model_config | {"populate_by_name": True}


Step = Annotated[
    AwardPoints
    | DeductPoints
    | IssueCoupon
    | IssueReward
    | SendMessage
    | CallWebhook
    | Tag
    | Untag
    | SetAttribute
    | Wait
    | Branch
    | Stop,
    Field(discriminator="type"),
]

Branch.model_rebuild()


class Reentry(Model):
    allowed: bool = Field(
        default=False, description="Several runs of one member at once (else one at a time)."
    )
    cooldown: Duration | None = Field(
        default=None, description="No new run this long after the member's last start."
    )


class Goal(Model):
    """An event that ends a run early as a conversion (``coupon.used``, ``order.paid``)."""

    event: EventType
    match: Literal["member", "coupon"] = "member"


class Workflow(Model):
    """One workflow: a trigger, optional conditions and steps."""

    id: Slug
    name: Name
    enabled: bool = True
    trigger: Trigger
    condition: Cel | None = Field(
        default=None, description="CEL over member, trigger and time; false = no run."
    )
    steps: list[Step] = Field(min_length=1, max_length=100)
    reentry: Reentry = Reentry()
    goal: Goal | None = None
    exit_on_consent_withdrawal: bool = Field(
        default=True, description="A marketing message without consent ends the run."
    )


def walk(steps: list[Any], prefix: str = "steps") -> list[tuple[str, Any]]:
    """Every step with its path (``steps.2.then.0``), depth first, in order."""
    found: list[tuple[str, Any]] = []
    for i, step in enumerate(steps):
        path = f"{prefix}.{i}"
        found.append((path, step))
        if isinstance(step, Branch):
            found.extend(walk(step.then, f"{path}.then"))
            found.extend(walk(step.otherwise, f"{path}.else"))
    return found


def _cel_error(source: str) -> str | None:
    from lealta.rules.cel import CelCompileError, compile_expression

    try:
        compile_expression(source)
    except CelCompileError as exc:
        return str(exc)
    return None


def check_references(step: Any, where: str, rewards: dict[str, Any]) -> None:
    """A step's rewards and template exist (workflows and campaigns); ValueError at ``where``."""
    from lealta.notify.defaults import KEYS

    if isinstance(step, IssueCoupon):
        reward = rewards.get(step.reward)
        if reward is None:
            raise ValueError(f"{where}.reward: unknown reward '{step.reward}'")
        if reward.coupon is None and reward.type != "free_shipping":
            raise ValueError(f"{where}.reward: reward '{step.reward}' is not a coupon")
    elif isinstance(step, IssueReward) and step.reward not in rewards:
        raise ValueError(f"{where}.reward: unknown reward '{step.reward}'")
    elif isinstance(step, SendMessage) and (
        step.template not in KEYS and not step.template.startswith(CUSTOM_TEMPLATE_PREFIX)
    ):
        raise ValueError(
            f"{where}.template: unknown template '{step.template}' (shipped:"
            f" {', '.join(KEYS)}; your own keys start with '{CUSTOM_TEMPLATE_PREFIX}')"
        )


def check(programme: Any) -> None:
    """Cross-references of the section (rewards, templates), as ValueError with exact paths."""

    rewards = {r.id: r for r in programme.rewards}
    seen: set[str] = set()
    for w, workflow in enumerate(programme.workflows):
        base = f"workflows.{w}"
        if workflow.id in seen:
            raise ValueError(f"{base}.id: duplicate id '{workflow.id}'")
        seen.add(workflow.id)
        if workflow.condition is not None and (err := _cel_error(workflow.condition)):
            raise ValueError(f"{base}.condition: {err}")
        trigger = workflow.trigger
        if (
            isinstance(trigger, EventTrigger)
            and trigger.filter
            and (err := _cel_error(trigger.filter))
        ):
            raise ValueError(f"{base}.trigger.filter: {err}")
        for path, step in walk(workflow.steps):
            where = f"{base}.{path}"
            check_references(step, where, rewards)
            if isinstance(step, Branch) and (err := _cel_error(step.condition)):
                raise ValueError(f"{where}.if: {err}")
