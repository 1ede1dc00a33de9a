"""`mailtrawl db`, `keys` and `doctor` through the real CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from mailtrawl.cli.main import app
from mailtrawl.config import load_settings
from mailtrawl.storage.engine import make_engine
from mailtrawl.storage.migrate import head_revision
from mailtrawl.storage.models import CREDENTIAL_PURPOSE
from mailtrawl.storage.secrets import (
    KeyRing,
    SecretBox,
    SecretKey,
    key_id_of,
    open_secret_box,
    read_key_file,
    write_key_file,
)
from tests.storage import databases
from tests.storage.databases import store_configuration, stored_credentials

# The storage fixtures: each test here runs once on SQLite and once on PostgreSQL.
postgres_database = databases.postgres_database
database_url = databases.database_url
mailtrawl_env = databases.mailtrawl_env

PLANTED = "Q3s8Q~planted-cli-secret-5e1d7c9b3a2f4e6d8c"


@pytest.fixture
def cli_db(mailtrawl_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """MAILTRAWL_HOME and MAILTRAWL_DATABASE_URL point at this test's own home and database."""
    monkeypatch.setenv("MAILTRAWL_DATABASE_URL", database_url)
    return mailtrawl_env


@pytest.fixture
def engine(cli_db: Path) -> Iterator[Engine]:
    """An engine on the test database, for planting rows and reading them back."""
    engine = make_engine(load_settings())
    yield engine
    engine.dispose()


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def doctor_json() -> tuple[int, dict[str, Any], str]:
    result = run("doctor", "--json")
    return result.exit_code, json.loads(result.stdout), result.stdout


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in report["checks"] if c["name"] == name)
    return found


