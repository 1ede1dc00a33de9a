"""The runtime settings over the JSON API and the command line: the same rules and audit
entry as the Settings page, secrets never shown, and the connection test's category."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mailtrawl.accounts.models import Role
from mailtrawl.audit import service as audit
from mailtrawl.audit.schemas import AuditEntryView
from mailtrawl.cli.main import app as cli
from mailtrawl.cli.settings import parse_value
from mailtrawl.config import Settings
from mailtrawl.settings_store import service as store
from mailtrawl.storage.engine import write_session
from mailtrawl.web.app import create_app
from tests.accounts.helpers import bearer, make_token


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, worker=False)
    with TestClient(app) as client:
        yield client
    app.state.ctx.sessions.kw["bind"].dispose()


def _entries(client: TestClient, operation: str) -> list[AuditEntryView]:
    with client.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        return [
            e
            for e in audit.list_entries(session, operation=operation, limit=100).items
            if e.operation == operation
        ]


def test_analysts_read_the_effective_values_and_no_secret(api: TestClient) -> None:
    analyst = bearer(make_token(api, Role.ANALYST))
    answer = api.get("/api/v1/settings", headers=analyst)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["values"]) == set(store.EDITABLE)
    assert body["values"] == body["defaults"]
    assert body["overridden"] == {}
    text = answer.text.lower()
    for secret in ("database_url", "secret", "password", "key", "token"):
        assert secret not in text.replace("approval", ""), secret
    # Viewers do not read it.
    viewer = bearer(make_token(api, Role.VIEWER))
    assert api.get("/api/v1/settings", headers=viewer).status_code == 403


def test_admins_patch_validated_and_audited_as_the_page_does(api: TestClient) -> None:
    admin = bearer(make_token(api, Role.ADMIN))
    analyst = bearer(make_token(api, Role.ANALYST))
    refused = api.patch("/api/v1/settings", json={"approval_threshold": 5}, headers=analyst)
    assert refused.status_code == 403
    bad = api.patch(
        "/api/v1/settings",
        json={"approval_threshold": -1, "warning_notice_subject": "Hi $nobody", "nope": 1},
        headers=admin,
    )
    assert bad.status_code == 422
    detail = bad.json()["detail"]
    assert set(detail["errors"]) == {"approval_threshold", "warning_notice_subject", "nope"}
    assert "$nobody" in detail["errors"]["warning_notice_subject"]
    assert _entries(api, "settings.update") == []

    changed = api.patch(
        "/api/v1/settings",
        json={"approval_threshold": 5, "warning_category": "Phish - SOC"},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["values"]["approval_threshold"] == 5
    assert body["values"]["warning_category"] == "Phish - SOC"
    assert body["defaults"]["approval_threshold"] == 100
    assert set(body["overridden"]) == {"approval_threshold", "warning_category"}
    [entry] = _entries(api, "settings.update")
    assert entry.before == {"approval_threshold": 100, "warning_category": "Suspicious - mailtrawl"}
    assert entry.after == {"approval_threshold": 5, "warning_category": "Phish - SOC"}
    assert entry.actor == "admin token"
    # Back to the default: the override goes.
    back = api.patch("/api/v1/settings", json={"approval_threshold": 100}, headers=admin)
    assert set(back.json()["overridden"]) == {"warning_category"}
    # Not a JSON object: refused by the schema.
    assert api.patch("/api/v1/settings", json=[1], headers=admin).status_code == 422


def test_parse_value_keeps_text_and_reads_json_or_lists() -> None:
    assert parse_value("warning_category", "123") == "123"
    assert parse_value("approval_threshold", "50") == 50
    assert parse_value("approval_required", "false") is False
    assert parse_value("approval_always_for", "delete, purge") == ["delete", "purge"]
    assert parse_value("approval_always_for", '["purge"]') == ["purge"]
    assert parse_value("organisation_name", "  Contoso ") == "  Contoso "


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("MAILTRAWL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAILTRAWL_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    return tmp_path


def _run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.output


def test_the_cli_shows_and_sets_with_the_same_rules_and_audit(home: Path) -> None:
    code, out = _run("settings", "show", "--json")
    assert code == 0, out
    assert json.loads(out)["values"]["approval_threshold"] == 100
    code, out = _run("settings", "set", "approval_threshold", "7")
    assert code == 0, out
    assert "approval_threshold = 7" in out
    code, out = _run("settings", "set", "warning_notice_body", "-", stdin="<p>$mailbox</p>")
    assert code == 0, out
    code, out = _run("settings", "set", "approval_threshold", "--", "-3")
    assert code == 1
    assert "approval_threshold:" in out
    code, out = _run("settings", "set", "database_url", "sqlite://")
    assert code == 1
    assert "not a runtime setting" in out
    code, out = _run("settings", "show")
    assert code == 0, out
    assert "approval_threshold       7  (set by cli:" in out
    assert "<p>$mailbox</p>" in out
    code, out = _run("audit", "list", "--operation", "settings.update", "--json")
    entries = json.loads(out)["items"]
    assert [e["after"] for e in entries] == [
        {"warning_notice_body": "<p>$mailbox</p>"},
        {"approval_threshold": 7},
    ]


def test_the_connection_test_uses_the_effective_warning_category(
    settings: Settings, emulator: object
) -> None:
    """An administrator's category (runtime override) is what the test creates."""
    from tests.web.emulated import emulated_configuration

    app = create_app(settings, worker=False)
    with TestClient(app) as client:
        ctx = app.state.ctx
        configuration = emulated_configuration(
            client,
            emulator,
            test_mailbox="alice@contoso.com",  # type: ignore[arg-type]
        )
        with write_session(ctx.sessions) as session:
            store.update_settings(
                session,
                settings=ctx.settings,
                changes={"warning_category": "Phish - ask the SOC"},
                actor="ada",
            )
        admin = bearer(make_token(client, Role.ADMIN))
        tested = client.post(f"/api/v1/mail-configurations/{configuration}/test", headers=admin)
        assert tested.status_code == 200, tested.text
        checks = {c["name"]: c for c in tested.json()["last_test"]["checks"]}
        assert checks["category"]["status"] == "ok", checks["category"]
        assert "Phish - ask the SOC" in checks["category"]["message"]
    app.state.ctx.sessions.kw["bind"].dispose()
    names = [c["displayName"] for c in emulator.snapshot("alice@contoso.com")["masterCategories"]]  # type: ignore[attr-defined]
    assert "Phish - ask the SOC" in names
    assert "Suspicious - mailtrawl" not in names
