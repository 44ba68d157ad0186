from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from lealta.kit.ids import ExternalId
from lealta.kit.storable import check_storable

Language = Literal["es", "en"]
ConsentPurpose = Literal["marketing_email", "marketing_sms", "marketing_push", "data_processing"]
AttributeValue = str | int | float | bool | None
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class MemberFields(BaseModel):
    """Profile fields the shop may set; all optional so the same model serves updates."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()-]{5,32}$")] | None = None
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    birthday: date | None = None
    language: Language | None = None
    timezone: (
        Annotated[
            str,
            Field(
                description="An IANA time zone, e.g. Europe/Madrid.",
                json_schema_extra=lambda schema: schema.update(enum=sorted(_zones())),
            ),
        ]
        | None
    ) = None
    attributes: dict[Annotated[str, StringConstraints(max_length=64)], AttributeValue] | None = (
        Field(default=None, max_length=100)
    )
    tags: list[Tag] | None = Field(default=None, max_length=100)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None and value not in _zones():
            raise ValueError(f"'{value}' is not an IANA time zone")
        return value

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = available_timezones()
    return _ZONES


_ZONES: set[str] | None = None


class MemberCreate(MemberFields):
    external_id: ExternalId
    enrolment_channel: Annotated[str, StringConstraints(max_length=32)] = "api"
    consents: list[ConsentIn] = Field(default_factory=list, max_length=10)
    referral_code: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)] | None
    ) = Field(default=None, description="The code of the member who referred this customer.")


class MemberUpdate(MemberFields):
    pass


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: ConsentPurpose
    granted: bool
    source: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "api"

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_storable(data)


class ConsentOut(BaseModel):
    purpose: str
    granted: bool
    source: str
    recorded_at: datetime


class MemberOut(BaseModel):
    external_id: str
    email: str | None
    phone: str | None
    name: str | None
    birthday: date | None
    language: str
    timezone: str
    attributes: dict[str, Any]
    tags: list[str]
    enrolled_at: datetime
    enrolment_channel: str
    consents: list[ConsentOut]
    created_at: datetime
    updated_at: datetime


class NextExpiry(BaseModel):
    at: datetime
    points: int


class BalanceOut(BaseModel):
    external_id: str
    available: int = Field(description="Points the member can spend now.")
    pending: int = Field(description="Earned points not yet spendable (return window).")
    lifetime_earned: int = Field(description="Net points ever earned (reversals deducted).")
    lifetime_spent: int
    expired: int
    shortfall: int = Field(description="Points a refund could not take back (already spent).")
    qualifying_spend: str = Field(description="Net spend counted toward tiers, as a decimal.")
    currency: str
    tier: str | None = Field(default=None, description="Tier id held now, if tiered.")
    expiring_soon: int = Field(
        default=0, description="Points that expire within the programme's warning window."
    )
    next_expiry: NextExpiry | None = Field(
        default=None, description="The soonest expiry date and how many points it takes."
    )


class MemberListItem(BaseModel):
    """One member of the list: the profile fields a list shows and the account's figures."""

    external_id: str
    name: str | None
    email: str | None
    phone: str | None
    tier: str | None = Field(description="Tier id held now (the lowest when none recorded).")
    tags: list[str]
    attributes: dict[str, Any]
    points_available: int
    points_pending: int
    lifetime_earned: int
    orders_count: int
    last_order_at: datetime | None
    enrolled_at: datetime


class MemberPage(BaseModel):
    items: list[MemberListItem]
    next_cursor: str | None = Field(
        description="Pass back as `cursor` (with the same filters and sort) for the next page;"
        " null on the last page."
    )
