"""Real users, sessions and tokens in a running application's database, for API tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi.testclient import TestClient

from mailtrawl.accounts import service, sessions
from mailtrawl.accounts.models import Role, User
from mailtrawl.web.deps import AppContext

PASSWORD = "correct horse battery"


def ctx_of(client: TestClient) -> AppContext:
    ctx: AppContext = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


@dataclass(frozen=True)
class SignedIn:
    """A browser's session: the cookie value and the CSRF token it was given."""

    user_id: uuid.UUID
    cookie: str
    csrf: str

    def headers(self, *, csrf: bool = True) -> dict[str, str]:
        out = {"Cookie": f"{sessions.SESSION_COOKIE}={self.cookie}"}
        if csrf:
            out[sessions.CSRF_HEADER] = self.csrf
        return out


def make_user(client: TestClient, username: str, role: Role, password: str = PASSWORD) -> uuid.UUID:
    with ctx_of(client).sessions.begin() as session:
        return service.create_user(session, username=username, password=password, role=role).id


def open_session(client: TestClient, user_id: uuid.UUID) -> SignedIn:
    """A session as the sign-in would open it (without spending an argon2 check)."""
    ctx = ctx_of(client)
    with ctx.sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        value, record = sessions.start_session(
            session, user, source_ip="testclient", user_agent="pytest", settings=ctx.settings
        )
        return SignedIn(user_id, value, record.csrf_token)


def make_token(
    client: TestClient, role: Role, *, name: str | None = None, owner: uuid.UUID | None = None
) -> str:
    with ctx_of(client).sessions.begin() as session:
        user = session.get(User, owner) if owner is not None else None
        return service.create_token(
            session, name=name or f"{role.value} token", role=role, owner=user
        ).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
