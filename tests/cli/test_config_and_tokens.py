"""`mailtrawl config`, `tokens` and `doctor` as an administrator uses them, against the emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailtrawl.cli.main import app
from mailtrawl.emulator.testing import EmulatorProcess


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith("MAILTRAWL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(
    *args: str, env: dict[str, str] | None = None, input_text: str | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env, input=input_text)
    return result.exit_code, result.output


def test_tokens_are_shown_once_and_can_be_revoked(home: Path) -> None:
    code, out = _run("tokens", "create", "--name", "automation", "--role", "analyst", "--json")
    assert code == 0, out
    created = json.loads(out)
    assert created["token"].startswith("mtk_")
    code, out = _run("tokens", "list", "--json")
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["automation"]
    assert created["token"] not in out
    assert _run("tokens", "revoke", created["id"])[0] == 0
    assert json.loads(_run("tokens", "list", "--json")[1])[0]["revoked_at"] is not None
    assert _run("tokens", "revoke", "not-an-id")[0] == 1


def test_config_add_test_show_doctor_remove(
    home: Path, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    secret = emulator.info["client_secret"]
    ca = tmp_path / "ca.pem"
    ca.write_text(Path(str(emulator.ca_bundle)).read_text())
    common = [
        "--tenant",
        emulator.tenant_id,
        "--client-id",
        emulator.info["client_id"],
        "--cloud",
        "custom",
        "--authority-host",
        emulator.authority_host,
        "--graph-endpoint",
        emulator.authority_host,
        "--ca-bundle",
        str(ca),
        "--test-mailbox",
        "alice@contoso.com",
        "--authorized-domain",
        "contoso.com",
    ]
    code, out = _run(
        "config",
        "add",
        "m365",
        "--name",
        "contoso",
        *common,
        "--client-secret-env",
        "M365_SECRET",
        "--json",
        env={"M365_SECRET": secret},
    )
    assert code == 0, out
    view = json.loads(out)
    assert view["status"] == "ok"
    assert secret not in out
    # A secret typed at the hidden prompt works the same, and never as a plain argument.
    code, out = _run(
        "config",
        "add",
        "m365",
        "--name",
        "prompted",
        *common,
        "--no-test",
        input_text=secret + "\n",
    )
    assert code == 0, out
    assert secret not in out
    assert (
        _run("config", "add", "m365", "--name", "argv", *common, "--client-secret", secret)[0] == 2
    )
    code, out = _run("config", "list")
    assert "✓ contoso" in out
    assert "? prompted" in out
    code, out = _run("config", "show", "contoso")
    assert "••••" in out
    assert "last test" in out
    assert "Mailboxes the app can reach" in out
    assert _run("config", "test", "contoso")[0] == 0
    code, out = _run("doctor", "--json")
    report = json.loads(out)
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["configuration:contoso"]["status"] == "ok"
    assert by_name["configuration:prompted"]["status"] == "warning"
    assert secret not in out
    emulator.control("POST", f"/apps/{emulator.info['client_id']}/secrets/rotate")
    code, out = _run("config", "test", "contoso")
    assert code == 1
    assert "✗ contoso" in out
    assert "expired" in out.lower()
    assert _run("config", "remove", "contoso", "--yes")[0] == 0
    assert [c["name"] for c in json.loads(_run("config", "list", "--json")[1])] == ["prompted"]


def test_config_add_rejects_bad_input_with_the_field(home: Path) -> None:
    code, out = _run(
        "config",
        "add",
        "m365",
        "--name",
        "x",
        "--tenant",
        "not a tenant",
        "--client-id",
        "123",
        "--authorized-domain",
        "contoso.com",
        "--no-test",
        "--client-secret-env",
        "NOPE_SECRET",
        env={"NOPE_SECRET": "s3cret-value-long-enough"},
    )
    assert code == 2
    assert "tenant" in out
    assert "client_id" in out


def test_serve_refuses_a_public_address(home: Path) -> None:
    code, out = _run("serve", "--host", "0.0.0.0")  # noqa: S104 - the address being refused
    assert code == 1
    assert "loopback" in out
