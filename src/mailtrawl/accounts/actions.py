"""Account changes, each written to the audit log here.

The API, the dashboard and the CLI call these, so an operation is recorded the same way
whichever asked for it. Each runs in the caller's transaction; the caller commits.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session

from mailtrawl.accounts import service
from mailtrawl.accounts.errors import WrongPassword
from mailtrawl.accounts.models import ApiToken, Role, User
from mailtrawl.accounts.schemas import TokenView, UserView
from mailtrawl.audit import service as audit
from mailtrawl.audit.service import Actor


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role | str,
    display_name: str,
    actor: Actor,
) -> User:
    """A local account (`user.create`); raises the service's refusals."""
    user = service.create_user(
        session, username=username, password=password, role=role, display_name=display_name
    )
    audit.record(
        session,
        **actor.audit_fields(),
        operation="user.create",
        entity_type="user",
        entity_id=str(user.id),
        after=UserView.of(user).model_dump(mode="json"),
    )
    return user


def change_password(
    session: Session,
    *,
    user_id: uuid.UUID,
    current: str,
    new: str,
    keep_session_id: uuid.UUID | None,
    actor: Actor,
) -> User:
    """A user's own password (`auth.password_change`).

    A wrong current password is audited as refused before WrongPassword is raised; the
    caller commits it (the failed attempt counts towards throttling).
    """
    try:
        user = service.change_password(
            session,
            user_id=user_id,
            current=current,
            new=new,
            source_ip=actor.source_ip,
            keep_session_id=keep_session_id,
        )
    except WrongPassword:
        audit.record(
            session,
            **actor.audit_fields(),
            operation="auth.password_change",
            entity_type="user",
            entity_id=str(user_id),
            outcome="refused: wrong current password",
        )
        raise
    audit.record(
        session,
        **actor.audit_fields(),
        operation="auth.password_change",
        entity_type="user",
        entity_id=str(user_id),
    )
    return user


def create_token(
    session: Session,
    *,
    name: str,
    role: Role,
    expires_in: timedelta | None,
    actor: Actor,
    owner: User | None = None,
) -> service.IssuedToken:
    """An API token (`token.create`; the token itself is never logged)."""
    issued = service.create_token(session, name=name, role=role, expires_in=expires_in, owner=owner)
    view = TokenView.of(issued.record, owner.username if owner is not None else None)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="token.create",
        entity_type="api_token",
        entity_id=str(issued.record.id),
        after=view.model_dump(mode="json"),
    )
    return issued


def revoke_token(session: Session, *, token_id: uuid.UUID, actor: Actor) -> ApiToken:
    """Revoke an API token at once (`token.revoke`); raises NotFound."""
    record = service.revoke_token(session, token_id=token_id)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="token.revoke",
        entity_type="api_token",
        entity_id=str(record.id),
        after={"name": record.name, "revoked_at": record.revoked_at},
    )
    return record
