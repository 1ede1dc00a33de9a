"""API tokens: create (shown once), verify, list, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
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


def verify_token(session: Session, *, token: str, now: datetime | None = None) -> ApiToken | None:
    """The live token record for a presented bearer token, or None."""
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
    record.last_used_at = moment
    return record


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at)))


def revoke_token(session: Session, *, token_id: uuid.UUID) -> ApiToken:
    record = session.get(ApiToken, token_id)
    if record is None:
        raise NotFound(f"No API token with id {token_id}.")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    return record
