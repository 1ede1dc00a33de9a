"""Migrations: an empty database reaches head on both backends, repeatably, matching the models."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from mailtrawl.config import Settings
from mailtrawl.storage.migrate import (
    current_revision,
    head_revision,
    is_at_head,
    migrations_path,
    upgrade_to_head,
)
from mailtrawl.storage.models import load_all_models
from mailtrawl.storage.secrets import open_secret_box
from tests.storage.databases import store_configuration

REPO = Path(__file__).resolve().parents[2]


def test_empty_database_upgrades_to_head(settings: Settings, engine: Engine) -> None:
    assert current_revision(engine) is None
    assert upgrade_to_head(settings, engine=engine) == head_revision()
    assert current_revision(engine) == head_revision()
    assert is_at_head(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"alembic_version", "mail_configurations", "api_tokens"} <= tables


def test_upgrade_without_an_engine_uses_the_settings(settings: Settings, engine: Engine) -> None:
    assert upgrade_to_head(settings) == head_revision()
    assert current_revision(engine) == head_revision()


def test_upgrade_is_idempotent_and_keeps_data(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    store_configuration(engine, open_secret_box(settings), name="kept", secret="s" * 40)
    assert upgrade_to_head(settings, engine=engine) == head_revision()
    assert upgrade_to_head(settings, engine=engine) == head_revision()
    with engine.connect() as connection:
        names = connection.execute(text("SELECT name FROM mail_configurations")).scalars().all()
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert names == ["kept"]
    assert versions == [(head_revision(),)]


def test_models_match_the_migrations(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, load_all_models().metadata)
    # A table or column without a migration shows up here: add a revision for it.
    assert differences == []


def test_constraints_are_named_and_enforced(settings: Settings, engine: Engine) -> None:
    upgrade_to_head(settings, engine=engine)
    inspector = inspect(engine)
    assert inspector.get_pk_constraint("mail_configurations")["name"] == "pk_mail_configurations"
    assert [c["name"] for c in inspector.get_unique_constraints("mail_configurations")] == [
        "uq_mail_configurations_name"
    ]
    checks = {c["name"] for c in inspector.get_check_constraints("mail_configurations")}
    assert checks == {
        "ck_mail_configurations_credential_kind",
        "ck_mail_configurations_status",
    }
    box = open_secret_box(settings)
    store_configuration(engine, box, name="dup", secret="d" * 40)
    with pytest.raises(IntegrityError):
        store_configuration(engine, box, name="dup", secret="e" * 40)
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(text("UPDATE mail_configurations SET status = 'bogus'"))


def test_every_migration_file_ships_in_the_package() -> None:
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["mailtrawl"]
    package_root = REPO / "src" / "mailtrawl"
    files = [
        path.relative_to(package_root).as_posix()
        for path in migrations_path().rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert "storage/migrations/env.py" in files
    assert "storage/migrations/script.py.mako" in files
    assert any(name.startswith("storage/migrations/versions/v0001_") for name in files)
    unshipped = [name for name in files if not any(fnmatch(name, p) for p in package_data)]
    assert unshipped == []
