"""What the accounts API accepts and returns. Passwords go in, never out."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mailtrawl.accounts.models import ApiToken, Role, User

RoleName = Literal["admin", "analyst", "viewer"]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=4096)


class SessionView(BaseModel):
    """The signed-in user and the session: what the dashboard needs after signing in."""

    username: str
    display_name: str = ""
    role: RoleName
    # Send it back in the X-CSRF-Token header (or csrf_token form field) of every write.
    csrf_token: str | None
    # When the session ends unless used again (the sooner of idle and absolute expiry).
    expires_at: datetime | None


class MeView(SessionView):
    user_id: uuid.UUID | None
    via: Literal["token", "session"]


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current: str = Field(min_length=1, max_length=4096)
    new: str = Field(min_length=1, max_length=4096)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=4096)
    role: RoleName = "viewer"
    display_name: str = Field(default="", max_length=200)


class UserUpdate(BaseModel):
    """Fields to change; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    role: RoleName | None = None
    active: bool | None = None
    display_name: str | None = Field(default=None, max_length=200)


class UserView(BaseModel):
    id: uuid.UUID
    username: str
    display_name: str
    role: RoleName
    active: bool
    created_at: datetime
    last_login_at: datetime | None
    password_changed_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserView:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            role=Role(user.role).value,
            active=user.is_active,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
            password_changed_at=user.password_changed_at,
        )


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: RoleName = "viewer"
    expires_days: int | None = Field(default=None, ge=1, le=3650)


class TokenView(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    role: RoleName
    owner: str | None  # the username of the user it belongs to
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, record: ApiToken, owner: str | None) -> TokenView:
        return cls(
            id=record.id,
            name=record.name,
            prefix=record.prefix,
            role=Role(record.role).value,
            owner=owner,
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
        )


class TokenIssued(TokenView):
    # The only time the token is shown: it is stored hashed.
    token: str
