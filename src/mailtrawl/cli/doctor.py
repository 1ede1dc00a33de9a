"""`mailtrawl doctor`: the effective settings (secrets masked) and a health check of each part.

Each check gives ok, warning or failed with a sentence that says what to do; the command
exits 1 when any check failed. Later issues add checks for each mail configuration through
`configuration_checks`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer
from pydantic import SecretStr

from mailtrawl.config import Settings, load_settings
from mailtrawl.errors import KeyMissing, MailtrawlError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mailtrawl.storage.secrets import SecretBox

Status = Literal["ok", "warning", "failed"]
SYMBOLS: dict[Status, str] = {"ok": "✓", "warning": "!", "failed": "✗"}

doctor_app = typer.Typer(help="Check settings, database, keys and mail configurations.")


@dataclass(frozen=True)
class Check:
    """The outcome of one check; `data` holds machine-readable details for --json."""

    name: str
    status: Status
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorReport:
    """Everything `mailtrawl doctor` found."""

    settings: dict[str, Any]
    checks: list[Check]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(check.status != "failed" for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "ok": self.ok,
            "settings": self.settings,
            "checks": [asdict(check) for check in self.checks],
        }


def effective_settings(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-ready values; secrets masked, database passwords hidden."""
    from mailtrawl.storage.engine import mask_url
    from mailtrawl.storage.secrets import mask

    shown: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            # Not even the last characters of an encryption key.
            value = mask(value, visible=0)
        elif name == "database_url":
            value = mask_url(value)
        elif isinstance(value, Path):
            value = str(value)
        shown[name] = value
    return shown


def check_database(engine: Engine) -> Check:
    """Reachable, and at the head revision."""
    from sqlalchemy.exc import SQLAlchemyError

    from mailtrawl.storage.engine import check_connection, error_reason, mask_url
    from mailtrawl.storage.migrate import alembic_config, current_revision, head_revision

    url = mask_url(engine.url)
    head = head_revision()
    data: dict[str, Any] = {"url": url, "backend": engine.dialect.name, "head": head}
    try:
        check_connection(engine)
    except MailtrawlError as error:
        return Check("database", "failed", str(error), {**data, "reachable": False})
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        message = f"{url} is reachable but its revision cannot be read ({error_reason(exc)})."
        return Check("database", "failed", message, {**data, "reachable": True})
    data.update(reachable=True, revision=revision)
    if revision == head:
        return Check("database", "ok", f"{url} is reachable and at revision {head} (head).", data)
    if revision is None:
        message = f"{url} is reachable but empty; run `mailtrawl db upgrade`."
        return Check("database", "failed", message, data)
    from alembic.script import ScriptDirectory

    known = ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    if not known:
        message = (
            f"{url} is at revision {revision}, which this version of mailtrawl does not know: "
            "a newer mailtrawl upgraded it. Upgrade mailtrawl."
        )
        return Check("database", "failed", message, data)
    message = f"{url} is at revision {revision}, behind {head}; run `mailtrawl db upgrade`."
    return Check("database", "failed", message, data)


def check_key(settings: Settings, *, engine: Engine | None) -> tuple[Check, SecretBox | None]:
    """Key present, readable and private; every stored secret decrypts with it.

    `engine` is None when the database is not usable; the stored values are then not checked.
    """
    from mailtrawl.storage.secrets import SecretBox, load_keyring

    try:
        ring = load_keyring(settings, create=False)
    except KeyMissing as error:
        if settings.secret_key is None and not settings.secret_key_file.exists():
            stored = _stored_count(engine)
            if not stored:
                message = (
                    f"No key file yet at {settings.secret_key_file}; `mailtrawl db upgrade` "
                    "creates it (mode 0600)."
                )
                return Check(
                    "key", "warning", message, {"path": str(settings.secret_key_file)}
                ), None
        return Check("key", "failed", str(error), {}), None
    except MailtrawlError as error:
        return Check("key", "failed", str(error), {}), None
    box = SecretBox(ring)
    data: dict[str, Any] = {
        "source": ring.source,
        "path": str(ring.path) if ring.path else None,
        "key_ids": list(ring.key_ids),
    }
    where = "MAILTRAWL_SECRET_KEY" if ring.source == "environment" else f"{ring.path} (0600)"
    if engine is None:
        return Check("key", "ok", f"Key {ring.primary.key_id} from {where}.", data), box
    return _check_stored_secrets(engine, box, where, data), box


def _stored_count(engine: Engine | None) -> int:
    from mailtrawl.storage.rotation import count_ciphertexts

    if engine is None:
        return 0
    try:
        with engine.connect() as connection:
            return sum(count_ciphertexts(connection).values())
    except MailtrawlError:
        return 1  # values exist, even if malformed


