"""Settings: defaults, environment, TOML, precedence and errors (no database involved)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailtrawl.config import Settings, load_settings
from mailtrawl.errors import ConfigError


def test_defaults_derive_from_home(mailtrawl_env: Path) -> None:
    settings = load_settings()
    assert settings.home == mailtrawl_env
    assert settings.database_url == f"sqlite:///{mailtrawl_env}/mailtrawl.db"
    assert settings.secret_key_file == mailtrawl_env / "secret.key"
    assert settings.secret_key is None
    assert settings.log_level == "INFO"


def test_home_defaults_to_dot_mailtrawl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MAILTRAWL_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings().home == tmp_path / ".mailtrawl"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILTRAWL_DATABASE_URL", "postgresql://mt@db.example/mailtrawl")
    monkeypatch.setenv("MAILTRAWL_LOG_LEVEL", "debug")
    monkeypatch.setenv("MAILTRAWL_SECRET_KEY", "not-shown-anywhere")
    settings = load_settings()
    assert settings.database_url == "postgresql://mt@db.example/mailtrawl"
    assert settings.log_level == "DEBUG"
    assert settings.secret_key is not None
    assert settings.secret_key.get_secret_value() == "not-shown-anywhere"
    assert "not-shown-anywhere" not in repr(settings)


def test_toml_in_home_then_environment_then_arguments(
    mailtrawl_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mailtrawl_env.mkdir()
    (mailtrawl_env / "mailtrawl.toml").write_text(
        'log_level = "warning"\ndatabase_url = "sqlite:////srv/from-toml.db"\n'
    )
    assert load_settings().log_level == "WARNING"
    assert load_settings().database_url == "sqlite:////srv/from-toml.db"
    monkeypatch.setenv("MAILTRAWL_LOG_LEVEL", "ERROR")
    assert load_settings().log_level == "ERROR"
    assert load_settings(log_level="CRITICAL").log_level == "CRITICAL"


def test_config_variable_names_the_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text(f'home = "{tmp_path / "data"}"\n')
    monkeypatch.setenv("MAILTRAWL_CONFIG", str(config))
    settings = load_settings()
    assert settings.config == config
    # The environment's MAILTRAWL_HOME wins over the file's home.
    assert settings.home == tmp_path / "home"
    monkeypatch.delenv("MAILTRAWL_HOME")
    settings = load_settings()
    assert settings.home == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data'}/mailtrawl.db"


def test_missing_explicit_config_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILTRAWL_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match=r"absent\.toml does not exist"):
        load_settings()


def test_unknown_key_and_bad_value_are_named(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text('databse_url = "sqlite://"\nlog_level = "loud"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config=config)
    assert "databse_url" in str(caught.value)
    assert "log_level" in str(caught.value)


def test_malformed_toml_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("log_level = \n")
    with pytest.raises(ConfigError, match=r"broken\.toml"):
        load_settings(config=config)


def test_settings_are_frozen(mailtrawl_env: Path) -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "DEBUG"
    assert isinstance(settings, Settings)


def test_nothing_is_created_at_import_or_load(tmp_path: Path) -> None:
    home = tmp_path / "untouched"
    code = (
        "import mailtrawl.config, mailtrawl.storage.engine, mailtrawl.storage.secrets, "
        "mailtrawl.storage.migrate, mailtrawl.cli.main;"
        "mailtrawl.config.load_settings()"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={"MAILTRAWL_HOME": str(home), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert not home.exists()
    assert list(tmp_path.iterdir()) == []
