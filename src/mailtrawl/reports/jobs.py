"""The job kinds of reported emails, and enqueuing them in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from mailtrawl.tasks.queue import enqueue

ANALYSE_JOB = "reports.analyse"
NOTIFY_JOB = "reports.notify"


def enqueue_analysis(session: Session, case_id: uuid.UUID, *, reason: str = "reported") -> None:
    """Analyse (again) a case once the caller's transaction commits."""
    enqueue(
        session,
        ANALYSE_JOB,
        {"case_id": str(case_id), "reason": reason},
        group_key=f"report:{case_id}",
        max_attempts=3,
    )


def enqueue_notification(
    session: Session,
    case_id: uuid.UUID,
    *,
    reason: str,
    addresses: Sequence[str] | None = None,
    message: str | None = None,
    actor: str = "",
) -> str:
    """Tell reporters (`addresses`, or every reporter) the case's verdict; returns the key
    that makes a re-run of the job skip the reporters already told."""
    key = f"{case_id}:{uuid.uuid4().hex}"
    enqueue(
        session,
        NOTIFY_JOB,
        {
            "case_id": str(case_id),
            "reason": reason,
            "addresses": list(addresses) if addresses is not None else None,
            "message": message,
            "actor": actor,
            "key": key,
        },
        group_key=f"report:{case_id}",
        max_attempts=3,
    )
    return key
