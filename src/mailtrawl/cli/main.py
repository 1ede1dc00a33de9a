"""The `mailtrawl` command line."""

from __future__ import annotations

import typer

from mailtrawl import __version__
from mailtrawl.cli.audit import audit_app
from mailtrawl.cli.config import config_app
from mailtrawl.cli.db import db_app
from mailtrawl.cli.demo import demo
from mailtrawl.cli.doctor import doctor_app
from mailtrawl.cli.emulator import emulator_app
from mailtrawl.cli.investigate import investigate, investigations_app, worker
from mailtrawl.cli.keys import keys_app
from mailtrawl.cli.remediation import act, actions_app, approvals_app, restore, vault_app
from mailtrawl.cli.reports import reports_app
from mailtrawl.cli.serve import serve
from mailtrawl.cli.settings import settings_app
from mailtrawl.cli.tokens import tokens_app
from mailtrawl.cli.users import users_app
from mailtrawl.cli.watch import watch

app = typer.Typer(
    name="mailtrawl",
    help="Self-hosted email incident response for Microsoft 365 and more.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(emulator_app, name="emulator")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(doctor_app, name="doctor")
app.add_typer(tokens_app, name="tokens")
app.add_typer(users_app, name="users")
app.command("demo")(demo)
app.add_typer(config_app, name="config")
app.command("serve")(serve)
app.command("investigate")(investigate)
app.add_typer(investigations_app, name="investigations")
app.command("worker")(worker)
app.command("watch")(watch)
app.command("act")(act)
app.command("restore")(restore)
app.add_typer(approvals_app, name="approvals")
app.add_typer(actions_app, name="actions")
app.add_typer(vault_app, name="vault")
app.add_typer(audit_app, name="audit")
app.add_typer(reports_app, name="reports")
app.add_typer(settings_app, name="settings")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mailtrawl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Find, remediate and watch malicious email across every mailbox."""


if __name__ == "__main__":  # pragma: no cover
    app()
