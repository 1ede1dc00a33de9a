"""`/api/v1/investigations` end to end: the real app and worker, the emulator's mailboxes."""

from __future__ import annotations

import csv
import io
import json
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from mailtrawl.emulator.testing import EmulatorProcess

PHISH_FROM = "security@contoso-helpdesk.example"


def _configuration(emu: EmulatorProcess) -> dict[str, Any]:
    return {
        "name": "contoso",
        "provider": "m365",
        "tenant": emu.tenant_id,
        "client_id": emu.info["client_id"],
        "credential": {"kind": "secret", "client_secret": emu.info["client_secret"]},
        "cloud": "custom",
        "custom": {
            "authority_host": emu.authority_host,
            "graph_endpoint": emu.authority_host,
            "ca_bundle_pem": Path(str(emu.ca_bundle)).read_text(),
        },
        "authorized_domains": ["contoso.com"],
    }


def _phish(subject: str = '=cmd|"/c calc"!A1 Verify your mailbox') -> bytes:
    message = EmailMessage()
    message["From"] = f"IT Helpdesk <{PHISH_FROM}>"
    message["To"] = "alice@contoso.com"
    message["Subject"] = subject
    message["Message-ID"] = "<verify-123@contoso-helpdesk.example>"
    message.set_content("Your mailbox is full. Verify at https://contoso-helpdesk.example/verify")
    return message.as_bytes()


def _wait(api: TestClient, headers: dict[str, str], investigation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = api.get(f"/api/v1/investigations/{investigation_id}", headers=headers).json()
        if view["status"] in ("completed", "stopped", "failed"):
            return dict(view)
        time.sleep(0.1)
    raise AssertionError(f"investigation still {view['status']}")


def test_create_poll_results_campaigns_export(
    api: TestClient, admin: dict[str, str], viewer: dict[str, str], emulator: EmulatorProcess
) -> None:
    recipients = ["alice@contoso.com", "bob@contoso.com", "erin@contoso.com"]
    emulator.deliver(_phish(), recipients)
    emulator.deliver(_phish(), ["frank@contoso.com"], folder="junkemail")
    assert (
        api.post(
            "/api/v1/mail-configurations", json=_configuration(emulator), headers=admin
        ).status_code
        == 201
    )
    created = api.post(
        "/api/v1/investigations",
        json={
            "name": "helpdesk phish",
            "configuration": "contoso",
            "query": {"match": {"from": PHISH_FROM}},
        },
        headers=admin,
    )
    assert created.status_code == 202, created.text
    investigation_id = created.json()["id"]
    assert created.json()["status"] == "queued"
    assert created.json()["plan"]["server"]["mode"] == "filter"

    view = _wait(api, viewer, investigation_id)
    assert view["status"] == "completed", view
    progress = view["progress"]
    assert progress["hits"] == 4
    assert progress["mailboxes_failed"] == 0
    # carol is disabled, dave has no mailbox: skipped, with the reason.
    assert progress["mailboxes_skipped"] >= 2
    assert progress["percent"] == 100.0
    assert progress["requests"] > 0

    results = api.get(
        f"/api/v1/investigations/{investigation_id}/results",
        params={"sort": "mailbox"},
        headers=viewer,
    ).json()
    assert results["total"] == 4
    assert [r["mailbox"] for r in results["items"]] == [*recipients, "frank@contoso.com"]
    assert {r["folder"] for r in results["items"]} == {"inbox", "junkemail"}
    assert all(r["sender"] == PHISH_FROM for r in results["items"])
    junk = api.get(
        f"/api/v1/investigations/{investigation_id}/results",
        params={"folder": "junkemail", "limit": 1},
        headers=viewer,
    ).json()
    assert junk["total"] == 1
    assert junk["items"][0]["mailbox"] == "frank@contoso.com"

    campaigns = api.get(
        f"/api/v1/investigations/{investigation_id}/campaigns", headers=viewer
    ).json()
    assert campaigns["total"] == 1
    assert campaigns["items"][0]["copies"] == 4
    assert campaigns["items"][0]["mailboxes"] == 4

    skipped = api.get(
        f"/api/v1/investigations/{investigation_id}/mailboxes",
        params={"status": "skipped"},
        headers=viewer,
    ).json()
    reasons = {m["mailbox"]: m["reason"] for m in skipped["items"]}
    assert reasons["carol@contoso.com"].startswith("disabled")
    assert reasons["dave@contoso.com"].startswith("no-mailbox")

    exported = api.get(
        f"/api/v1/investigations/{investigation_id}/export",
        params={"format": "csv"},
        headers=viewer,
    )
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 4
    # A hostile subject is not a spreadsheet formula.
    assert all(r["subject"].startswith("'=cmd") for r in rows)
    as_json = api.get(
        f"/api/v1/investigations/{investigation_id}/export",
        params={"format": "json"},
        headers=viewer,
    )
    assert len(json.loads(as_json.text)) == 4

    again = api.post(f"/api/v1/investigations/{investigation_id}/duplicate", headers=admin)
    assert again.status_code == 202
    assert again.json()["duplicated_from"] == investigation_id
    assert _wait(api, viewer, again.json()["id"])["progress"]["hits"] == 4

    listed = api.get("/api/v1/investigations", headers=viewer).json()
    assert [i["id"] for i in listed["items"]] == [again.json()["id"], investigation_id]


def test_invalid_queries_answer_422_with_the_path(
    api: TestClient, admin: dict[str, str], emulator: EmulatorProcess
) -> None:
    api.post("/api/v1/mail-configurations", json=_configuration(emulator), headers=admin)
    answer = api.post(
        "/api/v1/investigations",
        json={
            "name": "bad",
            "configuration": "contoso",
            "query": {"match": {"all": [{"subject": "x"}, {"body_regex": "a(b"}]}},
        },
        headers=admin,
    )
    assert answer.status_code == 422
    [problem] = answer.json()["detail"]
    assert problem["loc"] == ["body", "query", "match", "all", 1, "body_regex"]
    assert "position" in problem["msg"]
    unknown = api.post(
        "/api/v1/investigations",
        json={"name": "x", "configuration": "nope", "query": {}},
        headers=admin,
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "configuration"]
    explained = api.post(
        "/api/v1/investigations/explain",
        json={"query": {"match": {"body": "verify your mailbox"}}, "mailboxes": 10},
        headers=admin,
    )
    assert explained.status_code == 200
    assert explained.json()["server"]["mode"] == "search"
    assert (
        api.get("/api/v1/investigations/query-schema", headers=admin).json()["title"]
        == "mailtrawl query"
    )


def test_roles_and_stop(
    api: TestClient, admin: dict[str, str], viewer: dict[str, str], emulator: EmulatorProcess
) -> None:
    api.post("/api/v1/mail-configurations", json=_configuration(emulator), headers=admin)
    body = {"name": "x", "configuration": "contoso", "query": {"match": {"subject": "anything"}}}
    assert api.post("/api/v1/investigations", json=body, headers=viewer).status_code == 403
    assert api.post("/api/v1/investigations", json=body).status_code == 401
    created = api.post("/api/v1/investigations", json=body, headers=admin).json()
    assert (
        api.post(f"/api/v1/investigations/{created['id']}/stop", headers=viewer).status_code == 403
    )
    stopped = api.post(f"/api/v1/investigations/{created['id']}/stop", headers=admin)
    assert stopped.status_code == 200
    assert stopped.json()["status"] in ("stopping", "stopped", "completed")
    assert _wait(api, viewer, created["id"])["status"] in ("stopped", "completed")
    assert api.get("/api/v1/investigations/not-an-id", headers=viewer).status_code == 404
