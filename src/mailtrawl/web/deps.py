"""What every API request needs: a database session, and who is calling.

A caller is identified by an API token (`Authorization: Bearer mtk_...`) or by the dashboard's
session cookie. Cookie-authenticated requests that change something must also carry the
session's CSRF token (header `X-CSRF-Token`, or form field `csrf_token`); bearer requests need
none, since browsers never attach that header on their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from mailtrawl.accounts.models import Role
from mailtrawl.accounts.service import note_token_use, resolve_token, token_use_is_stale
from mailtrawl.accounts.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    csrf_matches,
    resolve_session,
    session_expires_at,
    touch_is_due,
    touch_session,
)
from mailtrawl.audit.service import Actor
from mailtrawl.config import Settings
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session
from mailtrawl.storage.secrets import SecretBox
from mailtrawl.tasks.queue import JobRunner

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_REFUSED = "CSRF token missing or wrong"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


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
    if request.method in SAFE_METHODS:
        with ctx.sessions.begin() as session:
            yield session
    else:
        with write_session(ctx.sessions) as session:
            yield session


@dataclass(frozen=True)
class Caller:
    """Who is calling: a signed-in user (`via="session"`) or an API token (`via="token"`).

    `username` is the user's name; for a token that belongs to no user, the token's name.
    `role` is what the caller may do now (a user's token never exceeds the user's role).
    """

    username: str
    role: Role
    via: Literal["token", "session"] = "token"
    user_id: uuid.UUID | None = None
    # The session's CSRF token (sessions only), for pages to embed in their forms.
    csrf_token: str | None = None
    session_id: uuid.UUID | None = None
    token_id: uuid.UUID | None = None
    # When the session ends unless used again (sessions only).
    expires_at: datetime | None = None

    @property
    def token_name(self) -> str:
        """The name the audit log and the journals know the caller by (former field name)."""
        return self.username


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _token_caller(ctx: AppContext, token: str) -> Caller:
    with ctx.sessions() as session:
        identity = resolve_token(session, token=token)
        if identity is None:
            raise _unauthorized("The API token is unknown, expired or revoked.")
        record = identity.record
        who = Caller(
            username=identity.name,
            role=identity.role,
            via="token",
            user_id=identity.owner.id if identity.owner is not None else None,
            token_id=record.id,
        )
        stale = token_use_is_stale(record)
    if stale:
        with write_session(ctx.sessions) as session:
            note_token_use(session, token_id=record.id)
    return who


def _session_caller(ctx: AppContext, cookie: str) -> tuple[Caller, bool]:
    """The caller of a session cookie, and whether its last use should be recorded."""
    moment = utcnow()
    with ctx.sessions() as session:
        record = resolve_session(session, cookie, settings=ctx.settings, now=moment, touch=False)
        if record is None:
            raise _unauthorized("Your session has ended; sign in again.")
        who = Caller(
            username=record.user.username,
            role=Role(record.user.role),
            via="session",
            user_id=record.user_id,
            csrf_token=record.csrf_token,
            session_id=record.id,
            expires_at=session_expires_at(record, ctx.settings),
        )
        return who, touch_is_due(record, now=moment)


def _touch(ctx: AppContext, session_id: uuid.UUID) -> None:
    with write_session(ctx.sessions) as session:
        touch_session(session, session_id)


async def _presented_csrf(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith(_FORM_TYPES):
        # Starlette caches the parsed form, so a handler with Form fields still gets it.
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def caller(request: Request, ctx: Annotated[AppContext, Depends(context)]) -> Caller:
    """Who is calling: a bearer API token, else the session cookie; 401 when neither is live.

    Cookie-authenticated requests other than GET, HEAD and OPTIONS need the session's CSRF
    token, or are refused with 403.
    """
    token = _bearer(request)
    if token is not None:
        return await run_in_threadpool(_token_caller, ctx, token)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise _unauthorized(
            "Sign in first, or send an API token: 'Authorization: Bearer <token>' "
            "(create one with `mailtrawl tokens create`)."
        )
    who, touch_due = await run_in_threadpool(_session_caller, ctx, cookie)
    if request.method not in SAFE_METHODS and (
        who.csrf_token is None or not csrf_matches(who.csrf_token, await _presented_csrf(request))
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, CSRF_REFUSED)
    if touch_due and who.session_id is not None:
        await run_in_threadpool(_touch, ctx, who.session_id)
    return who


def require(role: Role) -> Any:
    """A dependency that admits callers with at least `role`."""

    def check(who: Annotated[Caller, Depends(caller)]) -> Caller:
        if not who.role.at_least(role):
            holder = "the token has" if who.via == "token" else "you have"
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"This needs the {role.value} role; {holder} {who.role.value}.",
            )
        return who

    return Depends(check)


def actor_of(request: Request, who: Caller) -> Actor:
    """Who and where, as services that write the audit log take it."""
    return Actor(
        name=who.username,
        role=who.role.value,
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


def audit_fields(request: Request, who: Caller) -> dict[str, Any]:
    """Who and where, for `audit.service.record(session, **audit_fields(request, who), ...)`."""
    return actor_of(request, who).audit_fields()
