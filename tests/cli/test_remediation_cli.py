"""`mailtrawl act`, `restore`, `approvals`, `actions` and `vault` as an administrator uses them.

Each test investigates one phish delivered to alice's and bob's inboxes, then acts on the
hits; outcomes are read from the emulator's mailboxes, the command output and the receipts.
"""

from __future__ import annotations

import csv
import io
import json
import os
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from mailtrawl.cli.main import app
from mailtrawl.cli.remediation import printable
from mailtrawl.emulator.testing import EmulatorProcess

SENDER = "payroll@fabrikarn.example"
PHISH_ID = "<payroll-8@fabrikarn.example>"
# Attacker-controlled: a spreadsheet formula, an 8-bit terminal escape (CSI: clear screen;
# mail platforms drop the 7-bit ones from headers) and a right-to-left override.
HOSTILE_SUBJECT = "=1+1 \x9b2J Payroll \u202eetadpu"
MAILBOXES = ["alice@contoso.com", "bob@contoso.com"]


def _run(
    *args: str, env: dict[str, str] | None = None, input: str | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env, input=input)
    return result.exit_code, result.output


def _json(out: str) -> Any:
    return json.loads(out[min(i for i in (out.find("{"), out.find("[")) if i >= 0) :])


@pytest.fixture
def investigation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: EmulatorProcess
) -> str:
    """A store configured for the emulator, and a completed investigation with two hits."""
    for name in list(os.environ):
        if name.startswith("MAILTRAWL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOGNAME", "first-admin")
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
    message["From"] = f"Payroll <{SENDER}>"
    message["Subject"] = HOSTILE_SUBJECT
    message["Message-ID"] = PHISH_ID
    message.set_content("Confirm your bank details today.")
    emulator.deliver(message.as_bytes(), MAILBOXES)
    code, out = _run("investigate", "--config", "contoso", "--from", SENDER, "--json")
    assert code == 0, out
    document = _json(out)
    assert len(document["results"]) == 2
    return str(document["investigation"]["id"])


def _folders(emulator: EmulatorProcess, mailbox: str) -> list[str]:
    snapshot = emulator.snapshot(mailbox)
    return [
        f["wellKnownName"] or f["displayName"]
        for f in snapshot["folders"]
        for m in f["messages"]
        if m["internetMessageId"] == PHISH_ID
    ]


