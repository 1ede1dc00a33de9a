"""Storage tests run on both SQLite and PostgreSQL; see `databases.py` for the rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.storage import databases

postgres_database = databases.postgres_database
database_url = databases.database_url
settings = databases.settings
engine = databases.engine
mailtrawl_env = databases.mailtrawl_env


@pytest.fixture(autouse=True)
def _isolated_env(mailtrawl_env: Path) -> Path:
    """Every storage test runs without the developer's MAILTRAWL_* variables."""
    return mailtrawl_env
