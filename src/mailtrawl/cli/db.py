"""`mailtrawl db`: bring the database schema up to date and show its revision."""

from __future__ import annotations

import json

import typer

from mailtrawl.config import load_settings
from mailtrawl.errors import MailtrawlError

db_app = typer.Typer(
    help="The database: upgrade the schema, show its revision.", no_args_is_help=True
)


def _fail(error: MailtrawlError) -> typer.Exit:
    """Print the error's sentence (never a traceback) and give the exit to raise."""
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code=1)


@db_app.command()
def upgrade() -> None:
    """Upgrade the schema to the newest revision (safe to repeat); creates the key file on first run."""
    # Imported here so `mailtrawl --version` does not load SQLAlchemy and Alembic.
    from mailtrawl.storage.engine import make_engine, mask_url
    from mailtrawl.storage.migrate import upgrade_to_head
    from mailtrawl.storage.secrets import load_keyring

    try:
        settings = load_settings()
        engine = make_engine(settings)
        try:
            revision = upgrade_to_head(settings, engine=engine)
        finally:
            engine.dispose()
        ring = load_keyring(settings, create=True)
    except MailtrawlError as error:
        raise _fail(error) from None
    typer.echo(f"Database {mask_url(settings.database_url)} is at revision {revision} (head).")
    if ring.created:
        typer.echo(
            f"Created the key file {ring.path} (mode 0600); back it up with the database: "
            "without it, stored credentials cannot be read."
        )


@db_app.command()
def current(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Show the database's revision and the newest revision this version ships."""
    from mailtrawl.storage.engine import check_connection, make_engine, mask_url
    from mailtrawl.storage.migrate import current_revision, head_revision

    try:
        settings = load_settings()
        engine = make_engine(settings)
        try:
            check_connection(engine)
            revision = current_revision(engine)
        finally:
            engine.dispose()
    except MailtrawlError as error:
        raise _fail(error) from None
    head = head_revision()
    if as_json:
        payload = {
            "database_url": mask_url(settings.database_url),
            "revision": revision,
            "head": head,
            "at_head": revision == head,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    state = "head" if revision == head else f"head is {head}: run `mailtrawl db upgrade`"
    typer.echo(
        f"{mask_url(settings.database_url)}: revision {revision or 'none (empty)'} ({state})"
    )


@db_app.command(hidden=True)
def revision(
    message: str = typer.Option(..., "--message", "-m", help="What the revision changes."),
    empty: bool = typer.Option(False, "--empty", help="Write an empty revision to fill by hand."),
) -> None:
    """For developers: write the next revision, diffing the models against the database."""
    from mailtrawl.storage.engine import make_engine
    from mailtrawl.storage.migrate import create_revision, upgrade_to_head

    try:
        settings = load_settings()
        engine = make_engine(settings)
        try:
            upgrade_to_head(settings, engine=engine)
            path = create_revision(engine=engine, message=message, autogenerate=not empty)
        finally:
            engine.dispose()
    except MailtrawlError as error:
        raise _fail(error) from None
    typer.echo(f"Wrote {path}; review it before committing.")
