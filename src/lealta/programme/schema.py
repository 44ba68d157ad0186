"""The programme document, validated by Pydantic.

This is the foundation's slice of it (currency, base earning rate, rounding); tiers, rules,
rewards and expiry extend the same document.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lealta.kit.money import normalise_currency
from lealta.ledger.maths import Rounding


class Earning(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    points_per_unit: Annotated[Decimal, Field(ge=0, le=10_000)] = Decimal(1)
    rounding: Rounding = "down"


class Programme(BaseModel):
    """The whole programme; ``extra="forbid"`` so a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    currency: str = "EUR"
    earning: Earning = Earning()

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalise_currency(value)


DEFAULT_PROGRAMME = Programme(name="Lealta", currency="EUR")
