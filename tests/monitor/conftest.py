"""Active investigations against the emulator: a store, a worker running in a thread, waits."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mailtrawl.config import Settings, load_settings
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.investigations import service
from mailtrawl.investigations.models import Investigation, InvestigationHit
from mailtrawl.investigations.schemas import InvestigationCreate
from mailtrawl.monitor.models import DeltaCursor
from mailtrawl.monitor.watcher import Watcher
from mailtrawl.remediation.engine import RemediationSettings
from mailtrawl.storage.engine import write_session
from mailtrawl.tasks.queue import DatabaseJobRunner
from mailtrawl.tasks.worker import build_runner, provider_factory
from tests.investigations.conftest import FAST_RETRY, Store, make_store
from tests.storage import databases

postgres_database = databases.postgres_database

ATTACKER = "billing@invoice-portal.example"


def phishing(subject: str = "Invoice 4471 overdue", sender: str = ATTACKER) -> bytes:
    message = EmailMessage()
    message["From"] = f"Billing Dept <{sender}>"
    message["To"] = "staff@contoso.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@invoice-portal.example>"
    message.set_content("Your invoice is overdue. Pay today.")
    return message.as_bytes()


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.1)


class LiveWorker:
    """The job runner (jobs and the watcher) on its own event loop in a thread."""

    def __init__(self, runner: DatabaseJobRunner) -> None:
        self.runner = runner
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def watcher(self) -> Watcher:
        service = self.runner.services[0]
        assert isinstance(service, Watcher)
        return service

    def start(self) -> LiveWorker:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.runner.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.stop(), self.loop).result(30)
        # A cancelled task may have left a database write running in the executor: wait for
        # it (as asyncio.run does), so no connection outlives the store's engine.
        asyncio.run_coroutine_threadsafe(self.loop.shutdown_default_executor(), self.loop).result(
            30
        )
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Watching:
    store: Store
    emulator: EmulatorProcess
    settings: Settings
    workers: list[LiveWorker] = field(default_factory=list)

    def worker(self) -> LiveWorker:
        runner = build_runner(
            self.store.sessions,
            self.store.box,
            poll_interval=0.05,
            factory=provider_factory(self.store.sessions, self.store.box, retry=FAST_RETRY),
            remediation_settings=RemediationSettings(round_pause=0.05),
            settings=self.settings,
        )
        live = LiveWorker(runner).start()
        self.workers.append(live)
        return live

    def create(
        self,
        *,
        duration: str | None = "1h",
        action: str | None = None,
        users: list[str] | None = None,
        scope: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
    ) -> uuid.UUID:
        with write_session(self.store.sessions) as session:
            record = service.create_investigation(
                session,
                data=InvestigationCreate(
                    name="active",
                    configuration="hunt",
                    scope=scope or {"kind": "users", "values": users or ["alice@contoso.com"]},  # type: ignore[arg-type]
                    query=query or {"match": {"from": ATTACKER}},
                    duration=duration,
                    action=action,  # type: ignore[arg-type]
                ),
                actor="tests",
            )
            return record.id

    def record(self, investigation_id: uuid.UUID) -> Investigation:
        with self.store.sessions() as session:
            record = session.get(Investigation, investigation_id)
            assert record is not None
            session.expunge(record)
            return record

    def hit_subjects(self, investigation_id: uuid.UUID) -> list[str]:
        with self.store.sessions() as session:
            return sorted(
                session.scalars(
                    select(InvestigationHit.subject).where(
                        InvestigationHit.investigation_id == investigation_id
                    )
                )
            )

    def hit_folders(self, investigation_id: uuid.UUID) -> list[str | None]:
        with self.store.sessions() as session:
            return list(
                session.scalars(
                    select(InvestigationHit.folder).where(
                        InvestigationHit.investigation_id == investigation_id
                    )
                )
            )

    def cursors(self, mailbox_upn: str) -> int:
        mailbox_id = self.emulator.snapshot(mailbox_upn)["userId"]
        with self.store.sessions() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(DeltaCursor)
                    .where(DeltaCursor.mailbox_id == mailbox_id, DeltaCursor.cursor != "")
                )
                or 0
            )

    def ready(self, investigation_id: uuid.UUID, *mailboxes: str) -> None:
        """The first search is done and every mailbox's folders have a delta cursor."""
        wait_for(
            lambda: self.record(investigation_id).status == "completed",
            what="the first search",
        )
        for mailbox in mailboxes:
            wait_for(lambda m=mailbox: self.cursors(m) == 2, what=f"cursors of {mailbox}")

    def folder_of(self, mailbox: str, subject: str) -> list[str]:
        snap = self.emulator.snapshot(mailbox)
        return [
            folder["wellKnownName"] or folder["displayName"]
            for folder in snap["folders"]
            for message in folder["messages"]
            if message["subject"] == subject
        ]


def _settings(tmp_path: Path, url: str, **changes: Any) -> Settings:
    return load_settings(
        home=tmp_path / "home",
        database_url=url,
        monitor_poll_seconds=1.0,
        monitor_budget_share=0.5,
        monitor_directory_refresh_seconds=5.0,
        **changes,
    )


def _watching(
    emulator: EmulatorProcess, tmp_path: Path, url: str, **changes: Any
) -> Iterator[Watching]:
    settings = _settings(tmp_path, url, **changes)
    app = {
        "clientId": emulator.info["client_id"],
        "secrets": [{"value": emulator.info["client_secret"]}],
    }
    store = make_store(settings, emulator, app)
    watching = Watching(store, emulator, settings)
    try:
        yield watching
    finally:
        for worker in watching.workers:
            if worker.thread.is_alive():
                worker.stop()
        store.engine.dispose()


@pytest.fixture
def watching(
    emulator: EmulatorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Watching]:
    """A SQLite store watching the fixture tenant (reads every second)."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    yield from _watching(emulator, tmp_path, f"sqlite:///{tmp_path / 'mailtrawl.db'}")


@pytest.fixture(params=databases.BACKENDS)
def any_watching(
    request: pytest.FixtureRequest,
    emulator: EmulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Watching]:
    """The same, on SQLite and on PostgreSQL."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'mailtrawl.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        databases.reset_postgres(url)
    yield from _watching(emulator, tmp_path, url)
