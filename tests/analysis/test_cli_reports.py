"""`mailtrawl reports analyze`: human and JSON output, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from mailtrawl.cli.main import app
from tests.analysis.builders import SAMPLES, message

runner = CliRunner()


def test_json_output_one_object_per_file(tmp_path: Path) -> None:
    wrapped = tmp_path / "report.eml"
    wrapped.write_bytes(
        message(
            sender="bob@contoso.com",
            subject="Report",
            attached_emails=((SAMPLES / "credential_phish.eml").read_bytes(),),
        )
    )
    result = runner.invoke(
        app,
        [
            "reports",
            "analyze",
            str(SAMPLES / "benign_newsletter.eml"),
            str(wrapped),
            "--json",
            "--own-domain",
            "contoso.com",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [item["verdict"] for item in data] == ["undetected", "phishing"]
    assert data[1]["reporter"] == "bob@contoso.com"
    assert data[1]["from"] == "service@paypa1.com"
    assert data[1]["indicators"]
    assert data[1]["evidence"]


def test_human_output_and_unreadable_file_exit_code(tmp_path: Path) -> None:
    missing = tmp_path / "missing.eml"
    result = runner.invoke(
        app, ["reports", "analyze", str(SAMPLES / "credential_phish.eml"), str(missing)]
    )
    assert result.exit_code == 1
    assert "verdict:  PHISHING" in result.output
    assert "score" in result.output
    assert "- " in result.output
    assert f"== {missing}" in result.output
    assert "cannot read the file" in result.output
