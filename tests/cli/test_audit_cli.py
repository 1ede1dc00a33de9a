"""`mailtrawl audit`: list, verify (exit 1 naming the broken entry) and export."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from mailtrawl.cli.main import app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("MAILTRAWL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAILTRAWL_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_token_changes_are_audited_verified_and_exported(home: Path) -> None:
    code, out = _run("tokens", "create", "--name", "automation", "--json")
    assert code == 0, out
    token = json.loads(out)
    assert _run("tokens", "revoke", token["id"])[0] == 0

    code, out = _run("audit", "list", "--json")
    assert code == 0, out
    items = json.loads(out)["items"]
    assert [e["operation"] for e in items] == ["token.revoke", "token.create"]
    assert all(e["actor"].startswith("cli:") for e in items)
    assert token["token"] not in out

    code, out = _run("audit", "verify")
    assert code == 0
    assert "2 entries" in out

    code, out = _run("audit", "export", "--format", "jsonl")
    assert code == 0
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2]
    code, out = _run("audit", "export", "--format", "csv")
    assert [row["operation"] for row in csv.DictReader(io.StringIO(out))] == [
        "token.create",
        "token.revoke",
    ]

    engine = create_engine(f"sqlite:///{home / 'db.sqlite'}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_entries SET actor = 'someone' WHERE seq = 1"))
    engine.dispose()
    code, out = _run("audit", "verify")
    assert code == 1
    assert "seq 1: edited" in out
