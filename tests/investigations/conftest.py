"""Investigation tests: a generated tenant with planted campaigns, served by the emulator,
and a mailtrawl store (SQLite, or PostgreSQL where a test asks) with a configuration for it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.config import Settings, load_settings
from mailtrawl.configurations.schemas import ConfigurationCreate
from mailtrawl.configurations.service import create_configuration
from mailtrawl.emulator.generator import generate
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.investigations import service
from mailtrawl.investigations.engine import EngineSettings
from mailtrawl.investigations.schemas import HitView, InvestigationCreate, InvestigationView
from mailtrawl.providers.retry import RetryPolicy
from mailtrawl.storage.engine import make_engine, make_session_factory, write_session
from mailtrawl.storage.migrate import upgrade_to_head
from mailtrawl.storage.secrets import SecretBox, open_secret_box
from mailtrawl.tasks.worker import build_runner, provider_factory
from tests.storage import databases

postgres_database = databases.postgres_database

# Small waits: the emulator's Retry-After values in these tests are fractions of a second.
FAST_RETRY = RetryPolicy(max_attempts=15, base_delay=0.01, max_delay=0.2, budget=20.0)
TENANT_SPEC = {"users": 60, "messages_per_mailbox": 40, "campaigns": 8, "seed": 21}


@dataclass(frozen=True)
class HuntTenant:
    directory: Path
    truth: dict[str, Any]

    @property
    def app(self) -> dict[str, Any]:
        document = json.loads((self.directory / "tenant.json").read_text())
        return dict(document["apps"][0])

    def campaign(self, campaign_id: str) -> dict[str, Any]:
        return next(c for c in self.truth["campaigns"] if c["id"] == campaign_id)


@pytest.fixture(scope="session")
def hunt_tenant(tmp_path_factory: pytest.TempPathFactory) -> HuntTenant:
    out = tmp_path_factory.mktemp("hunt-tenant")
    generate(out, **TENANT_SPEC)
    return HuntTenant(out, json.loads((out / "ground-truth.json").read_text()))


@pytest.fixture(scope="session")
def hunt_emulator(
    hunt_tenant: HuntTenant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess.start(
        tenant_dir=hunt_tenant.directory, state_dir=tmp_path_factory.mktemp("hunt-state")
    )
    try:
        yield emu
    finally:
        emu.stop()


@dataclass
class Store:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    configuration_id: uuid.UUID

    def create(
        self,
        query: dict[str, Any],
        *,
        name: str = "test",
        scope: dict[str, Any] | None = None,
    ) -> uuid.UUID:
        with write_session(self.sessions) as session:
            record = service.create_investigation(
                session,
                data=InvestigationCreate(
                    name=name,
                    configuration="hunt",
                    scope=scope,  # type: ignore[arg-type]
                    query=query,
                ),
                actor="tests",
            )
            return record.id

    def run_all(
        self, *, timeout: float = 120.0, lease_seconds: float = 60.0, **engine: Any
    ) -> None:
        runner = build_runner(
            self.sessions,
            self.box,
            poll_interval=0.05,
            lease_seconds=lease_seconds,
            # Small batches: several scan jobs per investigation run side by side.
            engine_settings=EngineSettings(**{"batch_size": 16, "chunk_size": 8, **engine}),
            factory=provider_factory(self.sessions, self.box, retry=FAST_RETRY),
        )

        async def go() -> None:
            try:
                await runner.run_until_idle(timeout)
            finally:
                await runner.stop()

        asyncio.run(go())

    def view(self, investigation_id: uuid.UUID) -> InvestigationView:
        with self.sessions() as session:
            return service.to_view(service.get_investigation(session, ref=investigation_id))

    def hits(self, investigation_id: uuid.UUID) -> list[HitView]:
        out: list[HitView] = []
        with self.sessions() as session:
            while True:
                page = service.list_hits(
                    session, ref=investigation_id, sort="mailbox", limit=1000, offset=len(out)
                )
                out.extend(page.items)
                if not page.items or len(out) >= page.total:
                    return out


def make_store(settings: Settings, emu: EmulatorProcess, app: dict[str, Any]) -> Store:
    engine = make_engine(settings)
    upgrade_to_head(settings, engine=engine)
    sessions = make_session_factory(engine)
    box = open_secret_box(settings)
    ca = Path(emu.ca_bundle).read_text() if emu.ca_bundle else None
    with sessions.begin() as session:
        record = create_configuration(
            session,
            box=box,
            data=ConfigurationCreate.model_validate(
                {
                    "name": "hunt",
                    "tenant": emu.tenant_id,
                    "client_id": app["clientId"],
                    "credential": {"kind": "secret", "client_secret": app["secrets"][0]["value"]},
                    "cloud": "custom",
                    "custom": {
                        "authority_host": emu.authority_host,
                        "graph_endpoint": emu.authority_host,
                        "ca_bundle_pem": ca,
                    },
                    "authorized_domains": ["contoso.com"],
                }
            ),
        )
        configuration_id = record.id
    return Store(settings, engine, sessions, box, configuration_id)


@pytest.fixture
def hunt_store(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hunt_emulator: EmulatorProcess,
    hunt_tenant: HuntTenant,
) -> Iterator[Store]:
    """A SQLite store with the configuration "hunt" for the generated tenant."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    settings = load_settings(
        home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'mailtrawl.db'}"
    )
    store = make_store(settings, hunt_emulator, hunt_tenant.app)
    try:
        yield store
    finally:
        store.engine.dispose()


@pytest.fixture(params=databases.BACKENDS)
def any_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    hunt_emulator: EmulatorProcess,
    hunt_tenant: HuntTenant,
) -> Iterator[Store]:
    """The same, on SQLite and on PostgreSQL."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'mailtrawl.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        databases.reset_postgres(url)
    settings = load_settings(home=tmp_path / "home", database_url=url)
    store = make_store(settings, hunt_emulator, hunt_tenant.app)
    try:
        yield store
    finally:
        store.engine.dispose()
