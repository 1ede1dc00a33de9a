"""A case's timeline: one row per thing that happened to it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mailtrawl.reports.models import CaseEvent
from mailtrawl.storage.base import utcnow

MAX_EVENT_MESSAGE = 10_000


def add_event(
    session: Session,
    case_id: uuid.UUID,
    kind: str,
    *,
    actor: str = "",
    message: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> CaseEvent:
    """Append an event in the caller's transaction."""
    event = CaseEvent(
        case_id=case_id,
        kind=kind,
        actor=actor[:200],
        message=message[:MAX_EVENT_MESSAGE],
        detail=detail or {},
        at=at or utcnow(),
    )
    session.add(event)
    return event
