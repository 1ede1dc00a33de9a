"""What every API request needs: a database session, and who is calling (API token)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.accounts.models import Role
from mailtrawl.accounts.service import note_token_use, token_use_is_stale, verify_token
from mailtrawl.config import Settings
from mailtrawl.storage.engine import write_session
from mailtrawl.storage.secrets import SecretBox
from mailtrawl.tasks.queue import JobRunner


@dataclass
class AppContext:
    settings: Settings
    sessions: sessionmaker[Session]
    box: SecretBox
    # The job runner of this process, when it runs one (`mailtrawl serve` does by default).
    runner: JobRunner | None = None


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def db_session(request: Request, ctx: Annotated[AppContext, Depends(context)]) -> Iterator[Session]:
    """One transaction per request: committed when the handler returns, rolled back if it raises.

    Requests that change something take the write lock up front (SQLite would otherwise
    refuse a transaction that read before a worker's write and then writes itself).
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        with ctx.sessions.begin() as session:
            yield session
    else:
        with write_session(ctx.sessions) as session:
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
    with ctx.sessions() as session:
        record = verify_token(session, token=token.strip())
        if record is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "The API token is unknown, expired or revoked.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        who = Caller(record.name, Role(record.role))
        stale = token_use_is_stale(record)
    if stale:
        with write_session(ctx.sessions) as session:
            note_token_use(session, token_id=record.id)
    return who


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


def audit_fields(request: Request, who: Caller) -> dict[str, Any]:
    """Who and where, for `audit.service.record(session, **audit_fields(request, who), ...)`."""
    return {
        "actor": who.token_name,
        "role": who.role.value,
        "source_ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
    }