def _check_stored_secrets(
    engine: Engine, box: SecretBox, where: str, data: dict[str, Any]
) -> Check:
    from sqlalchemy import select

    from mailtrawl.storage.rotation import encrypted_columns
    from mailtrawl.storage.secrets import key_id_of

    stored = unreadable = stale = 0
    problems: list[str] = []
    primary = box.keyring.primary.key_id
    with engine.connect() as connection:
        for target in encrypted_columns():
            query = select(target.column).where(target.column.is_not(None))
            for value in connection.execute(query).scalars():
                stored += 1
                try:
                    box.decrypt(value, purpose=target.purpose)
                except MailtrawlError as error:
                    unreadable += 1
                    if str(error) not in problems:
                        problems.append(str(error))
                    continue
                stale += key_id_of(value) != primary
    data.update(stored_values=stored, unreadable_values=unreadable, old_key_values=stale)
    if unreadable:
        message = f"{unreadable} of {stored} stored secret(s) do not decrypt: " + " ".join(problems)
        return Check("key", "failed", message, data)
    if stale:
        message = (
            f"{stale} stored secret(s) are still under an older key; run `mailtrawl keys rotate` "
            "to finish the rotation."
        )
        return Check("key", "warning", message, data)
    message = f"Key {primary} from {where}; all {stored} stored secret(s) decrypt."
    return Check("key", "ok", message, data)


def configuration_checks(*, engine: Engine, box: SecretBox) -> list[Check]:
    """One check per mail configuration: the credential opens, is not (nearly) expired, and
    the last connection test passed. Called only when the database is at head and the key works.
    """
    from datetime import UTC, datetime, timedelta

    from sqlalchemy.orm import Session

    from mailtrawl.configurations.credentials import open_credential
    from mailtrawl.configurations.service import list_configurations

    checks: list[Check] = []
    now = datetime.now(UTC)
    with Session(engine) as session:
        for record in list_configurations(session):
            name = f"configuration:{record.name}"
            data: dict[str, Any] = {
                "id": str(record.id),
                "status": record.status,
                "last_test_at": record.last_test_at.isoformat() if record.last_test_at else None,
            }
            try:
                open_credential(box, record.credential_encrypted)
            except MailtrawlError as error:
                checks.append(
                    Check(name, "failed", f"The stored credential cannot be read: {error}", data)
                )
                continue
            expires = record.credential_expires_at
            if expires is not None and expires <= now:
                checks.append(
                    Check(
                        name,
                        "failed",
                        f"The {record.credential_kind} expired on {expires:%Y-%m-%d}; "
                        "create a new one in the app registration and update the configuration.",
                        data,
                    )
                )
            elif record.status == "failed":
                checks.append(
                    Check(
                        name,
                        "failed",
                        "The last connection test failed; run "
                        f"`mailtrawl config test {record.name}` to see what to fix.",
                        data,
                    )
                )
            elif expires is not None and expires <= now + timedelta(days=30):
                checks.append(
                    Check(
                        name,
                        "warning",
                        f"The {record.credential_kind} expires on {expires:%Y-%m-%d}; "
                        "renew it before then.",
                        data,
                    )
                )
            elif record.status != "ok":
                checks.append(
                    Check(
                        name,
                        "warning",
                        f"Never tested; run `mailtrawl config test {record.name}`.",
                        data,
                    )
                )
            else:
                checks.append(
                    Check(name, "ok", "Credential readable; last connection test passed.", data)
                )
    return checks


def run_doctor(settings: Settings) -> DoctorReport:
    """Run every check against `settings`; never raises for a failed check."""
    from mailtrawl.storage.engine import database_url, make_engine, mask_url, sqlite_path

    def without_database(database: Check) -> DoctorReport:
        key_check, _ = check_key(settings, engine=None)
        return DoctorReport(effective_settings(settings), [database, key_check])

    try:
        url = database_url(settings.database_url)
    except MailtrawlError as error:
        return without_database(Check("database", "failed", str(error)))
    path = sqlite_path(url)
    if path is not None and not path.exists():
        # Connecting would create the file: a check must not change what it checks.
        message = f"The database file {path} does not exist yet; run `mailtrawl db upgrade`."
        data = {"url": mask_url(url), "backend": "sqlite", "reachable": False, "revision": None}
        return without_database(Check("database", "failed", message, data))
    checks: list[Check] = []
    engine = make_engine(settings)
    try:
        database = check_database(engine)
        usable = engine if database.status == "ok" else None
        key_check, box = check_key(settings, engine=usable)
        checks += [database, key_check]
        if usable is not None and box is not None and key_check.status != "failed":
            checks += configuration_checks(engine=usable, box=box)
    finally:
        engine.dispose()
    return DoctorReport(effective_settings(settings), checks)


def _print_text(report: DoctorReport) -> None:
    typer.echo("Settings")
    width = max(len(name) for name in report.settings)
    for name, value in report.settings.items():
        typer.echo(f"  {name.ljust(width)}  {'(not set)' if value is None else value}")
    typer.echo("Checks")
    for check in report.checks:
        typer.echo(f"  {SYMBOLS[check.status]} {check.name}: {check.message}")
    verdict = "All checks passed." if report.ok else "Some checks failed; fix them as described."
    typer.echo(verdict)


@doctor_app.callback(invoke_without_command=True)
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Print the effective settings (secrets masked) and check the database and the key."""
    try:
        settings = load_settings()
    except MailtrawlError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    report = run_doctor(settings)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_text(report)
    if not report.ok:
        raise typer.Exit(code=1)