def test_db_upgrade_creates_schema_and_key_once(cli_db: Path, engine: Engine) -> None:
    first = run("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert f"at revision {head_revision()} (head)" in first.stdout
    assert "Created the key file" in first.stdout
    key_file = cli_db / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = run("db", "upgrade")
    assert second.exit_code == 0, second.output
    assert "Created the key file" not in second.stdout
    current = run("db", "current", "--json")
    assert json.loads(current.stdout) == {
        "database_url": json.loads(current.stdout)["database_url"],
        "revision": head_revision(),
        "head": head_revision(),
        "at_head": True,
    }


def test_keys_rotate_reencrypts_and_reports_the_count(cli_db: Path, engine: Engine) -> None:
    assert run("db", "upgrade").exit_code == 0
    box = open_secret_box(load_settings())
    old_key = box.keyring.primary
    for name in ("contoso", "fabrikam"):
        store_configuration(engine, box, name=name, secret=f"{PLANTED}-{name}")
    before = stored_credentials(engine)

    result = run("keys", "rotate")

    assert result.exit_code == 0, result.output
    assert "Re-encrypted 2 value(s)" in result.stdout
    assert old_key.key_id in result.stdout
    (new_key,) = read_key_file(cli_db / "secret.key")
    new_alone = SecretBox(KeyRing(keys=(new_key,), source="file"))
    for name, value in stored_credentials(engine).items():
        assert key_id_of(value) == new_key.key_id
        assert new_alone.decrypt_text(value, purpose=CREDENTIAL_PURPOSE) == f"{PLANTED}-{name}"
        assert value != before[name]
    assert PLANTED not in result.output


def test_keys_rotate_json(cli_db: Path, engine: Engine) -> None:
    assert run("db", "upgrade").exit_code == 0
    store_configuration(engine, open_secret_box(load_settings()), name="c", secret=PLANTED)
    payload = json.loads(run("keys", "rotate", "--json").stdout)
    assert payload["reencrypted"] == 1
    assert payload["source"] == "file"
    assert [k.key_id for k in read_key_file(cli_db / "secret.key")] == [payload["new_key_id"]]


def test_keys_rotate_refuses_an_unmigrated_database(cli_db: Path) -> None:
    result = run("keys", "rotate")
    assert result.exit_code == 1
    assert "run `mailtrawl db upgrade` first" in result.stderr
    assert "Traceback" not in result.output


def test_doctor_json_masks_secrets_and_reports_the_revision(
    cli_db: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_key = SecretKey.generate().encode()
    monkeypatch.setenv("MAILTRAWL_SECRET_KEY", env_key)
    url = load_settings().database_url
    # Trust auth ignores the password, so a planted one still connects on PostgreSQL.
    planted_password = "planted-db-password-8d3f"
    if url.startswith("postgresql"):
        url = url.replace("postgres@", f"postgres:{planted_password}@")
        monkeypatch.setenv("MAILTRAWL_DATABASE_URL", url)
    assert run("db", "upgrade").exit_code == 0
    store_configuration(engine, open_secret_box(load_settings()), name="c", secret=PLANTED)

    code, report, raw = doctor_json()

    assert code == 0, raw
    assert report["ok"] is True
    for secret in (PLANTED, env_key, env_key.rstrip("="), planted_password):
        assert secret not in raw
    assert report["settings"]["secret_key"] == "••••"
    database = check(report, "database")
    assert database["status"] == "ok"
    assert database["data"]["revision"] == database["data"]["head"] == head_revision()
    key = check(report, "key")
    assert key["status"] == "ok"
    assert key["data"]["source"] == "environment"
    assert key["data"]["stored_values"] == 1
    if url.startswith("postgresql"):
        assert "postgres:***@" in report["settings"]["database_url"]


def test_doctor_text_lists_settings_and_checks(cli_db: Path) -> None:
    assert run("db", "upgrade").exit_code == 0
    result = run("doctor")
    assert result.exit_code == 0, result.output
    assert "secret_key_file" in result.stdout
    assert "✓ database: " in result.stdout
    assert f"revision {head_revision()} (head)" in result.stdout
    assert "✓ key: " in result.stdout
    assert "All checks passed." in result.stdout


def test_doctor_fails_on_a_loose_key_file(cli_db: Path) -> None:
    assert run("db", "upgrade").exit_code == 0
    (cli_db / "secret.key").chmod(0o644)
    code, report, _ = doctor_json()
    assert code == 1
    assert report["ok"] is False
    key = check(report, "key")
    assert key["status"] == "failed"
    assert "chmod 600" in key["message"]


def test_doctor_on_an_empty_database(cli_db: Path, engine: Engine) -> None:
    code, report, _ = doctor_json()
    assert code == 1
    database = check(report, "database")
    assert database["status"] == "failed"
    assert "mailtrawl db upgrade" in database["message"]
    assert database["data"]["revision"] is None
    # Nothing was created by looking: no key file, and the key check says who creates it.
    assert not (cli_db / "secret.key").exists()
    assert check(report, "key")["status"] == "warning"


def test_doctor_finds_secrets_the_key_cannot_open(cli_db: Path, engine: Engine) -> None:
    assert run("db", "upgrade").exit_code == 0
    store_configuration(engine, open_secret_box(load_settings()), name="c", secret=PLANTED)
    # The key file is replaced by an unrelated key: the stored value is now unreadable.
    write_key_file(cli_db / "secret.key", (SecretKey.generate(),))
    code, report, raw = doctor_json()
    assert code == 1
    key = check(report, "key")
    assert key["status"] == "failed"
    assert key["data"]["unreadable_values"] == 1
    assert "do not decrypt" in key["message"]
    assert PLANTED not in raw


def test_keys_generate_prints_a_usable_key(cli_db: Path) -> None:
    result = run("keys", "generate")
    assert result.exit_code == 0
    key = SecretKey.decode(result.stdout, origin="test")
    assert key.encode() == result.stdout.strip()


def test_settings_errors_are_a_sentence_not_a_traceback(
    cli_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILTRAWL_LOG_LEVEL", "loud")
    for command in (["db", "upgrade"], ["keys", "rotate"], ["doctor"]):
        result = run(*command)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: Invalid settings (log_level")
        assert "Traceback" not in result.output


def test_doctor_fails_when_the_key_file_is_lost_but_secrets_are_stored(
    cli_db: Path, engine: Engine
) -> None:
    assert run("db", "upgrade").exit_code == 0
    store_configuration(engine, open_secret_box(load_settings()), name="c", secret=PLANTED)
    (cli_db / "secret.key").unlink()
    code, report, _ = doctor_json()
    assert code == 1
    key = check(report, "key")
    assert key["status"] == "failed"
    assert "does not exist; restore it from backup" in key["message"]
