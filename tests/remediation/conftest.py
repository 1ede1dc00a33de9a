"""Remediation tests: the fixture tenant (reset per test), a planted phishing email found by an
investigation, and helpers to request, approve and run actions and to read mailboxes back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailtrawl.audit import service as audit
from mailtrawl.audit.service import Actor
from mailtrawl.config import load_settings
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.remediation import service
from mailtrawl.remediation.engine import RemediationSettings
from mailtrawl.remediation.models import RemediationAction
from mailtrawl.remediation.schemas import ActionCreate, ItemView, Preview, RestoreCreate, Selection
from mailtrawl.storage.engine import write_session
from mailtrawl.tasks.worker import build_runner, provider_factory
from tests.investigations.conftest import FAST_RETRY, Store, make_store
from tests.storage import databases

postgres_database = databases.postgres_database

ATTACKER = "billing@invoice-portal.example"
ALICE = Actor("alice", role="admin")
BOB = Actor("bob", role="admin")
ANALYST = Actor("ana", role="analyst")
TARGETS = ["alice@contoso.com", "bob@contoso.com", "erin@contoso.com", "grace@contoso.com"]
FAST = RemediationSettings(round_pause=0.05)


def phishing_email(subject: str = "Invoice 4471 overdue") -> bytes:
    message = EmailMessage()
    message["From"] = f"Billing Dept <{ATTACKER}>"
    message["To"] = "staff@contoso.com"
    message["Subject"] = subject
    message["Date"] = "Mon, 30 Nov 2026 09:15:00 +0000"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@invoice-portal.example>"
    message.set_content("Your invoice is overdue. Open the attached statement today.")
    message.add_alternative(
        "<p>Your invoice is <b>overdue</b>. Open the attached statement today.</p>",
        subtype="html",
    )
    message.add_attachment(
        b"%PDF-1.4\n% statement\n" + bytes(range(256)) * 8,
        maintype="application",
        subtype="pdf",
        filename="statement-4471.pdf",
    )
    return message.as_bytes()


@dataclass
class Remediation:
    """A store with an investigation that found the planted email in every target mailbox."""

    store: Store
    emulator: EmulatorProcess
    investigation_id: uuid.UUID
    settings_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> Any:
        return self.store.settings.model_copy(update=self.settings_overrides)

    def request(
        self,
        action: str,
        *,
        actor: Actor = ALICE,
        selection: Selection | None = None,
        **options: Any,
    ) -> tuple[Preview, uuid.UUID | None]:
        with write_session(self.store.sessions) as session:
            preview, record = service.request_action(
                session,
                investigation=self.investigation_id,
                data=ActionCreate(action=action, selection=selection or Selection(), **options),  # type: ignore[arg-type]
                actor=actor,
                settings=self.settings,
            )
            return preview, record.id if record is not None else None

    def restore(self, action_id: uuid.UUID, *, actor: Actor = ALICE, **options: Any) -> uuid.UUID:
        with write_session(self.store.sessions) as session:
            _, record = service.request_restore(
                session,
                action=action_id,
                data=RestoreCreate(**options),
                actor=actor,
                settings=self.settings,
            )
            assert record is not None
            return record.id

    def approve(self, action_id: uuid.UUID, actor: Actor = BOB) -> None:
        with write_session(self.store.sessions) as session:
            service.approve_action(session, ref=action_id, actor=actor)

    def run(self, *, timeout: float = 120.0, settings: RemediationSettings = FAST) -> None:
        runner = build_runner(
            self.store.sessions,
            self.store.box,
            poll_interval=0.05,
            factory=provider_factory(self.store.sessions, self.store.box, retry=FAST_RETRY),
            remediation_settings=settings,
        )

        async def go() -> None:
            try:
                await runner.run_until_idle(timeout)
            finally:
                await runner.stop()

        asyncio.run(go())

    def act(self, action: str, **options: Any) -> uuid.UUID:
        _, action_id = self.request(action, **options)
        assert action_id is not None
        self.run()
        return action_id

    def action(self, action_id: uuid.UUID) -> RemediationAction:
        with self.store.sessions() as session:
            record = service.get_action(session, ref=action_id)
            session.expunge(record)
            return record

    def items(self, action_id: uuid.UUID) -> list[ItemView]:
        with self.store.sessions() as session:
            return service.list_items(session, ref=action_id, limit=1000).items

    def audit_operations(self) -> list[str]:
        with self.store.sessions() as session:
            page = audit.list_entries(session, limit=1000)
            return [e.operation for e in page.items]

    def copies(self, mailbox: str, subject: str | None = None) -> list[dict[str, Any]]:
        """Every copy of the planted email in a mailbox: folder name, categories, ..."""
        snap = self.emulator.snapshot(mailbox)
        found = []
        for folder in snap["folders"]:
            for message in folder["messages"]:
                if message["from"] == ATTACKER and (
                    subject is None or message["subject"] == subject
                ):
                    found.append(
                        {**message, "folder": folder["wellKnownName"] or folder["displayName"]}
                    )
        return found

    def purged(self, mailbox: str) -> list[dict[str, Any]]:
        return [m for m in self.emulator.snapshot(mailbox)["purged"] if m["from"] == ATTACKER]


@pytest.fixture(params=databases.BACKENDS)
def remediation(
    request: pytest.FixtureRequest,
    emulator: EmulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Remediation]:
    """The planted email in four inboxes (and Frank's Junk Email), found by an investigation;
    on SQLite and on PostgreSQL."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'mailtrawl.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        databases.reset_postgres(url)
    settings = load_settings(home=tmp_path / "home", database_url=url)
    app = {
        "clientId": emulator.info["client_id"],
        "secrets": [{"value": emulator.info["client_secret"]}],
    }
    store = make_store(settings, emulator, app)
    raw = phishing_email()
    emulator.deliver(raw, TARGETS)
    emulator.deliver(raw, ["frank@contoso.com"], folder="junkemail")
    try:
        investigation_id = store.create({"match": {"from": ATTACKER}})
        store.run_all()
        assert len(store.hits(investigation_id)) == len(TARGETS) + 1
        yield Remediation(store, emulator, investigation_id)
    finally:
        store.engine.dispose()
