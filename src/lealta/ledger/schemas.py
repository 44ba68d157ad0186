from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from lealta.kit.storable import check_storable

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]
MAX_POINTS = 1_000_000_000


class AdjustmentIn(BaseModel):
    """A manual correction; the reason is mandatory and audited."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"points": 250, "reason": "Goodwill: late delivery"}]},
    )

    points: Annotated[int, Field(ge=-MAX_POINTS, le=MAX_POINTS)] = Field(
        description="Signed: positive credits, negative debits (never below zero)."
    )
    reason: Reason
    occurred_at: AwareDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)


class SpendIn(BaseModel):
    """Spend points directly ("pay with points" at checkout)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"points": 500, "reason": "Paid with points", "order_id": "ORD-7"}]
        },
    )

    points: Annotated[int, Field(ge=1, le=MAX_POINTS)]
    reason: Reason = "Points spent"
    order_id: Annotated[str, StringConstraints(max_length=128)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)


class EntryOut(BaseModel):
    id: int
    entry_type: str
    points: int
    balance_after: int
    shortfall: int
    reason: str
    source_type: str
    source_ref: str | None
    rule_id: str | None
    actor: str
    occurred_at: datetime
    recorded_at: datetime


class EntryPage(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None


class WriteResult(BaseModel):
    entry: EntryOut
    balance: dict[str, Any]
