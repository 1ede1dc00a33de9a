"""Starting, duplicating and stopping investigations, each written to the audit log here.

The API, the dashboard and the CLI call these, so an operation is recorded the same way
whichever interface asked for it. Each runs in the caller's transaction; the caller commits
(and wakes the worker).
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from mailtrawl.audit import service as audit
from mailtrawl.audit.service import Actor
from mailtrawl.investigations import service
from mailtrawl.investigations.models import Investigation
from mailtrawl.investigations.schemas import InvestigationCreate


def create(session: Session, *, data: InvestigationCreate, actor: Actor) -> Investigation:
    """Validate and record an investigation (`investigation.create`); see the service."""
    record = service.create_investigation(session, data=data, actor=actor.name)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="investigation.create",
        entity_type="investigation",
        entity_id=str(record.id),
        after=service.to_view(record).model_dump(mode="json"),
    )
    return record


def duplicate(
    session: Session, *, ref: str | uuid.UUID, actor: Actor, name: str | None = None
) -> Investigation:
    """The same query over the same scope again (`investigation.duplicate`)."""
    source = service.get_investigation(session, ref=ref)
    record = service.duplicate_investigation(session, ref=source.id, actor=actor.name, name=name)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="investigation.duplicate",
        entity_type="investigation",
        entity_id=str(record.id),
        after={
            **service.to_view(record).model_dump(mode="json"),
            "duplicated_from": str(source.id),
        },
    )
    return record


def stop(session: Session, *, ref: str | uuid.UUID, actor: Actor) -> Investigation:
    """Stop at once (`investigation.stop`, with the status before and after)."""
    before = str(service.get_investigation(session, ref=ref).status)
    record = service.stop_investigation(session, ref=ref)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="investigation.stop",
        entity_type="investigation",
        entity_id=str(record.id),
        before={"status": before},
        after={"status": record.status},
    )
    return record
