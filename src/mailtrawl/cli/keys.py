"""`mailtrawl keys`: the encryption keys that protect stored credentials."""

from __future__ import annotations

import json

import typer

from mailtrawl.cli.common import cli_actor
from mailtrawl.config import load_settings
from mailtrawl.errors import MailtrawlError, StorageError

keys_app = typer.Typer(
    help="Encryption keys for stored credentials: rotate them, generate one.",
    no_args_is_help=True,
)


def _fail(error: MailtrawlError) -> typer.Exit:
    """Print the error's sentence (never a traceback) and give the exit to raise."""
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code=1)


@keys_app.command()
def rotate(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Re-encrypt every stored credential under a new key, in one transaction.

    With the key file, a new key is generated, and the old one is removed once every value
    is re-encrypted. With MAILTRAWL_SECRET_KEY, set it to 'NEW,OLD' first, then to 'NEW'.
    Stop the server and workers first: they hold the old key until restarted.
    """
    from mailtrawl.storage.engine import make_engine
    from mailtrawl.storage.migrate import head_revision, is_at_head
    from mailtrawl.storage.rotation import rotate_keys

    try:
        settings = load_settings()
        engine = make_engine(settings)
        try:
            if not is_at_head(engine):
                raise StorageError(
                    f"The database is not at revision {head_revision()}; run "
                    "`mailtrawl db upgrade` first, then rotate the keys."
                )
            result = rotate_keys(settings=settings, engine=engine, actor=cli_actor())
        finally:
            engine.dispose()
    except MailtrawlError as error:
        raise _fail(error) from None
    if as_json:
        payload = {
            "reencrypted": result.reencrypted,
            "new_key_id": result.new_key_id,
            "retired_key_ids": list(result.retired_key_ids),
            "source": result.source,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    retired = ", ".join(result.retired_key_ids) or "none"
    typer.echo(
        f"Re-encrypted {result.reencrypted} value(s) under key {result.new_key_id}; "
        f"retired key(s): {retired}."
    )
    if result.source == "environment":
        typer.echo("Now set MAILTRAWL_SECRET_KEY to the new key alone and restart mailtrawl.")
    else:
        typer.echo(
            f"The key file {settings.secret_key_file} now holds only the new key; back it up "
            "and restart the mailtrawl server and workers."
        )


@keys_app.command()
def generate() -> None:
    """Print a new random key, for MAILTRAWL_SECRET_KEY (store it in a secret manager)."""
    from mailtrawl.storage.secrets import generate_key

    typer.echo(generate_key())