def test_act_runs_in_the_foreground_then_receipts_and_restore(
    investigation: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    code, out = _run("act", investigation, "--action", "junk", "--dry-run")
    assert code == 0, out
    assert "Move to Junk Email (dry run: nothing changed): 2 messages in 2 mailboxes" in out
    assert "(2 will change, 0 already done)" in out
    assert "by folder: inbox 2" in out
    assert "alice@contoso.com" in out
    code, out = _run(
        "act", investigation, "--action", "junk", "--only", "mailbox=alice@contoso.com", input="n\n"
    )
    assert code == 1
    assert "1 messages in 1 mailboxes" in out
    assert "cancelled; nothing was recorded" in out
    assert [_folders(emulator, m) for m in MAILBOXES] == [["inbox"], ["inbox"]]
    assert _run("actions", "list", "--json")[1].strip() == "[]"

    code, out = _run("act", investigation, "--action", "junk", "--note", "payroll phish", "--yes")
    assert code == 0, out
    assert "junk completed: 2 messages — applied 2, verified 2, unchanged 0, failed 0" in out
    assert [_folders(emulator, m) for m in MAILBOXES] == [["junkemail"], ["junkemail"]]
    [action] = _json(_run("actions", "list", "--json")[1])
    assert action["requested_by"] == "cli:first-admin"
    assert action["options"]["note"] == "payroll phish"
    assert f"mailtrawl actions receipts {action['id']}" in out

    code, out = _run("actions", "show", action["id"])
    assert code == 0, out
    assert "junk — completed" in out
    assert "note: payroll phish" in out
    code, out = _run("actions", "receipts", action["id"])
    assert code == 0, out
    assert out.count("verified") == 2
    assert "inbox → junkemail" in out
    # The subject's escape sequences are shown, not obeyed.
    assert "\x9b" not in out
    assert "\u202e" not in out
    assert printable(HOSTILE_SUBJECT) in out
    assert "\\x9b2J Payroll \\u202eetadpu" in out

    target = tmp_path / "receipts.csv"
    code, out = _run(
        "actions", "receipts", action["id"], "--format", "csv", "--output", str(target)
    )
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    assert [r["mailbox"] for r in rows] == MAILBOXES
    assert all(r["subject"].startswith("'=1+1") for r in rows)
    code, out = _run("actions", "receipts", action["id"], "--format", "csv", "--state", "failed")
    assert code == 0, out
    assert len(list(csv.DictReader(out.splitlines()))) == 0
    code, out = _run("actions", "receipts", action["id"], "--format", "json", "--state", "verified")
    assert code == 0, out
    assert [r["state"] for r in json.loads(out)] == ["verified", "verified"]

    code, out = _run("restore", action["id"], "--mailbox", "bob@contoso.com", "--dry-run")
    assert code == 0, out
    assert "Restore (dry run: nothing changed): 1 messages in 1 mailboxes" in out
    code, out = _run("restore", action["id"], "--yes", "--json")
    assert code == 0, out
    restored = _json(out)
    assert restored["preview"]["messages"] == 2
    assert restored["action"]["counts"]["verified"] == 2
    assert [_folders(emulator, m) for m in MAILBOXES] == [["inbox"], ["inbox"]]
    code, out = _run("restore", action["id"], "--yes")
    assert code == 1
    assert "0 messages" in out

    code, out = _run("audit", "list", "--entity-id", action["id"], "--json")
    operations = [(e["operation"], e["actor"]) for e in reversed(_json(out)["items"])]
    assert operations == [
        ("remediation.request", "cli:first-admin"),
        ("remediation.execute", "mailtrawl-worker"),
    ]


def test_purge_waits_for_another_administrator(
    investigation: str, emulator: EmulatorProcess
) -> None:
    code, out = _run(
        "act", investigation, "--action", "purge", "--only", "mailbox=bob@contoso.com", "--yes"
    )
    assert code == 0, out
    assert "needs approval: every purge action needs a second administrator's approval" in out
    action_id = out.split("mailtrawl approvals approve ")[1].split()[0]
    assert _folders(emulator, "bob@contoso.com") == ["inbox"]

    code, out = _run("approvals", "list")
    assert code == 0, out
    assert action_id in out
    assert "why: every purge action" in out
    code, out = _run("approvals", "approve", action_id)
    assert code == 1
    assert "four-eyes" in out
    code, out = _run("approvals", "approve", action_id, "--wait", env={"LOGNAME": "second-admin"})
    assert code == 0, out
    assert "purge completed: 1 messages — applied 1, verified 1" in out
    assert _folders(emulator, "bob@contoso.com") == []
    assert _folders(emulator, "alice@contoso.com") == ["inbox"]
    shown = _json(_run("actions", "show", action_id, "--json")[1])
    assert shown["decided_by"] == "cli:second-admin"

    vault = _json(_run("vault", "status", "--json")[1])
    assert vault["messages"] == 1
    assert vault["retention_days"] == 30
    assert _run("vault", "sweep")[1].strip() == "Erased 0 expired vault entries."

    # The second purge (alice) is rejected: nothing happens to her mailbox.
    code, out = _run("act", investigation, "--action", "purge", "--json")
    assert code == 0, out
    pending = _json(out)
    assert pending["preview"]["excluded"] == {"purged already (restore it first)": 1}
    assert pending["action"]["status"] == "awaiting_approval"
    code, out = _run(
        "approvals",
        "reject",
        pending["action"]["id"],
        "--note",
        "not this one",
        env={"LOGNAME": "second-admin"},
    )
    assert code == 0, out
    assert "rejected; no mailbox was changed" in out
    assert _folders(emulator, "alice@contoso.com") == ["inbox"]
    assert _run("approvals", "list")[1].strip() == "No action is waiting for approval."


def test_failures_give_a_non_zero_exit_and_refusals_a_sentence(
    investigation: str, emulator: EmulatorProcess, graph: httpx.Client
) -> None:
    # Someone deletes bob's copy for good before the action runs.
    [copy] = [
        m
        for f in emulator.snapshot("bob@contoso.com")["folders"]
        for m in f["messages"]
        if m["internetMessageId"] == PHISH_ID
    ]
    answer = graph.post(f"users/bob@contoso.com/messages/{copy['id']}/permanentDelete")
    assert answer.status_code == 204, answer.text
    code, out = _run("act", investigation, "--action", "trash", "--yes")
    assert code == 1, out
    assert "applied 1, verified 1, unchanged 0, failed 1" in out
    assert "--state failed" in out
    assert _folders(emulator, "alice@contoso.com") == ["deleteditems"]
    action_id = _json(_run("actions", "list", "--json")[1])[0]["id"]
    code, out = _run("actions", "receipts", action_id, "--state", "failed")
    assert "bob@contoso.com" in out
    assert "error: not found" in out

    # --background only queues it: nothing runs until a worker does.
    code, out = _run(
        "act",
        investigation,
        "--action",
        "warn",
        "--only",
        "mailbox=alice@contoso.com",
        "--background",
        "--yes",
    )
    assert code == 0, out
    assert "queued; `mailtrawl worker` or `mailtrawl serve` runs it" in out
    queued = _json(_run("actions", "list", "--status", "queued", "--json")[1])
    assert [(a["action"], a["counts"]["total"]) for a in queued] == [("warn", 1)]
    [alice_copy] = [
        m
        for f in emulator.snapshot("alice@contoso.com")["folders"]
        for m in f["messages"]
        if m["internetMessageId"] == PHISH_ID
    ]
    assert alice_copy["categories"] == []

    assert _run("act", investigation, "--action", "explode")[0] == 1
    code, out = _run("act", investigation, "--action", "junk", "--only", "sender=x")
    assert code == 1
    assert "--only takes KEY=VALUE" in out
    code, out = _run("act", "not-an-id", "--action", "junk", "--yes")
    assert code == 1
    assert "error:" in out
    code, out = _run("actions", "show", "00000000-0000-0000-0000-000000000000")
    assert code == 1
    assert "No action" in out
    code, out = _run("approvals", "approve", action_id)
    assert code == 1
    assert "not awaiting approval" in out
