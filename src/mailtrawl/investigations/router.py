"""REST API for investigations: `/api/v1/investigations`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from mailtrawl.accounts.models import Role
from mailtrawl.configurations.service import ConfigurationNotFound
from mailtrawl.investigations import actions, service
from mailtrawl.investigations.query import QueryError, query_schema
from mailtrawl.investigations.schemas import (
    CampaignView,
    DuplicateRequest,
    HitSort,
    HitView,
    InvestigationCreate,
    InvestigationView,
    MailboxView,
    Page,
)
from mailtrawl.web.deps import AppContext, Caller, actor_of, context, db_session, require

router = APIRouter(prefix="/investigations", tags=["investigations"])

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: dict[str, Any] = Field(default_factory=dict)
    provider: str = "m365"
    mailboxes: int | None = Field(default=None, ge=0, description="for the request estimate")


def _query_problem(exc: QueryError) -> HTTPException:
    # FastAPI's own validation error shape, with the path inside the query document.
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [
            {"loc": ["body", "query", *_path(e["path"])], "msg": e["message"], "type": "query"}
            for e in exc.as_list()
        ],
    )


def _path(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


def _not_found(exc: service.InvestigationNotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, exc.message)


def _wake(ctx: AppContext) -> None:
    if ctx.runner is not None:
        ctx.runner.wake()


@router.get("/query-schema", dependencies=[require(Role.VIEWER)])
def get_query_schema() -> dict[str, Any]:
    """The JSON Schema of query documents."""
    return query_schema()


@router.post("/explain", dependencies=[require(Role.VIEWER)])
def explain(data: ExplainRequest) -> dict[str, Any]:
    """What would run on the server, what locally, and the estimated requests."""
    try:
        return service.explain_query(
            query=data.query, provider=data.provider, mailboxes=data.mailboxes
        )
    except QueryError as exc:
        raise _query_problem(exc) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def create(
    # The caller first: its dependency writes, and must be done before the request's
    # own write transaction begins.
    who: Annotated[Caller, require(Role.ANALYST)],
    data: InvestigationCreate,
    db: Db,
    ctx: Ctx,
    request: Request,
) -> InvestigationView:
    """Start an investigation; it runs in the background (poll GET /{id} for progress)."""
    try:
        record = actions.create(db, data=data, actor=actor_of(request, who))
    except QueryError as exc:
        raise _query_problem(exc) from None
    except ConfigurationNotFound as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", "configuration"], "msg": exc.message, "type": "value_error"}],
        ) from None
    except service.InvalidDuration as exc:
        field = "action" if "action" in exc.message and data.duration is None else "duration"
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"loc": ["body", field], "msg": exc.message, "type": "value_error"}],
        ) from None
    view = service.to_view(record)
    db.commit()  # the worker must see the job before it is woken
    _wake(ctx)
    return view


@router.get("", dependencies=[require(Role.VIEWER)])
def list_all(
    db: Db,
    status_: Annotated[str | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[InvestigationView]:
    return service.list_investigations(db, status=status_, limit=limit, offset=offset)


@router.get("/{investigation_id}", dependencies=[require(Role.VIEWER)])
def get(investigation_id: str, db: Db) -> InvestigationView:
    """Status and progress (mailboxes done/total, messages examined, hits, throttling, ETA)."""
    try:
        return service.to_view(service.get_investigation(db, ref=investigation_id))
    except service.InvestigationNotFound as exc:
        raise _not_found(exc) from None


@router.get("/{investigation_id}/results", dependencies=[require(Role.VIEWER)])
def results(
    investigation_id: str,
    db: Db,
    sort: HitSort = "-received",
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    mailbox: str | None = None,
    folder: str | None = None,
    sender: str | None = None,
    subject: Annotated[str | None, Query(description="contains, case-insensitive")] = None,
    internet_message_id: str | None = None,
    received_after: datetime | None = None,
    received_before: datetime | None = None,
) -> Page[HitView]:
    """One page of found messages, filtered and sorted."""
    try:
        return service.list_hits(
            db,
            ref=investigation_id,
            sort=sort,
            limit=limit,
            offset=offset,
            mailbox=mailbox,
            folder=folder,
            sender=sender,
            subject=subject,
            internet_message_id=internet_message_id,
            received_after=received_after,
            received_before=received_before,
        )
    except service.InvestigationNotFound as exc:
        raise _not_found(exc) from None


@router.get("/{investigation_id}/campaigns", dependencies=[require(Role.VIEWER)])
def campaigns(
    investigation_id: str,
    db: Db,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[CampaignView]:
    """Found messages grouped by Internet message id: one row per email, with its copies."""
    try:
        return service.list_campaigns(db, ref=investigation_id, limit=limit, offset=offset)
    except service.InvestigationNotFound as exc:
        raise _not_found(exc) from None


@router.get("/{investigation_id}/mailboxes", dependencies=[require(Role.VIEWER)])
def mailboxes(
    investigation_id: str,
    db: Db,
    status_: Annotated[str | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[MailboxView]:
    """Each mailbox's status: pending, scanning, done, skipped or failed (with the reason)."""
    try:
        return service.list_mailboxes(
            db, ref=investigation_id, status=status_, limit=limit, offset=offset
        )
    except service.InvestigationNotFound as exc:
        raise _not_found(exc) from None


@router.post("/{investigation_id}/stop")
def stop(
    who: Annotated[Caller, require(Role.ANALYST)],
    investigation_id: str,
    db: Db,
    request: Request,
) -> InvestigationView:
    try:
        record = actions.stop(db, ref=investigation_id, actor=actor_of(request, who))
    except service.InvestigationNotFound as exc:
        raise _not_found(exc) from None
    return service.to_view(record)


@router.post("/{investigation_id}/duplicate", status_code=status.HTTP_202_ACCEPTED)
def duplicate(
    who: Annotated[Caller, require(Role.ANALYST)],
    investigation_id: str,
    db: Db,
    ctx: Ctx,
    request: Request,
    data: DuplicateRequest | None = None,
) -> InvestigationView:
    """Run the same query over the same scope again, as a new investigation."""
    try:
        record = actions.duplicate(
            db,
            ref=investigation_id,
            actor=actor_of(request, who),
            name=data.name if data else None,
        )
    except service.InvestigationNotFound as exc:
        raise _not_found(exc) from None
    view = service.to_view(record)
    db.commit()  # the worker must see the job before it is woken
    _wake(ctx)
    return view


@router.get("/{investigation_id}/export", dependencies=[require(Role.VIEWER)])
def export(
    investigation_id: str, ctx: Ctx, format: Literal["csv", "json"] = "csv"
) -> StreamingResponse:
    """Every found message as CSV or JSON, streamed."""
    session = ctx.sessions()
    try:
        chunks = service.export_hits(session, ref=investigation_id, fmt=format)
    except service.InvestigationNotFound as exc:
        session.close()
        raise _not_found(exc) from None

    def stream() -> Any:
        try:
            yield from chunks
        finally:
            session.close()

    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    filename = f"investigation-{investigation_id}.{format}"
    return StreamingResponse(
        stream(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
