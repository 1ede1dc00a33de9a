"""The job-queue interface, and the default backend: jobs in the database, run in-process.

Services enqueue jobs inside their own transaction (`enqueue`), so a job exists if and only
if the change that asked for it was committed. A worker leases a job (a row update that only
one worker can win, on SQLite and PostgreSQL alike), renews the lease while the handler
runs, and marks it done or failed. A job whose worker died is taken again once its lease
expires: handlers are written to be re-run (they skip work already recorded as done).

A distributed backend (Celery) implements `JobRunner` with the same handlers; the engine
only ever sees `JobContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session
from mailtrawl.tasks.models import Job, JobStatus

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(seconds=60)
# How long a failed job waits before its next attempt (doubled each time).
RETRY_DELAY = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a handler gets: the job's identity and payload, and a way to tell it is alive."""

    id: uuid.UUID
    kind: str
    payload: Mapping[str, Any]
    attempt: int
    session_factory: sessionmaker[Session]


JobHandler = Callable[[JobContext], Awaitable[None]]
# (interval in seconds, work): run by the runner in a thread, at start and then periodically.
Housekeeping = tuple[float, Callable[[], object]]


class Service(Protocol):
    """Long-running work beside the jobs (the watcher of active investigations)."""

    async def run(self) -> None: ...

    def wake(self) -> None: ...


# Called once a job has failed for good (its last attempt raised), with the error text.
FailureHandler = Callable[[JobContext, str], Awaitable[None]]


class JobRunner(Protocol):
    """A backend that runs queued jobs with the registered handlers."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def wake(self) -> None:
        """A job was just enqueued: look for work now rather than at the next poll."""
        ...


def enqueue(
    session: Session,
    kind: str,
    payload: Mapping[str, Any],
    *,
    group_key: str | None = None,
    max_attempts: int = 5,
) -> Job:
    """Add a job in the caller's transaction; it runs once the transaction commits."""
    job = Job(
        kind=kind,
        payload=dict(payload),
        group_key=group_key,
        max_attempts=max_attempts,
        status=JobStatus.QUEUED.value,
    )
    session.add(job)
    return job


