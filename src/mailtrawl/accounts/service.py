"""Accounts: users (argon2id passwords, roles), sign-in with throttling, and API tokens.

Every function works in the caller's transaction and flushes; none commits. A refused sign-in
records the failure in that transaction *before* raising: commit it anyway, or the throttle
never sees the failure.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mailtrawl.accounts.errors import (
    AccountError,
    LastAdmin,
    LoginRefused,
    LoginThrottled,
    PasswordRejected,
    RoleTooHigh,
    UserExists,
    UsernameRejected,
    UserNotFound,
    WrongPassword,
)
from mailtrawl.accounts.models import ApiToken, LoginAttempt, Role, User
from mailtrawl.accounts.sessions import end_user_sessions
from mailtrawl.errors import NotFound
from mailtrawl.storage.base import utcnow

__all__ = [
    "LOGIN_WINDOW",
    "MAX_FAILURES_PER_IP",
    "MAX_FAILURES_PER_USERNAME",
    "MIN_PASSWORD_LENGTH",
    "TOKEN_PREFIX",
    "AccountError",
    "IssuedToken",
    "LastAdmin",
    "LoginRefused",
    "LoginThrottled",
    "PasswordRejected",
    "RoleTooHigh",
    "TokenIdentity",
    "UserExists",
    "UserNotFound",
    "UsernameRejected",
    "WrongPassword",
    "active_admin_count",
    "authenticate",
    "change_password",
    "check_password_policy",
    "create_token",
    "create_user",
    "find_user",
    "get_user",
    "hash_password",
    "list_tokens",
    "list_users",
    "normalize_username",
    "note_token_use",
    "resolve_token",
    "revoke_token",
    "set_active",
    "set_password",
    "set_role",
    "token_use_is_stale",
    "update_user",
    "verify_token",
]

# Users ----------------------------------------------------------------------------------------

MIN_PASSWORD_LENGTH = 12
# Bounds the work of hashing whatever a client posts.
MAX_PASSWORD_LENGTH = 1024
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")

# argon2id with argon2-cffi's defaults (RFC 9106's low-memory profile: t=3, 64 MiB, p=4).
_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    # Verified against when the user is unknown, so that takes as long as a wrong password.
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string, `$argon2id$...`) of `password`."""
    return _hasher.hash(password)


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def normalize_username(raw: str) -> str:
    """The stored form of a username: trimmed and lower-cased; raises `UsernameRejected`."""
    name = raw.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise UsernameRejected()
    return name


def check_password_policy(password: str, *, username: str) -> None:
    """Raise `PasswordRejected` unless `password` is acceptable for `username`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(
            f"The password is too short: use at least {MIN_PASSWORD_LENGTH} characters "
            "(a passphrase of a few words is easiest)."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(
            f"The password is too long: use at most {MAX_PASSWORD_LENGTH} characters."
        )
    if not password.strip():
        raise PasswordRejected("The password cannot be only spaces.")
    if password.strip().lower() == username.strip().lower():
        raise PasswordRejected("The password cannot be the username.")


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role | str,
    display_name: str = "",
) -> User:
    """Add a user; raises `UsernameRejected`, `PasswordRejected` or `UserExists`."""
    name = normalize_username(username)
    check_password_policy(password, username=name)
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise UserExists(username=name)
    user = User(
        username=name,
        display_name=display_name.strip()[:200],
        role=Role(role).value,
        password_hash=hash_password(password),
        is_active=True,
        password_changed_at=utcnow(),
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, user_id: uuid.UUID) -> User:
    """The user with this id; raises `UserNotFound`."""
    user = session.get(User, user_id)
    if user is None:
        raise UserNotFound(f"No user with id {user_id}.")
    return user


def find_user(session: Session, ref: str) -> User:
    """The user named `ref` (any case), or with id `ref`; raises `UserNotFound`."""
    user = session.scalar(select(User).where(User.username == ref.strip().lower()))
    if user is None:
        try:
            user = session.get(User, uuid.UUID(ref))
        except ValueError:
            user = None
    if user is None:
        raise UserNotFound(f"No user named '{ref}'; `mailtrawl users list` shows them.")
    return user


def list_users(session: Session) -> list[User]:
    """Every user, by username."""
    return list(session.scalars(select(User).order_by(User.username)))


def active_admin_count(session: Session) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN.value, User.is_active.is_(True))
        )
        or 0
    )


def _guard_last_admin(session: Session, user: User) -> None:
    """Refuse when `user` is the only active administrator."""
    if user.role != Role.ADMIN.value or not user.is_active:
        return
    # Lock the administrators' rows (PostgreSQL) so two demotions cannot both pass.
    admins = session.scalars(
        select(User.id)
        .where(User.role == Role.ADMIN.value, User.is_active.is_(True))
        .with_for_update()
    ).all()
    if len(admins) <= 1:
        raise LastAdmin()


def set_role(session: Session, *, user_id: uuid.UUID, role: Role | str) -> User:
    """Change a user's role; the last active administrator cannot be demoted."""
    user = get_user(session, user_id)
    new = Role(role)
    if new != Role.ADMIN:
        _guard_last_admin(session, user)
    user.role = new.value
    session.flush()
    return user


