"""The dashboard's pages: thin handlers over the same service functions as the API and CLI.

Each page reads what it shows through `investigations.service`, `remediation.service`,
`audit.service` and `configurations.service`; lists are paged in SQL. Fragments that htmx
refreshes (the investigations table, an investigation's summary and hits) have their own
routes and are the same partial templates the full pages include.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, get_args

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from mailtrawl.audit import service as audit_service
from mailtrawl.configurations import service as configurations_service
from mailtrawl.investigations import service as investigations_service
from mailtrawl.investigations.models import FINISHED, InvestigationStatus
from mailtrawl.investigations.query import QueryError
from mailtrawl.investigations.schemas import HitSort, InvestigationCreate, InvestigationView
from mailtrawl.remediation import service as remediation_service
from mailtrawl.remediation.models import ActionStatus
from mailtrawl.storage.engine import write_session
from mailtrawl.web.deps import AppContext, Caller, context, db_session
from mailtrawl.web.ui.auth import Who, same_origin
from mailtrawl.web.ui.forms import field, read_form
from mailtrawl.web.ui.layout import page
from mailtrawl.web.ui.metrics import CHART_HEIGHT, CHART_WIDTH, daily_activity
from mailtrawl.web.ui.permissions import allowed, ensure

router = APIRouter(include_in_schema=False)

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]

INVESTIGATIONS_PER_PAGE = 25
HITS_PER_PAGE = 50
CAMPAIGNS_SHOWN = 20
AUDIT_PER_PAGE = 50
APPROVALS_SHOWN = 200
ACTIVE = (
    InvestigationStatus.RUNNING.value,
    InvestigationStatus.QUEUED.value,
    InvestigationStatus.STOPPING.value,
)
HIT_SORTS: frozenset[str] = frozenset(get_args(HitSort))
HIT_FILTERS = ("mailbox", "folder", "sender", "subject")


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _running(view: InvestigationView) -> bool:
    return view.status not in FINISHED


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


# Investigations --------------------------------------------------------------------------------


def _investigations_context(db: Session, state: str | None, offset: int) -> dict[str, Any]:
    state = state if state in {s.value for s in InvestigationStatus} else None
    result = investigations_service.list_investigations(
        db, status=state, limit=INVESTIGATIONS_PER_PAGE, offset=offset
    )
    return {
        "investigations": result,
        "state": state,
        "states": [s.value for s in InvestigationStatus],
        "polling": any(_running(v) for v in result.items),
        "list_params": {"status": state, "offset": offset or None},
        "scope_text": scope_text,
    }


@router.get("/investigations", response_class=HTMLResponse)
def investigations(
    request: Request,
    who: Who,
    db: Db,
    status_: Annotated[str | None, Query(alias="status")] = None,
    offset: Offset = 0,
) -> HTMLResponse:
    return page(
        request, who, "investigations/list.html", _investigations_context(db, status_, offset)
    )


@router.get("/investigations/table", response_class=HTMLResponse)
def investigations_table(
    request: Request,
    who: Who,
    db: Db,
    status_: Annotated[str | None, Query(alias="status")] = None,
    offset: Offset = 0,
) -> HTMLResponse:
    """The investigations table alone: what the list page polls while something runs."""
    return page(
        request,
        who,
        "investigations/_table.html",
        _investigations_context(db, status_, offset),
    )


EXAMPLE_QUERY = (
    '{\n  "match": {"from": "security@contoso-helpdesk.example"},\n  "received": {"after": "7d"}\n}'
)


def _new_investigation_page(
    request: Request,
    who: Caller,
    db: Session,
    *,
    values: dict[str, str] | None = None,
    errors: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    names = [c.name for c in configurations_service.list_configurations(db) if c.enabled]
    return page(
        request,
        who,
        "investigations/new.html",
        {
            "configurations": names,
            "values": values or {"name": "", "configuration": "", "query": EXAMPLE_QUERY},
            "errors": errors or [],
        },
        status_code=status_code,
    )


@router.get("/investigations/new", response_class=HTMLResponse)
def new_investigation(request: Request, who: Who, db: Db) -> HTMLResponse:
    """Start an investigation from a query document (the filter builder comes later)."""
    ensure(who.role, "investigation.create")
    return _new_investigation_page(request, who, db)


def _create_investigation(
    ctx: AppContext, request: Request, who: Caller, values: dict[str, str]
) -> tuple[str | None, list[str]]:
    """(the new investigation's id, []) or (None, what to fix)."""
    try:
        document = orjson.loads(values["query"] or "{}")
    except orjson.JSONDecodeError as exc:
        return None, [f"The query is not valid JSON: {exc}."]
    try:
        data = InvestigationCreate(
            name=values["name"], configuration=values["configuration"], query=document
        )
    except ValidationError as exc:
        return None, [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        ]
    with write_session(ctx.sessions) as db:
        try:
            record = investigations_service.create_investigation(db, data=data, actor=who.username)
        except QueryError as exc:
            return None, [f"query {e['path']}: {e['message']}" for e in exc.as_list()]
        except configurations_service.ConfigurationNotFound as exc:
            return None, [exc.message]
        audit_service.record(
            db,
            actor=who.username,
            role=who.role.value,
            source_ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
            operation="investigation.create",
            entity_type="investigation",
            entity_id=str(record.id),
            after=investigations_service.to_view(record).model_dump(mode="json"),
        )
        created = str(record.id)
    return created, []


@router.post("/investigations/new")
async def create_investigation(request: Request, who: Who, ctx: Ctx) -> Response:
    ensure(who.role, "investigation.create")
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Submit the form from mailtrawl's own page.")
    form = await read_form(request)
    values = {
        "name": field(form, "name", max_length=200),
        "configuration": field(form, "configuration", max_length=200),
        "query": field(form, "query", max_length=100_000),
    }
    created, errors = await run_in_threadpool(_create_investigation, ctx, request, who, values)
    if created is None:

        def again() -> HTMLResponse:
            with ctx.sessions.begin() as db:
                return _new_investigation_page(
                    request,
                    who,
                    db,
                    values=values,
                    errors=errors,
                    status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
                )

        return await run_in_threadpool(again)
    if ctx.runner is not None:
        ctx.runner.wake()
    return RedirectResponse(f"/investigations/{created}", status_code=status.HTTP_303_SEE_OTHER)


def _investigation(db: Session, investigation_id: str) -> InvestigationView:
    try:
        return investigations_service.to_view(
            investigations_service.get_investigation(db, ref=investigation_id)
        )
    except investigations_service.InvestigationNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None


def _hits_context(
    request: Request, db: Session, view: InvestigationView, offset: int
) -> dict[str, Any]:
    params = request.query_params
    sort = params.get("sort", "-received")
    sort = sort if sort in HIT_SORTS else "-received"
    filters: dict[str, Any] = {
        name: params.get(name, "").strip()[:320] or None for name in HIT_FILTERS
    }
    after = _parse_day(params.get("received_after"))
    before = _parse_day(params.get("received_before"))
    hits = investigations_service.list_hits(
        db,
        ref=view.id,
        sort=sort,
        limit=HITS_PER_PAGE,
        offset=offset,
        **filters,
        received_after=_midnight(after) if after else None,
        # The form's "until" day is included.
        received_before=_midnight(before + timedelta(days=1)) if before else None,
    )
    hit_params = {
        **{k: v for k, v in filters.items() if v},
        "received_after": after.isoformat() if after else None,
        "received_before": before.isoformat() if before else None,
        "sort": sort if sort != "-received" else None,
        "offset": offset or None,
    }
    return {
        "investigation": view,
        "hits": hits,
        "sort": sort,
        "filters": filters,
        "received_after": after.isoformat() if after else "",
        "received_before": before.isoformat() if before else "",
        "hit_params": hit_params,
        "sort_columns": _sort_columns(sort),
    }


SORT_COLUMNS = (
    ("received", "Received"),
    ("mailbox", "Mailbox"),
    ("sender", "Sender"),
    ("subject", "Subject"),
    ("folder", "Folder"),
)


def _sort_columns(sort: str) -> list[dict[str, Any]]:
    """Each sortable column: whether it sorts now, and the sort its header link asks for."""
    columns = []
    descending = sort.startswith("-")
    for key, label in SORT_COLUMNS:
        active = sort.lstrip("-") == key
        if active:
            next_sort = key if descending else "-" + key
        else:
            next_sort = "-" + key if key == "received" else key
        columns.append(
            {
                "key": key,
                "label": label,
                "active": active,
                "descending": active and descending,
                "next": next_sort,
            }
        )
    return columns


@router.get("/investigations/{investigation_id}", response_class=HTMLResponse)
def investigation(
    request: Request, who: Who, db: Db, investigation_id: str, offset: Offset = 0
) -> HTMLResponse:
    """Summary counts, campaigns, and one page of hits (sorted and filtered in SQL)."""
    view = _investigation(db, investigation_id)
    campaigns = investigations_service.list_campaigns(db, ref=view.id, limit=CAMPAIGNS_SHOWN)
    actions = [
        remediation_service.action_view(a)
        for a in remediation_service.list_actions(db, investigation=view.id, limit=10)
    ]
    return page(
        request,
        who,
        "investigations/detail.html",
        {
            **_hits_context(request, db, view, offset),
            "campaigns": campaigns,
            "actions": actions,
            "polling": _running(view),
            "scope_text": scope_text,
        },
    )


@router.get("/investigations/{investigation_id}/summary", response_class=HTMLResponse)
def investigation_summary(
    request: Request, who: Who, db: Db, investigation_id: str
) -> HTMLResponse:
    """The summary counts alone (polled every 2 s while the investigation runs)."""
    view = _investigation(db, investigation_id)
    return page(
        request,
        who,
        "investigations/_summary.html",
        {"investigation": view, "polling": _running(view), "scope_text": scope_text},
    )


@router.get("/investigations/{investigation_id}/hits", response_class=HTMLResponse)
def investigation_hits(
    request: Request, who: Who, db: Db, investigation_id: str, offset: Offset = 0
) -> Response:
    """The hits table alone, for htmx; a browser asking for it directly gets the whole page."""
    if not _is_htmx(request):
        query = request.url.query
        return RedirectResponse(
            f"/investigations/{investigation_id}" + (f"?{query}" if query else ""),
            status_code=status.HTTP_303_SEE_OTHER,
        )
    view = _investigation(db, investigation_id)
    return page(request, who, "investigations/_hits.html", _hits_context(request, db, view, offset))


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
    ctx: AppContext, action_id: str, verb: str, actor: remediation_service.Actor, note: str | None
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
    actor = remediation_service.Actor(
        name=who.username,
        role=who.role.value,
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
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


# Configurations and settings (read-only for now) ------------------------------------------------


@router.get("/configurations", response_class=HTMLResponse)
def configurations(request: Request, who: Who, db: Db) -> HTMLResponse:
    views = [
        configurations_service.to_view(r) for r in configurations_service.list_configurations(db)
    ]
    return page(request, who, "configurations/list.html", {"configurations": views})


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, who: Who, ctx: Ctx) -> HTMLResponse:
    return page(request, who, "settings.html", {"settings": ctx.settings})
