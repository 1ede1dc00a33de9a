"""`mailtrawl tokens`: API tokens for the REST API (stored hashed; shown once)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import typer

from mailtrawl.accounts.models import Role
from mailtrawl.cli.common import cli_actor, echo_json, fail, open_store
from mailtrawl.storage.engine import write_session

tokens_app = typer.Typer(help="API tokens for the REST API.", no_args_is_help=True)


@tokens_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="What the token is for (shown in listings)."),
    role: Role = typer.Option(Role.ADMIN, "--role", help="admin, analyst or viewer."),
    expires_days: int | None = typer.Option(
        None, "--expires-days", min=1, help="Expire after this many days."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create a token and print it once; only its hash is kept."""
    from mailtrawl.accounts.actions import create_token
    from mailtrawl.audit.service import Actor

    with open_store() as store, write_session(store.sessions) as session:
        issued = create_token(
            session,
            name=name,
            role=role,
            expires_in=timedelta(days=expires_days) if expires_days else None,
            actor=Actor(cli_actor()),
        )
        info = {
            "id": str(issued.record.id),
            "name": name,
            "role": role.value,
            "token": issued.token,
            "expires_at": issued.record.expires_at,
        }
    if as_json:
        echo_json(info)
    else:
        typer.echo(
            f"Token for '{name}' ({role.value}); copy it now, it is not shown again:\n\n  {issued.token}\n"
        )


@tokens_app.command("list")
def list_tokens(as_json: bool = typer.Option(False, "--json")) -> None:
    """List tokens (never the tokens themselves)."""
    from mailtrawl.accounts.service import list_tokens as list_all

    with open_store() as store, store.sessions.begin() as session:
        rows = [
            {
                "id": str(t.id),
                "name": t.name,
                "prefix": t.prefix + "…",
                "role": t.role,
                "created_at": t.created_at,
                "expires_at": t.expires_at,
                "revoked_at": t.revoked_at,
                "last_used_at": t.last_used_at,
            }
            for t in list_all(session)
        ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        state = "revoked" if row["revoked_at"] else "active"
        typer.echo(f"{row['id']}  {row['prefix']:<14} {row['role']:<8} {state:<8} {row['name']}")


@tokens_app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="The token's id (from `tokens list`)."),
) -> None:
    """Revoke a token at once."""
    from mailtrawl.accounts.actions import revoke_token
    from mailtrawl.audit.service import Actor
    from mailtrawl.errors import NotFound

    try:
        parsed = uuid.UUID(token_id)
    except ValueError:
        fail(f"'{token_id}' is not a token id; `mailtrawl tokens list` shows them.")
    with open_store() as store, write_session(store.sessions) as session:
        try:
            revoke_token(session, token_id=parsed, actor=Actor(cli_actor()))
        except NotFound:
            fail(f"No API token with id {token_id}.")
    typer.echo(f"Revoked {token_id}.")
