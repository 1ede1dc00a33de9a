"""Engine factory and shared column types, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import StatementError

from mailtrawl.config import Settings, load_settings
from mailtrawl.errors import ConfigError, DatabaseUnreachable
from mailtrawl.storage.engine import database_url, make_engine, make_session_factory, mask_url
from mailtrawl.storage.migrate import upgrade_to_head
from mailtrawl.storage.models import MailConfiguration
from mailtrawl.storage.secrets import open_secret_box
from tests.storage.databases import store_configuration


def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, database_url=f"sqlite:///{tmp_path}/a/b/m.db")
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10_000}
    # The folder holding the database is private.
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_postgresql_urls_use_psycopg3() -> None:
    for raw in ("postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg2://u@h/db"):
        assert database_url(raw).drivername == "postgresql+psycopg"


def test_unsupported_or_malformed_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        database_url("mysql://root@localhost/mailtrawl")
    with pytest.raises(ConfigError, match="not a valid database URL"):
        database_url("not a url")


def test_unreachable_database_names_it_without_the_password(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, database_url="postgresql://mt:hunter2-planted@127.0.0.1:1/mailtrawl"
    )
    with pytest.raises(DatabaseUnreachable) as caught:
        upgrade_to_head(settings)
    message = str(caught.value)
    assert "hunter2-planted" not in message
    assert "mt:***@127.0.0.1:1/mailtrawl" in message
    assert "MAILTRAWL_DATABASE_URL" in message
    assert mask_url("postgresql://a:b@h/d") == "postgresql://a:***@h/d"


def test_engine_targets_the_configured_backend(settings: Settings, engine: Engine) -> None:
    expected = "sqlite" if settings.database_url.startswith("sqlite") else "postgresql"
    assert engine.dialect.name == expected
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar() == 1
    if expected == "postgresql":
        assert engine.dialect.driver == "psycopg"


def test_rows_round_trip_with_uuid7_utc_timestamps_and_json(
    settings: Settings, engine: Engine
) -> None:
    upgrade_to_head(settings, engine=engine)
    box = open_secret_box(settings)
    before = datetime.now(UTC)
    config_id = store_configuration(engine, box, name="contoso", secret="x" * 40)
    sessions = make_session_factory(engine)
    with sessions() as session:
        row = session.get_one(MailConfiguration, config_id)
        assert isinstance(row.id, uuid.UUID)
        assert row.id.version == 7
        assert row.created_at.tzinfo is not None
        assert row.created_at.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=5) <= row.created_at <= datetime.now(UTC)
        assert row.authorized_domains == ["contoso.com"]
        assert row.default_scope == {"kind": "all"}
        assert row.enabled is True
        assert row.status == "unknown"
        created = row.created_at
    with sessions.begin() as session:
        row = session.get_one(MailConfiguration, config_id)
        # Stored in UTC whatever zone the caller used.
        row.last_test_at = datetime(2030, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    with sessions() as session:
        row = session.get_one(MailConfiguration, config_id)
        assert row.last_test_at == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
        assert row.last_test_at is not None
        assert row.last_test_at.tzinfo == UTC
        assert row.updated_at >= created


def test_naive_datetimes_are_refused(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    config_id = store_configuration(
        engine, open_secret_box(settings), name="naive", secret="y" * 40
    )
    sessions = make_session_factory(engine)
    with sessions() as session:
        row = session.get_one(MailConfiguration, config_id)
        row.last_test_at = datetime(2030, 1, 1, 12, 0)
        with pytest.raises(StatementError, match="naive datetime"):
            session.commit()


def test_savepoints_roll_back_only_their_part(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    box = open_secret_box(settings)
    store_configuration(engine, box, name="kept", secret="k" * 40)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        nested = session.begin_nested()
        row = session.scalars(select(MailConfiguration)).one()
        row.name = "renamed"
        session.flush()
        nested.rollback()
        row.tenant = "fabrikam.com"
    with sessions() as session:
        row = session.scalars(select(MailConfiguration)).one()
        assert (row.name, row.tenant) == ("kept", "fabrikam.com")
