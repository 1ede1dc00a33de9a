"""Database fixtures shared by the storage and CLI tests: every test runs on SQLite and PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (trust auth, user postgres). Each test session
(each xdist worker) creates its own uniquely named database and drops it at the end; each
test starts from an empty `public` schema. When the server is unreachable the PostgreSQL
half is skipped locally and fails in CI (CI=true), where a skip would hide a missing server.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine, select

from mailtrawl.config import Settings, load_settings
from mailtrawl.storage.engine import make_engine, make_session_factory
from mailtrawl.storage.models import CREDENTIAL_PURPOSE, CredentialKind, MailConfiguration
from mailtrawl.storage.secrets import SecretBox, credential_hint

POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
BACKENDS = ["sqlite", "postgresql"]


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI: the rule for a PostgreSQL server that cannot be reached."""
    message = (
        f"PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth) is unreachable: {reason}. "
        "Start it to run the PostgreSQL half of the storage tests."
    )
    if os.environ.get("CI") == "true":
        pytest.fail(
            message + " CI=true: a missing PostgreSQL is a failure in CI, not a skip; "
            "make .ci/run start the server.",
            pytrace=False,
        )
    pytest.skip(message)


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        postgres_unavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this session's own; yields its SQLAlchemy URL, drops it at the end."""
    name = f"mailtrawl_test_{os.getpid()}_{secrets.token_hex(4)}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with _admin() as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def reset_postgres(url: str) -> None:
    """Empty the database behind `url`: drop and recreate the public schema."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(
        f"host=127.0.0.1 port=5432 user=postgres dbname={name}", autocommit=True
    ) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a fresh SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'mailtrawl.db'}"
    url: str = request.getfixturevalue("postgres_database")
    reset_postgres(url)
    return url


@pytest.fixture
def mailtrawl_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MAILTRAWL_* variable from the developer's shell; MAILTRAWL_HOME in tmp_path."""
    for name in list(os.environ):
        if name.startswith("MAILTRAWL_"):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("MAILTRAWL_HOME", str(home))
    return home


@pytest.fixture
def settings(mailtrawl_env: Path, database_url: str) -> Settings:
    """Settings for one test: its own home (key file) and database."""
    return load_settings(home=mailtrawl_env, database_url=database_url)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine on the test database, disposed after the test."""
    engine = make_engine(settings)
    try:
        yield engine
    finally:
        engine.dispose()


def store_configuration(engine: Engine, box: SecretBox, *, name: str, secret: str) -> uuid.UUID:
    """Insert a mail configuration whose client secret is `secret`, sealed by `box`."""
    with make_session_factory(engine).begin() as session:
        configuration = MailConfiguration(
            name=name,
            provider="m365",
            tenant="contoso.onmicrosoft.com",
            client_id="11111111-2222-3333-4444-555555555555",
            credential_kind=CredentialKind.SECRET.value,
            credential_encrypted=box.encrypt(secret, purpose=CREDENTIAL_PURPOSE),
            credential_hint=credential_hint(secret),
            test_mailbox="alice@contoso.com",
            authorized_domains=["contoso.com"],
            default_scope={"kind": "all"},
        )
        session.add(configuration)
        session.flush()
        return configuration.id


def stored_credentials(engine: Engine) -> dict[str, bytes]:
    """The sealed credential of every mail configuration, by name."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(MailConfiguration.name, MailConfiguration.credential_encrypted)
        ).all()
    return {name: bytes(value) for name, value in rows}
