"""Remediation over the REST API end to end: the real app and worker, the emulator's mailboxes.

An investigation finds one phish in four mailboxes (three inboxes, one junk folder); the
tests act on its hits and read the outcome back from the emulator, the API and the audit log.
"""

from __future__ import annotations

import csv
import io
import json
import time
from email.message import EmailMessage
from typing import Any

from fastapi.testclient import TestClient

from mailtrawl.accounts.models import Role
from mailtrawl.accounts.service import create_token
from mailtrawl.emulator.testing import EmulatorProcess
from tests.api.test_investigations_api import _configuration

PHISH_FROM = "security@contoso-helpdesk.example"
PHISH_ID = "<reset-77@contoso-helpdesk.example>"
INBOXES = ["alice@contoso.com", "bob@contoso.com", "erin@contoso.com"]
JUNKED = "frank@contoso.com"
Headers = dict[str, str]


def _phish() -> bytes:
    message = EmailMessage()
    message["From"] = f"IT Helpdesk <{PHISH_FROM}>"
    message["To"] = "alice@contoso.com"
    message["Subject"] = '=HYPERLINK("https://evil.example") Reset your password'
    message["Message-ID"] = PHISH_ID
    message.set_content("Reset at https://contoso-helpdesk.example/reset")
    return message.as_bytes()


def _headers(api: TestClient, name: str, role: Role) -> Headers:
    with api.app.state.ctx.sessions.begin() as session:  # type: ignore[attr-defined]
        return {"Authorization": f"Bearer {create_token(session, name=name, role=role).token}"}


def _investigate(api: TestClient, admin: Headers, emulator: EmulatorProcess) -> str:
    emulator.deliver(_phish(), INBOXES)
    emulator.deliver(_phish(), [JUNKED], folder="junkemail")
    created = api.post("/api/v1/mail-configurations", json=_configuration(emulator), headers=admin)
    assert created.status_code == 201, created.text
    started = api.post(
        "/api/v1/investigations",
        json={
            "name": "reset phish",
            "configuration": "contoso",
            "query": {"match": {"from": PHISH_FROM}},
        },
        headers=admin,
    )
    assert started.status_code == 202, started.text
    view = _wait_for(api, admin, f"/api/v1/investigations/{started.json()['id']}", "completed")
    assert view["progress"]["hits"] == 4
    return str(view["id"])


