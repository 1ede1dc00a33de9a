"""Running an investigation: resolve the scope, cut it into mailbox batches, scan them.

Two job kinds go through the job queue (`mailtrawl.tasks.queue`):

- ``investigation.plan`` resolves the scope through the provider, writes one row per
  mailbox (pending, or skipped with the reason) and one ``investigation.scan`` job per
  batch of mailboxes — all in one transaction;
- ``investigation.scan`` lists its mailboxes through `Provider.scan` (several mailboxes per
  round trip), evaluates every listed message locally, fetches attachment contents only
  for messages that still need them, and streams hits to the database. A mailbox becomes
  *done* in the same transaction that records its counters, so a job re-run after a crash
  skips finished mailboxes and re-reads only the ones it was in the middle of (their hits
  are unique per mailbox and message, so nothing is counted twice).

Memory stays bounded: a job holds at most `chunks_in_flight` × `chunk_size` mailboxes'
listings in flight and flushes hits every `flush_hits` rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.core import (
    FetchedMessage,
    MailboxFailed,
    MailboxRef,
    MailboxScanned,
    MessageParts,
    Scope,
    ScopeKind,
)
from mailtrawl.errors import (
    AuthFailed,
    MailboxUnavailable,
    MailtrawlError,
    PermissionMissing,
    ProviderError,
    Throttled,
)
from mailtrawl.investigations.hits import store_hits
from mailtrawl.investigations.matcher import (
    CompiledHunt,
    MessageView,
    attached_email_views,
    view_of_fetched,
)
from mailtrawl.investigations.models import (
    FINISHED,
    Investigation,
    InvestigationHit,
    InvestigationMailbox,
    InvestigationStatus,
    KnownFolder,
    MailboxStatus,
)
from mailtrawl.investigations.planner import Plan, plan_hunt
from mailtrawl.investigations.query import parse_query
from mailtrawl.matching.mime import MailParseError, parse_email
from mailtrawl.providers.base import Provider
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import refresh_statistics, write_session
from mailtrawl.tasks.models import Job, JobStatus
from mailtrawl.tasks.queue import FailureHandler, JobContext, JobHandler, enqueue

log = logging.getLogger(__name__)

PLAN_JOB = "investigation.plan"
SCAN_JOB = "investigation.scan"

# Opens (without entering) the provider of a mail configuration.
ProviderFactory = Callable[[uuid.UUID], Provider]

# Finished mailboxes are written together, at least this often (seconds).
FINISH_INTERVAL = 0.5
# Hits are most often in the inbox, then in Junk Email or Deleted Items: folder ids are
# asked for in that order, each round only for the mailboxes whose hits are still unnamed.
FOLDER_ROUNDS = (
    ("inbox",),
    ("junkemail", "deleteditems"),
    ("sentitems", "drafts", "archive", "outbox", "recoverableitemsdeletions"),
)


@dataclass(frozen=True, slots=True)
class EngineSettings:
    batch_size: int = 250  # mailboxes per scan job
    # Mailboxes per provider.scan call: their first pages share one full $batch envelope
    # (20). Outlook runs four sub-requests of an envelope at a time, so an envelope takes
    # five round trips of latency; many envelopes in flight hide that, and full ones halve
    # the HTTP exchanges, which is what costs the client most (measured, bench/).
    chunk_size: int = 20
    chunks_in_flight: int = 10  # per scan job
    fetch_concurrency: int = 16  # attachment fetches in flight per scan job
    flush_hits: int = 500
    job_attempts: int = 5  # tries of a scan job (a crash or a bug) before its mailboxes fail
    stop_poll_seconds: float = 0.5


def scope_of(document: dict[str, Any]) -> Scope:
    kind = ScopeKind(document.get("kind", "all"))
    return Scope(kind, tuple(document.get("values") or ()))


def failure_reason(error: BaseException) -> str:
    """Why a mailbox failed, as a short category and the provider's sentence."""
    if isinstance(error, Throttled):
        category = "throttled past the retry budget"
    elif isinstance(error, PermissionMissing | AuthFailed):
        category = "access denied"
    elif isinstance(error, MailboxUnavailable):
        category = "mailbox unavailable"
    else:
        category = "error"
    return f"{category}: {error}"


