"""The watcher: one loop per process that keeps every active investigation acting on new mail.

Each round it
1. ends investigations whose period is over (expired) and picks up new ones;
2. per mail configuration, resolves the scopes of its active investigations again when due
   (new members of a group are watched from then on, removed ones are not read), and keeps
   one row per watched mailbox with the time to read it next (`monitor_mailboxes`);
3. reads the delta of each due mailbox's watched folders, many per `$batch`;
4. judges each new message once against every active query of the configuration
   (monitor/evaluate.py), stores the copies found, and asks for the investigation's action
   on them (the same approvals, journal and audit as a manual action);
5. stores the new delta cursors in the same transaction as the hits, so a crash before the
   write means the changes are read again, never lost (hits are unique per message, so
   reading again adds nothing twice).

A cursor Graph no longer knows (410 syncStateNotFound) is replaced by a new first round
from a little before the last good round. With a public URL configured, Graph change
notifications (subscriptions kept here) make a mailbox due at once; polling stays on as a
slower backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.audit import service as audit_service
from mailtrawl.audit.service import Actor
from mailtrawl.config import Settings
from mailtrawl.core import ChangeRequest, MailboxRef, MessageMeta
from mailtrawl.errors import MailtrawlError, ProviderError, Throttled
from mailtrawl.investigations.engine import ProviderFactory, hit_row
from mailtrawl.investigations.hits import store_hits
from mailtrawl.investigations.matcher import CompiledHunt, compile_hunts
from mailtrawl.investigations.models import Investigation, InvestigationHit, WatchState
from mailtrawl.investigations.planner import plan_hunt
from mailtrawl.investigations.query import parse_query
from mailtrawl.monitor.evaluate import Match, WatchedQuery, evaluate
from mailtrawl.monitor.models import DeltaCursor, NotificationSubscription, WatchedMailbox
from mailtrawl.monitor.schedule import PollPolicy
from mailtrawl.providers.base import Provider
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session

log = logging.getLogger(__name__)

ACTOR = "mailtrawl (active investigation)"
ROUND_S = 0.5  # how often due mailboxes are looked for
RELOAD_S = 2.0  # how often active investigations are read again
RESYNC_MARGIN = timedelta(minutes=10)  # a resync re-reads from this long before the last round
FIRST_ROUND_MARGIN = timedelta(minutes=1)
MAILBOXES_PER_ROUND = 1_000
EVALUATIONS_IN_FLIGHT = 8
SEEN_PER_CONFIGURATION = 200_000
SUBSCRIPTION_LIFETIME = timedelta(days=3)
SUBSCRIPTION_RENEW_BEFORE = timedelta(days=1)
SUBSCRIPTIONS_PER_ROUND = 200


def client_state_digest(client_state: str) -> str:
    return hashlib.sha256(client_state.encode()).hexdigest()


@dataclass
class _Scope:
    document: dict[str, Any]
    members: frozenset[str] = frozenset()
    resolved_at: float = float("-inf")


@dataclass
class _ConfigurationWatch:
    configuration_id: uuid.UUID
    provider: Provider
    queries: dict[uuid.UUID, WatchedQuery] = field(default_factory=dict)
    scopes: dict[uuid.UUID, _Scope] = field(default_factory=dict)
    mailboxes: dict[str, MailboxRef] = field(default_factory=dict)
    # (mailbox id, message id) judged already: a later update of it is not judged again.
    seen: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    notifications: bool = False
    unreadable: set[uuid.UUID] = field(default_factory=set)  # queries that do not parse

    def members_of(self, mailbox_id: str) -> list[WatchedQuery]:
        return [
            self.queries[i]
            for i, scope in self.scopes.items()
            if mailbox_id in scope.members and i in self.queries
        ]

    def remember(self, key: tuple[str, str]) -> bool:
        """Whether `key` is new (and now remembered)."""
        if key in self.seen:
            return False
        self.seen[key] = None
        if len(self.seen) > SEEN_PER_CONFIGURATION:
            self.seen.popitem(last=False)
        return True


@dataclass
class RoundStats:
    """What the watcher has done since it started (for `mailtrawl watch` and benchmarks)."""

    rounds: int = 0
    mailbox_reads: int = 0
    folder_reads: int = 0
    read_failures: int = 0
    resyncs: int = 0
    messages_judged: int = 0
    new_hits: int = 0
    actions_requested: int = 0


class Watcher:
    """Runs as a service of the job runner (`mailtrawl serve` and `mailtrawl worker`)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        provider_factory: ProviderFactory,
        settings: Settings,
    ) -> None:
        self.sessions = sessions
        self.provider_factory = provider_factory
        self.settings = settings
        self.folders = tuple(dict.fromkeys(f.strip().lower() for f in settings.monitor_folders))
        self.policy = PollPolicy(
            interval_s=settings.monitor_poll_seconds,
            backstop_s=settings.monitor_backstop_seconds,
            budget_share=settings.monitor_budget_share,
            folders=len(self.folders),
        )
        self.public_url = str(settings.public_url).rstrip("/") if settings.public_url else None
        self.stats = RoundStats()
        self._watches: dict[uuid.UUID, _ConfigurationWatch] = {}
        self._wake = asyncio.Event()
        self._last_reload = float("-inf")
        self._eval_slots = asyncio.Semaphore(EVALUATIONS_IN_FLIGHT)
        self._pending_actions: dict[uuid.UUID, uuid.UUID] = {}  # hit id → investigation id

    # The loop ----------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for due mailboxes now (a change notification made one due)."""
        self._wake.set()

    async def run(self) -> None:
        """Rounds until cancelled; one failing round is logged and the next one runs."""
        try:
            while True:
                try:
                    await self.round()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("a round of the watcher failed")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), ROUND_S)
        finally:
            await self.close()

    async def close(self) -> None:
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            with contextlib.suppress(Exception):
                await watch.provider.__aexit__(None, None, None)

    async def round(self) -> None:
        """One round: reload investigations when due, then read every due mailbox."""
        self.stats.rounds += 1
        if time.monotonic() - self._last_reload >= RELOAD_S:
            await self._reload()
            self._last_reload = time.monotonic()
        for watch in list(self._watches.values()):
            try:
                await self._refresh_scopes(watch)
                if watch.notifications:
                    await self._keep_subscriptions(watch)
                await self._read_due(watch)
            except ProviderError as exc:
                log.warning("watching configuration %s: %s", watch.configuration_id, exc)

    # Active investigations ---------------------------------------------------------------

    async def _reload(self) -> None:
        active = await asyncio.to_thread(self._expire_and_load)
        by_configuration: dict[uuid.UUID, list[Investigation]] = defaultdict(list)
        for record in active:
            assert record.configuration_id is not None
            by_configuration[record.configuration_id].append(record)
        for configuration_id in list(self._watches):
            if configuration_id not in by_configuration:
                await self._unwatch(self._watches.pop(configuration_id))
        for configuration_id, records in by_configuration.items():
            watch = self._watches.get(configuration_id)
            if watch is None:
                try:
                    provider = self.provider_factory(configuration_id)
                    await provider.__aenter__()
                except (MailtrawlError, ValueError) as exc:
                    log.warning("cannot watch configuration %s: %s", configuration_id, exc)
                    continue
                watch = _ConfigurationWatch(configuration_id, provider)
                watch.notifications = bool(self.public_url and provider.capabilities.notifications)
                self._watches[configuration_id] = watch
            self._update_queries(watch, records)

    def _expire_and_load(self) -> list[Investigation]:
        """End what is over (expired, or its configuration removed); the rest is active.

        Reads only, unless something ended: an idle watcher never takes the write lock.
        """
        now = utcnow()
        active = Investigation.watch_state == WatchState.ACTIVE.value
        over = (
            Investigation.active_until.is_not(None) & (Investigation.active_until <= now)
        ) | Investigation.configuration_id.is_(None)
        with self.sessions() as session:
            ended = session.scalar(select(Investigation.id).where(active, over).limit(1))
        if ended is not None:
            with write_session(self.sessions) as session:
                for record in session.scalars(select(Investigation).where(active, over)):
                    state = (
                        WatchState.ENDED if record.configuration_id is None else WatchState.EXPIRED
                    )
                    record.watch_state = state.value
                    record.watch_ended_at = now
                    audit_service.record(
                        session,
                        actor=ACTOR,
                        role="system",
                        operation="investigation."
                        + ("expire" if state is WatchState.EXPIRED else "end"),
                        entity_type="investigation",
                        entity_id=str(record.id),
                        after={"watch_state": state.value, "new_hits": record.new_hits},
                    )
        with self.sessions() as session:
            records = list(
                session.scalars(
                    select(Investigation).where(active, Investigation.configuration_id.is_not(None))
                )
            )
            session.expunge_all()
            return records

    def _update_queries(self, watch: _ConfigurationWatch, records: list[Investigation]) -> None:
        """Follow the active investigations; when they change, compile all their queries
        again together, so one keyword scan per message serves every one of them."""
        wanted = {r.id: r for r in records}
        changed = False
        for gone in set(watch.queries) - set(wanted):
            watch.queries.pop(gone, None)
            watch.scopes.pop(gone, None)
            changed = True
        for investigation_id, record in wanted.items():
            if investigation_id in watch.queries or investigation_id in watch.unreadable:
                continue
            try:
                hunt = parse_query(record.query)
            except (MailtrawlError, ValueError) as exc:
                log.warning("investigation %s cannot watch: %s", investigation_id, exc)
                watch.unreadable.add(investigation_id)
                continue
            watch.queries[investigation_id] = WatchedQuery(
                investigation_id=investigation_id,
                compiled=CompiledHunt(hunt),
                plan=plan_hunt(hunt, watch.provider.capabilities),
                since=record.watch_started_at or record.created_at,
                until=record.active_until,
                action=record.auto_action,
            )
            watch.scopes[investigation_id] = _Scope(dict(record.scope))
            changed = True
        if changed:
            queries = list(watch.queries.values())
            for query, compiled in zip(
                queries, compile_hunts([q.compiled.hunt for q in queries]), strict=True
            ):
                query.compiled = compiled

    async def _unwatch(self, watch: _ConfigurationWatch) -> None:
        """No investigation watches this configuration any more: forget its schedule."""
        if watch.notifications:
            for subscription_id in await asyncio.to_thread(
                self._subscription_ids, watch.configuration_id, None
            ):
                with contextlib.suppress(ProviderError):
                    await watch.provider.delete_subscription(subscription_id)  # type: ignore[attr-defined]
        await asyncio.to_thread(self._forget_configuration, watch.configuration_id)
        with contextlib.suppress(Exception):
            await watch.provider.__aexit__(None, None, None)

    def _forget_configuration(self, configuration_id: uuid.UUID) -> None:
        with write_session(self.sessions) as session:
            for table in (WatchedMailbox, DeltaCursor, NotificationSubscription):
                session.execute(delete(table).where(table.configuration_id == configuration_id))

    # Scopes ------------------------------------------------------------------------------

    async def _refresh_scopes(self, watch: _ConfigurationWatch) -> None:
        due = [
            (investigation_id, scope)
            for investigation_id, scope in watch.scopes.items()
            if time.monotonic() - scope.resolved_at
            >= self.settings.monitor_directory_refresh_seconds
        ]
        if not due:
            return
        from mailtrawl.investigations.engine import scope_of

        for _, scope in due:
            resolution = await watch.provider.resolve_scope(scope_of(scope.document))
            scope.members = frozenset(m.id for m in resolution.mailboxes)
            scope.resolved_at = time.monotonic()
            for mailbox in resolution.mailboxes:
                watch.mailboxes[mailbox.id] = mailbox
        watched = frozenset().union(*(s.members for s in watch.scopes.values()))
        for mailbox_id in set(watch.mailboxes) - watched:
            del watch.mailboxes[mailbox_id]
        await asyncio.to_thread(self._sync_mailboxes, watch.configuration_id, dict(watch.mailboxes))

    def _sync_mailboxes(
        self, configuration_id: uuid.UUID, mailboxes: dict[str, MailboxRef]
    ) -> None:
        now = utcnow()
        with write_session(self.sessions) as session:
            known = set(
                session.scalars(
                    select(WatchedMailbox.mailbox_id).where(
                        WatchedMailbox.configuration_id == configuration_id
                    )
                )
            )
            for mailbox_id in set(mailboxes) - known:
                session.add(
                    WatchedMailbox(
                        configuration_id=configuration_id,
                        mailbox_id=mailbox_id,
                        upn=mailboxes[mailbox_id].upn[:320],
                        next_poll_at=now,
                        failures=0,
                    )
                )
            removed = known - set(mailboxes)
            if removed:
                for table in (WatchedMailbox, DeltaCursor, NotificationSubscription):
                    session.execute(
                        delete(table).where(
                            table.configuration_id == configuration_id,
                            table.mailbox_id.in_(removed),
                        )
                    )

    # Reading due mailboxes ---------------------------------------------------------------

    async def _read_due(self, watch: _ConfigurationWatch) -> None:
        started = utcnow()
        due, cursors = await asyncio.to_thread(self._due, watch.configuration_id, started)
        due = [row for row in due if row.mailbox_id in watch.mailboxes]
        if not due:
            return
        requests: list[ChangeRequest] = []
        for row in due:
            mailbox = watch.mailboxes[row.mailbox_id]
            bound = self._first_round_bound(watch, row.mailbox_id)
            for folder in self.folders:
                cursor = cursors.get((row.mailbox_id, folder))
                if cursor is not None and cursor.cursor:
                    requests.append(ChangeRequest(mailbox, folder, cursor.cursor))
                else:
                    since = bound
                    if cursor is not None:  # a resync: from a little before the last round
                        since = min(bound, cursor.synced_at - RESYNC_MARGIN)
                    requests.append(ChangeRequest(mailbox, folder, None, since))
        batches = await watch.provider.changes_many(requests)
        self.stats.mailbox_reads += len(due)
        self.stats.folder_reads += len(requests)
        outcome = _Outcome(started, known=set(cursors))
        judging: list[asyncio.Task[None]] = []
        for request, batch in zip(requests, batches, strict=True):
            mailbox_id = request.mailbox.id
            if batch.error is not None:
                outcome.failed[mailbox_id] = batch.error
                continue
            if batch.resync_required:
                self.stats.resyncs += 1
                outcome.resync.add((mailbox_id, request.folder))
                continue
            if batch.cursor:
                outcome.cursors[(mailbox_id, request.folder)] = batch.cursor
            outcome.removed.extend((mailbox_id, gone, request.folder) for gone in batch.removed)
            outcome.located.extend(
                (mailbox_id, meta.ref.stable_id, meta.ref.folder_id, meta.ref.folder_name)
                for meta in batch.changed
            )
            judging.extend(
                asyncio.create_task(self._judge(watch, request.folder, meta, outcome))
                for meta in batch.changed
                if watch.remember((mailbox_id, meta.ref.stable_id))
            )
        if judging:
            await asyncio.gather(*judging)
        await asyncio.to_thread(self._record, watch, due, outcome)

    def _first_round_bound(self, watch: _ConfigurationWatch, mailbox_id: str) -> datetime:
        starts = [q.since for q in watch.members_of(mailbox_id)]
        return (min(starts) if starts else utcnow()) - FIRST_ROUND_MARGIN

    def _due(
        self, configuration_id: uuid.UUID, now: datetime
    ) -> tuple[list[WatchedMailbox], dict[tuple[str, str], DeltaCursor]]:
        with self.sessions() as session:
            due = list(
                session.scalars(
                    select(WatchedMailbox)
                    .where(
                        WatchedMailbox.configuration_id == configuration_id,
                        WatchedMailbox.next_poll_at <= now,
                    )
                    .order_by(WatchedMailbox.next_poll_at)
                    .limit(MAILBOXES_PER_ROUND)
                )
            )
            if not due:
                return [], {}
            rows = session.scalars(
                select(DeltaCursor).where(
                    DeltaCursor.configuration_id == configuration_id,
                    DeltaCursor.mailbox_id.in_([r.mailbox_id for r in due]),
                )
            )
            return due, {(c.mailbox_id, c.folder): c for c in rows}

    async def _judge(
        self, watch: _ConfigurationWatch, folder: str, meta: MessageMeta, outcome: _Outcome
    ) -> None:
        mailbox_id = meta.ref.mailbox.id
        queries = [q for q in watch.members_of(mailbox_id) if q.in_range(meta)]
        if not queries:
            return
        async with self._eval_slots:
            self.stats.messages_judged += 1
            try:
                found = await evaluate(watch.provider, meta, queries)
            except ProviderError as exc:
                # Not judged: keep the folder's old cursor so the message comes again.
                log.warning("could not judge a new message in %s: %s", meta.ref.mailbox.upn, exc)
                watch.seen.pop((mailbox_id, meta.ref.stable_id), None)
                outcome.retry.add((mailbox_id, folder))
                return
        for investigation_id, match in found.items():
            outcome.matches.append((investigation_id, match))

    # Writing a round ---------------------------------------------------------------------

    def _record(
        self, watch: _ConfigurationWatch, due: list[WatchedMailbox], outcome: _Outcome
    ) -> None:
        """Hits, actions, cursors and the next reads of a round: one transaction.

        Cursors and schedules are written with one executemany each: a round can cover a
        thousand mailboxes.
        """
        now = utcnow()
        configuration_id = watch.configuration_id
        with write_session(self.sessions) as session:
            self._follow_moves(session, watch, outcome)
            inserted = self._store_matches(session, watch, outcome.matches, now)
            hit_mailboxes = {mailbox_id for mailbox_id, _ in inserted}
            self._request_actions(session, watch, [i for _, i in inserted])
            self._write_cursors(session, configuration_id, outcome)
            notified = self._notified_mailboxes(session, watch) if watch.notifications else set()
            resynced = {mailbox_id for mailbox_id, _ in outcome.resync}
            schedule: list[dict[str, Any]] = []
            for row in due:
                last_hit = now if row.mailbox_id in hit_mailboxes else row.last_hit_at
                error = outcome.failed.get(row.mailbox_id)
                failures, last_error = 0, None
                if error is not None:
                    self.stats.read_failures += 1
                    failures, last_error = row.failures + 1, str(error)[:2000]
                    retry_after = error.retry_after if isinstance(error, Throttled) else None
                    next_at = self.policy.after_failure(now, failures, retry_after=retry_after)
                elif row.mailbox_id in resynced:
                    next_at = now  # read the new first round at once
                else:
                    next_at = self.policy.next_poll(
                        now, last_hit_at=last_hit, notified=row.mailbox_id in notified
                    )
                schedule.append(
                    {
                        "k_mailbox": row.mailbox_id,
                        "v_next": next_at,
                        "v_polled": outcome.started,
                        "v_hit": last_hit,
                        "v_failures": failures,
                        "v_error": last_error,
                    }
                )
            if schedule:
                table = cast(Table, WatchedMailbox.__table__)
                column = table.c
                session.connection().execute(
                    table.update()
                    .where(
                        column.configuration_id == configuration_id,
                        column.mailbox_id == bindparam("k_mailbox"),
                    )
                    .values(
                        # Made due again during the round (a notification): keep that.
                        next_poll_at=case(
                            (column.next_poll_at > outcome.started, column.next_poll_at),
                            else_=bindparam("v_next"),
                        ),
                        last_polled_at=bindparam("v_polled"),
                        last_hit_at=bindparam("v_hit"),
                        failures=bindparam("v_failures"),
                        last_error=bindparam("v_error"),
                    ),
                    schedule,
                )

    def _follow_moves(
        self, session: Session, watch: _ConfigurationWatch, outcome: _Outcome
    ) -> None:
        """Keep the folder of the copies found by active investigations current.

        A copy that left the folder it was found in (`@removed`) was moved out of the watched
        folders or deleted: its folder becomes unknown (actions address it by its immutable
        id, and report it gone if it is). A copy seen in another watched folder moved there.
        Removals are applied first and only to copies still recorded in that folder, so the
        order in which a move's two halves arrive does not matter, and a move made by our own
        action (which records the new folder itself) is left as it is.
        """
        if not watch.queries or not (outcome.removed or outcome.located):
            return
        hits = cast(Table, InvestigationHit.__table__)
        column = hits.c
        removed = [
            {"k_mailbox": m, "k_message": i[:512], "k_folder": f} for m, i, f in outcome.removed
        ]
        located = [
            {"k_mailbox": m, "k_message": i[:512], "v_folder_id": fid, "v_folder": name}
            for m, i, fid, name in outcome.located
            if fid is not None
        ]
        connection = session.connection()
        for investigation_id in watch.queries:
            same = (
                (column.investigation_id == investigation_id)
                & (column.mailbox_id == bindparam("k_mailbox"))
                & (column.message_id == bindparam("k_message"))
            )
            if removed:
                connection.execute(
                    hits.update()
                    .where(same & (column.folder == bindparam("k_folder")))
                    .values(folder_id=None, folder=None),
                    removed,
                )
            if located:
                connection.execute(
                    hits.update()
                    .where(
                        same
                        & (
                            column.folder_id.is_(None)
                            | (column.folder_id != bindparam("v_folder_id"))
                        )
                    )
                    .values(folder_id=bindparam("v_folder_id"), folder=bindparam("v_folder")),
                    located,
                )

    def _write_cursors(
        self, session: Session, configuration_id: uuid.UUID, outcome: _Outcome
    ) -> None:
        table = cast(Table, DeltaCursor.__table__)
        column = table.c
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for (mailbox_id, folder), cursor in outcome.cursors.items():
            if (mailbox_id, folder) in outcome.retry:
                continue
            values = {"k_mailbox": mailbox_id, "k_folder": folder, "v_cursor": cursor}
            (updates if (mailbox_id, folder) in outcome.known else inserts).append(values)
        # An empty cursor means: the next read is a new first round (see _read_due).
        updates.extend(
            {"k_mailbox": mailbox_id, "k_folder": folder, "v_cursor": ""}
            for mailbox_id, folder in outcome.resync
        )
        connection = session.connection()
        if updates:
            connection.execute(
                table.update()
                .where(
                    column.configuration_id == configuration_id,
                    column.mailbox_id == bindparam("k_mailbox"),
                    column.folder == bindparam("k_folder"),
                )
                .values(
                    cursor=bindparam("v_cursor"),
                    # A resync keeps the time of the last good round (its lower bound).
                    synced_at=case(
                        (bindparam("v_cursor") == "", column.synced_at), else_=outcome.started
                    ),
                ),
                updates,
            )
        if inserts:
            connection.execute(
                table.insert(),
                [
                    {
                        "configuration_id": configuration_id,
                        "mailbox_id": v["k_mailbox"],
                        "folder": v["k_folder"],
                        "cursor": v["v_cursor"],
                        "synced_at": outcome.started,
                    }
                    for v in inserts
                ],
            )

    def _store_matches(
        self,
        session: Session,
        watch: _ConfigurationWatch,
        matches: list[tuple[uuid.UUID, Match]],
        now: datetime,
    ) -> list[tuple[str, uuid.UUID]]:
        if not matches:
            return []
        # Stopped or expired since the round began: nothing more is recorded for it.
        still_active = set(
            session.scalars(
                select(Investigation.id).where(
                    Investigation.id.in_({i for i, _ in matches}),
                    Investigation.watch_state == WatchState.ACTIVE.value,
                )
            )
        )
        rows = [
            hit_row(investigation_id, m.message, m.matched, via_attached=m.via_attached)
            for investigation_id, m in matches
            if investigation_id in still_active
        ]
        if not rows:
            return []
        inserted = set(store_hits(session, rows))
        stored = [(r["mailbox_id"], r["id"]) for r in rows if r["id"] in inserted]
        per_investigation: dict[uuid.UUID, int] = defaultdict(int)
        for row in rows:
            if row["id"] in inserted:
                per_investigation[row["investigation_id"]] += 1
        for investigation_id, count in per_investigation.items():
            session.execute(
                update(Investigation)
                .where(Investigation.id == investigation_id)
                .values(
                    hits=Investigation.hits + count,
                    new_hits=Investigation.new_hits + count,
                )
            )
        self.stats.new_hits += len(stored)
        self._pending_actions = {
            r["id"]: r["investigation_id"] for r in rows if r["id"] in inserted
        }
        return stored

    def _request_actions(
        self, session: Session, watch: _ConfigurationWatch, hit_ids: list[uuid.UUID]
    ) -> None:
        """The investigation's action on the copies just found (one request per investigation)."""
        if not hit_ids:
            return
        from mailtrawl.remediation import service as remediation_service
        from mailtrawl.remediation.schemas import ActionCreate, Selection

        by_investigation: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for hit_id in hit_ids:
            by_investigation[self._pending_actions[hit_id]].append(hit_id)
        for investigation_id, ids in by_investigation.items():
            query = watch.queries.get(investigation_id)
            if query is None or query.action is None:
                continue
            try:
                with session.begin_nested():
                    remediation_service.request_action(
                        session,
                        investigation=investigation_id,
                        data=ActionCreate(
                            action=query.action,  # type: ignore[arg-type]
                            selection=Selection(hits=ids),
                            note=f"{len(ids)} new copies found by the active investigation",
                        ),
                        actor=Actor(name=ACTOR, role="system"),
                        settings=self.settings,
                    )
                self.stats.actions_requested += 1
            except MailtrawlError as exc:
                log.warning(
                    "could not act on new copies for investigation %s: %s", investigation_id, exc
                )

    # Change notifications ----------------------------------------------------------------

    @staticmethod
    def _notified_mailboxes(session: Session, watch: _ConfigurationWatch) -> set[str]:
        now = utcnow()
        return set(
            session.scalars(
                select(NotificationSubscription.mailbox_id).where(
                    NotificationSubscription.configuration_id == watch.configuration_id,
                    NotificationSubscription.expires_at > now,
                )
            )
        )

    def _subscription_ids(self, configuration_id: uuid.UUID, mailbox_id: str | None) -> list[str]:
        with self.sessions() as session:
            query = select(NotificationSubscription.id).where(
                NotificationSubscription.configuration_id == configuration_id
            )
            if mailbox_id is not None:
                query = query.where(NotificationSubscription.mailbox_id == mailbox_id)
            return list(session.scalars(query))

    async def _keep_subscriptions(self, watch: _ConfigurationWatch) -> None:
        """Subscribe each watched folder, renew before expiry, recreate what Graph removed.

        At most SUBSCRIPTIONS_PER_ROUND per round, made side by side (each one waits for
        Graph's validation request to this server).
        """
        now = utcnow()
        existing = await asyncio.to_thread(self._subscriptions, watch.configuration_id)
        have = {(s.mailbox_id, s.folder): s for s in existing}
        work = [
            (mailbox, folder, have.get((mailbox_id, folder)))
            for mailbox_id, mailbox in list(watch.mailboxes.items())
            for folder in self.folders
            if (mailbox_id, folder) not in have
            or have[(mailbox_id, folder)].expires_at - now <= SUBSCRIPTION_RENEW_BEFORE
        ][:SUBSCRIPTIONS_PER_ROUND]
        if work:
            await asyncio.gather(*(self._subscribe(watch, *item, now) for item in work))

    async def _subscribe(
        self,
        watch: _ConfigurationWatch,
        mailbox: MailboxRef,
        folder: str,
        record: NotificationSubscription | None,
        now: datetime,
    ) -> None:
        assert self.public_url is not None
        provider: Any = watch.provider
        try:
            if record is not None:
                renewed = await provider.renew_subscription(
                    _subscription_value(record, mailbox), now + SUBSCRIPTION_LIFETIME
                )
                await asyncio.to_thread(self._subscription_renewed, record.id, renewed.expires_at)
                return
            client_state = secrets.token_urlsafe(32)
            created = await provider.subscribe(
                mailbox,
                folder,
                f"{self.public_url}/api/v1/graph/notifications",
                f"{self.public_url}/api/v1/graph/lifecycle",
                client_state,
                now + SUBSCRIPTION_LIFETIME,
            )
            await asyncio.to_thread(
                self._subscription_created,
                watch.configuration_id,
                mailbox.id,
                folder,
                created.id,
                client_state_digest(client_state),
                created.expires_at,
            )
        except MailtrawlError as exc:
            # Polling goes on; the subscription is tried again next round.
            log.warning("could not subscribe %s/%s: %s", mailbox.upn, folder, exc)
            if record is not None:
                await asyncio.to_thread(self._subscription_gone, record.id)

    def _subscriptions(self, configuration_id: uuid.UUID) -> list[NotificationSubscription]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(NotificationSubscription).where(
                        NotificationSubscription.configuration_id == configuration_id
                    )
                )
            )

    def _subscription_created(
        self,
        configuration_id: uuid.UUID,
        mailbox_id: str,
        folder: str,
        subscription_id: str,
        digest: str,
        expires_at: datetime,
    ) -> None:
        with write_session(self.sessions) as session:
            session.merge(
                NotificationSubscription(
                    id=subscription_id,
                    configuration_id=configuration_id,
                    mailbox_id=mailbox_id,
                    folder=folder,
                    client_state_sha256=digest,
                    expires_at=expires_at,
                    created_at=utcnow(),
                )
            )

    def _subscription_renewed(self, subscription_id: str, expires_at: datetime) -> None:
        with write_session(self.sessions) as session:
            session.execute(
                update(NotificationSubscription)
                .where(NotificationSubscription.id == subscription_id)
                .values(expires_at=expires_at)
            )

    def _subscription_gone(self, subscription_id: str) -> None:
        with write_session(self.sessions) as session:
            session.execute(
                delete(NotificationSubscription).where(
                    NotificationSubscription.id == subscription_id
                )
            )


def _subscription_value(record: NotificationSubscription, mailbox: MailboxRef) -> Any:
    from mailtrawl.providers.graph.subscriptions import GraphSubscription

    return GraphSubscription(
        id=record.id,
        mailbox_id=mailbox.id,
        resource="",
        folder=record.folder,
        expires_at=record.expires_at,
    )


@dataclass
class _Outcome:
    """What one round read, before it is written."""

    started: datetime
    cursors: dict[tuple[str, str], str] = field(default_factory=dict)
    resync: set[tuple[str, str]] = field(default_factory=set)
    failed: dict[str, Exception] = field(default_factory=dict)
    matches: list[tuple[uuid.UUID, Match]] = field(default_factory=list)
    retry: set[tuple[str, str]] = field(default_factory=set)  # folders to read again
    known: set[tuple[str, str]] = field(default_factory=set)  # folders with a stored cursor
    # Every message seen in a watched folder: (mailbox id, message id, folder id, folder).
    located: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    # Messages that left a watched folder (`@removed`): (mailbox id, message id, folder).
    removed: list[tuple[str, str, str]] = field(default_factory=list)


WakeCallback = Callable[[], None]
