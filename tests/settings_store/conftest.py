"""Runtime settings tests: the store on SQLite and PostgreSQL, and the remediation service
acting on what it holds (the remediation fixtures: emulator tenant and a planted email)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.config import Settings
from mailtrawl.storage.engine import make_session_factory
from mailtrawl.storage.migrate import upgrade_to_head
from tests.remediation import conftest as remediation_fixtures
from tests.storage import databases

postgres_database = databases.postgres_database
database_url = databases.database_url
settings = databases.settings
engine = databases.engine
mailtrawl_env = databases.mailtrawl_env
remediation = remediation_fixtures.remediation


@pytest.fixture
def sessions(engine: Engine, settings: Settings) -> Iterator[sessionmaker[Session]]:
    """A session factory on a migrated, empty database."""
    upgrade_to_head(settings, engine=engine)
    return make_session_factory(engine)
