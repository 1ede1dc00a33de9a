"""Shared fixtures: one emulator process per test worker, reset before each test that uses it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailtrawl.emulator.testing import EmulatorProcess

FIXTURES = Path(__file__).parent / "fixtures"
TEST_TENANT = FIXTURES / "tenant"


@pytest.fixture(scope="session")
def emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess.start(
        tenant_dir=TEST_TENANT, state_dir=tmp_path_factory.mktemp("emulator-state")
    )
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emulator(emulator_session: EmulatorProcess) -> EmulatorProcess:
    """The test tenant, as loaded: mailboxes, apps, settings and statistics all reset."""
    emulator_session.reset()
    return emulator_session


@pytest.fixture
def graph(emulator: EmulatorProcess) -> Iterator[httpx.Client]:
    """An httpx client for Graph v1.0 with a valid token for the test app (all four permissions)."""
    token = emulator.token()
    with emulator.client(
        base_url=emulator.graph + "/", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        yield client
