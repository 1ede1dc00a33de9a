"""The reporting mailbox (e.g. phishing@contoso.com): new messages in its inbox become reports.

Polled by the worker as a housekeeping task (every `reporting_mailbox.interval_seconds`,
default 30 s) through delta (`Provider.changes(mailbox, "inbox", cursor)`); the cursor is
kept in `report_mailbox_state`, so a restart continues where the last poll stopped. Each new
message's raw MIME is fetched and taken in like an upload: the original comes from a
"forward as attachment" (message/rfc822, .eml, .msg) or Microsoft's report-button wrapper,
whose sender is the reporter; a plain forward is taken too, with fidelity "forward".

An expired cursor (Graph answers 410) means a full re-read of the folder: only messages
received after the last poll (less an hour's margin) are considered, and every message taken
in is remembered in `report_mailbox_seen`, so a resync adds no duplicate. At the first poll,
messages received within `backfill_hours` (default 24) are taken in.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.analysis.errors import ReportParseError
from mailtrawl.analysis.parsing import MAX_REPORT_BYTES
from mailtrawl.audit import service as audit
from mailtrawl.configurations.service import get_configuration
from mailtrawl.core.mail import MessageMeta, MessageParts
from mailtrawl.errors import MailtrawlError
from mailtrawl.providers.base import Provider
from mailtrawl.reports.intake import submit_report
from mailtrawl.reports.models import Channel, ReportingMailboxSeen, ReportingMailboxState
from mailtrawl.reports.settings import load_report_settings
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session
from mailtrawl.storage.secrets import SecretBox

log = logging.getLogger(__name__)

RESYNC_MARGIN = timedelta(hours=1)
SEEN_RETENTION = timedelta(days=30)
MAX_PER_POLL = 500  # messages taken in per poll; the rest wait for the next one
FOLDER = "inbox"

ProviderFactory = Callable[..., Provider]


@dataclass(frozen=True)
class PollOutcome:
    mailbox: str
    taken: int = 0  # messages that became (or joined) a case
    failed: int = 0  # messages that could not be read as reports
    resynced: bool = False
    error: str | None = None
    case_ids: tuple[str, ...] = ()


class ReportingMailboxPoller:
    """Reads the reporting mailbox's new messages into cases."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        factory: ProviderFactory,
        *,
        on_intake: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.factory = factory
        self.on_intake = on_intake  # e.g. wake the job runner

    def poll_if_due(self) -> PollOutcome | None:
        """The housekeeping entry point (runs in a worker thread)."""
        try:
            return asyncio.run(self.poll(force=False))
        except Exception:  # a poll must never stop the housekeeping loop
            log.exception("polling the reporting mailbox failed")
            return None

    async def poll(self, *, force: bool = True, now: datetime | None = None) -> PollOutcome | None:
        """One poll (when due, unless `force`); None when no reporting mailbox is set."""
        moment = now or utcnow()
        with self.sessions() as session:
            settings = load_report_settings(session).reporting_mailbox
            if not settings.configuration or not settings.mailbox:
                return None
            mailbox = settings.mailbox.strip().lower()
            try:
                configuration = get_configuration(session, ref=settings.configuration)
            except MailtrawlError as exc:
                return PollOutcome(mailbox, error=exc.message)
            configuration_id = configuration.id
            state = session.get(ReportingMailboxState, (configuration_id, mailbox))
            if (
                not force
                and state is not None
                and state.last_polled_at is not None
                and state.last_polled_at + timedelta(seconds=settings.interval_seconds) > moment
            ):
                return None
            cursor = state.cursor if state else None
            since = state.since if state else moment - timedelta(hours=settings.backfill_hours)
            last_polled = state.last_polled_at if state else None
        try:
            async with self.factory(configuration_id) as provider:
                outcome, next_cursor = await self._read(
                    provider,
                    configuration_id,
                    mailbox,
                    cursor=cursor,
                    since=since,
                    last_polled=last_polled,
                )
        except MailtrawlError as exc:
            outcome, next_cursor = PollOutcome(mailbox, error=exc.message), cursor
        self._save_state(configuration_id, mailbox, outcome, next_cursor, since, moment)
        if outcome.taken and self.on_intake is not None:
            self.on_intake()
        return outcome

    async def _read(
        self,
        provider: Provider,
        configuration_id: uuid.UUID,
        mailbox: str,
        *,
        cursor: str | None,
        since: datetime,
        last_polled: datetime | None,
    ) -> tuple[PollOutcome, str | None]:
        ref = await provider.get_mailbox(mailbox)
        batch = await provider.changes(ref, FOLDER, cursor)
        bound = since
        resynced = False
        if batch.resync_required:
            batch = await provider.changes(ref, FOLDER, None)
            resynced = True
            if last_polled is not None:
                bound = max(since, last_polled - RESYNC_MARGIN)
        candidates = [m for m in batch.changed if not m.is_draft]
        if batch.initial:
            candidates = [m for m in candidates if m.received is None or m.received >= bound]
        seen = self._seen(configuration_id, mailbox, [m.ref.stable_id for m in candidates])
        waiting = [m for m in candidates if m.ref.stable_id not in seen]
        fresh = waiting[:MAX_PER_POLL]
        taken = failed = 0
        case_ids: list[str] = []
        for meta in fresh:
            case_id = await self._take(provider, configuration_id, mailbox, meta)
            if case_id is None:
                failed += 1
            else:
                taken += 1
                case_ids.append(case_id)
        # More than one poll's worth waiting: keep the old cursor so the rest come next time
        # (those taken are in the seen list, so they are not taken twice).
        next_cursor = batch.cursor if len(fresh) == len(waiting) else cursor
        return (
            PollOutcome(mailbox, taken, failed, resynced, None, tuple(case_ids)),
            next_cursor,
        )

    def _seen(self, configuration_id: uuid.UUID, mailbox: str, ids: list[str]) -> set[str]:
        found: set[str] = set()
        with self.sessions() as session:
            for start in range(0, len(ids), 500):
                found.update(
                    session.scalars(
                        select(ReportingMailboxSeen.message_id).where(
                            ReportingMailboxSeen.configuration_id == configuration_id,
                            ReportingMailboxSeen.mailbox == mailbox,
                            ReportingMailboxSeen.message_id.in_(ids[start : start + 500]),
                        )
                    )
                )
        return found

    async def _take(
        self, provider: Provider, configuration_id: uuid.UUID, mailbox: str, meta: MessageMeta
    ) -> str | None:
        """Fetch one message and take it in; the case id, or None when it is unreadable."""
        problem: str | None = None
        raw = b""
        try:
            fetched = await provider.fetch(meta.ref, MessageParts.MIME)
            raw = fetched.mime or b""
        except MailtrawlError as exc:
            problem = f"the message could not be read: {exc.message}"
        if problem is None and not raw:
            problem = "the message has no content"
        if problem is None and len(raw) > MAX_REPORT_BYTES:
            problem = f"the message is larger than {MAX_REPORT_BYTES} bytes"
        case_id: str | None = None
        with write_session(self.sessions) as session:
            if problem is None:
                try:
                    with session.begin_nested():
                        result = submit_report(
                            session,
                            box=self.box,
                            raw=raw,
                            filename=None,
                            channel=Channel.MAILBOX,
                            actor=f"mailbox:{mailbox}",
                        )
                        case_id = str(result.case.id)
                        audit.record(
                            session,
                            actor=f"mailbox:{mailbox}",
                            operation="report.submit",
                            entity_type="report_case",
                            entity_id=case_id,
                            after={
                                "channel": Channel.MAILBOX.value,
                                "reporter": result.reporter,
                                "created": result.created,
                                "fidelity": result.fidelity,
                            },
                        )
                except (ReportParseError, MailtrawlError) as exc:
                    problem = exc.message
            if problem is not None:
                log.warning("a message of the reporting mailbox was not taken in: %s", problem)
            session.merge(
                ReportingMailboxSeen(
                    configuration_id=configuration_id,
                    mailbox=mailbox,
                    message_id=meta.ref.stable_id[:512],
                    seen_at=utcnow(),
                    case_id=None if case_id is None else uuid.UUID(case_id),
                )
            )
        return case_id

    def _save_state(
        self,
        configuration_id: uuid.UUID,
        mailbox: str,
        outcome: PollOutcome,
        cursor: str | None,
        since: datetime,
        moment: datetime,
    ) -> None:
        with write_session(self.sessions) as session:
            state = session.get(ReportingMailboxState, (configuration_id, mailbox))
            if state is None:
                state = ReportingMailboxState(
                    configuration_id=configuration_id, mailbox=mailbox, since=since, resyncs=0
                )
                session.add(state)
            state.cursor = cursor
            state.last_polled_at = moment
            state.last_error = outcome.error
            if outcome.resynced:
                state.resyncs = (state.resyncs or 0) + 1
            session.execute(
                delete(ReportingMailboxSeen).where(
                    ReportingMailboxSeen.seen_at < moment - SEEN_RETENTION
                )
            )


__all__ = ["PollOutcome", "ReportingMailboxPoller"]
