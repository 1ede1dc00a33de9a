"""The provider contract suite, run for the Microsoft 365 provider against the emulator."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.providers.base import Provider
from mailtrawl.providers.graph.auth import ClientSecret
from mailtrawl.providers.graph.provider import CATEGORY_COLORS
from tests.providers.conftest import FOUR, MakeProvider, new_app
from tests.providers.contract import *  # noqa: F403 - the contract's tests run here
from tests.providers.contract import ContractBackend, Delivered, StoredMessage

_COLOR_NAMES = {preset: name for name, preset in CATEGORY_COLORS.items()}


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class EmulatorBackend:
    """The contract's view of the platform: the emulator's control plane."""

    def __init__(self, emu: EmulatorProcess) -> None:
        self.emu = emu

    def deliver(
        self,
        raw: bytes,
        recipients: list[str],
        folder: str = "inbox",
        received: datetime | None = None,
    ) -> list[Delivered]:
        body: dict[str, Any] = {
            "mime": base64.b64encode(raw).decode(),
            "recipients": recipients,
            "folder": folder,
        }
        if received is not None:
            body["receivedDateTime"] = received.isoformat()
        answer = self.emu.control("POST", "/deliver", body)
        return [
            Delivered(d["mailbox"], d["immutableId"], d["internetMessageId"])
            for d in answer["delivered"]
        ]

    def messages(self, mailbox: str) -> dict[str, StoredMessage]:
        snapshot = self.emu.snapshot(mailbox)
        out = {}
        for folder in snapshot["folders"]:
            for m in folder["messages"]:
                out[m["immutableId"]] = StoredMessage(
                    message_id=m["immutableId"],
                    folder=m["folder"],
                    subject=m["subject"],
                    categories=tuple(m["categories"]),
                    is_read=m["isRead"],
                    is_draft=m["isDraft"],
                    received=_when(m["receivedDateTime"]),
                    attachment_sha256=tuple(a["sha256"] for a in m["attachments"]),
                )
        return out

    def purged(self, mailbox: str) -> set[str]:
        return {m["immutableId"] for m in self.emu.snapshot(mailbox)["purged"]}

    def master_categories(self, mailbox: str) -> dict[str, str]:
        return {
            c["displayName"]: _COLOR_NAMES.get(c["color"], c["color"])
            for c in self.emu.snapshot(mailbox)["masterCategories"]
        }

    def add_user(
        self, upn: str, *, mail: str | None, has_mailbox: bool = True, enabled: bool = True
    ) -> None:
        self.emu.control(
            "POST",
            "/users",
            {
                "userPrincipalName": upn,
                "mail": mail,
                "hasMailbox": has_mailbox,
                "accountEnabled": enabled,
            },
        )

    def expire_changes(self, mailbox: str) -> None:
        self.emu.control("POST", "/delta/expire", {"mailboxes": [mailbox]})

    def set_faults(self, **faults: float) -> None:
        self.emu.settings(faults=faults)

    def own_credentials(self) -> dict[str, Any]:
        app = new_app(self.emu, dict.fromkeys(FOUR, True))
        return {"client_id": app["clientId"], "credential": ClientSecret(app["secret"]["value"])}

    def injected_faults(self, credentials: dict[str, Any] | None = None) -> int:
        stats = self.emu.stats()
        if credentials is None:
            return sum(stats["injectedFaults"].values())
        by_app = {k.lower(): v for k, v in stats["injectedFaultsByApp"].items()}
        return int(by_app.get(str(credentials["client_id"]).lower(), 0))


@pytest.fixture(params=["m365"])
def provider_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(provider_kind: str, emulator: EmulatorProcess) -> ContractBackend:
    assert provider_kind == "m365"
    return EmulatorBackend(emulator)


@pytest.fixture
def make_provider(provider_kind: str, make_m365: MakeProvider) -> MakeProvider:
    assert provider_kind == "m365"
    return make_m365


@pytest.fixture
def provider(make_provider: MakeProvider) -> Provider:
    return make_provider()
