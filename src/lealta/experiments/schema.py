"""The ``experiment`` block of a campaign: variants with weights, a holdout and a conversion.

A member of the campaign's audience is assigned deterministically (:mod:`lealta.experiments.assign`)
to the holdout (who gets nothing, the baseline of the lift) or to one variant (who gets that
variant's steps, or the campaign's when the variant has none).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from lealta.programme.types import EventType, Model, Name, Slug
from lealta.workflows.schema import Step

HOLDOUT = "holdout"
CONTROL = "control"


class Variant(Model):
    """One arm that receives content."""

    id: Slug
    name: Name | None = None
    weight: Annotated[int, Field(ge=1, le=10_000)] = 1
    steps: list[Step] | None = Field(
        default=None,
        description="Workflow steps for this arm (message, points, coupon…);"
        " none = the campaign's own steps.",
    )


class Conversion(Model):
    """What counts as converting: an event of ``event`` within ``days`` of being reached."""

    event: EventType = "order.paid"
    days: Annotated[int, Field(ge=1, le=365)] = 14


class Experiment(Model):
    """Variants plus a holdout group; ``holdout_percent`` of the audience receives nothing."""

    holdout_percent: Annotated[int, Field(ge=0, le=90)] = 10
    variants: list[Variant] = Field(
        default_factory=lambda: [Variant(id=CONTROL)], min_length=1, max_length=10
    )
    conversion: Conversion = Conversion()
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95

    @model_validator(mode="after")
    def _ids(self) -> Experiment:
        seen: set[str] = set()
        for i, variant in enumerate(self.variants):
            if variant.id == HOLDOUT:
                raise ValueError(f"variants.{i}.id: '{HOLDOUT}' is reserved for the holdout")
            if variant.id in seen:
                raise ValueError(f"variants.{i}.id: duplicate id '{variant.id}'")
            seen.add(variant.id)
        return self
