"""API shapes of paid plans."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from lealta.plans.schema import Plan
from lealta.programme.types import Slug


class PlanList(BaseModel):
    currency: str
    items: list[Plan]


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan: Slug = Field(description="Id of a plan of the programme.")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_period_end: bool = Field(
        default=True,
        description="Keep the benefits until the paid (or trial) period ends; false: now.",
    )


class SubscriptionOut(BaseModel):
    id: int
    plan: str
    status: str
    fee: Decimal
    currency: str
    period: str
    started_at: datetime
    trial_ends_at: datetime | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    benefits_until: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    checkout_url: str | None = Field(
        description="Where the member pays (while the subscription is incomplete)."
    )


class MemberPlanOut(BaseModel):
    customer_id: str
    current: SubscriptionOut | None
    history: list[SubscriptionOut]


class WebhookAck(BaseModel):
    received: bool
    outcome: str = Field(description="applied, duplicate or ignored.")