def cancel_group(session: Session, group_key: str) -> int:
    """Cancel the queued jobs of a group; running ones notice through their own state."""
    result = session.execute(
        update(Job)
        .where(Job.group_key == group_key, Job.status == JobStatus.QUEUED.value)
        .values(status=JobStatus.CANCELLED.value, finished_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


class DatabaseJobRunner:
    """The default backend: polls the jobs table and runs handlers as asyncio tasks."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        handlers: Mapping[str, JobHandler],
        *,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        lease: timedelta = DEFAULT_LEASE,
        owner: str | None = None,
        on_failure: Mapping[str, FailureHandler] | None = None,
        housekeeping: Sequence[Housekeeping] = (),
        services: Sequence[Service] = (),
    ) -> None:
        self.session_factory = session_factory
        self.handlers = dict(handlers)
        self.on_failure = dict(on_failure or {})
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.lease = lease
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._loop_task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.housekeeping = tuple(housekeeping)
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._wake_housekeeping = asyncio.Event()
        self.services = tuple(services)
        self._service_tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self._loop_task is None:
            self._stopping = False
            self._wake_housekeeping.clear()
            self._loop_task = asyncio.create_task(self._loop(), name="mailtrawl-jobs")
            if self.housekeeping:
                self._housekeeping_task = asyncio.create_task(
                    self._housekeep(), name="mailtrawl-housekeeping"
                )
            self._service_tasks = [
                asyncio.create_task(service.run(), name=f"mailtrawl-{type(service).__name__}")
                for service in self.services
            ]

    async def stop(self) -> None:
        """Stop taking jobs and cancel the running ones; their leases expire and they resume."""
        self._stopping = True
        self._wake.set()
        self._wake_housekeeping.set()
        tasks = [
            t for t in (self._loop_task, *self._running, *self._service_tasks) if t is not None
        ]
        self._service_tasks = []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._housekeeping_task is not None:
            # Not cancelled: a round in progress finishes (it runs in a thread anyway).
            await asyncio.gather(self._housekeeping_task, return_exceptions=True)
        self._loop_task = None
        self._housekeeping_task = None
        self._running.clear()
        # Release leases at once so the next start does not wait for them to expire.
        await asyncio.to_thread(self._release_leases)

    def wake(self) -> None:
        self._wake.set()

    def wake_services(self) -> None:
        """Tell the long-running services (the watcher) that there is work now."""
        for service in self.services:
            service.wake()

    async def run_until_idle(self, limit_seconds: float = 60.0) -> None:
        """Run jobs until none is queued or running (tests, benchmarks)."""
        await self.start()
        deadline = asyncio.get_running_loop().time() + limit_seconds
        while True:
            busy = bool(self._running) or await asyncio.to_thread(self._has_pending)
            if not busy:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("jobs still running after the timeout")
            await asyncio.sleep(0.05)

    # The loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            try:
                job = await asyncio.to_thread(self._claim)
            except Exception:
                self._slots.release()
                log.exception("could not read the job queue")
                await asyncio.sleep(self.poll_interval)
                continue
            if job is None:
                self._slots.release()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                continue
            task = asyncio.create_task(self._run(job), name=f"job-{job.kind}-{job.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _housekeep(self) -> None:
        """Run each housekeeping task at start, then every `interval` seconds, until stopped."""
        loop = asyncio.get_running_loop()
        due = [loop.time()] * len(self.housekeeping)
        while True:
            for index, (interval, work) in enumerate(self.housekeeping):
                if loop.time() >= due[index]:
                    due[index] = loop.time() + interval
                    try:
                        await asyncio.to_thread(work)
                    except Exception:
                        log.exception(
                            "housekeeping task %s failed", getattr(work, "__name__", work)
                        )
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake_housekeeping.wait(), max(0.05, min(due) - loop.time())
                )

    def _has_pending(self) -> bool:
        with self.session_factory() as session:
            found = session.scalar(
                select(Job.id)
                .where(Job.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)))
                .limit(1)
            )
            return found is not None

    def _claim(self) -> JobContext | None:
        now = utcnow()
        claimable = or_(
            (Job.status == JobStatus.QUEUED.value) & (Job.run_after <= now),
            (Job.status == JobStatus.RUNNING.value) & (Job.lease_expires_at < now),
        )
        # Look first without the write lock: an idle queue costs one cheap read per poll.
        with self.session_factory() as session:
            candidates = session.scalars(
                select(Job.id)
                .where(Job.kind.in_(self.handlers), claimable)
                .order_by(Job.run_after, Job.id)
                .limit(8)
            ).all()
        if not candidates:
            return None
        with write_session(self.session_factory) as session:
            for job_id in candidates:
                won = session.execute(
                    update(Job)
                    .where(Job.id == job_id, claimable)
                    .values(
                        status=JobStatus.RUNNING.value,
                        lease_owner=self.owner,
                        lease_expires_at=now + self.lease,
                        attempts=Job.attempts + 1,
                    )
                )
                if won.rowcount == 1:  # type: ignore[attr-defined]
                    job = session.get(Job, job_id)
                    assert job is not None
                    return JobContext(
                        job.id, job.kind, dict(job.payload), job.attempts, self.session_factory
                    )
        return None

    async def _run(self, job: JobContext) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(job.id))
        try:
            await self.handlers[job.kind](job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            error = await asyncio.to_thread(self._failed, job, exc)
            hook = self.on_failure.get(job.kind)
            if error is not None and hook is not None:
                try:
                    await hook(job, error)
                except Exception:
                    log.exception("the failure handler of job %s (%s) failed", job.id, job.kind)
        else:
            await asyncio.to_thread(self._finish, job.id, JobStatus.DONE, None)
        finally:
            heartbeat.cancel()
            self._slots.release()
            self._wake.set()

    async def _heartbeat(self, job_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            await asyncio.to_thread(self._renew, job_id)

    def _renew(self, job_id: uuid.UUID) -> None:
        with write_session(self.session_factory) as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == self.owner)
                .values(lease_expires_at=utcnow() + self.lease)
            )

    def _finish(self, job_id: uuid.UUID, status: JobStatus, error: str | None) -> None:
        with write_session(self.session_factory) as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == self.owner)
                .values(
                    status=status.value,
                    last_error=error,
                    finished_at=utcnow(),
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )

    def _failed(self, job: JobContext, exc: BaseException) -> str | None:
        """Queue the job again, or mark it failed for good; the error text in the latter case."""
        error = f"{type(exc).__name__}: {exc}"[:4000]
        given_up = None
        with write_session(self.session_factory) as session:
            record = session.get(Job, job.id)
            if record is None or record.lease_owner != self.owner:
                return None
            if record.attempts >= record.max_attempts:
                record.status = JobStatus.FAILED.value
                record.finished_at = utcnow()
                given_up = error
            else:
                record.status = JobStatus.QUEUED.value
                record.run_after = utcnow() + RETRY_DELAY * (2 ** (record.attempts - 1))
            record.last_error = error
            record.lease_owner = None
            record.lease_expires_at = None
        return given_up

    def _release_leases(self) -> None:
        with write_session(self.session_factory) as session:
            session.execute(
                update(Job)
                .where(Job.lease_owner == self.owner, Job.status == JobStatus.RUNNING.value)
                .values(status=JobStatus.QUEUED.value, lease_owner=None, lease_expires_at=None)
            )
