"""What every API request needs: a database session, and who is calling (API token)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.accounts.models import Role
from mailtrawl.accounts.service import verify_token
from mailtrawl.config import Settings
from mailtrawl.storage.secrets import SecretBox


@dataclass
class AppContext:
    settings: Settings
    sessions: sessionmaker[Session]
    box: SecretBox


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def db_session(ctx: Annotated[AppContext, Depends(context)]) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back if it raises."""
    with ctx.sessions.begin() as session:
        yield session


@dataclass(frozen=True)
class Caller:
    token_name: str
    role: Role


_RANK = {Role.VIEWER: 0, Role.ANALYST: 1, Role.ADMIN: 2}


def caller(request: Request, ctx: Annotated[AppContext, Depends(context)]) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "An API token is required: send 'Authorization: Bearer <token>' (create one with `mailtrawl tokens create`).",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with ctx.sessions.begin() as session:
        record = verify_token(session, token=token.strip())
        if record is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "The API token is unknown, expired or revoked.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Caller(record.name, Role(record.role))


def require(role: Role) -> Any:
    """A dependency that admits callers with at least `role`."""

    def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if _RANK[who.role] < _RANK[role]:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"This needs the {role.value} role; the token has {who.role.value}.",
            )
        return who

    return Depends(check)
