"""The dashboard's pages: thin handlers over the same service functions as the API and CLI.

Each page reads what it shows through `investigations.service`, `remediation.service`,
`audit.service` and `configurations.service`; lists are paged in SQL. Fragments that htmx
refreshes (the investigations table, an investigation's summary and hits) have their own
routes and are the same partial templates the full pages include.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mailtrawl.audit import service as audit_service
from mailtrawl.audit.service import Actor
from mailtrawl.configurations import service as configurations_service
from mailtrawl.investigations import service as investigations_service
from mailtrawl.investigations.models import InvestigationStatus
from mailtrawl.investigations.schemas import InvestigationView
from mailtrawl.remediation import service as remediation_service
from mailtrawl.remediation.models import ActionStatus
from mailtrawl.storage.engine import write_session
from mailtrawl.web.deps import AppContext, Caller, actor_of, context, db_session
from mailtrawl.web.ui.auth import Who, same_origin
from mailtrawl.web.ui.forms import field, read_form
from mailtrawl.web.ui.layout import page
from mailtrawl.web.ui.metrics import CHART_HEIGHT, CHART_WIDTH, daily_activity
from mailtrawl.web.ui.permissions import allowed, ensure

router = APIRouter(include_in_schema=False)

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]

AUDIT_PER_PAGE = 50
APPROVALS_SHOWN = 200
ACTIVE = (
    InvestigationStatus.RUNNING.value,
    InvestigationStatus.QUEUED.value,
    InvestigationStatus.STOPPING.value,
)


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _parse_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def scope_text(scope: dict[str, Any] | None) -> str:
    """`all mailboxes`, or `users: a, b and 3 more`."""
    if not scope or scope.get("kind", "all") == "all":
        return "all mailboxes"
    values = [str(v) for v in scope.get("values") or []]
    shown = ", ".join(values[:3])
    more = f" and {len(values) - 3} more" if len(values) > 3 else ""
    return f"{scope.get('kind')}: {shown}{more}"


# Dashboard ------------------------------------------------------------------------------------


def _active_investigations(db: Session, limit: int = 10) -> list[InvestigationView]:
    views: list[InvestigationView] = []
    for state in ACTIVE:
        views.extend(
            investigations_service.list_investigations(db, status=state, limit=limit).items
        )
    views.sort(key=lambda v: v.created_at, reverse=True)
    return views[:limit]


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, who: Who, db: Db) -> HTMLResponse:
    """Configuration health, running investigations, pending approvals, recent activity."""
    configurations = [
        configurations_service.to_view(r) for r in configurations_service.list_configurations(db)
    ]
    hits, acted = daily_activity(db)
    pending = remediation_service.list_actions(
        db, status=[ActionStatus.AWAITING_APPROVAL.value], limit=APPROVALS_SHOWN
    )
    recent = (
        audit_service.list_entries(db, limit=8).items if allowed(who.role, "audit.read") else []
    )
    return page(
        request,
        who,
        "dashboard.html",
        {
            "configurations": configurations,
            "active": _active_investigations(db),
            "pending_count": len(pending),
            "recent": recent,
            "charts": [hits, acted],
            "chart_width": CHART_WIDTH,
            "chart_height": CHART_HEIGHT,
            "scope_text": scope_text,
        },
    )


# Approvals --------------------------------------------------------------------------------------


def _approvals_page(
    request: Request, who: Caller, db: Session, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    actions = remediation_service.list_actions(
        db, status=[ActionStatus.AWAITING_APPROVAL.value], limit=APPROVALS_SHOWN
    )
    names: dict[uuid.UUID, str] = {}
    for action in actions:
        if action.investigation_id not in names:
            names[action.investigation_id] = investigations_service.get_investigation(
                db, ref=action.investigation_id
            ).name
    views = [remediation_service.action_view(a) for a in actions]
    return page(
        request,
        who,
        "approvals/list.html",
        {
            "actions": views,
            "investigation_names": names,
            "messages_waiting": sum(v.counts.total for v in views),
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/approvals", response_class=HTMLResponse)
def approvals(request: Request, who: Who, db: Db) -> HTMLResponse:
    """Actions waiting for a second administrator, with their exact counts."""
    return _approvals_page(request, who, db)


def _record_decision(
    ctx: AppContext, action_id: str, verb: str, actor: Actor, note: str | None
) -> str | None:
    """Approve or reject in one transaction; the service's refusal sentence, or None."""
    with write_session(ctx.sessions) as db:
        try:
            if verb == "approve":
                remediation_service.approve_action(db, ref=action_id, actor=actor, note=note)
            else:
                remediation_service.reject_action(db, ref=action_id, actor=actor, note=note)
        except remediation_service.ActionNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
        except remediation_service.RemediationError as exc:
            db.rollback()
            return exc.message
    return None


