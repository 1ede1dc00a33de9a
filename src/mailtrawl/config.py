"""Settings: one pydantic-settings model, read from arguments, `MAILTRAWL_*` variables and TOML.

Precedence, highest first: keyword arguments to `load_settings`, environment variables
(`MAILTRAWL_DATABASE_URL`, ...), the TOML file, then the defaults below. The TOML file is the
one named by `MAILTRAWL_CONFIG`, else `$MAILTRAWL_HOME/mailtrawl.toml` when it exists; its keys
are the field names (`database_url = "postgresql://..."`).

Nothing here touches the disk or the network at import; `load_settings()` reads the TOML file
and the environment, and never creates anything.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mailtrawl.errors import ConfigError

ENV_PREFIX = "MAILTRAWL_"
DEFAULT_HOME = "~/.mailtrawl"
TOML_NAME = "mailtrawl.toml"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def _home_from(value: object) -> Path:
    return Path(str(value)).expanduser().absolute()


ActionName = Literal["warn", "junk", "trash", "delete", "purge", "restore"]


def _purge_only() -> list[ActionName]:
    return ["purge"]


class Settings(BaseSettings):
    """The effective settings of one mailtrawl process (server, worker or CLI)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        # Unknown keys in the TOML file are typos more often than not: say so.
        extra="forbid",
        validate_default=True,
        frozen=True,
    )

    # The TOML file these settings were read from; set through MAILTRAWL_CONFIG.
    config: Path | None = None
    home: Path = Field(default=Path(DEFAULT_HOME), description="Where mailtrawl keeps its files.")
    database_url: str = Field(
        default_factory=lambda data: f"sqlite:///{data['home']}/mailtrawl.db",
        description="SQLAlchemy URL; postgresql:// selects PostgreSQL through psycopg 3.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Encryption key(s) for stored credentials, comma-separated, newest first.",
    )
    secret_key_file: Path = Field(
        default_factory=lambda data: data["home"] / "secret.key",
        description="Key file used when secret_key is not set; created on first run (0600).",
    )
    log_level: LogLevel = "INFO"
    # The job queue: jobs run at once per process, and how long a job stays leased to a
    # worker that stops renewing it (a crashed process) before another worker takes it.
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    job_lease_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    # Mailboxes each investigation job lists at once: how hard it presses on the tenant.
    scan_mailboxes_in_flight: int = Field(default=200, ge=1, le=2000)
    # Remediation. Actions over more messages than the threshold, and every action of the
    # kinds listed, wait for a second administrator (four-eyes); 0 messages means always.
    approval_required: bool = True
    approval_threshold: int = Field(default=100, ge=0)
    approval_always_for: list[ActionName] = Field(default_factory=_purge_only)
    # How long the undo vault keeps deleted and purged messages before erasing them.
    vault_retention_days: int = Field(default=30, ge=1, le=3650)
    # The category `warn` puts on a suspicious message (created red in each mailbox).
    warning_category: str = Field(default="Suspicious - mailtrawl", min_length=1, max_length=255)
    # The notice `warn` may place in the inbox; placeholders are listed in docs/remediation.md.
    warning_notice_subject: str | None = None
    warning_notice_body: str | None = None
    organisation_name: str = ""
    # Dashboard sign-in sessions: signed out after this long without a request, and after
    # this long in any case.
    session_idle_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60)
    session_max_hours: int = Field(default=24, ge=1, le=24 * 90)
    # The session cookie's Secure flag; unset means Secure except on plain http to a
    # loopback address (`mailtrawl serve` without a TLS proxy), where browsers would drop it.
    cookie_secure: bool | None = None
    # The HTTPS URL at which Microsoft Graph reaches this server for change notifications
    # (see docs/notifications.md); unset, continuous investigations poll only.
    public_url: AnyHttpUrl | None = None
    # Continuous investigations (docs/continuous.md). How often each watched mailbox is read
    # (halved for a mailbox with a recent hit; with notifications this is the backstop),
    # the share of each mailbox's Graph budget (10,000 requests / 10 minutes) polling may
    # use at most, which folders are read, and how often scopes are resolved again.
    monitor_poll_seconds: float = Field(default=60.0, ge=1.0, le=86_400.0)
    monitor_backstop_seconds: float = Field(default=900.0, ge=10.0, le=86_400.0)
    monitor_budget_share: float = Field(default=0.05, gt=0.0, le=0.5)
    monitor_folders: list[str] = Field(default_factory=lambda: ["inbox", "junkemail"])
    monitor_directory_refresh_seconds: float = Field(default=900.0, ge=5.0, le=86_400.0)

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, value: object) -> Path:
        return _home_from(value)

    @field_validator("config", "secret_key_file", mode="after")
    @classmethod
    def _expand_path(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then the TOML file; no .env or secrets directory."""
        return (init_settings, env_settings, _TomlFileSource(settings_cls))


class _TomlFileSource(PydanticBaseSettingsSource):
    """Reads the TOML file that the higher-priority sources point at."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # pragma: no cover - __call__ is overridden

    def _path(self) -> tuple[Path | None, bool]:
        """The file to read and whether it must exist (it must when named explicitly)."""
        state = self.current_state
        if state.get("config"):
            return _home_from(state["config"]), True
        home = _home_from(state.get("home") or DEFAULT_HOME)
        return home / TOML_NAME, False

    def __call__(self) -> dict[str, Any]:
        path, required = self._path()
        if path is None:
            return {}
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            if required:
                raise ConfigError(
                    f"The configuration file {path} does not exist; "
                    "create it, or unset MAILTRAWL_CONFIG to use the defaults."
                ) from None
            return {}
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"Cannot read {path}: {exc}. Fix the file and try again.") from None
        # The file cannot redirect itself to another file.
        data.pop("config", None)
        return data


def load_settings(**overrides: Any) -> Settings:
    """Read the effective settings; keyword arguments win over environment and TOML.

    Raises `ConfigError` with a sentence naming the offending setting when a value is invalid.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigError(
            f"Invalid settings ({problems}). Fix the {ENV_PREFIX}* environment variables or "
            "the TOML file and try again."
        ) from None


def settings_env_names() -> list[str]:
    """The environment variable name of every setting, for help texts and `doctor`."""
    return [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]


__all__ = ["LogLevel", "Settings", "load_settings", "settings_env_names"]
