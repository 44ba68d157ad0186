from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

CHANNELS = ("email", "sms", "push", "inapp")
"""Where a message can go: e-mail over SMTP, SMS and push through the HTTP provider, and the
in-app inbox of the cockpit."""

MESSAGE_STATUSES = ("queued", "delayed", "sent", "failed", "capped", "no_consent")
"""``queued``: waiting for its ``notify.send`` job; ``delayed``: held until quiet hours end;
``sent``: handed to the provider (or put in the inbox); ``failed``: the provider refused it
for good; ``capped``: dropped by the frequency cap; ``no_consent``: the member had not agreed
to that channel when it was due."""


class NotificationTemplate(Base):
    """A message template edited by the programme's team: one row per key, channel and
    language. Keys without a row fall back to the templates shipped with Lealta."""

    __tablename__ = "notification_templates"
    __table_args__ = (
        UniqueConstraint("key", "channel", "language", name="uq_notification_templates_variant"),
        CheckConstraint(
            "channel IN ('email', 'sms', 'push', 'inapp')", name="ck_notification_templates_channel"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    subject: Mapped[str] = mapped_column(String(300), default="")
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Message(Base):
    """One message to one member on one channel, from queueing to its outcome (the log).

    ``effect_key`` is unique: the same send asked twice (a retried job, a replayed request)
    is one message. Messages of channel ``inapp`` are the cockpit inbox (``read_at``)."""

    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'delayed', 'sent', 'failed', 'capped', 'no_consent')",
            name="ck_messages_status",
        ),
        CheckConstraint("channel IN ('email', 'sms', 'push', 'inapp')", name="ck_messages_channel"),
        # The member's messages newest first; the frequency cap counts sent ones per channel.
        Index("ix_messages_member_id", "member_id", "id"),
        Index("ix_messages_member_channel_sent", "member_id", "channel", "sent_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    template_key: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    effect_key: Mapped[str] = mapped_column(String(200), unique=True)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    subject: Mapped[str | None] = mapped_column(String(300))
    body_text: Mapped[str | None] = mapped_column(Text)
    recipient: Mapped[str | None] = mapped_column(String(320))
    provider_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    due_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
