from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base
from lealta.models._types import BigId


class MemberLoginToken(Base):
    """One request for a cockpit sign-in link, and the single-use link when one was sent.

    Every request is a row, whether or not a member has that email, so the rate limits count
    unknown addresses exactly like known ones (no hint that an account exists). Only requests
    for a member's email carry a token, stored as its SHA-256: the link itself is never kept.
    ``used_at`` is set by a conditional ``UPDATE … WHERE used_at IS NULL AND expires_at > now``
    so a link signs in once however many times it is submitted.
    """

    __tablename__ = "member_login_tokens"
    __table_args__ = (
        Index("ix_member_login_tokens_email_time", "email_hash", "created_at"),
        Index("ix_member_login_tokens_ip_time", "client_ip", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    email_hash: Mapped[str] = mapped_column(String(64))
    client_ip: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