def set_active(session: Session, *, user_id: uuid.UUID, active: bool) -> User:
    """Enable or disable a user; disabling ends their sessions (their tokens stop working)."""
    user = get_user(session, user_id)
    if not active:
        _guard_last_admin(session, user)
        end_user_sessions(session, user.id)
    user.is_active = active
    session.flush()
    return user


def update_user(
    session: Session,
    *,
    user_id: uuid.UUID,
    role: Role | str | None = None,
    active: bool | None = None,
    display_name: str | None = None,
) -> User:
    """Apply the given changes (None leaves a field as it is)."""
    user = get_user(session, user_id)
    if display_name is not None:
        user.display_name = display_name.strip()[:200]
    if role is not None:
        set_role(session, user_id=user_id, role=role)
    if active is not None:
        set_active(session, user_id=user_id, active=active)
    session.flush()
    return user


def set_password(session: Session, *, user_id: uuid.UUID, new: str) -> User:
    """Set a password without the current one (an administrator's reset); ends every session."""
    user = get_user(session, user_id)
    check_password_policy(new, username=user.username)
    user.password_hash = hash_password(new)
    user.password_changed_at = utcnow()
    end_user_sessions(session, user.id)
    session.flush()
    return user


def change_password(
    session: Session,
    *,
    user_id: uuid.UUID,
    current: str,
    new: str,
    source_ip: str | None = None,
    keep_session_id: uuid.UUID | None = None,
) -> User:
    """Change one's own password, proving the current one; ends the user's other sessions.

    A wrong `current` counts as a failed sign-in (so a stolen session cannot guess the
    password faster than the sign-in form); raises `WrongPassword`, `LoginThrottled` or
    `PasswordRejected`.
    """
    user = get_user(session, user_id)
    moment = utcnow()
    ip = _ip(source_ip)
    _check_throttle(session, username=user.username, source_ip=ip, now=moment)
    if not _password_matches(user.password_hash, current):
        _record_failure(session, username=user.username, source_ip=ip, now=moment)
        raise WrongPassword()
    check_password_policy(new, username=user.username)
    if hmac.compare_digest(new.encode(), current.encode()):
        raise PasswordRejected("The new password is the current one; pick another.")
    user.password_hash = hash_password(new)
    user.password_changed_at = moment
    end_user_sessions(session, user.id, keep=keep_session_id)
    session.flush()
    return user


# Signing in -----------------------------------------------------------------------------------

LOGIN_WINDOW = timedelta(minutes=15)
# Failures within the window: for one username from one address, and from one address.
MAX_FAILURES_PER_USERNAME = 5
MAX_FAILURES_PER_IP = 20


def _ip(source_ip: str | None) -> str:
    return (source_ip or "unknown")[:45]


def _attempt_name(username: str) -> str:
    return username.strip().lower()[:64]


def _retry_after(times: list[datetime], limit: int, now: datetime) -> float | None:
    """Seconds until fewer than `limit` of the failures at `times` are in the window."""
    if len(times) < limit:
        return None
    times.sort()
    # The failure whose expiry brings the count below the limit.
    return (times[len(times) - limit] + LOGIN_WINDOW - now).total_seconds()


