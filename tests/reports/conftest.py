"""Reported-email tests: a store with a mail configuration for the emulator's test tenant,
phishing messages and reports wrapping them, and a way to run the report jobs directly (the
investigations the reports start are checked as records, not run)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailtrawl.config import load_settings
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.reports import service
from mailtrawl.reports.engine import ReportEngine
from mailtrawl.reports.intake import IntakeResult, submit_report
from mailtrawl.reports.jobs import ANALYSE_JOB, NOTIFY_JOB
from mailtrawl.reports.models import Channel
from mailtrawl.reports.schemas import CaseView, SettingsUpdate
from mailtrawl.reports.settings import update_report_settings
from mailtrawl.storage.engine import write_session
from mailtrawl.tasks.models import Job, JobStatus
from mailtrawl.tasks.queue import JobContext
from mailtrawl.tasks.worker import provider_factory
from tests.analysis.builders import PE_HEAD, message
from tests.investigations.conftest import FAST_RETRY, Store, make_store
from tests.storage import databases

postgres_database = databases.postgres_database

ATTACKER = "billing@invoice-portal.example"
REPORTING_MAILBOX = "phishing@contoso.com"


def phish(
    *,
    subject: str = "Invoice 4471 overdue",
    message_id: str | None = None,
    body: str | None = None,
    sender: str = f"Billing Dept <{ATTACKER}>",
    attachment: bytes | None = None,
) -> bytes:
    """A phishing email: a credential link on a lookalike domain, and an optional attachment."""
    text = body or (
        "Your invoice 4471 is overdue and your mailbox will be suspended today. Sign in at "
        "https://login-micros0ft.example/owa/verify?user=you to confirm your password and "
        "avoid losing access to your account and all of your files."
    )
    return message(
        sender=sender,
        to="alice@contoso.com",
        subject=subject,
        text=text,
        html=f'<p>{text}</p><a href="https://login-micros0ft.example/owa/verify">'
        "https://outlook.office.com/verify</a>",
        headers={
            "Message-ID": message_id or f"<{uuid.uuid4().hex}@invoice-portal.example>",
            "Date": "Mon, 30 Nov 2026 09:15:00 +0000",
            "Authentication-Results": "mx.contoso.com; spf=fail smtp.mailfrom=invoice-portal.example;"
            " dkim=none; dmarc=fail header.from=invoice-portal.example",
        },
        attachments=(("statement.pdf.exe", "application/octet-stream", attachment),)
        if attachment is not None
        else (),
    )


def wrapped(original: bytes, *, reporter: str, subject: str = "Phishing report") -> bytes:
    """A forward-as-attachment (or report-button) report of `original` sent by `reporter`."""
    return message(
        sender=reporter,
        to=REPORTING_MAILBOX,
        subject=subject,
        text="I think this is phishing.",
        headers={"Message-ID": f"<{uuid.uuid4().hex}@contoso.com>"},
        attached_emails=(original,),
    )


def inline_forward(original_subject: str, *, reporter: str) -> bytes:
    """A plain forward: no original attached, only its text quoted."""
    return message(
        sender=reporter,
        to=REPORTING_MAILBOX,
        subject=f"FW: {original_subject}",
        text="---------- Forwarded message ---------\nFrom: Billing Dept <"
        + ATTACKER
        + ">\nSubject: "
        + original_subject
        + "\n\nSign in at https://login-micros0ft.example/owa/verify to keep your mailbox.",
        headers={"Message-ID": f"<{uuid.uuid4().hex}@contoso.com>"},
    )


@dataclass
class Reports:
    store: Store
    emulator: EmulatorProcess

    @property
    def sessions(self) -> Any:
        return self.store.sessions

    @property
    def box(self) -> Any:
        return self.store.box

    def report_engine(self) -> ReportEngine:
        return ReportEngine(
            self.sessions,
            self.box,
            provider_factory(self.sessions, self.box, retry=FAST_RETRY),
            app_settings=self.store.settings,
        )

    def submit(
        self,
        raw: bytes,
        *,
        reporter: str | None = None,
        channel: Channel = Channel.UPLOAD,
        filename: str | None = None,
        claimed: bool = False,
    ) -> IntakeResult:
        with write_session(self.sessions) as session:
            result = submit_report(
                session,
                box=self.box,
                raw=raw,
                filename=filename,
                channel=channel,
                actor="tests",
                reporter=reporter,
                claimed=claimed,
            )
            session.expunge(result.case)
            return result

    def configure(self, **changes: Any) -> None:
        with write_session(self.sessions) as session:
            update_report_settings(
                session, box=self.box, data=SettingsUpdate(**changes), actor="tests"
            )

    def run_jobs(self, rounds: int = 10) -> int:
        """Run the queued report jobs (analysis, notifications) to the end; how many ran."""
        engine = self.report_engine()
        handlers = engine.handlers()
        ran = 0
        for _ in range(rounds):
            with write_session(self.sessions) as session:
                jobs = session.scalars(
                    select(Job)
                    .where(
                        Job.kind.in_([ANALYSE_JOB, NOTIFY_JOB]),
                        Job.status == JobStatus.QUEUED.value,
                    )
                    .order_by(Job.id)
                ).all()
                batch = [(j.id, j.kind, dict(j.payload)) for j in jobs]
                for job in jobs:
                    job.status = JobStatus.DONE.value
            if not batch:
                return ran
            for job_id, kind, payload in batch:
                asyncio.run(handlers[kind](JobContext(job_id, kind, payload, 1, self.sessions)))
                ran += 1
        return ran

    def case(self, case_id: uuid.UUID | str) -> CaseView:
        with self.sessions() as session:
            return service.case_view(session, service.get_case(session, ref=case_id))

    def inbox(self, mailbox: str) -> list[dict[str, Any]]:
        snapshot = self.emulator.snapshot(mailbox)
        return next(f for f in snapshot["folders"] if f["wellKnownName"] == "inbox")["messages"]


def _store(request: pytest.FixtureRequest, backend: str, tmp_path: Path, emulator: Any) -> Store:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'mailtrawl.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        databases.reset_postgres(url)
    settings = load_settings(home=tmp_path / "home", database_url=url)
    app = {
        "clientId": emulator.info["client_id"],
        "secrets": [{"value": emulator.info["client_secret"]}],
    }
    return make_store(settings, emulator, app)


@pytest.fixture
def reports(
    request: pytest.FixtureRequest,
    emulator: EmulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Reports]:
    """A SQLite store with the configuration "hunt" for the test tenant (contoso.com)."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    store = _store(request, "sqlite", tmp_path, emulator)
    try:
        yield Reports(store, emulator)
    finally:
        store.engine.dispose()


@pytest.fixture(params=databases.BACKENDS)
def any_reports(
    request: pytest.FixtureRequest,
    emulator: EmulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Reports]:
    """The same, on SQLite and on PostgreSQL."""
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    store = _store(request, request.param, tmp_path, emulator)
    try:
        yield Reports(store, emulator)
    finally:
        store.engine.dispose()


__all__ = [
    "ATTACKER",
    "PE_HEAD",
    "REPORTING_MAILBOX",
    "Reports",
    "inline_forward",
    "phish",
    "wrapped",
]
