"""The ``campaigns`` section of the programme document.

A campaign is an audience (a segment, minus excluded segments), a time window, the channels
it may use, and content written as workflow steps (a message, a points bonus, a coupon…),
plus optionally a temporary earning ``multiplier`` for the members it reaches and an
``experiment`` (variants and a holdout, :mod:`lealta.experiments`). It is sent throttled
from ``starts_at``; a member in several running campaigns gets the one with the highest
``priority`` (the larger number).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from lealta.experiments.schema import Experiment
from lealta.programme.types import Model, Name, Slug, Text
from lealta.workflows.schema import Step

CampaignChannel = Literal["email", "sms", "push", "inapp"]


class Multiplier(Model):
    """Earning multiplier for the reached members: ``factor`` on base points of paid orders
    for ``days`` after being reached (never past the campaign's end, when it has one)."""

    factor: Annotated[Decimal, Field(gt=1, le=10)]
    days: Annotated[int, Field(ge=1, le=365)] = 7


class Throttle(Model):
    """How fast the campaign goes out."""

    per_minute: Annotated[int, Field(ge=1, le=100_000)] = 1000


class Campaign(Model):
    """One campaign."""

    id: Slug
    name: Name
    description: Text | None = None
    enabled: bool = True
    segment: Slug | None = Field(
        default=None, description="Audience: members of this segment (none = every member)."
    )
    exclude_segments: list[Slug] = Field(default_factory=list, max_length=20)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    priority: Annotated[int, Field(ge=0, le=1000)] = 100
    channels: list[CampaignChannel] = Field(
        default=["email"],
        min_length=1,
        max_length=4,
        description="Channels a message of this campaign may use, in order of preference.",
    )
    steps: list[Step] = Field(default_factory=list, max_length=50)
    multiplier: Multiplier | None = None
    throttle: Throttle = Throttle()
    experiment: Experiment | None = None

    @model_validator(mode="after")
    def _window(self) -> Campaign:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must be after starts_at")
        if (
            not self.steps
            and self.multiplier is None
            and (self.experiment is None or not any(v.steps for v in self.experiment.variants))
        ):
            raise ValueError("steps: a campaign needs content (steps, multiplier or variants)")
        return self


ONE_SHOT_REFUSED = {
    "wait": "a campaign is sent once: a wait belongs in a workflow",
    "branch": "a campaign is sent once: use segments or an experiment instead of a branch",
    "stop": "a campaign is sent once: 'stop' has nothing to stop",
}
"""Step types that make no sense in a one-shot send, with the reason given."""


def content_of(campaign: Campaign) -> list[tuple[str, list[Any]]]:
    """Every list of steps of the campaign with its path: its own, then each variant's."""
    found: list[tuple[str, list[Any]]] = [("steps", list(campaign.steps))]
    if campaign.experiment is not None:
        for v, variant in enumerate(campaign.experiment.variants):
            if variant.steps is not None:
                found.append((f"experiment.variants.{v}.steps", list(variant.steps)))
    return found


def check_one(
    campaign: Campaign, programme: Any, base: str, *, segments: set[str] | None = None
) -> None:
    """Cross-references of one campaign against ``programme`` (and ``segments``: the known
    segment keys, default the programme's), as ValueError with exact paths."""
    from lealta.workflows.schema import SendMessage, check_references

    known = segments if segments is not None else {s.id for s in programme.segments}
    if campaign.segment is not None and campaign.segment not in known:
        raise ValueError(f"{base}.segment: unknown segment '{campaign.segment}'")
    for i, key in enumerate(campaign.exclude_segments):
        if key not in known:
            raise ValueError(f"{base}.exclude_segments.{i}: unknown segment '{key}'")
    if campaign.segment is not None and campaign.segment in campaign.exclude_segments:
        raise ValueError(f"{base}.exclude_segments: excludes the campaign's own segment")
    rewards = {r.id: r for r in programme.rewards}
    for prefix, steps in content_of(campaign):
        for s, step in enumerate(steps):
            where = f"{base}.{prefix}.{s}"
            kind = getattr(step, "type", "")
            if kind in ONE_SHOT_REFUSED:
                raise ValueError(f"{where}.type: {ONE_SHOT_REFUSED[kind]}")
            check_references(step, where, rewards)
            if isinstance(step, SendMessage):
                if step.channel != "best" and step.channel not in campaign.channels:
                    raise ValueError(
                        f"{where}.channel: '{step.channel}' is not one of the campaign's channels"
                    )
                if step.survey is not None:
                    raise ValueError(f"{where}.survey: survey links are for workflows")


def check(programme: Any) -> None:
    """Cross-references of the section, as ValueError with exact paths: unique ids, known
    segments, rewards and templates, and only steps that make sense in a one-shot send."""
    seen: set[str] = set()
    for c, campaign in enumerate(programme.campaigns):
        if campaign.id in seen:
            raise ValueError(f"campaigns.{c}.id: duplicate id '{campaign.id}'")
        seen.add(campaign.id)
        check_one(campaign, programme, f"campaigns.{c}")
