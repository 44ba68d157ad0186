"""Request and response bodies of the notifications API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Channel = Literal["email", "sms", "push", "inapp"]
Language = Literal["es", "en"]
MessageStatus = Literal["queued", "delayed", "sent", "failed", "capped", "no_consent"]
TemplateKey = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", min_length=1, max_length=64)
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateIn(_In):
    """One variant of a template: channel and language, and its parts (Jinja2, sandboxed)."""

    channel: Channel
    language: Language
    subject: Annotated[str, Field(max_length=300)] = ""
    body_text: Annotated[str, Field(min_length=1, max_length=50_000)]
    body_html: Annotated[str | None, Field(max_length=100_000)] = None


class TemplateOut(BaseModel):
    """``builtin``: shipped with Lealta (saving a variant replaces it)."""

    key: str
    channel: Channel
    language: Language
    subject: str
    body_text: str
    body_html: str | None
    builtin: bool
    updated_at: datetime | None


class TemplateList(BaseModel):
    items: list[TemplateOut]


class PreviewIn(_In):
    """Extra placeholders for the preview (``points``, ``coupon``, ``reward``…)."""

    context: dict[str, Any] = Field(default_factory=dict)


class PreviewOut(BaseModel):
    key: str
    channel: Channel
    language: Language
    customer_id: str
    subject: str
    body_text: str
    body_html: str | None


class MessageIn(_In):
    """Send template ``template`` now on ``channel``; ``context`` adds placeholders."""

    template: TemplateKey
    channel: Channel = "email"
    context: dict[str, Any] = Field(default_factory=dict)


class MessageOut(BaseModel):
    id: int
    customer_id: str
    template: str
    channel: Channel
    language: Language
    status: MessageStatus
    subject: str | None
    body_text: str | None
    provider_id: str | None
    error: str | None
    created_at: datetime
    due_at: datetime
    sent_at: datetime | None
    read_at: datetime | None


class MessagePage(BaseModel):
    items: list[MessageOut]


class InboxOut(BaseModel):
    unread: int
    items: list[MessageOut]


class ReadOut(BaseModel):
    marked: int
    unread: int
