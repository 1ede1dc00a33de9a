"""`mailtrawl reports submit|list|show|verdict`, `reports intel import`, `reports tokens`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailtrawl.cli.main import app
from tests.analysis.builders import message
from tests.reports.conftest import phish, wrapped


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("MAILTRAWL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_submit_list_show_and_verdict(home: Path, tmp_path: Path) -> None:
    original = phish()
    first = tmp_path / "alice.eml"
    first.write_bytes(wrapped(original, reporter="alice@contoso.com"))
    second = tmp_path / "bob.eml"
    second.write_bytes(wrapped(original, reporter="bob@contoso.com"))
    code, out = _run("reports", "submit", str(first), str(second), "--json")
    assert code == 0, out
    submitted = json.loads(out)
    assert submitted[0]["created"] is True
    assert submitted[1]["created"] is False
    assert submitted[0]["case_id"] == submitted[1]["case_id"]
    assert submitted[0]["verdict"] in ("phishing", "malicious")
    case_id = submitted[0]["case_id"]
    code, out = _run("reports", "list")
    assert code == 0
    assert case_id in out
    assert "x2" in out
    code, out = _run("reports", "verdict", case_id, "simulation", "--message", "Our drill")
    assert code == 0, out
    code, out = _run("reports", "show", case_id, "--json")
    shown = json.loads(out)
    assert (shown["verdict"], shown["verdict_source"]) == ("simulation", "analyst")
    assert [r["address"] for r in shown["reporters"]] == ["alice@contoso.com", "bob@contoso.com"]
    code, out = _run("reports", "show", case_id)
    assert "SIMULATION" in out
    assert "alice@contoso.com via cli" in out
    assert _run("reports", "verdict", case_id, "bogus")[0] == 1
    assert _run("reports", "show", "not-an-id")[0] == 1
    code, out = _run("reports", "analyze", str(first), "--json")  # still works, stores nothing
    assert code == 0
    assert json.loads(out)[0]["reporter"] == "alice@contoso.com"


def test_intel_import_makes_a_listed_attachment_malicious(home: Path, tmp_path: Path) -> None:
    payload = b"%PDF-1.4 statement " + bytes(range(100))
    feed = tmp_path / "feed.csv"
    feed.write_text(f"type,value\nsha256,{hashlib.sha256(payload).hexdigest()}\n")
    code, out = _run("reports", "intel", "import", str(feed))
    assert code == 0, out
    assert "1 indicators" in out
    report = tmp_path / "stmt.eml"
    report.write_bytes(
        message(
            subject="Statement",
            text="See attached.",
            headers={"Message-ID": "<stmt-9@partner.example>"},
            attachments=(("statement.pdf", "application/pdf", payload),),
        )
    )
    code, out = _run("reports", "submit", str(report), "--json")
    assert code == 0, out
    assert json.loads(out)[0]["verdict"] == "malicious"
    bad = tmp_path / "bad.csv"
    bad.write_text("type,value\nsha256,nothex\n")
    code, out = _run("reports", "intel", "import", str(bad), "--strict")
    assert code == 1
    assert "line 2" in out


def test_reporter_tokens_create_list_revoke(home: Path) -> None:
    code, out = _run("reports", "tokens", "create", "gateway")
    assert code == 0, out
    token = out.splitlines()[0]
    assert token.startswith("mtr_")
    code, out = _run("reports", "tokens", "list", "--json")
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["gateway"]
    assert token not in out
    assert _run("reports", "tokens", "revoke", "gateway")[0] == 0
    assert json.loads(_run("reports", "tokens", "list", "--json")[1])[0]["revoked_at"]
    assert _run("reports", "tokens", "revoke", "nobody")[0] == 1