def insert_ignoring_duplicates(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING on SQLite and PostgreSQL."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    session.execute(module.insert(table).on_conflict_do_nothing(), rows)


@dataclass
class _MailboxState:
    row_id: uuid.UUID
    ref: MailboxRef
    examined: int = 0
    hits: list[dict[str, Any]] = field(default_factory=list)
    pending: set[asyncio.Task[None]] = field(default_factory=set)
    unnamed_folders: set[str] = field(default_factory=set)  # folder ids of hits to name


class _Stopped(Exception):
    """The investigation was asked to stop."""


class InvestigationEngine:
    """The job handlers of investigations; the same code runs under every queue backend."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        provider_factory: ProviderFactory,
        settings: EngineSettings | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.provider_factory = provider_factory
        self.settings = settings or EngineSettings()

    def handlers(self) -> dict[str, JobHandler]:
        return {PLAN_JOB: self.plan_job, SCAN_JOB: self.scan_job}

    def failure_handlers(self) -> dict[str, FailureHandler]:
        return {PLAN_JOB: self.plan_failed, SCAN_JOB: self.scan_failed}

    async def plan_failed(self, ctx: JobContext, error: str) -> None:
        investigation_id = uuid.UUID(str(ctx.payload["investigation_id"]))
        await asyncio.to_thread(self._fail, investigation_id, f"planning failed: {error}")

    async def scan_failed(self, ctx: JobContext, error: str) -> None:
        """A scan job gave up: its unread mailboxes fail with the reason; the rest goes on."""
        investigation_id = uuid.UUID(str(ctx.payload["investigation_id"]))
        await asyncio.to_thread(
            self._fail_batch, investigation_id, int(ctx.payload["batch"]), f"error: {error}"
        )
        await asyncio.to_thread(self._finish_if_stopping, investigation_id)
        await asyncio.to_thread(self._complete_if_finished, investigation_id, ctx.id)

    def _fail_batch(self, investigation_id: uuid.UUID, batch: int, reason: str) -> None:
        with write_session(self.session_factory) as session:
            failed = session.execute(
                update(InvestigationMailbox)
                .where(
                    InvestigationMailbox.investigation_id == investigation_id,
                    InvestigationMailbox.batch == batch,
                    InvestigationMailbox.status.in_(
                        (MailboxStatus.PENDING.value, MailboxStatus.SCANNING.value)
                    ),
                )
                .values(
                    status=MailboxStatus.FAILED.value, reason=reason[:4000], finished_at=utcnow()
                )
            )
            session.execute(
                update(Investigation)
                .where(Investigation.id == investigation_id)
                .values(
                    mailboxes_failed=Investigation.mailboxes_failed + int(failed.rowcount or 0)  # type: ignore[attr-defined]
                )
            )

    # Planning ---------------------------------------------------------------------------

    async def plan_job(self, ctx: JobContext) -> None:
        investigation_id = uuid.UUID(str(ctx.payload["investigation_id"]))
        record = await asyncio.to_thread(self._load, investigation_id)
        if record is None or record.status in FINISHED:
            return
        if record.status == InvestigationStatus.STOPPING:
            await asyncio.to_thread(self._finish, investigation_id, InvestigationStatus.STOPPED)
            return
        if record.configuration_id is None:
            await asyncio.to_thread(
                self._fail, investigation_id, "its mail configuration was removed"
            )
            return
        try:
            hunt = parse_query(record.query)
            provider = self.provider_factory(record.configuration_id)
            async with provider:
                resolution = await provider.resolve_scope(scope_of(record.scope))
                plan = plan_hunt(hunt, provider.capabilities)
        except (MailtrawlError, ValueError) as exc:
            await asyncio.to_thread(self._fail, investigation_id, str(exc))
            return
        await asyncio.to_thread(self._write_plan, investigation_id, resolution, plan)

    def _write_plan(self, investigation_id: uuid.UUID, resolution: Any, plan: Plan) -> None:
        size = self.settings.batch_size
        with write_session(self.session_factory) as session:
            record = session.get(Investigation, investigation_id)
            if record is not None and record.status == InvestigationStatus.STOPPING:
                record.status = InvestigationStatus.STOPPED.value
                record.finished_at = utcnow()
            if record is None or record.status != InvestigationStatus.QUEUED:
                return
            rows = [
                {
                    "id": uuid.uuid4(),
                    "investigation_id": investigation_id,
                    "mailbox_id": m.id,
                    "upn": m.upn,
                    "address": m.address,
                    "display_name": m.display_name[:256],
                    "batch": i // size,
                    "status": MailboxStatus.PENDING.value,
                    "reason": None,
                    "finished_at": None,
                }
                for i, m in enumerate(resolution.mailboxes)
            ]
            seen = {m.id for m in resolution.mailboxes}
            for skipped in resolution.skipped:
                key = skipped.mailbox.id if skipped.mailbox else skipped.name
                if key in seen:
                    continue
                seen.add(key)
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "investigation_id": investigation_id,
                        "mailbox_id": key[:128],
                        "upn": skipped.mailbox.upn if skipped.mailbox else skipped.name[:320],
                        "address": skipped.mailbox.address if skipped.mailbox else "",
                        "display_name": skipped.mailbox.display_name[:256]
                        if skipped.mailbox
                        else "",
                        "batch": -1,
                        "status": MailboxStatus.SKIPPED.value,
                        "reason": f"{skipped.reason.value}: {skipped.explanation}",
                        "finished_at": utcnow(),
                    }
                )
            insert_ignoring_duplicates(session, InvestigationMailbox.__table__, rows)
            batches = (len(resolution.mailboxes) + size - 1) // size
            for batch in range(batches):
                enqueue(
                    session,
                    SCAN_JOB,
                    {"investigation_id": str(investigation_id), "batch": batch},
                    group_key=str(investigation_id),
                    max_attempts=self.settings.job_attempts,
                )
            record.mailboxes_total = len(resolution.mailboxes)
            record.mailboxes_skipped = len(rows) - len(resolution.mailboxes)
            record.plan = plan.explain(mailboxes=len(resolution.mailboxes))
            record.started_at = record.started_at or utcnow()
            if batches == 0:
                record.status = InvestigationStatus.COMPLETED.value
                record.finished_at = utcnow()
            else:
                record.status = InvestigationStatus.RUNNING.value

    # Scanning ---------------------------------------------------------------------------

    async def scan_job(self, ctx: JobContext) -> None:
        investigation_id = uuid.UUID(str(ctx.payload["investigation_id"]))
        batch = int(ctx.payload["batch"])
        record = await asyncio.to_thread(self._load, investigation_id)
        if record is None or record.status in FINISHED:
            return
        if record.status == InvestigationStatus.STOPPING:
            await asyncio.to_thread(self._finish_if_stopping, investigation_id)
            return
        states = await asyncio.to_thread(self._claim_batch, investigation_id, batch)
        if states and record.configuration_id is not None:
            hunt = parse_query(record.query)
            compiled = CompiledHunt(hunt)
            try:
                provider = self.provider_factory(record.configuration_id)
            except MailtrawlError as exc:  # the configuration is gone or unreadable
                await asyncio.to_thread(self._fail_batch, investigation_id, batch, str(exc))
                await asyncio.to_thread(self._complete_if_finished, investigation_id, ctx.id)
                return
            async with provider:
                plan = plan_hunt(hunt, provider.capabilities)
                scan = _BatchScan(
                    self, investigation_id, record.configuration_id, provider, plan, compiled
                )
                with contextlib.suppress(_Stopped):  # finished below
                    await scan.run(states)
        await asyncio.to_thread(self._finish_if_stopping, investigation_id)
        await asyncio.to_thread(self._complete_if_finished, investigation_id, ctx.id)

    def _claim_batch(self, investigation_id: uuid.UUID, batch: int) -> list[_MailboxState]:
        with write_session(self.session_factory) as session:
            rows = session.scalars(
                select(InvestigationMailbox).where(
                    InvestigationMailbox.investigation_id == investigation_id,
                    InvestigationMailbox.batch == batch,
                    InvestigationMailbox.status.in_(
                        (MailboxStatus.PENDING.value, MailboxStatus.SCANNING.value)
                    ),
                )
            ).all()
            for row in rows:
                row.status = MailboxStatus.SCANNING.value
            return [
                _MailboxState(
                    row.id,
                    MailboxRef(
                        id=row.mailbox_id,
                        upn=row.upn,
                        mail=row.address or None,
                        display_name=row.display_name,
                    ),
                )
                for row in rows
            ]

    # Bookkeeping (each in its own short transaction) ------------------------------------

    def _load(self, investigation_id: uuid.UUID) -> Investigation | None:
        with self.session_factory() as session:
            record = session.get(Investigation, investigation_id)
            if record is not None:
                session.expunge(record)
            return record

    def status(self, investigation_id: uuid.UUID) -> str | None:
        with self.session_factory() as session:
            return session.scalar(
                select(Investigation.status).where(Investigation.id == investigation_id)
            )

    def _fail(self, investigation_id: uuid.UUID, error: str) -> None:
        with write_session(self.session_factory) as session:
            session.execute(
                update(Investigation)
                .where(Investigation.id == investigation_id)
                .values(
                    status=InvestigationStatus.FAILED.value,
                    error=error[:4000],
                    finished_at=utcnow(),
                )
            )

    def _finish(self, investigation_id: uuid.UUID, status: InvestigationStatus) -> None:
        with write_session(self.session_factory) as session:
            session.execute(
                update(Investigation)
                .where(
                    Investigation.id == investigation_id,
                    Investigation.status.not_in([s.value for s in FINISHED]),
                )
                .values(status=status.value, finished_at=utcnow())
            )

    def _finish_if_stopping(self, investigation_id: uuid.UUID) -> None:
        """If a stop was asked for: stopped now, and mailboxes being read back to pending."""
        with write_session(self.session_factory) as session:
            stopped = session.execute(
                update(Investigation)
                .where(
                    Investigation.id == investigation_id,
                    Investigation.status == InvestigationStatus.STOPPING.value,
                )
                .values(status=InvestigationStatus.STOPPED.value, finished_at=utcnow())
            )
            if stopped.rowcount != 1:  # type: ignore[attr-defined]
                return
            session.execute(
                update(InvestigationMailbox)
                .where(
                    InvestigationMailbox.investigation_id == investigation_id,
                    InvestigationMailbox.status == MailboxStatus.SCANNING.value,
                )
                .values(status=MailboxStatus.PENDING.value)
            )

    def _complete_if_finished(self, investigation_id: uuid.UUID, job_id: uuid.UUID) -> None:
        """Completed when no mailbox is left; mailboxes no live job will read count as failed."""
        with write_session(self.session_factory) as session:
            open_rows = session.scalar(
                select(func.count())
                .select_from(InvestigationMailbox)
                .where(
                    InvestigationMailbox.investigation_id == investigation_id,
                    InvestigationMailbox.status.in_(
                        (MailboxStatus.PENDING.value, MailboxStatus.SCANNING.value)
                    ),
                )
            )
            if open_rows:
                live_jobs = session.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(
                        Job.group_key == str(investigation_id),
                        Job.id != job_id,
                        Job.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)),
                    )
                )
                if live_jobs:
                    return
                # Their job gave up (or vanished): say so rather than run forever.
                failed = session.execute(
                    update(InvestigationMailbox)
                    .where(
                        InvestigationMailbox.investigation_id == investigation_id,
                        InvestigationMailbox.status.in_(
                            (MailboxStatus.PENDING.value, MailboxStatus.SCANNING.value)
                        ),
                    )
                    .values(
                        status=MailboxStatus.FAILED.value,
                        reason="error: not read; its scan job stopped before reaching it",
                        finished_at=utcnow(),
                    )
                )
                session.execute(
                    update(Investigation)
                    .where(Investigation.id == investigation_id)
                    .values(
                        mailboxes_failed=Investigation.mailboxes_failed + int(failed.rowcount or 0)  # type: ignore[attr-defined]
                    )
                )
            session.execute(
                update(Investigation)
                .where(
                    Investigation.id == investigation_id,
                    Investigation.status == InvestigationStatus.RUNNING.value,
                )
                .values(status=InvestigationStatus.COMPLETED.value, finished_at=utcnow())
            )
        # The dashboard's plans for this investigation's hits need fresh statistics.
        refresh_statistics(self.session_factory)

    def known_folders(
        self, configuration_id: uuid.UUID, mailbox_ids: list[str]
    ) -> dict[str, dict[str, str]]:
        with self.session_factory() as session:
            rows = session.execute(
                select(KnownFolder.mailbox_id, KnownFolder.folder_id, KnownFolder.name).where(
                    KnownFolder.configuration_id == configuration_id,
                    KnownFolder.mailbox_id.in_(mailbox_ids),
                )
            ).all()
        known: dict[str, dict[str, str]] = {}
        for mailbox_id, folder_id, name in rows:
            known.setdefault(mailbox_id, {})[folder_id] = name
        return known

    def name_folders(
        self,
        investigation_id: uuid.UUID,
        configuration_id: uuid.UUID,
        learnt: dict[str, dict[str, str]],
        names: dict[str, dict[str, str]],
    ) -> None:
        """Remember learnt folder names, and put names on the hits in those folders."""
        with write_session(self.session_factory) as session:
            insert_ignoring_duplicates(
                session,
                KnownFolder.__table__,
                [
                    {
                        "configuration_id": configuration_id,
                        "mailbox_id": mailbox_id,
                        "folder_id": folder_id,
                        "name": name,
                    }
                    for mailbox_id, folders in learnt.items()
                    for folder_id, name in folders.items()
                ],
            )
            renames = [
                {"m": mailbox_id, "f": folder_id, "n": name}
                for mailbox_id, folders in names.items()
                for folder_id, name in folders.items()
                if name
            ]
            if renames:
                hits = cast(Table, InvestigationHit.__table__)
                session.connection().execute(
                    hits.update()
                    .where(
                        hits.c.investigation_id == investigation_id,
                        hits.c.mailbox_id == bindparam("m"),
                        hits.c.folder_id == bindparam("f"),
                        hits.c.folder.is_(None),
                    )
                    .values(folder=bindparam("n")),
                    renames,
                )

    def flush_hits(self, rows: list[dict[str, Any]]) -> None:
        with write_session(self.session_factory) as session:
            store_hits(session, rows)

    def mailboxes_finished(
        self,
        investigation_id: uuid.UUID,
        finished: list[_Finished],
        stats: dict[str, float] | None = None,
    ) -> None:
        """Record finished mailboxes (their last hits and outcome) and the progress counters.

        One transaction for many mailboxes; a mailbox counts only if it was still being
        scanned, so a job re-run after a crash never counts a mailbox twice.
        """
        with write_session(self.session_factory) as session:
            store_hits(session, [h for f in finished for h in f.hits])
            counted = dict(
                session.execute(
                    select(InvestigationHit.mailbox_id, func.count())
                    .where(
                        InvestigationHit.investigation_id == investigation_id,
                        InvestigationHit.mailbox_id.in_([f.state.ref.id for f in finished]),
                    )
                    .group_by(InvestigationHit.mailbox_id)
                ).all()
            )
            rows = cast(Table, InvestigationMailbox.__table__)
            finished_at = utcnow()
            changes: list[dict[str, Any]] = [
                {
                    "row_id": item.state.row_id,
                    "new_status": (
                        MailboxStatus.FAILED if item.failed else MailboxStatus.DONE
                    ).value,
                    "new_reason": item.failed,
                    "new_hits": int(counted.get(item.state.ref.id, 0)),
                    "new_examined": item.state.examined,
                    "new_fallback": item.search_cap_fallback,
                }
                for item in finished
            ]
            # Only mailboxes still being scanned change: a re-run never counts one twice.
            still_scanning = {
                row_id
                for (row_id,) in session.execute(
                    select(InvestigationMailbox.id).where(
                        InvestigationMailbox.id.in_([c["row_id"] for c in changes]),
                        InvestigationMailbox.status == MailboxStatus.SCANNING.value,
                    )
                )
            }
            changes = [c for c in changes if c["row_id"] in still_scanning]
            if changes:
                session.connection().execute(
                    rows.update()
                    .where(rows.c.id == bindparam("row_id"))
                    .values(
                        status=bindparam("new_status"),
                        reason=bindparam("new_reason"),
                        hits=bindparam("new_hits"),
                        messages_examined=bindparam("new_examined"),
                        search_cap_fallback=bindparam("new_fallback"),
                        finished_at=finished_at,
                    ),
                    changes,
                )
            failed = sum(1 for c in changes if c["new_reason"])
            done = len(changes) - failed
            examined = sum(c["new_examined"] for c in changes)
            hits = sum(c["new_hits"] for c in changes)
            counters: dict[str, Any] = {
                "messages_examined": Investigation.messages_examined + examined,
                "hits": Investigation.hits + hits,
                "mailboxes_failed": Investigation.mailboxes_failed + failed,
                "mailboxes_done": Investigation.mailboxes_done + done,
            }
            if stats:
                counters["requests"] = Investigation.requests + int(stats.get("requests", 0))
                counters["throttled"] = Investigation.throttled + int(stats.get("throttled", 0))
                counters["throttle_wait_seconds"] = Investigation.throttle_wait_seconds + float(
                    stats.get("wait_seconds", 0.0)
                )
            session.execute(
                update(Investigation).where(Investigation.id == investigation_id).values(counters)
            )


@dataclass
class _Finished:
    state: _MailboxState
    hits: list[dict[str, Any]]
    failed: str | None = None
    search_cap_fallback: bool = False


class _BatchScan:
    """One scan job's work: its mailboxes in chunks, messages evaluated as they stream in."""

    def __init__(
        self,
        engine: InvestigationEngine,
        investigation_id: uuid.UUID,
        configuration_id: uuid.UUID,
        provider: Provider,
        plan: Plan,
        compiled: CompiledHunt,
    ) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.investigation_id = investigation_id
        self.configuration_id = configuration_id
        self.provider = provider
        self.plan = plan
        self.compiled = compiled
        self.fetch_slots = asyncio.Semaphore(self.settings.fetch_concurrency)
        self._last_stop_check = 0.0
        self._states: dict[str, _MailboxState] = {}
        self._finished: list[_Finished] = []
        self._writes: asyncio.Queue[Callable[[], None] | None] = asyncio.Queue(maxsize=64)
        self._write_error: Exception | None = None
        self._first_finished_at = 0.0
        self._last_stats = self._stats_now()

    def _state_of(self, mailbox_id: str) -> _MailboxState:
        return self._states[mailbox_id]

    def _stats_now(self) -> dict[str, float]:
        raw = self.provider.stats()
        return {
            "requests": float(raw.get("graph_requests", 0)),
            "throttled": float(raw.get("throttled", 0)),
            "wait_seconds": float(raw.get("wait_seconds", 0.0)),
        }

    def _stats_delta(self) -> dict[str, float]:
        now = self._stats_now()
        delta = {k: now[k] - self._last_stats.get(k, 0.0) for k in now}
        self._last_stats = now
        return delta

    async def _check_stop(self) -> None:
        moment = time.monotonic()
        if moment - self._last_stop_check < self.settings.stop_poll_seconds:
            return
        self._last_stop_check = moment
        status = await asyncio.to_thread(self.engine.status, self.investigation_id)
        if status != InvestigationStatus.RUNNING:
            raise _Stopped

    async def run(self, states: Sequence[_MailboxState]) -> None:
        self._states = {s.ref.id: s for s in states}
        size = self.settings.chunk_size
        chunks = [list(states[i : i + size]) for i in range(0, len(states), size)]
        gate = asyncio.Semaphore(self.settings.chunks_in_flight)

        async def one(chunk: list[_MailboxState]) -> None:
            async with gate:
                await self._chunk(chunk)

        writer = asyncio.create_task(self._write_loop())
        try:
            await _gather_or_cancel([one(c) for c in chunks])
        finally:
            # Mailboxes finished before a stop or an error, and the last requests' counts.
            await self._flush_finished(final=True)
            await self._writes.put(None)
            await writer

    async def _write_loop(self) -> None:
        """Run database writes one after the other, while the scan goes on."""
        while (write := await self._writes.get()) is not None:
            if self._write_error is None:
                try:
                    await asyncio.to_thread(write)
                except Exception as exc:  # reported by the next _write and at the end
                    self._write_error = exc
        if self._write_error is not None:
            raise self._write_error

    async def _write(self, write: Callable[[], None]) -> None:
        """Queue a write (waiting when the queue is full, so memory stays bounded)."""
        if self._write_error is not None:
            raise self._write_error
        await self._writes.put(write)

    async def _chunk(self, chunk: list[_MailboxState]) -> None:
        by_id = {s.ref.id: s for s in chunk}
        listing = self.provider.scan(
            [s.ref for s in chunk], self.plan.server, self.plan.parts, select=self.plan.select
        )
        try:
            async for item in listing:
                await self._check_stop()
                if isinstance(item, FetchedMessage):
                    state = by_id[item.meta.ref.mailbox.id]
                    state.examined += 1
                    self._examine(state, item)
                    if len(state.hits) >= self.settings.flush_hits:
                        rows, state.hits = state.hits, []
                        await self._write(functools.partial(self.engine.flush_hits, rows))
                elif isinstance(item, MailboxScanned):
                    state = by_id[item.mailbox.id]
                    await self._settle(state)
                    await self._finish(state, search_cap_fallback=item.search_cap_fallback)
                elif isinstance(item, MailboxFailed):
                    state = by_id[item.mailbox.id]
                    await self._settle(state)
                    await self._finish(state, failed=failure_reason(item.error))
        finally:
            await listing.aclose()  # type: ignore[attr-defined]
        await self._flush_finished()
        await self._name_folders(chunk)

    async def _settle(self, state: _MailboxState) -> None:
        if state.pending:
            await _gather_or_cancel(list(state.pending))

    async def _finish(
        self, state: _MailboxState, *, failed: str | None = None, search_cap_fallback: bool = False
    ) -> None:
        hits, state.hits = state.hits, []
        if not self._finished:
            self._first_finished_at = time.monotonic()
        self._finished.append(_Finished(state, hits, failed, search_cap_fallback))
        if (
            len(self._finished) >= self.settings.chunk_size
            or time.monotonic() - self._first_finished_at > FINISH_INTERVAL
        ):
            await self._flush_finished()

    async def _flush_finished(self, *, final: bool = False) -> None:
        """Write the mailboxes finished so far, together (one transaction)."""
        finished, self._finished = self._finished, []
        if finished or final:
            await self._write(
                functools.partial(
                    self.engine.mailboxes_finished,
                    self.investigation_id,
                    finished,
                    self._stats_delta(),
                )
            )

    async def _name_folders(self, states: list[_MailboxState]) -> None:
        """Well-known names for the folders of hits listed from the whole mailbox.

        Names learnt before are reused; otherwise the inbox is asked for first (one
        request per mailbox, shared envelopes), then Junk Email and Deleted Items, then the
        rest, each only for mailboxes with hits still unnamed. Best effort: a failure
        leaves the name empty.
        """
        wanted = {s.ref.id: set(s.unnamed_folders) for s in states if s.unnamed_folders}
        if not wanted:
            return
        refs = {s.ref.id: s.ref for s in states}
        known = await asyncio.to_thread(
            self.engine.known_folders, self.configuration_id, list(wanted)
        )
        names: dict[str, dict[str, str]] = {}
        missing: dict[str, set[str]] = {}
        for mailbox_id, folder_ids in wanted.items():
            mine = known.get(mailbox_id, {})
            names[mailbox_id] = {f: mine[f] for f in folder_ids if f in mine}
            if folder_ids - set(mine):
                missing[mailbox_id] = folder_ids - set(mine)
        learnt: dict[str, dict[str, str]] = {}
        for round_names in FOLDER_ROUNDS:
            if not missing:
                break
            try:
                found = await self.provider.folder_names([refs[m] for m in missing], round_names)
            except ProviderError as exc:
                log.warning("could not name folders: %s", exc)
                missing = {}
                break
            for mailbox_id, folders in found.items():
                learnt.setdefault(mailbox_id, {}).update(folders)
                names[mailbox_id].update(
                    {f: n for f, n in folders.items() if f in missing[mailbox_id]}
                )
                missing[mailbox_id] -= set(folders)
            missing = {m: ids for m, ids in missing.items() if ids}
        for mailbox_id, folder_ids in missing.items():
            # Every well-known folder was asked for: these are the mailbox's own folders.
            learnt.setdefault(mailbox_id, {}).update(dict.fromkeys(folder_ids, ""))
        for state in states:
            state.unnamed_folders.clear()
        # Queued after the hits it names, so it runs after they are written.
        await self._write(
            functools.partial(
                self.engine.name_folders,
                self.investigation_id,
                self.configuration_id,
                learnt,
                names,
            )
        )

    # Evaluating one message -------------------------------------------------------------

    def _examine(self, state: _MailboxState, message: FetchedMessage) -> None:
        view = view_of_fetched(message)
        result, matched = self.compiled.evaluate(view)
        if result:
            state.hits.append(self._hit(message, matched, via_attached=False))
            return
        carriers = self.plan.hunt.attached_emails and any(
            a.is_email for a in view.attachments or ()
        )
        if result is False and not carriers:
            return
        # Unknown (attachment contents needed) or an attached email to look into.
        task = asyncio.create_task(self._examine_deeper(state, message))
        state.pending.add(task)
        task.add_done_callback(state.pending.discard)

    async def _examine_deeper(self, state: _MailboxState, message: FetchedMessage) -> None:
        async with self.fetch_slots:
            try:
                full = await self.provider.fetch(message.meta.ref, MessageParts.ATTACHMENTS)
            except ProviderError as exc:
                log.warning("could not read the attachments of a message: %s", exc)
                return
        view = view_of_fetched(
            FetchedMessage(
                meta=message.meta,
                headers=message.headers,
                body=message.body,
                attachments=full.attachments,
            )
        )
        result, matched = self.compiled.evaluate(view)
        if result:
            state.hits.append(self._hit(message, matched, via_attached=False))
            return
        if not self.plan.hunt.attached_emails:
            return
        inner: list[MessageView] = []
        for attachment in view.attachments or ():
            if attachment.is_email and attachment.content:
                try:
                    inner.extend(attached_email_views(parse_email(attachment.content)))
                except MailParseError as exc:
                    log.warning("skipped an attached email: %s", exc)
        found = self.compiled.inspect_attached(inner)
        if found is not None:
            state.hits.append(self._hit(message, found, via_attached=True))

    def _hit(
        self, message: FetchedMessage, matched: list[Any], *, via_attached: bool
    ) -> dict[str, Any]:
        ref = message.meta.ref
        if ref.folder_name is None and ref.folder_id:
            self._state_of(ref.mailbox.id).unnamed_folders.add(ref.folder_id)
        return hit_row(self.investigation_id, message, matched, via_attached=via_attached)


def hit_row(
    investigation_id: uuid.UUID,
    message: FetchedMessage,
    matched: list[Any],
    *,
    via_attached: bool,
) -> dict[str, Any]:
    """The stored row of one found copy (see hits.store_hits), from what was read of it."""
    meta = message.meta
    ref = meta.ref
    sender = meta.from_
    names = [a.name for a in message.attachments or () if not a.is_inline]
    return {
        "id": uuid.uuid4(),
        "investigation_id": investigation_id,
        "mailbox_id": ref.mailbox.id,
        "mailbox_upn": ref.mailbox.upn,
        "message_id": ref.stable_id[:512],
        "folder_id": ref.folder_id,
        "folder": ref.folder_name,
        "internet_message_id": (meta.internet_message_id or "")[:998],
        "subject": (meta.subject or "")[:2000],
        "sender_address": (sender.address if sender else "")[:320],
        "sender_name": (sender.name if sender else "")[:256],
        "recipients": "; ".join(a.address for a in meta.to)[:4000],
        "received": meta.received,
        "has_attachments": bool(meta.has_attachments),
        "attachment_names": "; ".join(names)[:4000],
        "matched": [leaf.describe() for leaf in matched][:20],
        "via_attached_email": via_attached,
        "found_at": utcnow(),
    }


async def _gather_or_cancel(aws: list[Any]) -> None:
    """Run awaitables together; if one fails, cancel the others and raise its error."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def eta_seconds(record: Investigation, now: datetime) -> float | None:
    """Seconds left, from the pace of mailboxes finished so far."""
    finished = record.mailboxes_done + record.mailboxes_failed
    if record.started_at is None or finished == 0 or record.mailboxes_total == 0:
        return None
    elapsed = (now - record.started_at).total_seconds()
    remaining = record.mailboxes_total - finished
    return max(0.0, elapsed / finished * remaining)
