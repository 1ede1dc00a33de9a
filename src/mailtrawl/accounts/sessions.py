"""Dashboard sign-in sessions: the cookie, its server-side record, and its CSRF token.

The cookie holds 256 random bits; the database keeps only their SHA-256, so a copy of the
database signs no one in. Each session has its own CSRF token, which the page sends back with
every state-changing request (header `X-CSRF-Token`, or form field `csrf_token`).

A session ends at `expires_at` (`session_max_hours` after sign-in), after
`session_idle_minutes` without a request, when revoked (sign-out, password change), or when
its user is disabled.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from mailtrawl.accounts.errors import LoginRefused
from mailtrawl.accounts.models import User, WebSession
from mailtrawl.storage.base import utcnow

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from mailtrawl.config import Settings

SESSION_COOKIE = "mailtrawl_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/"
# `last_seen_at` is refreshed at most this often, so most requests do not write.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# Longer values are not ours: refuse them before hashing.
MAX_COOKIE_LENGTH = 128

__all__ = [
    "COOKIE_PATH",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "clear_session_cookie",
    "cookie_is_secure",
    "csrf_matches",
    "end_session",
    "end_user_sessions",
    "resolve_session",
    "session_expires_at",
    "set_session_cookie",
    "start_session",
    "touch_is_due",
    "touch_session",
]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _idle(settings: Settings) -> timedelta:
    return timedelta(minutes=settings.session_idle_minutes)


def start_session(
    session: Session,
    user: User,
    *,
    source_ip: str | None,
    user_agent: str | None,
    settings: Settings,
    now: datetime | None = None,
) -> tuple[str, WebSession]:
    """Open a session for `user` (who has just signed in); returns the cookie value and record.

    The cookie value exists only in the return value and in the browser.
    """
    if not user.is_active:
        raise LoginRefused()
    moment = now or utcnow()
    # Dead sessions are kept for nothing: sweep them while we are writing anyway.
    session.execute(
        delete(WebSession).where(
            or_(
                WebSession.expires_at <= moment,
                WebSession.last_seen_at <= moment - _idle(settings),
                WebSession.revoked_at.is_not(None),
            )
        )
    )
    value = secrets.token_urlsafe(32)
    record = WebSession(
        token_hash=_digest(value),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=moment,
        last_seen_at=moment,
        expires_at=moment + timedelta(hours=settings.session_max_hours),
        source_ip=source_ip[:45] if source_ip else None,
        user_agent=user_agent[:512] if user_agent else None,
    )
    session.add(record)
    session.flush()
    return value, record


def session_expires_at(record: WebSession, settings: Settings) -> datetime:
    """When the session ends unless used again: the sooner of idle and absolute expiry."""
    return min(record.expires_at, record.last_seen_at + _idle(settings))


def resolve_session(
    session: Session,
    token: str | None,
    *,
    settings: Settings,
    now: datetime | None = None,
    touch: bool = True,
) -> WebSession | None:
    """The live session for a cookie value, or None (unknown, expired, idle, revoked, or its
    user disabled).

    With `touch`, records the use in `last_seen_at` (at most once a minute); callers that
    read in a read-only transaction pass `touch=False` and call `touch_session` later.
    """
    if not token or len(token) > MAX_COOKIE_LENGTH:
        return None
    digest = _digest(token)
    record = session.scalar(select(WebSession).where(WebSession.token_hash == digest))
    if record is None or not hmac.compare_digest(record.token_hash, digest):
        return None
    moment = now or utcnow()
    if (
        record.revoked_at is not None
        or moment >= record.expires_at
        or moment >= record.last_seen_at + _idle(settings)
        or not record.user.is_active
    ):
        return None
    if touch and touch_is_due(record, now=moment):
        touch_session(session, record.id, now=moment)
        record.last_seen_at = moment
    return record


def touch_is_due(record: WebSession, *, now: datetime | None = None) -> bool:
    """Whether `last_seen_at` is more than a minute old."""
    return record.last_seen_at < (now or utcnow()) - LAST_SEEN_RESOLUTION


def touch_session(session: Session, session_id: uuid.UUID, *, now: datetime | None = None) -> None:
    """Record a use of the session, unless one was recorded within the last minute."""
    moment = now or utcnow()
    session.execute(
        update(WebSession)
        .where(WebSession.id == session_id, WebSession.last_seen_at < moment - LAST_SEEN_RESOLUTION)
        .values(last_seen_at=moment)
        .execution_options(synchronize_session=False)
    )


def end_session(session: Session, token: str | None) -> WebSession | None:
    """Revoke the session of a cookie value (sign-out); returns it, or None if unknown."""
    if not token or len(token) > MAX_COOKIE_LENGTH:
        return None
    record = session.scalar(select(WebSession).where(WebSession.token_hash == _digest(token)))
    if record is not None and record.revoked_at is None:
        record.revoked_at = utcnow()
        session.flush()
    return record


def end_user_sessions(
    session: Session, user_id: uuid.UUID, *, keep: uuid.UUID | None = None
) -> int:
    """Revoke every live session of a user, except `keep`; returns how many."""
    statement = update(WebSession).where(
        WebSession.user_id == user_id, WebSession.revoked_at.is_(None)
    )
    if keep is not None:
        statement = statement.where(WebSession.id != keep)
    result = session.execute(
        statement.values(revoked_at=utcnow()).execution_options(synchronize_session="fetch")
    )
    return int(getattr(result, "rowcount", 0) or 0)


def csrf_matches(expected: WebSession | str, presented: str | None) -> bool:
    """Whether `presented` is the session's CSRF token (compared in constant time)."""
    token = expected.csrf_token if isinstance(expected, WebSession) else expected
    if not presented or not token:
        return False
    return hmac.compare_digest(token.encode(), presented.encode())


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookie_is_secure(settings: Settings, request: Request | None = None) -> bool:
    """The cookie's Secure flag: the setting when set; otherwise on, except for plain http
    to a loopback address (where browsers would drop a Secure cookie)."""
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    if request is None:
        return True
    return not (request.url.scheme == "http" and _is_loopback(request.url.hostname))


def set_session_cookie(
    response: Response, value: str, settings: Settings, request: Request | None = None
) -> None:
    """Set the session cookie: HttpOnly, SameSite=Strict, Path=/, Secure (see
    `cookie_is_secure`; pass `request` so plain http on 127.0.0.1 works), and kept by the
    browser no longer than the session's absolute lifetime."""
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=settings.session_max_hours * 3600,
        path=COOKIE_PATH,
        secure=cookie_is_secure(settings, request),
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(
    response: Response, settings: Settings | None = None, request: Request | None = None
) -> None:
    """Tell the browser to drop the session cookie."""
    secure = cookie_is_secure(settings, request) if settings is not None else False
    response.delete_cookie(
        SESSION_COOKIE, path=COOKIE_PATH, secure=secure, httponly=True, samesite="strict"
    )
