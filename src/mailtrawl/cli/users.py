"""`mailtrawl users`: dashboard accounts (argon2id passwords; admin, analyst or viewer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.orm import Session

from mailtrawl.accounts.models import Role, User
from mailtrawl.cli.common import cli_actor, echo_json, fail, open_store
from mailtrawl.storage.engine import write_session

users_app = typer.Typer(help="Dashboard user accounts.", no_args_is_help=True)

PasswordFile = typer.Option(
    None,
    "--password-file",
    exists=True,
    dir_okay=False,
    readable=True,
    help="Read the password from this file (its first line).",
)
PasswordStdin = typer.Option(
    False, "--password-stdin", help="Read the password from standard input (its first line)."
)


def _password(password_file: Path | None, password_stdin: bool, *, prompt: str) -> str:
    """The password from a file, standard input, or a hidden prompt typed twice."""
    if password_file is not None and password_stdin:
        fail("give --password-file or --password-stdin, not both.")
    if password_file is not None:
        text = password_file.read_text(encoding="utf-8")
    elif password_stdin:
        text = sys.stdin.readline()
    else:
        return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))
    lines = text.splitlines()
    if not lines or not lines[0]:
        fail("the password is empty.")
    return lines[0]


def _view(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "active": user.is_active,
        "created_at": user.created_at,
        "last_login_at": user.last_login_at,
        "password_changed_at": user.password_changed_at,
    }


def _audit(
    session: Session,
    operation: str,
    user: User,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    from mailtrawl.audit.service import record

    record(
        session,
        actor=cli_actor(),
        operation=operation,
        entity_type="user",
        entity_id=str(user.id),
        before=before,
        after=after if after is not None else _view(user),
    )


def _create(
    username: str, role: Role, display_name: str, password: str, *, check_admins: bool
) -> None:
    from mailtrawl.accounts.errors import AccountError
    from mailtrawl.accounts.service import active_admin_count, create_user

    with open_store() as store, write_session(store.sessions) as session:
        if check_admins and active_admin_count(session) > 0:
            fail(
                "an administrator exists already; add --another to create one more, or "
                "`mailtrawl users create NAME --role admin`."
            )
        try:
            user = create_user(
                session, username=username, password=password, role=role, display_name=display_name
            )
        except AccountError as exc:
            fail(exc.message)
        _audit(session, "user.create", user)
        name = user.username
    typer.echo(f"Created {role.value} '{name}'; they can sign in to the dashboard now.")


@users_app.command("create-admin")
def create_admin(
    username: str = typer.Argument(..., help="The administrator's username."),
    password_file: Path | None = PasswordFile,
    password_stdin: bool = PasswordStdin,
    display_name: str = typer.Option("", "--display-name"),
    another: bool = typer.Option(
        False, "--another", help="Create it even though an administrator exists."
    ),
) -> None:
    """Create the first administrator (prompts for the password unless given otherwise)."""
    password = _password(password_file, password_stdin, prompt="Password")
    _create(username, Role.ADMIN, display_name, password, check_admins=not another)


@users_app.command("create")
def create(
    username: str = typer.Argument(..., help="The new user's username."),
    role: Role = typer.Option(..., "--role", help="admin, analyst or viewer."),
    password_file: Path | None = PasswordFile,
    password_stdin: bool = PasswordStdin,
    display_name: str = typer.Option("", "--display-name"),
) -> None:
    """Create a user with an initial password."""
    password = _password(password_file, password_stdin, prompt="Password")
    _create(username, role, display_name, password, check_admins=False)


@users_app.command("list")
def list_users(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List users (never their password hashes)."""
    from mailtrawl.accounts.service import list_users as list_all

    with open_store() as store, store.sessions.begin() as session:
        rows = [_view(u) for u in list_all(session)]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        state = "active" if row["active"] else "disabled"
        last = (
            row["last_login_at"].isoformat(timespec="seconds") if row["last_login_at"] else "never"
        )
        typer.echo(f"{row['username']:<24} {row['role']:<8} {state:<9} last sign-in {last}")


def _change(username: str, operation: str, change: Any) -> User:
    """Apply `change(session, user_id)` to the user named `username`, audited."""
    from mailtrawl.accounts.errors import AccountError
    from mailtrawl.accounts.service import find_user

    with open_store() as store, write_session(store.sessions) as session:
        try:
            user = find_user(session, username)
            before = _view(user)
            change(session, user.id)
        except AccountError as exc:
            fail(exc.message)
        _audit(session, operation, user, before=before)
        session.expunge(user)
        return user


@users_app.command("set-role")
def set_role(
    username: str = typer.Argument(...),
    role: Role = typer.Argument(..., help="admin, analyst or viewer."),
) -> None:
    """Change a user's role (the last active administrator cannot be demoted)."""
    from mailtrawl.accounts.service import set_role as apply

    user = _change(username, "user.update", lambda s, uid: apply(s, user_id=uid, role=role))
    typer.echo(f"'{user.username}' is now {role.value}.")


@users_app.command("disable")
def disable(username: str = typer.Argument(...)) -> None:
    """Stop a user from signing in; ends their sessions and stops their API tokens."""
    from mailtrawl.accounts.service import set_active

    user = _change(username, "user.update", lambda s, uid: set_active(s, user_id=uid, active=False))
    typer.echo(f"Disabled '{user.username}'; their sessions ended.")


@users_app.command("enable")
def enable(username: str = typer.Argument(...)) -> None:
    """Let a disabled user sign in again."""
    from mailtrawl.accounts.service import set_active

    user = _change(username, "user.update", lambda s, uid: set_active(s, user_id=uid, active=True))
    typer.echo(f"Enabled '{user.username}'.")


@users_app.command("reset-password")
def reset_password(
    username: str = typer.Argument(...),
    password_file: Path | None = PasswordFile,
    password_stdin: bool = PasswordStdin,
) -> None:
    """Set a new password for a user (for a forgotten one); ends their sessions."""
    from mailtrawl.accounts.service import set_password

    password = _password(password_file, password_stdin, prompt="New password")
    user = _change(
        username,
        "user.password_reset",
        lambda s, uid: set_password(s, user_id=uid, new=password),
    )
    typer.echo(f"Set a new password for '{user.username}'; their sessions ended.")
