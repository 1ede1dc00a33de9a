"""Fixtures for provider tests: Microsoft 365 providers connected to the emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.providers.graph.auth import ClientSecret, cloud_endpoints
from mailtrawl.providers.graph.provider import GraphProvider, GraphSettings
from mailtrawl.providers.retry import RetryPolicy

FOUR = ["Directory.Read.All", "Mail.ReadWrite", "MailboxSettings.ReadWrite", "User.Read.All"]
# Small waits: the emulator's Retry-After values in these tests are fractions of a second.
FAST_RETRY = RetryPolicy(max_attempts=12, base_delay=0.01, max_delay=0.1, budget=5.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def m365_settings(emu: EmulatorProcess, **overrides: Any) -> GraphSettings:
    """Settings for the emulator's test app (all four permissions), overridable."""
    options: dict[str, Any] = {
        "tenant": emu.tenant_id,
        "client_id": emu.info["client_id"],
        "credential": ClientSecret(emu.info["client_secret"]),
        "cloud": cloud_endpoints(
            "custom",
            authority_host=emu.authority_host,
            graph_endpoint=emu.graph,
            ca_bundle_path=emu.ca_bundle,
        ),
        "test_mailbox": "alice@contoso.com",
        "authorized_domains": ("contoso.com",),
        "retry": FAST_RETRY,
    }
    options.update(overrides)
    return GraphSettings(**options)


MakeProvider = Callable[..., GraphProvider]


@pytest.fixture
async def make_m365(emulator: EmulatorProcess) -> AsyncIterator[MakeProvider]:
    """Build Microsoft 365 providers on the emulator; all are closed after the test."""
    made: list[GraphProvider] = []

    def make(**overrides: Any) -> GraphProvider:
        provider = GraphProvider(m365_settings(emulator, **overrides))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def new_app(emu: EmulatorProcess, permissions: dict[str, bool], **extra: Any) -> dict[str, Any]:
    """Register an app through the control plane; answers its clientId and secret."""
    return dict(
        emu.control(
            "POST", "/apps", {"displayName": "provider test", "permissions": permissions, **extra}
        )
    )
