"""Executing remediation actions: vault, apply, verify, one journal row per message.

One job per batch of mailboxes (`remediation.execute`). A job takes its batch's journal rows
that are not final and works through them in waves packed by mailbox:

1. `attempts + 1` is written before anything is sent, so a row whose attempt was cut short
   (a killed process) is known to be uncertain;
2. delete and purge first keep the message in the undo vault (MIME and state, encrypted),
   committed before the message is touched;
3. the action goes out through the provider's batched calls; every answer is written with
   the hit it moves, in one transaction (`planned` -> `applied`, or `failed` with the reason);
4. applied rows are verified by finding each message again by its Internet message id
   (`applied` -> `verified`).

Every platform call is safe to repeat (moves by immutable id, deletes that tolerate "already
gone", categories read before written, notices and restored copies looked up by their
Internet message id before they are created), so a job re-run after a crash finishes the
batch without acting twice and without skipping a message. Retryable failures (throttling past
the client's budget, lost connections) go round again with a growing pause, up to
`item_attempts`; other failures are final for that message only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.audit import service as audit
from mailtrawl.config import Settings
from mailtrawl.core import (
    Action,
    ActionResult,
    MailboxRef,
    MessageLocation,
    MessageRef,
)
from mailtrawl.errors import (
    AuthFailed,
    MailtrawlError,
    NotFound,
    ProviderError,
    ProviderUnavailable,
    Throttled,
)
from mailtrawl.investigations.models import InvestigationHit
from mailtrawl.providers.base import Provider
from mailtrawl.remediation.models import (
    VAULT_PURPOSE,
    ActionStatus,
    ItemState,
    RemediationAction,
    RemediationItem,
    RemediationKind,
    VaultEntry,
)
from mailtrawl.remediation.service import DESTINATION, EXECUTE_JOB, erase_expired
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session
from mailtrawl.storage.secrets import SecretBox
from mailtrawl.tasks.queue import FailureHandler, JobContext, JobHandler

log = logging.getLogger(__name__)

ProviderFactory = Callable[[uuid.UUID], Provider]
WORKER_ACTOR = "mailtrawl-worker"


@dataclass(frozen=True, slots=True)
class RemediationSettings:
    wave_size: int = 200  # journal rows sent together (packed by mailbox)
    waves_in_flight: int = 4  # per job
    item_attempts: int = 5  # tries of one message before it fails for good
    round_pause: float = 1.0  # first pause between rounds of retries (doubled each round)
    verify_misses: int = 2  # verifications that must disagree before an item fails
    create_concurrency: int = 16  # notices and restored copies created at once, per wave
    vault_retention_days: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> RemediationSettings:
        return cls(vault_retention_days=settings.vault_retention_days)


@dataclass
class _Item:
    """A journal row as the job works on it."""

    id: uuid.UUID
    hit_id: uuid.UUID | None
    undoes_item_id: uuid.UUID | None
    mailbox: MailboxRef
    message_id: str
    internet_message_id: str
    subject: str
    sender: str
    source_folder_id: str | None
    source_folder: str | None
    state: str
    attempts: int
    vaulted: bool
    notice_message_id: str | None
    result_message_id: str | None = None
    result_folder_id: str | None = None
    result_folder: str | None = None
    # A restore's destination: where the undone action found the message.
    target_folder_id: str | None = None
    target_folder: str | None = None
    received: datetime | None = None
    changed: bool | None = None
    error: str | None = None
    misses: int = 0
    # Set while a wave works on it: the transition to write.
    outcome: str | None = None

    def ref(self, message_id: str | None = None) -> MessageRef:
        stable = message_id or self.result_message_id or self.message_id
        return MessageRef(
            mailbox=self.mailbox,
            message_id=stable,
            immutable_id=stable,
            folder_id=self.source_folder_id,
            folder_name=self.source_folder,
            internet_message_id=self.internet_message_id or None,
        )


@dataclass
class _Action:
    id: uuid.UUID
    investigation_id: uuid.UUID
    configuration_id: uuid.UUID | None
    kind: RemediationKind
    status: str
    options: dict[str, Any]
    undoes_kind: RemediationKind | None
    requested_by: str


@dataclass
class _Counts:
    applied: int = 0
    verified: int = 0
    unchanged: int = 0
    failed: int = 0
    requests: int = 0
    undone_by_action: dict[uuid.UUID, dict[str, int]] = field(default_factory=dict)


def retryable(error: BaseException) -> bool:
    """Worth another round: the platform was busy or the answer was lost."""
    return isinstance(error, Throttled | ProviderUnavailable | AuthFailed)


def describe(error: BaseException) -> str:
    if isinstance(error, NotFound):
        return f"not found: {error} (moved or deleted by someone else?)"
    return f"{type(error).__name__}: {error}"


def seal_mime(box: SecretBox, mime: bytes) -> bytes:
    return box.encrypt(zlib.compress(mime, 6), purpose=VAULT_PURPOSE)


def open_mime(box: SecretBox, sealed: bytes) -> bytes:
    return zlib.decompress(box.decrypt(sealed, purpose=VAULT_PURPOSE))


class RemediationEngine:
    """The job handlers of remediation; the same code runs under every queue backend."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        provider_factory: ProviderFactory,
        box: SecretBox,
        settings: RemediationSettings | None = None,
    ) -> None:
        self.session_factory = session_factory
        self.provider_factory = provider_factory
        self.box = box
        self.settings = settings or RemediationSettings()

    def handlers(self) -> dict[str, JobHandler]:
        return {EXECUTE_JOB: self.execute_job}

    def failure_handlers(self) -> dict[str, FailureHandler]:
        return {EXECUTE_JOB: self.execute_failed}

    def sweep_vault(self) -> int:
        """Erase vault entries past their retention (the runner calls this every hour)."""
        with write_session(self.session_factory) as session:
            erased = erase_expired(session)
        if erased:
            log.info("erased %d messages from the undo vault after their retention", erased)
        return erased

    # The job ---------------------------------------------------------------------------

    async def execute_job(self, ctx: JobContext) -> None:
        action_id = uuid.UUID(str(ctx.payload["action_id"]))
        batch = int(ctx.payload["batch"])
        action = await asyncio.to_thread(self._start, action_id)
        if action is None:
            return
        items = await asyncio.to_thread(self._load_items, action, batch)
        if items:
            if action.configuration_id is None:
                await asyncio.to_thread(
                    self._fail_open, action.id, batch, "its mail configuration was removed"
                )
            else:
                try:
                    provider = self.provider_factory(action.configuration_id)
                except MailtrawlError as exc:
                    await asyncio.to_thread(self._fail_open, action.id, batch, str(exc))
                else:
                    async with provider:
                        await _BatchRun(self, action, provider).run(items)
        await asyncio.to_thread(self._complete_if_finished, action.id)

    async def execute_failed(self, ctx: JobContext, error: str) -> None:
        """The job gave up: its unfinished messages fail with the reason; the action ends."""
        action_id = uuid.UUID(str(ctx.payload["action_id"]))
        await asyncio.to_thread(
            self._fail_open, action_id, int(ctx.payload["batch"]), f"error: {error}"
        )
        await asyncio.to_thread(self._complete_if_finished, action_id)

    def _start(self, action_id: uuid.UUID) -> _Action | None:
        with write_session(self.session_factory) as session:
            record = session.get(RemediationAction, action_id)
            if record is None or record.status not in (
                ActionStatus.QUEUED.value,
                ActionStatus.RUNNING.value,
            ):
                return None
            if record.status == ActionStatus.QUEUED:
                record.status = ActionStatus.RUNNING.value
                record.started_at = utcnow()
            erase_expired(session)
            undoes_kind = None
            if record.undoes_id is not None:
                undone = session.get(RemediationAction, record.undoes_id)
                undoes_kind = RemediationKind(
                    undone.kind if undone is not None else record.options["undoes_kind"]
                )
            return _Action(
                id=record.id,
                investigation_id=record.investigation_id,
                configuration_id=record.configuration_id,
                kind=RemediationKind(record.kind),
                status=record.status,
                options=dict(record.options),
                undoes_kind=undoes_kind,
                requested_by=record.requested_by,
            )

    def _load_items(self, action: _Action, batch: int) -> list[_Item]:
        with self.session_factory() as session:
            rows = session.scalars(
                select(RemediationItem)
                .where(
                    RemediationItem.action_id == action.id,
                    RemediationItem.batch == batch,
                    RemediationItem.state.in_((ItemState.PLANNED.value, ItemState.APPLIED.value)),
                )
                .order_by(RemediationItem.mailbox_id, RemediationItem.id)
            ).all()
            targets: dict[uuid.UUID, tuple[str | None, str | None]] = {}
            received: dict[uuid.UUID, datetime | None] = {}
            undone_ids = [r.undoes_item_id for r in rows if r.undoes_item_id is not None]
            for start in range(0, len(undone_ids), 500):
                chunk = undone_ids[start : start + 500]
                for original in session.scalars(
                    select(RemediationItem).where(RemediationItem.id.in_(chunk))
                ):
                    targets[original.id] = (original.source_folder_id, original.source_folder)
            hit_ids = [r.hit_id for r in rows if r.hit_id is not None]
            for start in range(0, len(hit_ids), 500):
                chunk = hit_ids[start : start + 500]
                for hit_id, when in session.execute(
                    select(InvestigationHit.id, InvestigationHit.received).where(
                        InvestigationHit.id.in_(chunk)
                    )
                ):
                    received[hit_id] = when
            items = []
            for row in rows:
                target = targets.get(row.undoes_item_id) if row.undoes_item_id else None
                items.append(
                    _Item(
                        id=row.id,
                        hit_id=row.hit_id,
                        undoes_item_id=row.undoes_item_id,
                        mailbox=MailboxRef(
                            id=row.mailbox_id, upn=row.mailbox_upn, mail=row.mailbox_upn
                        ),
                        message_id=row.message_id,
                        internet_message_id=row.internet_message_id,
                        subject=row.subject,
                        sender=row.sender_address,
                        source_folder_id=row.source_folder_id,
                        source_folder=row.source_folder,
                        state=row.state,
                        attempts=row.attempts,
                        vaulted=row.vaulted,
                        notice_message_id=row.notice_message_id,
                        result_message_id=row.result_message_id,
                        result_folder_id=row.result_folder_id,
                        result_folder=row.result_folder,
                        target_folder_id=target[0] if target else None,
                        target_folder=target[1] if target else None,
                        received=received.get(row.hit_id) if row.hit_id else None,
                        changed=row.changed,
                    )
                )
            return items

    # Writing -------------------------------------------------------------------------------

    def mark_attempt(self, items: Sequence[_Item]) -> None:
        with write_session(self.session_factory) as session:
            for start in range(0, len(items), 500):
                ids = [i.id for i in items[start : start + 500]]
                session.execute(
                    update(RemediationItem)
                    .where(RemediationItem.id.in_(ids))
                    .values(attempts=RemediationItem.attempts + 1, updated_at=utcnow())
                )
        for item in items:
            item.attempts += 1

    def write_vault(self, rows: list[dict[str, Any]], items: Sequence[_Item]) -> None:
        with write_session(self.session_factory) as session:
            present = set(
                session.scalars(
                    select(VaultEntry.item_id).where(
                        VaultEntry.item_id.in_([r["item_id"] for r in rows])
                    )
                )
            )
            fresh = [r for r in rows if r["item_id"] not in present]
            if fresh:
                session.execute(insert(VaultEntry), fresh)
            session.execute(
                update(RemediationItem)
                .where(RemediationItem.id.in_([i.id for i in items]))
                .values(vaulted=True, updated_at=utcnow())
            )
        for item in items:
            item.vaulted = True

    def write_outcomes(self, action: _Action, items: Sequence[_Item], requests: int) -> None:
        """Write the transitions the wave decided, with the hits they move, in one transaction.

        Rows go out as executemany batches (a few statements per wave, not per message).
        """
        changed = [i for i in items if i.outcome is not None]
        if not changed and not requests:
            return
        now = utcnow()
        counts = _Counts(requests=requests)
        item_rows: list[dict[str, Any]] = []
        applied: list[_Item] = []
        for item in changed:
            after = item.outcome
            assert after is not None
            row: dict[str, Any] = {
                "id": item.id,
                "state": after,
                "error": item.error,
                "updated_at": now,
            }
            if after == ItemState.APPLIED:
                row.update(
                    changed=item.changed,
                    result_message_id=item.result_message_id,
                    result_folder_id=item.result_folder_id,
                    result_folder=item.result_folder,
                    notice_message_id=item.notice_message_id,
                    applied_at=now,
                )
                counts.applied += 1
                counts.unchanged += item.changed is False
                applied.append(item)
            elif after == ItemState.VERIFIED:
                row["verified_at"] = now
                counts.verified += 1
            elif after == ItemState.FAILED:
                counts.failed += 1
                if item.state == ItemState.APPLIED:
                    counts.applied -= 1  # verification disproved it
                    counts.unchanged -= item.changed is False
            item_rows.append(row)
        with write_session(self.session_factory) as session:
            update_by_id(session, RemediationItem, item_rows)
            self._move_hits(session, action, applied)
            if action.kind is RemediationKind.RESTORE:
                self._undo_originals(
                    session, [i.undoes_item_id for i in applied if i.undoes_item_id], now, counts
                )
            session.execute(
                update(RemediationAction)
                .where(RemediationAction.id == action.id)
                .values(
                    applied=RemediationAction.applied + counts.applied,
                    verified=RemediationAction.verified + counts.verified,
                    unchanged=RemediationAction.unchanged + counts.unchanged,
                    failed=RemediationAction.failed + counts.failed,
                    requests=RemediationAction.requests + counts.requests,
                )
            )
            for undone_action, delta in counts.undone_by_action.items():
                session.execute(
                    update(RemediationAction)
                    .where(RemediationAction.id == undone_action)
                    .values(
                        undone=RemediationAction.undone + delta["undone"],
                        applied=RemediationAction.applied - delta["applied"],
                        verified=RemediationAction.verified - delta["verified"],
                    )
                )
        for item in changed:
            assert item.outcome is not None
            item.state = item.outcome
            item.outcome = None

    @staticmethod
    def _move_hits(session: Session, action: _Action, items: Sequence[_Item]) -> None:
        """Each hit follows its message: where it is now, and what was done to it."""
        with_hits = [i for i in items if i.hit_id is not None]
        if not with_hits:
            return
        if action.kind is RemediationKind.WARN:
            ids = [i.hit_id for i in with_hits]
            for start in range(0, len(ids), 500):
                session.execute(
                    update(InvestigationHit)
                    .where(
                        InvestigationHit.id.in_(ids[start : start + 500]),
                        InvestigationHit.remediation.is_(None),
                    )
                    .values(remediation=RemediationKind.WARN.value)
                )
            return
        rows: list[dict[str, Any]] = []
        for item in with_hits:
            if action.kind is RemediationKind.RESTORE:
                row: dict[str, Any] = {"id": item.hit_id, "remediation": None}
                if item.result_folder_id is not None:
                    row.update(
                        folder_id=item.result_folder_id,
                        folder=item.result_folder,
                        message_id=item.result_message_id or item.message_id,
                    )
            else:
                row = {
                    "id": item.hit_id,
                    "remediation": action.kind.value,
                    "folder_id": item.result_folder_id,
                    "folder": item.result_folder,
                }
                if item.result_message_id:
                    row["message_id"] = item.result_message_id
            rows.append(row)
        update_by_id(session, InvestigationHit, rows)

    @staticmethod
    def _undo_originals(
        session: Session, original_ids: Sequence[uuid.UUID], now: datetime, counts: _Counts
    ) -> None:
        """The undone action's rows become `undone`; its counters move with them."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(original_ids), 500):
            chunk = original_ids[start : start + 500]
            for original_id, action_id, state in session.execute(
                select(RemediationItem.id, RemediationItem.action_id, RemediationItem.state).where(
                    RemediationItem.id.in_(chunk), RemediationItem.state != ItemState.UNDONE.value
                )
            ):
                delta = counts.undone_by_action.setdefault(
                    action_id, {"undone": 0, "applied": 0, "verified": 0}
                )
                delta["undone"] += 1
                delta["applied"] += state in (ItemState.APPLIED, ItemState.VERIFIED)
                delta["verified"] += state == ItemState.VERIFIED
                rows.append(
                    {
                        "id": original_id,
                        "state": ItemState.UNDONE.value,
                        "undone_at": now,
                        "updated_at": now,
                    }
                )
        update_by_id(session, RemediationItem, rows)

    def _fail_open(self, action_id: uuid.UUID, batch: int, reason: str) -> None:
        with write_session(self.session_factory) as session:
            rows = session.execute(
                select(RemediationItem.id, RemediationItem.state).where(
                    RemediationItem.action_id == action_id,
                    RemediationItem.batch == batch,
                    RemediationItem.state.in_((ItemState.PLANNED.value, ItemState.APPLIED.value)),
                )
            ).all()
            if not rows:
                return
            session.execute(
                update(RemediationItem)
                .where(RemediationItem.id.in_([r[0] for r in rows]))
                .values(state=ItemState.FAILED.value, error=reason[:4000], updated_at=utcnow())
            )
            unverified = sum(1 for r in rows if r[1] == ItemState.APPLIED)
            session.execute(
                update(RemediationAction)
                .where(RemediationAction.id == action_id)
                .values(
                    failed=RemediationAction.failed + len(rows),
                    applied=RemediationAction.applied - unverified,
                )
            )

    def _complete_if_finished(self, action_id: uuid.UUID) -> None:
        with write_session(self.session_factory) as session:
            action = session.get(RemediationAction, action_id)
            if action is None or action.status != ActionStatus.RUNNING:
                return
            # Open rows first: when none is left the action is complete, whatever other jobs
            # are still doing (two jobs ending together would otherwise wait for each other).
            open_items = session.scalar(
                select(func.count())
                .select_from(RemediationItem)
                .where(
                    RemediationItem.action_id == action_id,
                    RemediationItem.state.in_((ItemState.PLANNED.value, ItemState.APPLIED.value)),
                )
            )
            if open_items:
                return  # a live job (or this one's retry, or its failure handler) finishes them
            action.status = ActionStatus.COMPLETED.value
            action.finished_at = utcnow()
            audit.record(
                session,
                actor=WORKER_ACTOR,
                operation="remediation.execute",
                entity_type="remediation_action",
                entity_id=str(action.id),
                before={"status": ActionStatus.RUNNING.value},
                after={
                    "status": action.status,
                    "action": action.kind,
                    "requested_by": action.requested_by,
                    "approved_by": action.decided_by,
                    "total": action.total,
                    "applied": action.applied,
                    "verified": action.verified,
                    "unchanged": action.unchanged,
                    "failed": action.failed,
                    "requests": action.requests,
                },
                outcome="ok" if not action.failed else f"{action.failed} failed",
            )

    # Vault reads (restore) -----------------------------------------------------------------

    def read_vault(self, item_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, VaultEntry]:
        with self.session_factory() as session:
            rows = session.scalars(select(VaultEntry).where(VaultEntry.item_id.in_(item_ids)))
            found = {r.item_id: r for r in rows}
            for entry in found.values():
                session.expunge(entry)
            return found


class _BatchRun:
    """One job's journal rows, worked through in waves until each is final."""

    def __init__(self, engine: RemediationEngine, action: _Action, provider: Provider) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.action = action
        self.provider = provider
        self.categories_ready: dict[str, ProviderError | None] = {}
        self._requests_seen = self._requests_now()

    def _requests_now(self) -> int:
        return int(self.provider.stats().get("graph_requests", 0))

    def _requests_delta(self) -> int:
        now = self._requests_now()
        delta, self._requests_seen = now - self._requests_seen, now
        return delta

    async def run(self, items: list[_Item]) -> None:
        pause = self.settings.round_pause
        while True:
            open_items = [i for i in items if i.state in (ItemState.PLANNED, ItemState.APPLIED)]
            if not open_items:
                return
            waves = _pack_by_mailbox(open_items, self.settings.wave_size)
            slots = asyncio.Semaphore(self.settings.waves_in_flight)

            async def one(wave: list[_Item], slots: asyncio.Semaphore = slots) -> None:
                async with slots:
                    await self._wave(wave)

            await asyncio.gather(*(one(w) for w in waves))
            if any(i.state in (ItemState.PLANNED, ItemState.APPLIED) for i in items):
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

    async def _write(self, items: Sequence[_Item]) -> None:
        await asyncio.to_thread(
            self.engine.write_outcomes, self.action, items, self._requests_delta()
        )

    def _settle_error(self, item: _Item, error: BaseException) -> None:
        """A failed attempt: final when not worth retrying or out of attempts."""
        item.error = describe(error)
        if not retryable(error) or item.attempts >= self.settings.item_attempts:
            item.outcome = ItemState.FAILED.value

    async def _wave(self, wave: list[_Item]) -> None:
        planned = [i for i in wave if i.state == ItemState.PLANNED]
        if planned:
            await asyncio.to_thread(self.engine.mark_attempt, planned)
            try:
                await self._apply(planned)
            except ProviderError as exc:  # a whole-wave failure (token refused, ...)
                for item in planned:
                    if item.outcome is None and item.state == ItemState.PLANNED:
                        self._settle_error(item, exc)
            await self._write(planned)
        applied = [i for i in wave if i.state == ItemState.APPLIED]
        if applied:
            try:
                await self._verify(applied)
            except ProviderError as exc:  # the whole wave could not be read back
                for item in applied:
                    if item.outcome is None:
                        self._unverifiable(item, exc)
            await self._write(applied)

    # Applying ------------------------------------------------------------------------------

    async def _apply(self, items: list[_Item]) -> None:
        kind = self.action.kind
        if kind is RemediationKind.WARN:
            await self._warn(items)
        elif kind is RemediationKind.RESTORE:
            await self._restore(items)
        else:
            if kind in (RemediationKind.DELETE, RemediationKind.PURGE):
                items = await self._vault(items)
            if items:
                await self._act(items, _platform_action(kind), DESTINATION[kind])

    async def _act(self, items: list[_Item], action: Action, folder_name: str | None) -> None:
        results = await self.provider.act_many([i.ref() for i in items], action)
        for item, result in zip(items, results, strict=True):
            if isinstance(result, ProviderError):
                self._settle_error(item, result)
            else:
                self._applied(item, result, folder_name)

    def _applied(self, item: _Item, result: ActionResult, folder_name: str | None) -> None:
        item.outcome = ItemState.APPLIED.value
        item.error = None
        # "Already done" may well be our own doing (an attempt cut short, an answer lost and
        # sent again): unknown, so that a restore still covers it. Deletes cannot tell at all.
        cannot_tell = item.attempts > 1 or self.action.kind in (
            RemediationKind.DELETE,
            RemediationKind.PURGE,
        )
        item.changed = result.changed if result.changed or not cannot_tell else None
        if result.after is not None:
            item.result_message_id = result.after.stable_id
            item.result_folder_id = result.after.folder_id
            item.result_folder = result.after.folder_name or folder_name
        else:
            item.result_message_id = None
            item.result_folder_id = None
            item.result_folder = folder_name

    async def _vault(self, items: list[_Item]) -> list[_Item]:
        """Keep each message in the vault first; returns those safe to delete now."""
        todo = [i for i in items if not i.vaulted]
        if todo:
            snapshots = await self.provider.snapshot_many([i.ref() for i in todo])
            rows: list[dict[str, Any]] = []
            kept: list[_Item] = []
            # The retention in force when the action was requested (older actions: the process's).
            days = self.action.options.get("vault_retention_days")
            expires = (
                vault_expiry_for(self.settings)
                if days is None
                else utcnow() + timedelta(days=int(days))
            )
            for item, snap in zip(todo, snapshots, strict=True):
                if isinstance(snap, ProviderError):
                    self._settle_error(item, snap)
                    continue
                rows.append(
                    {
                        "item_id": item.id,
                        "mailbox_id": item.mailbox.id,
                        "internet_message_id": item.internet_message_id,
                        "folder_id": snap.ref.folder_id or item.source_folder_id,
                        "folder": snap.ref.folder_name or item.source_folder,
                        "received": snap.received,
                        "categories": list(snap.categories),
                        "is_read": snap.is_read,
                        "flag_status": snap.flag_status,
                        "importance": snap.importance,
                        "mime": seal_mime(self.engine.box, snap.mime),
                        "mime_size": len(snap.mime),
                        "mime_sha256": hashlib.sha256(snap.mime).hexdigest(),
                        "created_at": utcnow(),
                        "expires_at": expires,
                    }
                )
                kept.append(item)
            if rows:
                await asyncio.to_thread(self.engine.write_vault, rows, kept)
        return [i for i in items if i.vaulted and i.outcome is None]

    async def _warn(self, items: list[_Item]) -> None:
        category = str(self.action.options["category"])
        mailboxes = {i.mailbox.id: i.mailbox for i in items}
        missing = [m for m in mailboxes.values() if m.id not in self.categories_ready]
        slots = asyncio.Semaphore(self.settings.create_concurrency)

        async def ensure(mailbox: MailboxRef) -> None:
            async with slots:
                try:
                    await self.provider.ensure_category(mailbox, category, "red")
                    self.categories_ready[mailbox.id] = None
                except ProviderError as exc:
                    self.categories_ready[mailbox.id] = exc

        await asyncio.gather(*(ensure(m) for m in missing))
        ready: list[_Item] = []
        for item in items:
            problem = self.categories_ready.get(item.mailbox.id)
            if problem is None:
                ready.append(item)
                continue
            self._settle_error(item, problem)
            item.error = f"the warning category could not be created: {describe(problem)}"
            if retryable(problem):
                self.categories_ready.pop(item.mailbox.id, None)  # try again next round
        if ready:
            await self._act(ready, Action.warn(category), None)
        for item in ready:
            if item.outcome == ItemState.APPLIED:
                item.result_folder_id = item.result_folder_id or item.source_folder_id
                item.result_folder = item.source_folder
        if self.action.options.get("notify"):
            await self._notify([i for i in ready if i.outcome == ItemState.APPLIED])

    async def _notify(self, items: list[_Item]) -> None:
        from mailtrawl.remediation.notice import (
            DEFAULT_NOTICE_BODY,
            DEFAULT_NOTICE_SUBJECT,
            NoticeItem,
            notice_message_id,
            render_notice,
        )

        notice = self.action.options.get("notice") or {}
        by_mailbox: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            by_mailbox[item.mailbox.id].append(item)
        slots = asyncio.Semaphore(self.settings.create_concurrency)

        async def place(group: list[_Item]) -> None:
            mailbox = group[0].mailbox
            internet_id = notice_message_id(f"{self.action.id}:{mailbox.id}")
            async with slots:
                try:
                    existing = await self._find_copy(mailbox, internet_id, None)
                    if existing is None:
                        message = render_notice(
                            mailbox=mailbox,
                            items=[
                                NoticeItem(
                                    subject=i.subject,
                                    sender_address=i.sender,
                                    sender_name="",
                                    received=i.received,
                                )
                                for i in group
                            ],
                            subject_template=str(notice.get("subject") or DEFAULT_NOTICE_SUBJECT),
                            body_template=str(notice.get("body") or DEFAULT_NOTICE_BODY),
                            organisation=str(self.action.options.get("organisation") or ""),
                            internet_message_id=internet_id,
                        )
                        created = await self.provider.create_message(
                            mailbox, "inbox", message, draft=False
                        )
                        existing = created.stable_id
                except ProviderError as exc:
                    for item in group:
                        item.error = f"warned, but the notice was not placed: {describe(exc)}"
                    return
            for item in group:
                item.notice_message_id = existing

        await asyncio.gather(*(place(g) for g in by_mailbox.values()))

    async def _find_copy(
        self, mailbox: MailboxRef, internet_message_id: str, folder_id: str | None
    ) -> str | None:
        """A message with this Internet message id (in `folder_id`, when given), if any."""
        probe = MessageRef(
            mailbox=mailbox,
            message_id="",
            internet_message_id=internet_message_id,
        )
        [location] = await self.provider.locate_many([probe])
        if isinstance(location, ProviderError):
            if isinstance(location, NotFound):
                return None
            raise location
        copies = [c for c in (location.found, *location.others) if c is not None]
        for copy in copies:
            if folder_id is None or copy.folder_id == folder_id:
                return copy.stable_id
        return None

    # Restoring -------------------------------------------------------------------------

    async def _restore(self, items: list[_Item]) -> None:
        undone = self.action.undoes_kind
        if undone is RemediationKind.WARN:
            await self._unwarn(items)
            return
        if undone is RemediationKind.PURGE:
            await self._recreate(items)
            return
        # Moved or soft-deleted: move the same message back where it was.
        by_target: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            by_target[item.target_folder_id or item.target_folder or "inbox"].append(item)
        recreate: list[_Item] = []
        for target, group in by_target.items():
            results = await self.provider.act_many([i.ref() for i in group], Action.restore(target))
            for item, result in zip(group, results, strict=True):
                if (
                    undone is RemediationKind.DELETE
                    and item.vaulted
                    and isinstance(result, ProviderError)
                    and not retryable(result)
                ):
                    # Gone from Recoverable Items, or the platform will not move it out of
                    # there: bring it back from the vault instead.
                    recreate.append(item)
                elif isinstance(result, ProviderError):
                    self._settle_error(item, result)
                else:
                    self._applied(item, result, item.target_folder)
                    item.result_folder_id = item.result_folder_id or item.target_folder_id
        if recreate:
            await self._recreate(recreate)

    async def _unwarn(self, items: list[_Item]) -> None:
        category = str(self.action.options["category"])
        await self._act(items, Action.unwarn(category), None)
        for item in items:
            if item.outcome == ItemState.APPLIED:
                item.result_folder_id = item.source_folder_id
                item.result_folder = item.source_folder
        notices = {
            i.notice_message_id: i.mailbox
            for i in items
            if i.notice_message_id and i.outcome == ItemState.APPLIED
        }
        if notices:
            withdraw = Action.purge() if self.provider.capabilities.purge else Action.delete()
            refs = [
                MessageRef(mailbox=box, message_id=mid, immutable_id=mid)
                for mid, box in notices.items()
            ]
            results = await self.provider.act_many(refs, withdraw)
            for ref, result in zip(refs, results, strict=True):
                if isinstance(result, ProviderError) and not isinstance(result, NotFound):
                    for item in items:
                        if item.notice_message_id == ref.message_id:
                            item.error = f"restored, but the notice stays: {describe(result)}"

    async def _recreate(self, items: list[_Item]) -> None:
        """Bring purged (or vanished soft-deleted) messages back from the undo vault."""
        from mailtrawl.remediation.restore import message_from_mime

        vault = await asyncio.to_thread(
            self.engine.read_vault, [i.undoes_item_id for i in items if i.undoes_item_id]
        )
        slots = asyncio.Semaphore(self.settings.create_concurrency)

        async def one(item: _Item) -> None:
            entry = vault.get(item.undoes_item_id) if item.undoes_item_id else None
            if entry is None or entry.mime is None:
                item.outcome = ItemState.FAILED.value
                item.error = (
                    "not in the undo vault"
                    if entry is None
                    else "erased from the undo vault after its retention period"
                )
                return
            folder = entry.folder_id or item.target_folder_id or entry.folder or "inbox"
            async with slots:
                try:
                    existing = None
                    if item.attempts > 1 and item.internet_message_id:
                        # An earlier attempt may have created it before the answer was lost.
                        existing = await self._find_copy(
                            item.mailbox, item.internet_message_id, entry.folder_id
                        )
                    if existing is None:
                        mime = open_mime(self.engine.box, entry.mime)
                        message = message_from_mime(
                            mime,
                            received=entry.received,
                            categories=tuple(entry.categories or ()),
                            is_read=entry.is_read,
                            flag_status=entry.flag_status,
                            importance=entry.importance,
                        )
                        created = await self.provider.create_message(
                            item.mailbox, folder, message, draft=False
                        )
                        existing = created.stable_id
                except ProviderError as exc:
                    self._settle_error(item, exc)
                    return
                except ValueError as exc:  # the kept MIME cannot be rebuilt
                    item.outcome = ItemState.FAILED.value
                    item.error = f"the kept message could not be rebuilt: {exc}"
                    return
            item.outcome = ItemState.APPLIED.value
            item.error = None
            item.changed = True
            item.result_message_id = existing
            item.result_folder_id = entry.folder_id or item.target_folder_id
            item.result_folder = entry.folder or item.target_folder

        await asyncio.gather(*(one(i) for i in items))

    # Verifying -------------------------------------------------------------------------

    async def _verify(self, items: list[_Item]) -> None:
        locations = await self.provider.locate_many([i.ref() for i in items])
        for item, location in zip(items, locations, strict=True):
            if isinstance(location, ProviderError):
                self._unverifiable(item, location)
                continue
            problem = self._mismatch(item, location)
            if problem is None:
                item.outcome = ItemState.VERIFIED.value
                item.error = item.error if item.error and "notice" in item.error else None
                continue
            item.misses += 1
            item.error = f"verification: {problem}"
            if item.misses >= self.settings.verify_misses:
                item.outcome = ItemState.FAILED.value

    def _unverifiable(self, item: _Item, error: BaseException) -> None:
        """The message could not be read back; busy platforms get more tries than refusals."""
        item.misses += 1
        item.error = f"could not verify: {describe(error)}"
        limit = self.settings.item_attempts if retryable(error) else self.settings.verify_misses
        if item.misses >= limit:
            item.outcome = ItemState.FAILED.value

    def _mismatch(self, item: _Item, location: MessageLocation) -> str | None:
        """Why the mailbox disagrees with the journal, or None when it agrees."""
        kind = self.action.kind
        found = location.found
        if kind in (RemediationKind.DELETE, RemediationKind.PURGE):
            return None if found is None else "the message is still in the mailbox's folders"
        if found is None:
            return "the message is no longer in the mailbox's folders"
        category = str(self.action.options.get("category") or "")
        has_category = any(c.casefold() == category.casefold() for c in location.categories)
        if kind is RemediationKind.WARN:
            return None if has_category else "the warning category is missing"
        if kind is RemediationKind.RESTORE and self.action.undoes_kind is RemediationKind.WARN:
            return "the warning category is still there" if has_category else None
        if item.result_folder_id and found.folder_id != item.result_folder_id:
            return f"the message is in another folder ({found.folder_name or found.folder_id})"
        return None


