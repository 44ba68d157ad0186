"""Campaign state and recipients (who was reached, in which experiment arm, with what result)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base, JSONType
from lealta.models._types import BigId

CAMPAIGN_STATUSES = ("scheduled", "running", "paused", "cancelled", "completed")
RECIPIENT_STATUSES = (
    "pending", "sent", "held_out", "suppressed", "no_consent", "capped", "failed", "cancelled",
)  # fmt: skip


class CampaignState(Base):
    """One campaign and its life. ``source`` is ``programme`` for a campaign shipped in the
    programme document (mirrored here, read-only over the API) or ``api`` for one made over
    the API or in the console; ``definition`` is the validated
    :class:`lealta.campaigns.schema.Campaign` as JSON. The campaign is ``scheduled`` until
    ``starts_at``, then ``running`` (its audience drawn once into :class:`CampaignRecipient`,
    sent throttled), ``paused``/``cancelled`` from the console or API, ``completed`` when
    every recipient is processed. ``programme_version``: the version being sent."""

    __tablename__ = "campaign_states"
    __table_args__ = (
        CheckConstraint(
            "status IN ('scheduled', 'running', 'paused', 'cancelled', 'completed')",
            name="ck_campaign_states_status",
        ),
        CheckConstraint("source IN ('programme', 'api')", name="ck_campaign_states_source"),
    )

    campaign_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    programme_version: Mapped[int | None] = mapped_column(Integer)
    audience_size: Mapped[int | None] = mapped_column(Integer)
    launched_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class CampaignRecipient(Base):
    """One member of a campaign's audience: the arm they were assigned (``holdout`` gets
    nothing; ``control`` when there is no experiment), what happened (``status``), when they
    were reached (``reached_at``: the start of the conversion window, also for the holdout,
    who are "reached" at the same moment without content), and, where known, the message
    sent and when it was opened and clicked. One row per (campaign, member)."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'sent', 'held_out', 'suppressed', 'no_consent', 'capped',"
            " 'failed', 'cancelled')",
            name="ck_campaign_recipients_status",
        ),
        Index("uq_campaign_recipients_member", "campaign_id", "member_id", unique=True),
        Index("ix_campaign_recipients_pending", "campaign_id", "status", "id"),
        Index("ix_campaign_recipients_member", "member_id"),
        Index(
            "ix_campaign_recipients_boost",
            "member_id",
            sqlite_where=text("boost_until IS NOT NULL"),
            postgresql_where=text("boost_until IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("members.id", ondelete="CASCADE"))
    arm: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(200))
    assigned_at: Mapped[datetime]
    reached_at: Mapped[datetime | None]
    message_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("messages.id", ondelete="SET NULL")
    )
    opened_at: Mapped[datetime | None]
    clicked_at: Mapped[datetime | None]
    # The campaign's temporary earning multiplier for this member (the exact decimal as
    # text), in force from ``reached_at`` until ``boost_until``; read with the member's state.
    boost_factor: Mapped[str | None] = mapped_column(String(16))
    boost_until: Mapped[datetime | None]
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
