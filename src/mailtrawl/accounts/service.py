"""API tokens: create (shown once), verify, list, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailtrawl.accounts.models import ApiToken, Role
from mailtrawl.errors import NotFound
from mailtrawl.storage.base import utcnow

TOKEN_PREFIX = "mtk_"  # noqa: S105 - a label, not a secret


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the only time the plain token exists outside the client
    record: ApiToken


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session, *, name: str, role: Role = Role.ADMIN, expires_in: timedelta | None = None
) -> IssuedToken:
    """Create a token; the caller shows `token` once, we keep only its hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        name=name,
        token_sha256=_digest(token),
        prefix=token[: len(TOKEN_PREFIX) + 6],
        role=role.value,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(record)
    session.flush()
    return IssuedToken(token, record)


# `last_used_at` is refreshed at most this often, so most API calls do not write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def verify_token(session: Session, *, token: str, now: datetime | None = None) -> ApiToken | None:
    """The live token record for a presented bearer token, or None (reads only)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(token)
    record = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest))
    # Compare digests in constant time even though the lookup already matched.
    if record is None or not hmac.compare_digest(record.token_sha256, digest):
        return None
    moment = now or utcnow()
    if record.revoked_at is not None or (
        record.expires_at is not None and record.expires_at <= moment
    ):
        return None
    return record


def note_token_use(session: Session, *, token_id: uuid.UUID, now: datetime | None = None) -> None:
    """Record that a token was used, unless that was recorded within the last minute."""
    moment = now or utcnow()
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            (ApiToken.last_used_at.is_(None))
            | (ApiToken.last_used_at < moment - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=moment)
    )


def token_use_is_stale(record: ApiToken, now: datetime | None = None) -> bool:
    moment = now or utcnow()
    return record.last_used_at is None or record.last_used_at < moment - LAST_USED_RESOLUTION


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at)))


def revoke_token(session: Session, *, token_id: uuid.UUID) -> ApiToken:
    record = session.get(ApiToken, token_id)
    if record is None:
        raise NotFound(f"No API token with id {token_id}.")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    return record
