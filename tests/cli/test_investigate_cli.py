"""`mailtrawl investigate` and `mailtrawl investigations` as an analyst uses them."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailtrawl.cli.main import app
from mailtrawl.emulator.testing import EmulatorProcess

SENDER = "billing@fabrikarn.example"


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: EmulatorProcess) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith("MAILTRAWL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    ca = tmp_path / "ca.pem"
    ca.write_text(Path(str(emulator.ca_bundle)).read_text())
    code, out = _run(
        "config",
        "add",
        "m365",
        "--name",
        "contoso",
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
        "--authorized-domain",
        "contoso.com",
        "--no-test",
        "--client-secret-env",
        "SECRET",
        env={"SECRET": emulator.info["client_secret"]},
    )
    assert code == 0, out
    message = EmailMessage()
    message["From"] = f"Fabrikam AR <{SENDER}>"
    message["Subject"] = "Overdue invoice 49333"
    message["Message-ID"] = "<inv-49333@fabrikarn.example>"
    message.set_content("Please pay invoice 49333 today.")
    message.add_attachment(
        b"<html>pay</html>", maintype="text", subtype="html", filename="INV-49333.htm"
    )
    emulator.deliver(message.as_bytes(), ["alice@contoso.com", "bob@contoso.com"])
    return tmp_path


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def test_investigate_with_options_json(configured: Path) -> None:
    code, out = _run(
        "investigate",
        "--config",
        "contoso",
        "--from",
        SENDER,
        "--attachment-ext",
        "htm",
        "--since",
        "2000-01-01",
        "--json",
    )
    assert code == 0, out
    document = json.loads(out[out.index("{") :])
    assert document["investigation"]["status"] == "completed"
    results = document["results"]
    assert [r["mailbox"] for r in results] == ["alice@contoso.com", "bob@contoso.com"]
    for result in results:
        assert result["folder"] == "inbox"
        assert result["internet_message_id"] == "<inv-49333@fabrikarn.example>"
        assert result["sender"] == SENDER
        assert result["subject"] == "Overdue invoice 49333"
        assert result["message_id"]
        assert result["received"]
    investigation_id = document["investigation"]["id"]
    code, out = _run("investigations", "list")
    assert investigation_id in out
    assert "completed" in out
    code, out = _run("investigations", "show", investigation_id)
    assert "skipped: carol@contoso.com" in out
    code, out = _run("investigations", "results", investigation_id, "--campaigns")
    assert "2 copies" in out
    code, out = _run("investigations", "results", investigation_id, "--export", "csv")
    assert out.count("fabrikarn.example") >= 2
    assert _run("investigations", "stop", investigation_id)[1].strip().endswith("completed")


def test_hunt_file_explain_and_errors(configured: Path) -> None:
    hunt = configured / "invoice.yaml"
    hunt.write_text(
        "name: Invoice phish\nconfiguration: contoso\nscope: {users: [bob@contoso.com]}\n"
        "match:\n  all:\n    - body: pay invoice\n    - attachment_name: 'INV-*.htm'\n"
    )
    code, out = _run("investigate", "--hunt", str(hunt), "--explain")
    assert code == 0, out
    assert "Server (filter)" in out
    assert "attachment_name" in out
    code, out = _run("investigate", "--hunt", str(hunt), "--json")
    assert code == 0, out
    document = json.loads(out[out.index("{") :])
    assert [r["mailbox"] for r in document["results"]] == ["bob@contoso.com"]
    assert document["investigation"]["name"] == "Invoice phish"
    bad = configured / "bad.yaml"
    bad.write_text("match:\n  all:\n    - subjet: x\n    - body_regex: 'a(b'\n")
    code, out = _run("investigate", "--config", "contoso", "--hunt", str(bad))
    assert code == 1
    assert "match.all[0].subjet" in out
    assert "did you mean 'subject'" in out
    assert "match.all[1].body_regex" in out
    code, out = _run(
        "investigate",
        "--config",
        "contoso",
        "--from",
        SENDER,
        "--scope",
        "groups:Sales Team",
        "--json",
    )
    assert code == 0, out
    document = json.loads(out[out.index("{") :])
    assert [r["mailbox"] for r in document["results"]] == ["bob@contoso.com"]
    assert (
        _run("investigate", "--config", "contoso", "--from", SENDER, "--scope", "teams:x")[0] == 1
    )
    code, out = _run("investigate", "--config", "nope", "--from", SENDER)
    assert code == 1
    assert "No mail configuration" in out


def test_investigate_with_a_duration_then_watch(configured: Path) -> None:
    code, out = _run(
        "investigate",
        "--config",
        "contoso",
        "--from",
        SENDER,
        "--user",
        "alice@contoso.com",
        "--duration",
        "24h",
        "--action",
        "junk",
    )
    assert code == 0, out
    assert "active until" in out
    assert "`mailtrawl watch`" in out
    code, out = _run("watch", "--json")
    assert code == 0, out
    status = json.loads(out)
    (active,) = status["active"]
    assert (active["duration"], active["action"], active["configuration"]) == (
        "24h",
        "junk",
        "contoso",
    )
    assert active["active_until"]
    assert status["notifications"] is False
    assert status["poll_seconds"] == 60
    code, out = _run("watch", "--once")
    assert code == 0, out
    assert "Active investigations: 1" in out
    assert "action junk" in out
    # Stopping ends the watch at once.
    code, out = _run("investigations", "stop", active["id"])
    assert code == 0, out
    assert json.loads(_run("watch", "--json")[1])["active"] == []


def test_bad_durations_are_explained(configured: Path) -> None:
    code, out = _run("investigate", "--config", "contoso", "--from", SENDER, "--duration", "soon")
    assert code != 0
    assert "'soon' is not a duration" in out
    code, out = _run("investigate", "--config", "contoso", "--from", SENDER, "--action", "purge")
    assert code != 0
    assert "an automatic action needs a duration" in out
