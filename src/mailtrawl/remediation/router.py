"""REST API for remediation: actions on an investigation's hits, approvals, receipts, the vault.

POST /investigations/{id}/actions    preview (dry_run) or request an action
GET  /investigations/{id}/actions    the actions of one investigation
GET  /actions[/{id}[/items|/export]] actions, one action, its receipts
POST /actions/{id}/approve|reject    the second administrator's decision
POST /actions/{id}/restore           undo an executed action
GET  /approvals                      actions waiting for a decision
GET  /vault                          what the undo vault keeps
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from mailtrawl.accounts.models import Role
from mailtrawl.investigations.service import InvestigationNotFound
from mailtrawl.remediation import service
from mailtrawl.remediation.models import ActionStatus, RemediationAction
from mailtrawl.remediation.notice import NoticeTemplateError
from mailtrawl.remediation.schemas import (
    ActionCreate,
    ActionRequested,
    ActionView,
    Decision,
    ItemPage,
    ItemStateName,
    Preview,
    RestoreCreate,
)
from mailtrawl.web.deps import AppContext, Caller, actor_of, context, db_session, require

router = APIRouter(tags=["remediation"])

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]
StatusName = Literal["awaiting_approval", "queued", "running", "completed", "rejected", "cancelled"]


class ActionList(BaseModel):
    """A page of actions, newest first; `more` says whether a further page exists."""

    items: list[ActionView]
    offset: int
    limit: int
    more: bool


class VaultView(BaseModel):
    """What the undo vault keeps: messages deleted or purged that restore can bring back."""

    messages: int
    bytes: int
    erased: int  # entries whose content was erased after the retention period
    next_expiry: datetime | None
    retention_days: int


def _problem(exc: Exception) -> HTTPException:
    """The HTTP answer for a refusal of the service, with its sentence as `detail`."""
    if isinstance(exc, service.ActionNotFound | InvestigationNotFound):
        return HTTPException(status.HTTP_404_NOT_FOUND, exc.message)
    if isinstance(exc, service.ApprovalRefused):
        return HTTPException(status.HTTP_403_FORBIDDEN, exc.message)
    if isinstance(exc, service.NothingToDo):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message)
    if isinstance(exc, NoticeTemplateError):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))
    if isinstance(exc, service.RemediationError):
        return HTTPException(status.HTTP_409_CONFLICT, exc.message)
    raise exc


_REFUSALS = (service.RemediationError, InvestigationNotFound, NoticeTemplateError)


def _wake(ctx: AppContext) -> None:
    if ctx.runner is not None:
        ctx.runner.wake()


def _requested(
    db: Session,
    ctx: AppContext,
    response: Response,
    preview: Preview,
    action: RemediationAction | None,
) -> ActionRequested:
    if action is None:  # a dry run: nothing was recorded
        response.status_code = status.HTTP_200_OK
        return ActionRequested(preview=preview, action=None)
    view = service.action_view(action)
    db.commit()  # the worker must see the jobs before it is woken
    if action.status == ActionStatus.QUEUED:
        _wake(ctx)
    return ActionRequested(preview=preview, action=view)


def _page(actions: list[RemediationAction], offset: int, limit: int) -> ActionList:
    return ActionList(
        items=[service.action_view(a) for a in actions[:limit]],
        offset=offset,
        limit=limit,
        more=len(actions) > limit,
    )


# Requesting -----------------------------------------------------------------------------------


@router.post(
    "/investigations/{investigation_id}/actions",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "dry run: the preview only, `action` is null"}},
)
def request_action(
    # The caller first: its dependency writes, and must be done before the request's
    # own write transaction begins.
    who: Annotated[Caller, require(Role.ANALYST)],
    investigation_id: str,
    data: ActionCreate,
    db: Db,
    ctx: Ctx,
    request: Request,
    response: Response,
) -> ActionRequested:
    """Preview an action over a selection of the hits (`dry_run`) or request it.

    It waits for a second administrator when it is above the approval threshold or of a
    kind that always needs approval (purge by default); otherwise it is queued at once.
    """
    try:
        preview, action = service.request_action(
            db,
            investigation=investigation_id,
            data=data,
            actor=actor_of(request, who),
            settings=ctx.settings,
        )
    except _REFUSALS as exc:
        raise _problem(exc) from None
    return _requested(db, ctx, response, preview, action)


@router.post(
    "/actions/{action_id}/restore",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "dry run: the preview only, `action` is null"}},
)
def request_restore(
    who: Annotated[Caller, require(Role.ANALYST)],
    action_id: str,
    db: Db,
    ctx: Ctx,
    request: Request,
    response: Response,
    data: RestoreCreate | None = None,
) -> ActionRequested:
    """Undo an executed action: moved messages go back, deleted ones come from the vault."""
    try:
        preview, action = service.request_restore(
            db,
            action=action_id,
            data=data or RestoreCreate(),
            actor=actor_of(request, who),
            settings=ctx.settings,
        )
    except _REFUSALS as exc:
        raise _problem(exc) from None
    return _requested(db, ctx, response, preview, action)


# Deciding -------------------------------------------------------------------------------------


@router.post("/actions/{action_id}/approve")
def approve(
    who: Annotated[Caller, require(Role.ADMIN)],
    action_id: str,
    db: Db,
    ctx: Ctx,
    request: Request,
    data: Decision | None = None,
) -> ActionView:
    """Approve an action another administrator requested (four-eyes); it is queued at once."""
    try:
        action = service.approve_action(
            db, ref=action_id, actor=actor_of(request, who), note=data.note if data else None
        )
    except _REFUSALS as exc:
        raise _problem(exc) from None
    view = service.action_view(action)
    db.commit()  # the worker must see the jobs before it is woken
    _wake(ctx)
    return view


@router.post("/actions/{action_id}/reject")
def reject(
    who: Annotated[Caller, require(Role.ANALYST)],
    action_id: str,
    db: Db,
    request: Request,
    data: Decision | None = None,
) -> ActionView:
    """Reject an action waiting for approval (an administrator, or its requester withdrawing it)."""
    try:
        action = service.reject_action(
            db, ref=action_id, actor=actor_of(request, who), note=data.note if data else None
        )
    except _REFUSALS as exc:
        raise _problem(exc) from None
    return service.action_view(action)


# Reading --------------------------------------------------------------------------------------


@router.get("/investigations/{investigation_id}/actions", dependencies=[require(Role.VIEWER)])
def investigation_actions(
    investigation_id: str, db: Db, limit: Limit = 50, offset: Offset = 0
) -> ActionList:
    """The actions requested on one investigation, newest first."""
    try:
        actions = service.list_actions(
            db, investigation=investigation_id, limit=limit + 1, offset=offset
        )
    except _REFUSALS as exc:
        raise _problem(exc) from None
    return _page(actions, offset, limit)


@router.get("/actions", dependencies=[require(Role.VIEWER)])
def list_actions(
    db: Db,
    status_: Annotated[list[StatusName] | None, Query(alias="status")] = None,
    investigation: str | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> ActionList:
    """Every action, newest first; `status` may be repeated."""
    try:
        actions = service.list_actions(
            db, investigation=investigation, status=status_ or (), limit=limit + 1, offset=offset
        )
    except _REFUSALS as exc:
        raise _problem(exc) from None
    return _page(actions, offset, limit)


@router.get("/approvals", dependencies=[require(Role.VIEWER)])
def approvals(db: Db, limit: Limit = 100, offset: Offset = 0) -> ActionList:
    """Actions waiting for a second administrator, newest first."""
    actions = service.list_actions(
        db, status=[ActionStatus.AWAITING_APPROVAL.value], limit=limit + 1, offset=offset
    )
    return _page(actions, offset, limit)


@router.get("/actions/{action_id}", dependencies=[require(Role.VIEWER)])
def get_action(action_id: str, db: Db) -> ActionView:
    """One action: what it covers, who requested and decided it, and its progress."""
    try:
        return service.action_view(service.get_action(db, ref=action_id))
    except _REFUSALS as exc:
        raise _problem(exc) from None


@router.get("/actions/{action_id}/items", dependencies=[require(Role.VIEWER)])
def items(
    action_id: str,
    db: Db,
    state: Annotated[list[ItemStateName] | None, Query()] = None,
    mailbox: str | None = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    offset: Offset = 0,
) -> ItemPage:
    """The receipts: one row per message, and what became of it (`state` may be repeated)."""
    try:
        return service.list_items(
            db, ref=action_id, state=state or (), mailbox=mailbox, limit=limit, offset=offset
        )
    except _REFUSALS as exc:
        raise _problem(exc) from None


@router.get("/actions/{action_id}/export", dependencies=[require(Role.VIEWER)])
def export(action_id: str, ctx: Ctx, format: Literal["csv", "json"] = "csv") -> StreamingResponse:
    """Every receipt of an action as CSV or JSON, streamed."""
    # A session of its own: it must stay open while the response streams.
    session = ctx.sessions()
    try:
        chunks = service.export_items(session, ref=action_id, fmt=format)
    except _REFUSALS as exc:
        session.close()
        raise _problem(exc) from None
    except BaseException:
        session.close()
        raise

    def stream() -> Any:
        try:
            yield from chunks
        finally:
            session.close()

    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    # The service accepted the id, so it parses; its canonical form is safe in a header.
    filename = f"receipts-{uuid.UUID(action_id)}.{format}"
    return StreamingResponse(
        stream(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/vault", dependencies=[require(Role.ADMIN)])
def vault(db: Db, ctx: Ctx) -> VaultView:
    """How many deleted or purged messages the undo vault keeps, and when the next expires."""
    from mailtrawl.settings_store.service import effective_settings

    summary = service.vault_summary(db)
    retention = effective_settings(db, ctx.settings).vault_retention_days
    return VaultView(**summary, retention_days=retention)
