"""The job table behind the default (in-process, database-backed) job queue."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mailtrawl.storage.base import Base, Timestamps, UTCDateTime, UUIDPrimaryKey, utcnow


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"  # leased by a worker until lease_expires_at
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job(UUIDPrimaryKey, Timestamps, Base):
    """One unit of work. A running job whose lease expired is taken again by any worker."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')", name="status"
        ),
        Index("ix_jobs_status_run_after", "status", "run_after"),
        Index("ix_jobs_group_key", "group_key"),
    )

    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    # Jobs of one investigation share a group key, so they can be listed and cancelled together.
    group_key: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"Job(id={self.id!s}, kind={self.kind!r}, status={self.status!r})"