def update_by_id(session: Session, model: Any, rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE rows by primary key `id` as executemany batches, one per set of columns.

    Core statements rather than the ORM's bulk update: the ORM path costs several times more
    CPU per row, and a wave writes hundreds of rows.
    """
    table = model.__table__
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        columns = tuple(sorted(k for k in row if k != "id"))
        groups[columns].append({"row_id": row["id"], **{k: row[k] for k in columns}})
    for columns, params in groups.items():
        statement = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({c: bindparam(c, type_=table.c[c].type) for c in columns})
        )
        session.execute(statement, params)


def vault_expiry_for(settings: RemediationSettings) -> datetime:
    return utcnow() + timedelta(days=settings.vault_retention_days)


def _platform_action(kind: RemediationKind) -> Action:
    if kind is RemediationKind.JUNK:
        return Action.junk()
    if kind is RemediationKind.TRASH:
        return Action.trash()
    if kind is RemediationKind.DELETE:
        return Action.delete()
    if kind is RemediationKind.PURGE:
        return Action.purge()
    raise ValueError(f"no single platform action for {kind}")


def _pack_by_mailbox(items: list[_Item], size: int) -> list[list[_Item]]:
    """Waves of about `size` rows that never split a mailbox (its notice lists them all)."""
    by_mailbox: dict[str, list[_Item]] = defaultdict(list)
    for item in items:
        by_mailbox[item.mailbox.id].append(item)
    waves: list[list[_Item]] = []
    current: list[_Item] = []
    for group in by_mailbox.values():
        if current and len(current) + len(group) > size:
            waves.append(current)
            current = []
        current.extend(group)
    if current:
        waves.append(current)
    return waves


__all__ = [
    "EXECUTE_JOB",
    "RemediationEngine",
    "RemediationSettings",
    "open_mime",
    "seal_mime",
]
