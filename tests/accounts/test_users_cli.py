"""`mailtrawl users` as an administrator uses it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from mailtrawl.accounts import service, sessions
from mailtrawl.accounts.models import User
from mailtrawl.audit.models import AuditEntry
from mailtrawl.cli.main import app
from mailtrawl.config import load_settings
from mailtrawl.storage.engine import make_engine, make_session_factory

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MAILTRAWL_DATABASE_URL", database_url)
    return database_url


def _run(*args: str, input_text: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), input=input_text)
    return result.exit_code, result.output


def _users() -> dict[str, dict[str, object]]:
    code, out = _run("users", "list", "--json")
    assert code == 0, out
    return {row["username"]: row for row in json.loads(out)}


def _audit_operations() -> list[tuple[str, str]]:
    engine = make_engine(load_settings())
    try:
        with make_session_factory(engine)() as session:
            rows = session.execute(
                select(AuditEntry.operation, AuditEntry.actor).order_by(AuditEntry.seq)
            ).all()
            return [(op, actor) for op, actor in rows]
    finally:
        engine.dispose()


def test_create_admin_from_a_file_stdin_or_the_prompt(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    code, out = _run("users", "create-admin", "Root", "--password-file", str(secret))
    assert code == 0, out
    assert PASSWORD not in out
    # A second administrator needs --another.
    code, out = _run("users", "create-admin", "other", "--password-stdin", input_text=PASSWORD)
    assert code == 1
    assert "administrator exists already" in out
    code, out = _run(
        "users",
        "create-admin",
        "other",
        "--another",
        "--password-stdin",
        input_text=PASSWORD + "\n",
    )
    assert code == 0, out
    # Typed twice at a hidden prompt.
    code, out = _run(
        "users", "create", "viewer1", "--role", "viewer", input_text=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert code == 0, out
    assert PASSWORD not in out
    users = _users()
    assert {name: row["role"] for name, row in users.items()} == {
        "root": "admin",
        "other": "admin",
        "viewer1": "viewer",
    }
    assert all("password" not in key or key == "password_changed_at" for key in users["root"])
    operations = _audit_operations()
    assert [op for op, _ in operations] == ["user.create"] * 3
    assert all(actor.startswith("cli:") for _, actor in operations)
    # And they can sign in.
    engine = make_engine(load_settings())
    try:
        with make_session_factory(engine).begin() as session:
            user = service.authenticate(
                session, username="ROOT", password=PASSWORD, source_ip="127.0.0.1"
            )
            assert user.password_hash.startswith("$argon2id$")
    finally:
        engine.dispose()


def test_refusals_are_one_sentence(tmp_path: Path) -> None:
    code, out = _run("users", "create-admin", "root", "--password-stdin", input_text="short\n")
    assert code == 1
    assert out.startswith("error: The password is too short")
    code, out = _run(
        "users", "create", "bad name", "--role", "viewer", "--password-stdin", input_text=PASSWORD
    )
    assert code == 1
    assert "A username is 1 to 64 characters" in out
    secret = tmp_path / "p"
    secret.write_text(PASSWORD)
    code, out = _run(
        "users",
        "create",
        "x",
        "--role",
        "viewer",
        "--password-file",
        str(secret),
        "--password-stdin",
    )
    assert code == 1
    assert "not both" in out
    assert _run("users", "disable", "nobody")[1].startswith("error: No user named 'nobody'")


def test_roles_activity_and_password_resets(tmp_path: Path) -> None:
    assert _run("users", "create-admin", "root", "--password-stdin", input_text=PASSWORD)[0] == 0
    assert (
        _run(
            "users", "create", "ana", "--role", "analyst", "--password-stdin", input_text=PASSWORD
        )[0]
        == 0
    )
    # The last administrator stays an administrator and stays enabled.
    code, out = _run("users", "set-role", "root", "viewer")
    assert code == 1
    assert "no active administrator" in out
    assert _run("users", "disable", "root")[0] == 1
    assert _run("users", "set-role", "ana", "admin")[0] == 0
    assert _users()["ana"]["role"] == "admin"

    # Disabling and resetting a password end the user's sessions.
    settings = load_settings()
    engine = make_engine(settings)
    try:
        factory = make_session_factory(engine)

        def open_one() -> str:
            with factory.begin() as session:
                user = session.scalar(select(User).where(User.username == "ana"))
                assert user is not None
                value, _ = sessions.start_session(
                    session, user, source_ip=None, user_agent=None, settings=settings
                )
                return value

        def live(value: str) -> bool:
            with factory() as session:
                return sessions.resolve_session(session, value, settings=settings) is not None

        first = open_one()
        code, out = _run("users", "disable", "ANA")
        assert code == 0, out
        assert not live(first)
        assert _users()["ana"]["active"] is False
        assert _run("users", "enable", "ana")[0] == 0
        second = open_one()
        assert live(second)
        new = "a different passphrase"
        code, out = _run("users", "reset-password", "ana", "--password-stdin", input_text=new)
        assert code == 0, out
        assert not live(second)
        with factory.begin() as session:
            assert service.authenticate(session, username="ana", password=new, source_ip=None)
    finally:
        engine.dispose()
    code, out = _run("users", "list")
    assert code == 0
    assert "ana" in out
    assert "admin" in out
    operations = [op for op, _ in _audit_operations()]
    assert operations.count("user.update") == 3  # set-role, disable, enable
    assert operations[-1] == "user.password_reset"
