"""`POST /api/v1/mail-configurations/{id}/test` against the emulator, through the real provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from mailtrawl.emulator.testing import EmulatorProcess


def _configuration(
    emu: EmulatorProcess, secret: str, name: str = "Emulated Contoso"
) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "m365",
        "tenant": emu.tenant_id,
        "client_id": emu.info["client_id"],
        "credential": {"kind": "secret", "client_secret": secret},
        "cloud": "custom",
        "custom": {
            "authority_host": emu.authority_host,
            "graph_endpoint": emu.authority_host,
            "ca_bundle_pem": Path(str(emu.ca_bundle)).read_text(),
        },
        "test_mailbox": "alice@contoso.com",
        "authorized_domains": ["contoso.com"],
    }


def test_a_correct_configuration_passes_every_check(
    api: TestClient, admin: dict[str, str], emulator: EmulatorProcess
) -> None:
    created = api.post(
        "/api/v1/mail-configurations",
        json=_configuration(emulator, emulator.info["client_secret"]),
        headers=admin,
    )
    assert created.status_code == 201, created.text
    tested = api.post(f"/api/v1/mail-configurations/{created.json()['id']}/test", headers=admin)
    assert tested.status_code == 200, tested.text
    view = tested.json()
    assert view["status"] == "ok", view["last_test"]
    assert view["last_test_at"] is not None
    assert all(c["status"] in ("ok", "warning") for c in view["last_test"]["checks"])
    # The test left nothing behind in the test mailbox but the warning category.
    snapshot = emulator.snapshot("alice@contoso.com")
    drafts = next(f for f in snapshot["folders"] if f["wellKnownName"] == "drafts")
    assert drafts["messages"] == []
    assert emulator.info["client_secret"] not in tested.text


def test_a_wrong_secret_fails_with_the_fix(
    api: TestClient, admin: dict[str, str], emulator: EmulatorProcess
) -> None:
    secret_id = (
        "5a1b2c3d-0000-4000-8000-000000000001"  # what people paste by mistake: the Secret ID
    )
    created = api.post(
        "/api/v1/mail-configurations", json=_configuration(emulator, secret_id), headers=admin
    )
    view = api.post(
        f"/api/v1/mail-configurations/{created.json()['id']}/test", headers=admin
    ).json()
    assert view["status"] == "failed"
    first = view["last_test"]["checks"][0]
    assert first["status"] == "failed"
    assert "Value" in (first["fix"] or "") + first["message"]
    listed = api.get("/api/v1/mail-configurations", headers=admin).json()
    assert listed[0]["status"] == "failed"