def _check_throttle(session: Session, *, username: str, source_ip: str, now: datetime) -> None:
    since = now - LOGIN_WINDOW
    by_ip = list(
        session.scalars(
            select(LoginAttempt.at).where(
                LoginAttempt.source_ip == source_ip, LoginAttempt.at > since
            )
        )
    )
    waits = [
        _retry_after(by_ip, MAX_FAILURES_PER_IP, now),
        _retry_after(
            list(
                session.scalars(
                    select(LoginAttempt.at).where(
                        LoginAttempt.source_ip == source_ip,
                        LoginAttempt.username == _attempt_name(username),
                        LoginAttempt.at > since,
                    )
                )
            ),
            MAX_FAILURES_PER_USERNAME,
            now,
        ),
    ]
    longest = max((w for w in waits if w is not None), default=None)
    if longest is not None:
        raise LoginThrottled(longest)


def _record_failure(session: Session, *, username: str, source_ip: str, now: datetime) -> None:
    session.add(LoginAttempt(at=now, username=_attempt_name(username), source_ip=source_ip))
    session.flush()


def authenticate(
    session: Session,
    *,
    username: str,
    password: str,
    source_ip: str | None,
    now: datetime | None = None,
) -> User:
    """The active user whose password this is; raises `LoginRefused` or `LoginThrottled`.

    Refusals take as long for an unknown user as for a wrong password, and say the same.
    After `MAX_FAILURES_PER_USERNAME` failures for one username from one address, or
    `MAX_FAILURES_PER_IP` from one address, within `LOGIN_WINDOW`, attempts are refused
    unchecked until enough failures age out. A success clears the username's failures.
    """
    moment = now or utcnow()
    ip = _ip(source_ip)
    # Failures older than the window count for nothing: forget them.
    session.execute(delete(LoginAttempt).where(LoginAttempt.at <= moment - LOGIN_WINDOW))
    _check_throttle(session, username=username, source_ip=ip, now=moment)
    try:
        name = normalize_username(username)
    except UsernameRejected:
        name = None
    user = session.scalar(select(User).where(User.username == name)) if name is not None else None
    if user is None or len(password) > MAX_PASSWORD_LENGTH:
        _password_matches(_dummy_hash(), password[:MAX_PASSWORD_LENGTH])
        ok = False
    else:
        ok = _password_matches(user.password_hash, password)
    if user is None or not ok or not user.is_active:
        _record_failure(session, username=username, source_ip=ip, now=moment)
        raise LoginRefused()
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == user.username))
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = moment
    session.flush()
    return user


# API tokens -----------------------------------------------------------------------------------

TOKEN_PREFIX = "mtk_"  # noqa: S105 - a label, not a secret


@dataclass(frozen=True)
class IssuedToken:
    token: str  # the only time the plain token exists outside the client
    record: ApiToken


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    name: str,
    role: Role = Role.ADMIN,
    expires_in: timedelta | None = None,
    owner: User | None = None,
) -> IssuedToken:
    """Create a token; the caller shows `token` once, we keep only its hash.

    With `owner`, the token belongs to that user and its role cannot exceed theirs.
    """
    if owner is not None and not Role(owner.role).at_least(role):
        raise RoleTooHigh(
            f"A token of {owner.username} (role {owner.role}) cannot have the {role.value} role."
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        name=name,
        token_sha256=_digest(token),
        prefix=token[: len(TOKEN_PREFIX) + 6],
        role=role.value,
        expires_at=utcnow() + expires_in if expires_in else None,
        user_id=owner.id if owner is not None else None,
    )
    session.add(record)
    session.flush()
    return IssuedToken(token, record)


# `last_used_at` is refreshed at most this often, so most API calls do not write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def verify_token(session: Session, *, token: str, now: datetime | None = None) -> ApiToken | None:
    """The live token record for a presented bearer token, or None (reads only).

    A token whose owner is disabled is not live.
    """
    identity = resolve_token(session, token=token, now=now)
    return identity.record if identity is not None else None


@dataclass(frozen=True)
class TokenIdentity:
    """Who a live token acts as: its owner's name and the lower of the two roles, if owned."""

    record: ApiToken
    owner: User | None
    role: Role

    @property
    def name(self) -> str:
        return self.owner.username if self.owner is not None else self.record.name


def resolve_token(
    session: Session, *, token: str, now: datetime | None = None
) -> TokenIdentity | None:
    """The identity behind a presented bearer token, or None when it is not live (reads only)."""
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
    role = Role(record.role)
    owner = None
    if record.user_id is not None:
        owner = session.get(User, record.user_id)
        if owner is None or not owner.is_active:
            return None
        owner_role = Role(owner.role)
        role = role if owner_role.at_least(role) else owner_role
    return TokenIdentity(record=record, owner=owner, role=role)


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
