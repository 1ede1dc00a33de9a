"""A planted client secret never appears in the database, the logs or any API response."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailtrawl.config import Settings
from mailtrawl.emulator.testing import EmulatorProcess


def test_planted_secret_is_nowhere(
    api: TestClient,
    admin: dict[str, str],
    emulator: EmulatorProcess,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    planted = "Plant3d~" + "S3cr3tValue" * 3
    emulator.control("POST", f"/apps/{emulator.info['client_id']}/secrets", {"value": planted})
    body = {
        "name": "Leak check",
        "tenant": emulator.tenant_id,
        "client_id": emulator.info["client_id"],
        "credential": {"kind": "secret", "client_secret": planted},
        "cloud": "custom",
        "custom": {
            "authority_host": emulator.authority_host,
            "graph_endpoint": emulator.authority_host,
            "ca_bundle_pem": Path(str(emulator.ca_bundle)).read_text(),
        },
        "test_mailbox": "alice@contoso.com",
        "authorized_domains": ["contoso.com"],
    }
    caplog.set_level(logging.DEBUG)
    responses = [api.post("/api/v1/mail-configurations", json=body, headers=admin)]
    cid = responses[0].json()["id"]
    responses.append(api.post(f"/api/v1/mail-configurations/{cid}/test", headers=admin))
    assert responses[-1].json()["status"] == "ok"
    # A failing test goes down the error paths, which must not echo the credential either.
    emulator.control("POST", f"/apps/{emulator.info['client_id']}/secrets/rotate")
    responses.append(api.post(f"/api/v1/mail-configurations/{cid}/test", headers=admin))
    assert responses[-1].json()["status"] == "failed"
    responses += [
        api.get("/api/v1/mail-configurations", headers=admin),
        api.get(f"/api/v1/mail-configurations/{cid}", headers=admin),
        api.patch(f"/api/v1/mail-configurations/{cid}", json={"enabled": False}, headers=admin),
        api.post("/api/v1/mail-configurations", json=body, headers=admin),  # 409
        api.post(
            "/api/v1/mail-configurations",
            json={**body, "name": "x", "tenant": "bad tenant"},
            headers=admin,
        ),  # 422
    ]
    for response in responses:
        assert planted not in response.text, response.request.url
    assert caplog.records, "the run should have logged something (httpx, msal)"
    assert planted not in caplog.text
    if settings.database_url.startswith("sqlite"):
        db_file = Path(settings.database_url.removeprefix("sqlite:///"))
        for path in db_file.parent.glob(db_file.name + "*"):
            assert planted.encode() not in path.read_bytes()
    else:
        from sqlalchemy import create_engine, text

        engine = create_engine(
            settings.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        with engine.connect() as connection:
            dump = " ".join(
                str(row) for row in connection.execute(text("SELECT * FROM mail_configurations"))
            )
        engine.dispose()
        assert planted not in dump
