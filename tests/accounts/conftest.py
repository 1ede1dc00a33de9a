"""Account tests run on SQLite and on PostgreSQL (see tests/storage/databases.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.config import Settings
from mailtrawl.storage.engine import make_session_factory
from mailtrawl.storage.migrate import upgrade_to_head
from tests.storage import databases

postgres_database = databases.postgres_database
database_url = databases.database_url
settings = databases.settings
engine = databases.engine
mailtrawl_env = databases.mailtrawl_env


@pytest.fixture(autouse=True)
def _isolated_env(mailtrawl_env: Path) -> Path:
    return mailtrawl_env


@pytest.fixture
def sessions(settings: Settings, engine: Engine) -> sessionmaker[Session]:
    """Sessions on a database at head."""
    upgrade_to_head(settings, engine=engine)
    return make_session_factory(engine)


@pytest.fixture
def db(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session; tests commit where they mean to."""
    with sessions() as session:
        yield session
