"""A mail configuration reaching the Microsoft 365 emulator, for dashboard tests."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from mailtrawl.configurations import service as configurations_service
from mailtrawl.configurations.schemas import ConfigurationCreate
from mailtrawl.emulator.testing import EmulatorProcess


def emulated_body(emulator: EmulatorProcess, name: str = "contoso", **extra: Any) -> dict[str, Any]:
    """A configuration document for the emulator's tenant and test app."""
    return {
        "name": name,
        "tenant": emulator.tenant_id,
        "client_id": emulator.info["client_id"],
        "credential": {"kind": "secret", "client_secret": emulator.info["client_secret"]},
        "cloud": "custom",
        "custom": {
            "authority_host": emulator.authority_host,
            "graph_endpoint": emulator.authority_host,
            "ca_bundle_pem": Path(str(emulator.ca_bundle)).read_text(),
        },
        "authorized_domains": ["contoso.com"],
        **extra,
    }


def emulated_configuration(
    client: TestClient, emulator: EmulatorProcess, name: str = "contoso", **extra: Any
) -> uuid.UUID:
    """Store a configuration reaching the emulator (through the service, no test)."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions.begin() as session:
        record = configurations_service.create_configuration(
            session,
            box=ctx.box,
            data=ConfigurationCreate.model_validate(emulated_body(emulator, name, **extra)),
        )
        return record.id
