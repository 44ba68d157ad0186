from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from lealta.kit.db import Base
from lealta.models._types import BigId

ROLES = ("admin", "marketer", "support", "read_only")


class AdminUser(Base):
    """A person who signs in to the admin console. Passwords are argon2 hashes."""

    __tablename__ = "admin_users"
    __table_args__ = (
        CheckConstraint(
            "role IN ('admin', 'marketer', 'support', 'read_only')", name="ck_admin_users_role"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    failed_attempts: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]
    # Signed session cookies carry the generation they were issued under; raising it (sign
    # out, new password, new role, disabled) ends every session of the user at once.
    session_generation: Mapped[int] = mapped_column(default=0, server_default="0")
