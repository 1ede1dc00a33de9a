"""REST API for the audit log: `/api/v1/audit` (administrators only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from mailtrawl.accounts.models import Role
from mailtrawl.audit import service
from mailtrawl.audit.schemas import AuditPage, ProblemView, VerifyView
from mailtrawl.web.deps import AppContext, context, db_session, require

router = APIRouter(prefix="/audit", tags=["audit"], dependencies=[require(Role.ADMIN)])

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]


@router.get("")
def list_all(
    db: Db,
    operation: str | None = None,
    actor: str | None = None,
    entity_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> AuditPage:
    """Entries, newest first, filtered by operation, actor, entity and time."""
    return service.list_entries(
        db,
        operation=operation,
        actor=actor,
        entity_id=entity_id,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


@router.get("/verify")
def verify(db: Db) -> VerifyView:
    """Check the hash chain; `problems` names the entry (seq) of every break."""
    report = service.verify(db)
    return VerifyView(
        ok=report.ok,
        entries=report.entries,
        problems=[ProblemView(seq=p.seq, kind=p.kind, message=p.message) for p in report.problems],
    )


@router.get("/export")
def export(ctx: Ctx, format: Literal["jsonl", "csv"] = "jsonl") -> StreamingResponse:
    """Every entry, oldest first, as JSON lines or CSV, streamed."""
    session = ctx.sessions()
    chunks = service.export(session, format)

    def stream() -> Any:
        try:
            yield from chunks
        finally:
            session.close()

    media = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        stream(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit.{format}"'},
    )
