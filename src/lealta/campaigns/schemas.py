"""API shapes of campaigns, previews, recipients."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from lealta.campaigns.schema import Campaign


class CampaignOut(BaseModel):
    id: str
    source: Literal["programme", "api"]
    status: Literal["scheduled", "running", "paused", "cancelled", "completed"]
    definition: Campaign
    audience_size: int | None
    launched_at: datetime | None
    finished_at: datetime | None
    launch_requested: bool = Field(description="Asked to launch now; the job draws the audience.")
    counts: dict[str, int] = Field(default_factory=dict, description="Recipients by status.")
    arms: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="Experiment arm → recipients by status."
    )
    created_at: datetime
    updated_at: datetime


class CampaignList(BaseModel):
    items: list[CampaignOut]


class PreviewOut(BaseModel):
    count: int = Field(description="Members the campaign would reach now.")
    arms: dict[str, int] = Field(description="The audience split by experiment arm.")
    sample: list[str] = Field(description="Up to 10 customer ids of the audience.")


class RecipientOut(BaseModel):
    customer_id: str
    arm: str
    status: str
    reason: str | None
    assigned_at: datetime
    reached_at: datetime | None
    message_id: int | None
    opened_at: datetime | None
    clicked_at: datetime | None
    coupon_code: str | None


class RecipientPage(BaseModel):
    items: list[RecipientOut]
    next_cursor: str | None
