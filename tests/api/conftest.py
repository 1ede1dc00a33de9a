"""API tests run against the real application on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailtrawl.accounts.models import Role
from mailtrawl.accounts.service import create_token
from mailtrawl.config import Settings
from mailtrawl.web.app import create_app
from tests.storage import databases

postgres_database = databases.postgres_database
database_url = databases.database_url
settings = databases.settings
mailtrawl_env = databases.mailtrawl_env


@pytest.fixture(autouse=True)
def _isolated_env(mailtrawl_env: Path) -> Path:
    return mailtrawl_env


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as client:
        yield client
    app.state.ctx.sessions.kw["bind"].dispose()


def _token(api: TestClient, role: Role) -> str:
    with api.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        return create_token(session, name=f"{role.value} test", role=role).token


@pytest.fixture
def admin(api: TestClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(api, Role.ADMIN)}"}


@pytest.fixture
def viewer(api: TestClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(api, Role.VIEWER)}"}
