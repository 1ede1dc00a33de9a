"""Tables for who may use mailtrawl: user accounts, their sign-in sessions, API tokens, and
the failed sign-ins that throttle password guessing."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, func, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailtrawl.storage.base import Base, Timestamps, UTCDateTime, UUIDPrimaryKey, utcnow


class Role(enum.StrEnum):
    """What a user or token may do: viewer reads, analyst also acts, admin does everything."""

    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self]

    def at_least(self, other: Role) -> bool:
        """Whether this role may do what `other` may."""
        return ROLE_RANK[self] >= ROLE_RANK[other]


ROLE_RANK: dict[Role, int] = {Role.VIEWER: 0, Role.ANALYST: 1, Role.ADMIN: 2}
_ROLE_CHECK = "role IN ('admin', 'analyst', 'viewer')"


class User(UUIDPrimaryKey, Timestamps, Base):
    """A person who signs in to the dashboard. The username is stored lower-cased (unique
    whatever the case typed); the password only as an argon2id hash."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint(_ROLE_CHECK, name="role"),)

    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="", server_default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"User(id={self.id!s}, username={self.username!r}, role={self.role!r})"


class WebSession(UUIDPrimaryKey, Base):
    """One signed-in browser. Only the SHA-256 of the cookie value is stored.

    It ends at `expires_at` (absolute), after `session_idle_minutes` without a request
    (`last_seen_at`), when revoked (sign-out, password change), or when its user is disabled.
    """

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_user", "user_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Sent back by the page with every state-changing request (header or form field).
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.now(), nullable=False
    )
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source_ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)

    def __repr__(self) -> str:
        return f"WebSession(id={self.id!s}, user_id={self.user_id!s})"


class LoginAttempt(UUIDPrimaryKey, Base):
    """A failed sign-in, kept for the throttling window only (in the database, so every
    worker process counts the same failures)."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username", "username", "at"),
        Index("ix_login_attempts_source_ip", "source_ip", "at"),
        Index("ix_login_attempts_at", "at"),
    )

    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # As typed, lower-cased and cut to the column's size: unknown names count too.
    username: Mapped[str] = mapped_column(String(64))
    source_ip: Mapped[str] = mapped_column(String(45))


class ApiToken(UUIDPrimaryKey, Timestamps, Base):
    """A bearer token for the REST API. Only its SHA-256 is stored; the token is shown once.

    A token created by a signed-in user belongs to that user (`user_id`): it stops working
    when the user is disabled, and never acts with more than the user's current role.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint(_ROLE_CHECK, name="role"),)

    name: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, so people can tell their tokens apart in listings.
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16), default=Role.ADMIN.value)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!s}, name={self.name!r}, prefix={self.prefix!r})"
