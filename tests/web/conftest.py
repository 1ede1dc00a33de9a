"""Dashboard tests without a browser: the real application on SQLite, signed in for real."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailtrawl.accounts.models import Role
from mailtrawl.accounts.service import create_user
from mailtrawl.config import Settings, load_settings
from mailtrawl.web.app import create_app
from tests.storage import databases

mailtrawl_env = databases.mailtrawl_env

PASSWORD = "correct horse battery staple"
# Loopback, so the session cookie is not Secure-only over plain http (as in `mailtrawl serve`).
BASE_URL = "http://127.0.0.1"


@pytest.fixture
def settings(mailtrawl_env: Path, tmp_path: Path) -> Settings:
    return load_settings(home=mailtrawl_env, database_url=f"sqlite:///{tmp_path / 'mailtrawl.db'}")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, worker=False)
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as test_client:
        yield test_client
    app.state.ctx.sessions.kw["bind"].dispose()


def add_user(client: TestClient, username: str, role: Role) -> str:
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        create_user(session, username=username, password=PASSWORD, role=role)
    return username


def login_nonce(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the sign-in form has no CSRF field"
    return found.group(1)


def sign_in(
    client: TestClient, username: str, password: str = PASSWORD, next_path: str = "/"
) -> str:
    """Sign in through the form; returns the session's CSRF token (from the page's meta tag)."""
    form = client.get("/login")
    assert form.status_code == 200
    answer = client.post(
        "/login",
        data={
            "username": username,
            "password": password,
            "csrf_token": login_nonce(form.text),
            "next": next_path,
        },
    )
    assert answer.status_code == 303, answer.text
    page = client.get(answer.headers["location"])
    assert page.status_code == 200, page.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found
    return found.group(1)


@pytest.fixture
def admin(client: TestClient) -> str:
    """Signed in as an administrator; the session's CSRF token."""
    return sign_in(client, add_user(client, "ada", Role.ADMIN))


@pytest.fixture
def viewer(client: TestClient) -> str:
    return sign_in(client, add_user(client, "vic", Role.VIEWER))