async def _decide(
    request: Request, who: Caller, ctx: AppContext, action_id: str, verb: str
) -> Response:
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Decide from mailtrawl's own page.")
    ensure(who.role, "remediation.approve" if verb == "approve" else "remediation.reject")
    note = field(await read_form(request), "note", max_length=2000) or None
    actor = actor_of(request, who)
    error = await run_in_threadpool(_record_decision, ctx, action_id, verb, actor, note)
    if error is not None:

        def refused() -> HTMLResponse:
            with ctx.sessions.begin() as db:
                return _approvals_page(
                    request, who, db, error=error, status_code=status.HTTP_409_CONFLICT
                )

        return await run_in_threadpool(refused)
    if verb == "approve" and ctx.runner is not None:
        ctx.runner.wake()
    done = "approved" if verb == "approve" else "rejected"
    return RedirectResponse(f"/approvals?done={done}", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/approvals/{action_id}/approve")
async def approve(request: Request, who: Who, ctx: Ctx, action_id: str) -> Response:
    """A second administrator approves (the service enforces the four-eyes rule)."""
    return await _decide(request, who, ctx, action_id, "approve")


@router.post("/approvals/{action_id}/reject")
async def reject(request: Request, who: Who, ctx: Ctx, action_id: str) -> Response:
    """An administrator rejects, or the requester withdraws."""
    return await _decide(request, who, ctx, action_id, "reject")


# Audit log ---------------------------------------------------------------------------------------


def _audit_context(request: Request, db: Session, offset: int) -> dict[str, Any]:
    params = request.query_params
    filters = {
        name: params.get(name, "").strip()[:200] for name in ("operation", "actor", "entity_id")
    }
    since = _parse_day(params.get("since"))
    until = _parse_day(params.get("until"))
    entries = audit_service.list_entries(
        db,
        operation=filters["operation"] or None,
        actor=filters["actor"] or None,
        entity_id=filters["entity_id"] or None,
        since=_midnight(since) if since else None,
        until=_midnight(until + timedelta(days=1)) if until else None,
        limit=AUDIT_PER_PAGE,
        offset=offset,
    )
    return {
        "entries": entries,
        "filters": filters,
        "since": since.isoformat() if since else "",
        "until": until.isoformat() if until else "",
        "audit_params": {
            **{k: v for k, v in filters.items() if v},
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "offset": offset,
    }


@router.get("/audit", response_class=HTMLResponse)
def audit_log(request: Request, who: Who, db: Db, offset: Offset = 0) -> HTMLResponse:
    """Entries newest first, filtered; administrators only (as in the API)."""
    ensure(who.role, "audit.read")
    return page(
        request, who, "audit/list.html", {**_audit_context(request, db, offset), "report": None}
    )


@router.get("/audit/verify", response_class=HTMLResponse)
def audit_verify(request: Request, who: Who, db: Db) -> HTMLResponse:
    """Walk the hash chain (`audit.service.verify`) and say where it breaks, if anywhere."""
    ensure(who.role, "audit.read")
    report = audit_service.verify(db)
    if _is_htmx(request):
        return page(request, who, "audit/_verify.html", {"report": report})
    return page(
        request, who, "audit/list.html", {**_audit_context(request, db, 0), "report": report}
    )