def _wait_for(api: TestClient, headers: Headers, path: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = api.get(path, headers=headers).json()
        if view["status"] in statuses:
            return view
        time.sleep(0.05)
    raise AssertionError(f"{path} still {view.get('status')}: {view}")


def _finished(api: TestClient, headers: Headers, action_id: str) -> dict[str, Any]:
    return _wait_for(api, headers, f"/api/v1/actions/{action_id}", "completed", "rejected")


def _folders(emulator: EmulatorProcess, mailbox: str) -> list[str]:
    """Where the phish is in a mailbox: folder names, and "purged" for purged copies."""
    snapshot = emulator.snapshot(mailbox)
    found = [
        f["wellKnownName"] or f["displayName"]
        for f in snapshot["folders"]
        for m in f["messages"]
        if m["internetMessageId"] == PHISH_ID
    ]
    return found + ["purged" for m in snapshot["purged"] if m["internetMessageId"] == PHISH_ID]


def _audit(api: TestClient, admin: Headers, entity_id: str) -> list[dict[str, Any]]:
    page = api.get("/api/v1/audit", params={"entity_id": entity_id}, headers=admin).json()
    return list(reversed(page["items"]))  # oldest first


def test_preview_execute_receipts_audit_and_restore(
    api: TestClient, admin: Headers, viewer: Headers, emulator: EmulatorProcess
) -> None:
    investigation = _investigate(api, admin, emulator)
    analyst = _headers(api, "analyst one", Role.ANALYST)
    actions = f"/api/v1/investigations/{investigation}/actions"

    assert api.post(actions, json={"action": "trash"}, headers=viewer).status_code == 403
    assert api.post(actions, json={"action": "trash"}).status_code == 401

    dry = api.post(actions, json={"action": "trash", "dry_run": True}, headers=analyst)
    assert dry.status_code == 200, dry.text
    assert dry.json()["action"] is None
    preview = dry.json()["preview"]
    assert preview["messages"] == 4
    assert preview["mailboxes"] == 4
    assert preview["will_change"] == 4
    assert preview["by_folder"] == {"inbox": 3, "junkemail": 1}
    assert preview["requires_approval"] is False
    assert {m["mailbox"] for m in preview["by_mailbox"]} == {*INBOXES, JUNKED}
    # A dry run changes nothing and records nothing.
    assert _folders(emulator, "alice@contoso.com") == ["inbox"]
    assert api.get(actions, headers=viewer).json()["items"] == []

    requested = api.post(
        actions, json={"action": "trash", "note": "confirmed phish"}, headers=analyst
    )
    assert requested.status_code == 201, requested.text
    action = requested.json()["action"]
    assert action["status"] == "queued"
    assert action["requested_by"] == "analyst one"
    assert requested.json()["preview"]["messages"] == 4
    done = _finished(api, viewer, action["id"])
    assert done["status"] == "completed"
    assert done["counts"] | {"total": 4} == {
        "total": 4,
        "planned": 0,
        "applied": 4,
        "verified": 4,
        "unchanged": 0,
        "failed": 0,
        "undone": 0,
    }
    for mailbox in [*INBOXES, JUNKED]:
        assert _folders(emulator, mailbox) == ["deleteditems"], mailbox

    receipts = api.get(f"/api/v1/actions/{action['id']}/items", headers=viewer).json()
    assert receipts["total"] == 4
    assert {
        (r["mailbox"], r["source_folder"], r["result_folder"], r["state"])
        for r in receipts["items"]
    } == {
        *((m, "inbox", "deleteditems", "verified") for m in INBOXES),
        (JUNKED, "junkemail", "deleteditems", "verified"),
    }
    only_frank = api.get(
        f"/api/v1/actions/{action['id']}/items",
        params={"mailbox": JUNKED.upper(), "state": ["verified", "failed"]},
        headers=viewer,
    ).json()
    assert [r["mailbox"] for r in only_frank["items"]] == [JUNKED]
    assert (
        api.get(
            f"/api/v1/actions/{action['id']}/items", params={"state": "bogus"}, headers=viewer
        ).status_code
        == 422
    )

    exported = api.get(
        f"/api/v1/actions/{action['id']}/export", params={"format": "csv"}, headers=viewer
    )
    assert exported.status_code == 200
    assert f"receipts-{action['id']}.csv" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 4
    # A hostile subject is not a spreadsheet formula.
    assert all(r["subject"].startswith("'=HYPERLINK(") for r in rows)
    assert {r["state"] for r in rows} == {"verified"}
    as_json = api.get(
        f"/api/v1/actions/{action['id']}/export", params={"format": "json"}, headers=viewer
    )
    assert [r["subject"][:1] for r in json.loads(as_json.text)] == ["="] * 4

    listed = api.get("/api/v1/actions", params={"status": "completed"}, headers=viewer).json()
    assert [a["id"] for a in listed["items"]] == [action["id"]]
    assert listed["more"] is False
    assert api.get(actions, headers=viewer).json()["items"][0]["id"] == action["id"]

    entries = _audit(api, admin, action["id"])
    assert [e["operation"] for e in entries] == ["remediation.request", "remediation.execute"]
    assert entries[0]["actor"] == "analyst one"
    assert entries[0]["role"] == "analyst"
    assert entries[0]["after"]["messages"] == 4
    assert entries[1]["after"]["verified"] == 4

    # Restore: every copy goes back where it was.
    restore_path = f"/api/v1/actions/{action['id']}/restore"
    dry_restore = api.post(restore_path, json={"dry_run": True}, headers=analyst)
    assert dry_restore.status_code == 200
    assert dry_restore.json()["preview"]["messages"] == 4
    restored = api.post(restore_path, json={"note": "false positive"}, headers=analyst)
    assert restored.status_code == 201, restored.text
    restore = _finished(api, viewer, restored.json()["action"]["id"])
    assert restore["action"] == "restore"
    assert restore["undoes"] == action["id"]
    assert restore["counts"]["verified"] == 4
    for mailbox in INBOXES:
        assert _folders(emulator, mailbox) == ["inbox"], mailbox
    assert _folders(emulator, JUNKED) == ["junkemail"]
    original = api.get(f"/api/v1/actions/{action['id']}", headers=viewer).json()
    assert original["counts"]["undone"] == 4
    again = api.post(restore_path, headers=analyst)
    assert again.status_code == 422
    assert again.json()["detail"].startswith("Nothing of this action can be restored")
    cannot = api.post(f"/api/v1/actions/{restore['id']}/restore", headers=analyst)
    assert cannot.status_code == 409
    assert "cannot be undone" in cannot.json()["detail"]


def test_purge_waits_for_a_second_administrator(
    api: TestClient, admin: Headers, viewer: Headers, emulator: EmulatorProcess
) -> None:
    investigation = _investigate(api, admin, emulator)
    analyst = _headers(api, "analyst one", Role.ANALYST)
    second = _headers(api, "second admin", Role.ADMIN)

    requested = api.post(
        f"/api/v1/investigations/{investigation}/actions",
        json={"action": "purge", "selection": {"mailboxes": ["alice@contoso.com"]}},
        headers=admin,
    )
    assert requested.status_code == 201, requested.text
    action = requested.json()["action"]
    assert action["status"] == "awaiting_approval"
    assert action["requires_approval"] is True
    assert "purge" in action["approval_reason"]
    time.sleep(0.3)  # a worker that ignored the approval would have started by now
    assert _folders(emulator, "alice@contoso.com") == ["inbox"]

    waiting = api.get("/api/v1/approvals", headers=viewer).json()
    assert [a["id"] for a in waiting["items"]] == [action["id"]]

    approve = f"/api/v1/actions/{action['id']}/approve"
    assert api.post(approve, headers=analyst).status_code == 403  # the role
    own = api.post(approve, json={"note": "mine"}, headers=admin)
    assert own.status_code == 403  # four-eyes
    assert "four-eyes" in own.json()["detail"]
    assert api.get(f"/api/v1/actions/{action['id']}", headers=viewer).json()["status"] == (
        "awaiting_approval"
    )
    approved = api.post(approve, json={"note": "confirmed"}, headers=second)
    assert approved.status_code == 200, approved.text
    assert approved.json()["decided_by"] == "second admin"
    assert approved.json()["decision_note"] == "confirmed"
    done = _finished(api, viewer, action["id"])
    assert done["counts"]["verified"] == 1
    assert _folders(emulator, "alice@contoso.com") == ["purged"]
    assert _folders(emulator, "bob@contoso.com") == ["inbox"]
    assert api.get("/api/v1/approvals", headers=viewer).json()["items"] == []
    assert api.post(approve, headers=second).status_code == 403  # no longer waiting

    assert api.get("/api/v1/vault", headers=viewer).status_code == 403
    vault = api.get("/api/v1/vault", headers=admin).json()
    assert vault["messages"] == 1
    assert vault["bytes"] > 0
    assert vault["retention_days"] == 30

    operations = [(e["operation"], e["actor"]) for e in _audit(api, admin, action["id"])]
    assert operations == [
        ("remediation.request", "admin test"),
        ("remediation.approve", "second admin"),
        ("remediation.execute", "mailtrawl-worker"),
    ]

    # The purged copy comes back from the vault (a new item; the purged one stays purged).
    restored = api.post(f"/api/v1/actions/{action['id']}/restore", json={}, headers=analyst)
    assert restored.status_code == 201, restored.text
    assert _finished(api, viewer, restored.json()["action"]["id"])["counts"]["verified"] == 1
    assert _folders(emulator, "alice@contoso.com") == ["inbox", "purged"]


def test_reject_leaves_the_mailboxes_untouched(
    api: TestClient, admin: Headers, viewer: Headers, emulator: EmulatorProcess
) -> None:
    investigation = _investigate(api, admin, emulator)
    analyst = _headers(api, "analyst one", Role.ANALYST)
    other_analyst = _headers(api, "analyst two", Role.ANALYST)
    actions = f"/api/v1/investigations/{investigation}/actions"

    requested = api.post(actions, json={"action": "purge"}, headers=analyst)
    assert requested.status_code == 201, requested.text
    action_id = requested.json()["action"]["id"]
    reject = f"/api/v1/actions/{action_id}/reject"
    refused = api.post(reject, json={"note": "not mine"}, headers=other_analyst)
    assert refused.status_code == 403
    assert refused.json()["detail"]
    rejected = api.post(reject, json={"note": "wrong campaign"}, headers=admin)
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    time.sleep(0.3)
    for mailbox in INBOXES:
        assert _folders(emulator, mailbox) == ["inbox"]
    assert _folders(emulator, JUNKED) == ["junkemail"]
    receipts = api.get(f"/api/v1/actions/{action_id}/items", headers=viewer).json()
    assert {r["state"] for r in receipts["items"]} == {"planned"}
    assert api.post(f"/api/v1/actions/{action_id}/approve", headers=admin).status_code == 403
    entries = _audit(api, admin, action_id)
    assert [e["operation"] for e in entries] == ["remediation.request", "remediation.reject"]
    assert entries[1]["after"]["note"] == "wrong campaign"
    restore = api.post(f"/api/v1/actions/{action_id}/restore", headers=analyst)
    assert restore.status_code == 409
    assert "only an executed action" in restore.json()["detail"].lower()

    # Refusals: each a status and a sentence.
    nothing = api.post(
        actions,
        json={"action": "junk", "selection": {"campaigns": ["<nope@example>"]}},
        headers=analyst,
    )
    assert nothing.status_code == 422
    assert nothing.json()["detail"].startswith("The selection holds no message")
    assert api.post(actions, json={"action": "explode"}, headers=analyst).status_code == 422
    unknown = api.post(
        "/api/v1/investigations/00000000-0000-0000-0000-000000000000/actions",
        json={"action": "junk"},
        headers=analyst,
    )
    assert unknown.status_code == 404
    assert unknown.json()["detail"]
    for path in (
        "/api/v1/actions/not-an-id",
        "/api/v1/actions/00000000-0000-0000-0000-000000000000/items",
        "/api/v1/actions/00000000-0000-0000-0000-000000000000/export",
    ):
        missing = api.get(path, headers=viewer)
        assert missing.status_code == 404, path
        assert "mailtrawl actions list" in missing.json()["detail"]
    assert (
        api.post(
            "/api/v1/actions/00000000-0000-0000-0000-000000000000/approve", headers=admin
        ).status_code
        == 404
    )
    paths = api.get("/api/openapi.json").json()["paths"]
    assert paths["/api/v1/actions/{action_id}/approve"]["post"]["tags"] == ["remediation"]
