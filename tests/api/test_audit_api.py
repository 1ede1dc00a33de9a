"""`/api/v1/audit`: changes made through the API leave entries naming who and from where."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from mailtrawl.emulator.testing import EmulatorProcess
from tests.api.test_investigations_api import _configuration


def _entries(api: TestClient, headers: dict[str, str], **params: str) -> list[dict[str, object]]:
    response = api.get("/api/v1/audit", params=params, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_changes_are_audited_with_actor_and_address(
    api: TestClient, admin: dict[str, str], viewer: dict[str, str], emulator: EmulatorProcess
) -> None:
    headers = {**admin, "User-Agent": "audit-test/1.0"}
    configuration = _configuration(emulator)
    created = api.post("/api/v1/mail-configurations", json=configuration, headers=headers)
    assert created.status_code == 201, created.text
    renamed = api.patch(
        "/api/v1/mail-configurations/contoso", json={"name": "contoso-2"}, headers=headers
    )
    assert renamed.status_code == 200, renamed.text
    started = api.post(
        "/api/v1/investigations",
        json={
            "name": "audit hunt",
            "configuration": "contoso-2",
            "query": {"match": {"subject": "invoice"}},
        },
        headers=headers,
    )
    assert started.status_code == 202, started.text
    investigation_id = started.json()["id"]
    assert (
        api.post(f"/api/v1/investigations/{investigation_id}/stop", headers=headers).status_code
        == 200
    )

    entries = _entries(api, admin)
    assert [e["operation"] for e in entries] == [
        "investigation.stop",
        "investigation.create",
        "configuration.update",
        "configuration.create",
    ]
    for entry in entries:
        assert entry["actor"] == "admin test"
        assert entry["role"] == "admin"
        assert entry["source_ip"] == "testclient"
        assert entry["user_agent"] == "audit-test/1.0"
        assert entry["outcome"] == "ok"
    create_entry = entries[3]
    assert create_entry["entity_id"] == created.json()["id"]
    assert entries[2]["before"]["name"] == "contoso"  # type: ignore[index]
    assert entries[2]["after"]["name"] == "contoso-2"  # type: ignore[index]
    assert entries[1]["entity_id"] == investigation_id
    # The credential never reaches the log.
    assert configuration["credential"]["client_secret"] not in json.dumps(entries)

    assert [e["seq"] for e in _entries(api, admin, operation="configuration.create")] == [1]
    verified = api.get("/api/v1/audit/verify", headers=admin).json()
    assert verified == {"ok": True, "entries": 4, "problems": []}
    export = api.get("/api/v1/audit/export", params={"format": "jsonl"}, headers=admin)
    assert export.status_code == 200
    assert [json.loads(line)["seq"] for line in export.text.splitlines()] == [1, 2, 3, 4]
    csv_export = api.get("/api/v1/audit/export", params={"format": "csv"}, headers=admin)
    assert csv_export.text.splitlines()[0].startswith("seq,at,actor")
    assert api.get("/api/v1/audit", headers=viewer).status_code == 403
    assert api.get("/api/v1/audit/verify", headers=viewer).status_code == 403


def test_deleting_a_configuration_is_audited(
    api: TestClient, admin: dict[str, str], emulator: EmulatorProcess
) -> None:
    created = api.post("/api/v1/mail-configurations", json=_configuration(emulator), headers=admin)
    assert created.status_code == 201
    assert api.delete("/api/v1/mail-configurations/contoso", headers=admin).status_code == 204
    entry = _entries(api, admin)[0]
    assert entry["operation"] == "configuration.delete"
    assert entry["before"]["name"] == "contoso"  # type: ignore[index]
    assert api.delete("/api/v1/mail-configurations/contoso", headers=admin).status_code == 404
    assert len(_entries(api, admin)) == 2
