"""The investigation pages: list, new (filter builder + explain), details, actions, restore.

Thin handlers over `investigations.service` and `remediation.service`, as the API's routers
are. Every remediation goes through a confirmation page first: the same `request_action` /
`request_restore` call with `dry_run=True` gives the exact counts, and Confirm posts the real
request. Fragments htmx refreshes (tables, summary, actions) are the partial templates the
full pages include, served by their own GET routes.
"""

from __future__ import annotations

import html
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, get_args

import nh3
import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from mailtrawl.audit import service as audit_service
from mailtrawl.configurations import service as configurations_service
from mailtrawl.configurations.connection import open_provider
from mailtrawl.configurations.service import credential_of
from mailtrawl.core.mail import FetchedMessage, MailboxRef, MessageParts, MessageRef
from mailtrawl.errors import MailtrawlError, NotFound, ProviderError
from mailtrawl.investigations import actions as audited_investigations
from mailtrawl.investigations import service as investigations_service
from mailtrawl.investigations.models import (
    FINISHED,
    Investigation,
    InvestigationHit,
    InvestigationStatus,
)
from mailtrawl.investigations.query import QueryError, parse_query
from mailtrawl.investigations.schemas import HitSort, InvestigationCreate, InvestigationView
from mailtrawl.providers.base import MAX_SEARCH_PREFIX, Provider
from mailtrawl.remediation import service as remediation_service
from mailtrawl.remediation.models import ACTION_FINISHED
from mailtrawl.remediation.notice import (
    DEFAULT_NOTICE_BODY,
    DEFAULT_NOTICE_SUBJECT,
    MAX_SUBJECT,
    MAX_TEMPLATE,
    PLACEHOLDERS,
    NoticeItem,
    NoticeTemplateError,
    notice_message_id,
    render_notice,
    validate_template,
)
from mailtrawl.remediation.schemas import (
    ActionCreate,
    NoticeOptions,
    Preview,
    RestoreCreate,
    Selection,
)
from mailtrawl.settings_store import service as settings_store
from mailtrawl.storage.engine import write_session
from mailtrawl.storage.models import MailConfiguration
from mailtrawl.web.deps import AppContext, Caller, actor_of, context, db_session
from mailtrawl.web.ui import preview as message_preview
from mailtrawl.web.ui.auth import Who, same_origin
from mailtrawl.web.ui.forms import field as form_field
from mailtrawl.web.ui.forms import read_form
from mailtrawl.web.ui.layout import page
from mailtrawl.web.ui.pages import scope_text
from mailtrawl.web.ui.permissions import ensure
from mailtrawl.web.ui.query_form import (
    ALL_OPS,
    SCOPE_KINDS,
    Builder,
    Row,
    RowGroup,
    build_document,
    field_choices,
    form_day,
    from_document,
    has_builder_fields,
    place_errors,
    read_builder,
    scope_document,
)

router = APIRouter(include_in_schema=False)

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]

INVESTIGATIONS_PER_PAGE = 25
HITS_PER_PAGE = 50
CAMPAIGNS_SHOWN = 20
ACTIONS_SHOWN = 50
HIT_SORTS: frozenset[str] = frozenset(get_args(HitSort))
HIT_FILTERS = ("mailbox", "folder", "sender", "subject")
ACTIONS = ("warn", "junk", "trash", "delete", "purge")
VERBS = {
    "warn": "Warn",
    "junk": "Move to junk",
    "trash": "Move to deleted items",
    "delete": "Delete (recoverable)",
    "purge": "Purge (permanent)",
    "restore": "Restore",
}
# Fixed sentences a redirect may ask the details page to show (`?done=<key>`).
NOTICES = {"stopped": "The investigation was asked to stop."}
EXAMPLE = Builder(RowGroup("all", [Row("from", "equals", "", "")]))
NOTICE_SUBJECT_MAX = MAX_SUBJECT  # as `NoticeOptions.subject` takes it


def _is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _running(view: InvestigationView) -> bool:
    """Still changing: its search runs, or it is active (new hits may come any time)."""
    return view.status not in FINISHED or (view.watch is not None and view.watch.state == "active")


def _parse_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _from_this_site(request: Request) -> None:
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Submit the form from mailtrawl's own page.")


def _wake(ctx: AppContext) -> None:
    if ctx.runner is not None:
        ctx.runner.wake()


# The list ---------------------------------------------------------------------------------------


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


# New investigation --------------------------------------------------------------------------

DURATIONS = (
    ("", "one search"),
    ("1h", "1 hour"),
    ("24h", "24 hours"),
    ("7d", "7 days"),
    ("custom", "custom…"),
    ("continuous", "continuous (until stopped)"),
)
AUTO_ACTIONS = (
    ("", "none (record them)"),
    ("warn", "warn"),
    ("junk", "move to Junk Email"),
    ("trash", "move to Deleted Items"),
    ("delete", "delete"),
    ("purge", "purge"),
)


@dataclass
class NewForm:
    """What the new-investigation form holds, and what is wrong with it (by field)."""

    name: str = ""
    configuration: str = ""
    scope_kind: str = ""
    scope_values: str = ""
    received_after: str = ""
    received_before: str = ""
    attached_emails: bool = True
    duration: str = ""  # "" one search; "1h", "24h", "7d", "continuous", or custom
    duration_custom: str = ""
    action: str = ""  # on each new copy while active ("" none)
    query_json: str = ""
    use_json: bool = False
    builder: Builder = field(default_factory=lambda: EXAMPLE)
    errors: dict[str, list[str]] = field(default_factory=dict)
    plan: dict[str, Any] | None = None

    def fail(self, key: str, message: str) -> None:
        self.errors.setdefault(key, []).append(message)

    @property
    def row_errors(self) -> int:
        return sum(len(r.errors) for _, r in self.builder.rows())


def _read_new(form: FormData) -> NewForm:
    values = NewForm(
        name=form_field(form, "name", max_length=200),
        configuration=form_field(form, "configuration", max_length=200),
        scope_kind=form_field(form, "scope_kind", max_length=20),
        scope_values=form_field(form, "scope_values", max_length=100_000),
        received_after=form_field(form, "received_after", max_length=40),
        received_before=form_field(form, "received_before", max_length=40),
        attached_emails=form.get("attached_emails") == "1",
        duration=form_field(form, "duration", max_length=16),
        duration_custom=form_field(form, "duration_custom", max_length=16),
        action=form_field(form, "action", max_length=16),
        query_json=form_field(form, "query", max_length=100_000),
        use_json=form.get("use_json") == "1",
    )
    if has_builder_fields(form):
        values.builder = read_builder(form)
    else:
        # A post without builder rows (a script, an older page) is a query document.
        values.use_json = True
        values.builder = Builder()
    return values


def _document(values: NewForm) -> dict[str, Any] | None:
    """The query document the form describes; None (with errors recorded) when it has none."""
    if values.use_json:
        try:
            document = orjson.loads(values.query_json or "{}")
        except orjson.JSONDecodeError as exc:
            values.fail("query", f"The query is not valid JSON: {exc}.")
            return None
        if not isinstance(document, dict):
            values.fail("query", 'The query is a JSON object: {"match": ...}.')
            return None
        try:
            parse_query(document)
        except QueryError as exc:
            for error in exc.errors:
                values.fail("query", str(error))
            return None
        return document
    document, placed = build_document(
        values.builder,
        received_after=values.received_after,
        received_before=values.received_before,
        attached_emails=values.attached_emails,
    )
    values.query_json = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
    try:
        parse_query(document)
    except QueryError as exc:
        for key, messages in place_errors(exc.as_list(), placed).items():
            for message in messages:
                values.fail(key if key in ("received", "attached_emails") else "match", message)
        return None
    return document


def _configuration_names(db: Session) -> list[str]:
    return [c.name for c in configurations_service.list_configurations(db) if c.enabled]


def _new_page(
    request: Request, who: Caller, db: Session, values: NewForm, *, status_code: int = 200
) -> HTMLResponse:
    template = "investigations/_new_form.html" if _is_htmx(request) else "investigations/new.html"
    return page(
        request,
        who,
        template,
        {
            "configurations": _configuration_names(db),
            "values": values,
            "builder": values.builder.padded(),
            "field_choices": field_choices(),
            "all_ops": ALL_OPS,
            "scope_kinds": SCOPE_KINDS,
            "durations": DURATIONS,
            "auto_actions": AUTO_ACTIONS,
        },
        status_code=status_code,
    )


@router.get("/investigations/new", response_class=HTMLResponse)
def new_investigation(request: Request, who: Who, db: Db) -> HTMLResponse:
    """The form: name, configuration, scope, dates, the filter builder, explain, start."""
    ensure(who.role, "investigation.create")
    return _new_page(request, who, db, NewForm())


async def _new_form(request: Request, who: Caller) -> NewForm:
    ensure(who.role, "investigation.create")
    _from_this_site(request)
    return _read_new(await read_form(request))


def _explain(ctx: AppContext, values: NewForm) -> None:
    document = _document(values)
    if document is None:
        return
    provider = "m365"
    with ctx.sessions.begin() as db:
        try:
            record = configurations_service.get_configuration(db, ref=values.configuration)
            provider = record.provider
        except configurations_service.ConfigurationNotFound:
            pass
    try:
        values.plan = investigations_service.explain_query(query=document, provider=provider)
    except (QueryError, ValueError) as exc:
        values.fail("match", str(exc))


@router.post("/investigations/new/explain", response_class=HTMLResponse)
async def explain_investigation(request: Request, who: Who, ctx: Ctx) -> HTMLResponse:
    """The plan of the query as the form describes it: what runs on the server, what locally."""
    values = await _new_form(request, who)
    await run_in_threadpool(_explain, ctx, values)

    def show() -> HTMLResponse:
        with ctx.sessions.begin() as db:
            # 200 even with errors: htmx swaps only successful answers in.
            return _new_page(request, who, db, values)

    return await run_in_threadpool(show)


@router.post("/investigations/new/builder", response_class=HTMLResponse)
async def edit_builder(
    request: Request,
    who: Who,
    ctx: Ctx,
    add: Annotated[str | None, Query(pattern="^(row|group)$")] = None,
    to: Annotated[int, Query(ge=0, le=10)] = 0,
    load: Annotated[str | None, Query(pattern="^json$")] = None,
) -> HTMLResponse:
    """The form again with a row or group added, or with the JSON loaded into the builder."""
    values = await _new_form(request, who)
    builder = values.builder
    if add == "row":
        group = builder.top if to == 0 or to > len(builder.groups) else builder.groups[to - 1]
        group.rows.append(Row())
    elif add == "group" and len(builder.groups) < 10:
        builder.groups.append(RowGroup("any", [Row(), Row()]))
    elif load == "json":
        try:
            document = orjson.loads(values.query_json or "{}")
        except orjson.JSONDecodeError as exc:
            document = None
            values.fail("query", f"The query is not valid JSON: {exc}.")
        loaded = from_document(document) if isinstance(document, dict) else None
        if loaded is None:
            if document is not None:
                values.fail("query", "The builder cannot show this query; start it as JSON.")
            values.use_json = True
        else:
            assert isinstance(document, dict)
            values.builder = loaded
            values.use_json = False
            received = document.get("received") or {}
            if isinstance(received, dict):
                values.received_after = form_day(received.get("after"))
                values.received_before = form_day(received.get("before"), before=True)
            values.attached_emails = document.get("attached_emails", True) is not False

    def show() -> HTMLResponse:
        with ctx.sessions.begin() as db:
            return _new_page(request, who, db, values)

    return await run_in_threadpool(show)


# Search-as-you-type for the target users -----------------------------------------------------
# The scope field takes names; typing in "Find" asks the configuration's directory (through
# its provider) for up to DIRECTORY_LIMIT matches, debounced by htmx. Answers are cached per
# configuration, kind and prefix for a short while, so a burst of keystrokes costs one
# request per new prefix; a complete answer (fewer than the limit) also serves the longer
# prefixes typed after it. Names come from the directory, so they are shown escaped.

DIRECTORY_KINDS = ("users", "groups", "departments")
DIRECTORY_LIMIT = 20
DIRECTORY_TTL_SECONDS = 60.0
DIRECTORY_CACHE_ENTRIES = 512


@dataclass(frozen=True)
class DirectoryEntry:
    """One search result: the label shown and the value the scope field takes."""

    label: str
    detail: str
    value: str
    match_keys: tuple[str, ...] = ()  # the names the directory's `startswith` looked at


@dataclass
class DirectoryCache:
    """Recent directory answers by (configuration id, kind, lower-cased prefix)."""

    ttl: float = DIRECTORY_TTL_SECONDS
    entries: int = DIRECTORY_CACHE_ENTRIES
    clock: Any = time.monotonic
    _answers: dict[tuple[str, str, str], tuple[float, list[DirectoryEntry]]] = field(
        default_factory=dict
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, configuration: str, kind: str, prefix: str) -> list[DirectoryEntry] | None:
        """The cached answer for `prefix`, or one narrowed from a complete shorter prefix."""
        key = prefix.casefold()
        now = self.clock()
        with self._lock:
            for length in range(len(key), 0, -1):
                found = self._answers.get((configuration, kind, key[:length]))
                if found is None or now - found[0] > self.ttl:
                    continue
                if length == len(key):
                    return list(found[1])
                if len(found[1]) < DIRECTORY_LIMIT:  # complete: nothing else starts so
                    return [e for e in found[1] if _entry_matches(e, key)]
        return None

    def put(self, configuration: str, kind: str, prefix: str, found: list[DirectoryEntry]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._answers) >= self.entries:
                stale = [k for k, (at, _) in self._answers.items() if now - at > self.ttl]
                for k in stale or sorted(self._answers, key=lambda k: self._answers[k][0])[:64]:
                    del self._answers[k]
            self._answers[(configuration, kind, prefix.casefold())] = (now, list(found))


def _entry_matches(entry: DirectoryEntry, prefix: str) -> bool:
    """What the directory's `startswith` would say of an entry, for narrowing a cached answer."""
    return any(name.casefold().startswith(prefix) for name in entry.match_keys if name)


DIRECTORY_CACHE = DirectoryCache()


def _directory_prefix(value: str | None) -> str:
    return " ".join((value or "").split())[:MAX_SEARCH_PREFIX]


async def _search_directory(
    ctx: AppContext, configuration: MailConfiguration, kind: str, prefix: str
) -> list[DirectoryEntry]:
    provider = open_message_provider(ctx, configuration)
    async with provider:
        if kind == "groups":
            groups = await provider.search_groups(prefix, DIRECTORY_LIMIT)
            return [
                DirectoryEntry(
                    g.display_name or g.id,
                    g.mail or "",
                    g.mail or g.display_name,
                    (g.display_name,),
                )
                for g in groups
            ]
        if kind == "departments":
            names = await provider.search_departments(prefix, DIRECTORY_LIMIT)
            return [DirectoryEntry(name, "", name, (name,)) for name in names]
        users = await provider.search_users(prefix, DIRECTORY_LIMIT)
        return [
            DirectoryEntry(
                u.display_name or u.upn,
                u.upn if u.mail in (None, u.upn) else f"{u.upn} · {u.mail}",
                u.upn,
                (u.display_name, u.upn, u.mail or ""),
            )
            for u in users
        ]


def _directory_configuration(ctx: AppContext, name: str) -> MailConfiguration | None:
    with ctx.sessions.begin() as db:
        try:
            record = configurations_service.get_configuration(db, ref=name)
        except configurations_service.ConfigurationNotFound:
            return None
        if not record.enabled:
            return None
        db.expunge(record)
        return record


@router.get("/investigations/new/directory", response_class=HTMLResponse)
async def directory_search(
    request: Request,
    who: Who,
    ctx: Ctx,
    configuration: Annotated[str, Query(max_length=200)] = "",
    scope_kind: Annotated[str, Query(max_length=20)] = "users",
    q: Annotated[str, Query(max_length=400)] = "",
) -> HTMLResponse:
    """Up to 20 users (groups, departments) of the configuration whose names start with `q`."""
    ensure(who.role, "investigation.create")
    kind = scope_kind if scope_kind in DIRECTORY_KINDS else "users"
    prefix = _directory_prefix(q)
    context: dict[str, Any] = {"kind": kind, "prefix": prefix, "entries": [], "problem": None}
    if not prefix:
        return page(request, who, "investigations/_directory.html", context)
    record = await run_in_threadpool(_directory_configuration, ctx, configuration.strip())
    if record is None:
        context["problem"] = "Choose an enabled mail configuration first."
        return page(request, who, "investigations/_directory.html", context)
    key = str(record.id)
    entries = DIRECTORY_CACHE.get(key, kind, prefix)
    if entries is None:
        try:
            entries = await _search_directory(ctx, record, kind, prefix)
        except (ProviderError, MailtrawlError) as exc:
            context["problem"] = f"The directory could not be searched: {exc.message}"
            return page(request, who, "investigations/_directory.html", context)
        DIRECTORY_CACHE.put(key, kind, prefix, entries)
    context["entries"] = entries
    return page(request, who, "investigations/_directory.html", context)


def _create_investigation(
    ctx: AppContext, request: Request, who: Caller, values: NewForm
) -> str | None:
    """The new investigation's id, or None with the errors recorded in `values`."""
    document = _document(values)
    scope = scope_document(values.scope_kind, values.scope_values)
    try:
        duration = values.duration_custom if values.duration == "custom" else values.duration
        data = InvestigationCreate(
            name=values.name,
            configuration=values.configuration,
            scope=scope,  # type: ignore[arg-type]  # validated into a ScopeSpec
            query=document or {},
            duration=duration or None,
            action=values.action or None,  # type: ignore[arg-type]  # validated: AutoAction
        )
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            key = str(error["loc"][0]) if error["loc"] else "name"
            values.fail(key, str(error["msg"]).removeprefix("Value error, "))
        return None
    if document is None:
        return None
    with write_session(ctx.sessions) as db:
        try:
            record = audited_investigations.create(db, data=data, actor=actor_of(request, who))
        except QueryError as exc:
            for problem in exc.errors:
                values.fail("query", str(problem))
            return None
        except configurations_service.ConfigurationNotFound as exc:
            values.fail("configuration", exc.message)
            return None
        except investigations_service.InvalidDuration as exc:
            values.fail("action" if "action" in exc.message else "duration", exc.message)
            return None
        return str(record.id)


@router.post("/investigations/new")
async def create_investigation(request: Request, who: Who, ctx: Ctx) -> Response:
    """Start the investigation the form describes, or show the form again with what to fix."""
    values = await _new_form(request, who)
    created = await run_in_threadpool(_create_investigation, ctx, request, who, values)
    if created is None:

        def again() -> HTMLResponse:
            with ctx.sessions.begin() as db:
                return _new_page(
                    request, who, db, values, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
                )

        return await run_in_threadpool(again)
    _wake(ctx)
    return RedirectResponse(f"/investigations/{created}", status_code=status.HTTP_303_SEE_OTHER)


# Details --------------------------------------------------------------------------------------


def _investigation(db: Session, investigation_id: str) -> InvestigationView:
    try:
        return investigations_service.to_view(
            investigations_service.get_investigation(db, ref=investigation_id)
        )
    except investigations_service.InvestigationNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None


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
        "polling": _running(view),
        "actions_offered": ACTIONS,
        "verbs": VERBS,
    }


def _actions_context(db: Session, view: InvestigationView) -> dict[str, Any]:
    actions = [
        remediation_service.action_view(a)
        for a in remediation_service.list_actions(db, investigation=view.id, limit=ACTIONS_SHOWN)
    ]
    return {
        "investigation": view,
        "actions": actions,
        "actions_polling": any(a.status not in ACTION_FINISHED for a in actions),
        "verbs": VERBS,
    }


def _requested(db: Session, view: InvestigationView, ref: str | None) -> Any:
    """The action a confirmation just requested (named by `?requested=`), if it is this one's."""
    if not ref:
        return None
    try:
        action = remediation_service.get_action(db, ref=ref)
    except remediation_service.ActionNotFound:
        return None
    if action.investigation_id != view.id:
        return None
    return remediation_service.action_view(action)


@router.get("/investigations/{investigation_id}", response_class=HTMLResponse)
def investigation(
    request: Request, who: Who, db: Db, investigation_id: str, offset: Offset = 0
) -> HTMLResponse:
    """Summary, campaigns, one page of hits (sorted and filtered in SQL), actions."""
    view = _investigation(db, investigation_id)
    campaigns = investigations_service.list_campaigns(db, ref=view.id, limit=CAMPAIGNS_SHOWN)
    done = request.query_params.get("done")
    extra = {"notice": NOTICES[done]} if done in NOTICES else {}
    return page(
        request,
        who,
        "investigations/detail.html",
        {
            **_hits_context(request, db, view, offset),
            **_actions_context(db, view),
            "campaigns": campaigns,
            "requested": _requested(db, view, request.query_params.get("requested")),
            "scope_text": scope_text,
            **extra,
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


def _fragment_only(request: Request, investigation_id: str) -> Response | None:
    """A browser asking for a fragment directly is sent to the whole page."""
    if _is_htmx(request):
        return None
    query = request.url.query
    return RedirectResponse(
        f"/investigations/{investigation_id}" + (f"?{query}" if query else ""),
        status_code=status.HTTP_303_SEE_OTHER,
    )


@router.get("/investigations/{investigation_id}/hits", response_class=HTMLResponse)
def investigation_hits(
    request: Request, who: Who, db: Db, investigation_id: str, offset: Offset = 0
) -> Response:
    """The hits table alone, for htmx (sorting, filtering, and refreshing while it runs)."""
    redirect = _fragment_only(request, investigation_id)
    if redirect is not None:
        return redirect
    view = _investigation(db, investigation_id)
    return page(request, who, "investigations/_hits.html", _hits_context(request, db, view, offset))


@router.get("/investigations/{investigation_id}/campaigns", response_class=HTMLResponse)
def investigation_campaigns(request: Request, who: Who, db: Db, investigation_id: str) -> Response:
    """The campaigns table alone (refreshed while the investigation runs)."""
    redirect = _fragment_only(request, investigation_id)
    if redirect is not None:
        return redirect
    view = _investigation(db, investigation_id)
    campaigns = investigations_service.list_campaigns(db, ref=view.id, limit=CAMPAIGNS_SHOWN)
    return page(
        request,
        who,
        "investigations/_campaigns.html",
        {
            "investigation": view,
            "campaigns": campaigns,
            "polling": _running(view),
            "actions_offered": ACTIONS,
            "verbs": VERBS,
        },
    )


@router.get("/investigations/{investigation_id}/actions", response_class=HTMLResponse)
def investigation_actions(request: Request, who: Who, db: Db, investigation_id: str) -> Response:
    """The actions panel alone (refreshed while an action waits or runs)."""
    redirect = _fragment_only(request, investigation_id)
    if redirect is not None:
        return redirect
    view = _investigation(db, investigation_id)
    return page(request, who, "investigations/_actions.html", _actions_context(db, view))


# Message preview ------------------------------------------------------------------------------
# Reading mail is sensitive: every fetched body is audited (`message.preview`). What the
# attacker wrote is escaped on the page; the body is sanitised by `preview.py` and served as
# its own scriptless document (preview CSP), framed by `<iframe sandbox>` without allow-*.

PREVIEW_FORMATS = ("html", "text")
GONE = (
    "This message is no longer where the investigation found it: it was moved or deleted "
    "(or purged) since. Run the investigation again to find where it is now."
)


@dataclass(frozen=True)
class _HitSource:
    """A hit and what fetching it needs (read in one short transaction)."""

    view: InvestigationView
    hit: InvestigationHit
    configuration: MailConfiguration | None


def _hit_source(db: Session, investigation_id: str, hit_id: str) -> _HitSource:
    view = _investigation(db, investigation_id)
    try:
        key = uuid.UUID(hit_id)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such found message.") from None
    hit = db.get(InvestigationHit, key)
    if hit is None or hit.investigation_id != view.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such found message here.")
    record = db.get(Investigation, view.id)
    configuration = (
        db.get(MailConfiguration, record.configuration_id)
        if record is not None and record.configuration_id is not None
        else None
    )
    if configuration is not None:
        db.expunge(configuration)
    db.expunge(hit)
    return _HitSource(view, hit, configuration)


def _message_ref(hit: InvestigationHit) -> MessageRef:
    return MessageRef(
        mailbox=MailboxRef(id=hit.mailbox_id, upn=hit.mailbox_upn, mail=hit.mailbox_upn),
        message_id=hit.message_id,
        immutable_id=hit.message_id,
        folder_id=hit.folder_id,
        folder_name=hit.folder,
        internet_message_id=hit.internet_message_id or None,
    )


def open_message_provider(ctx: AppContext, configuration: MailConfiguration) -> Provider:
    """The provider of the hit's configuration, as the worker opens it (tests replace this)."""
    return open_provider(configuration, credential_of(ctx.box, configuration))


async def _fetch_body(
    ctx: AppContext, configuration: MailConfiguration, ref: MessageRef, body_format: str
) -> FetchedMessage:
    provider = open_message_provider(ctx, configuration)
    async with provider:
        return await provider.fetch(
            ref,
            MessageParts.BODY,
            body_format="text" if body_format == "text" else "html",
        )


def _as_text(fetched: FetchedMessage) -> str:
    body = fetched.body
    if body is None:
        return ""
    if body.content_type == "text":
        return body.content
    # The platform gave HTML although text was asked for: drop every tag, keep the words.
    return html.unescape(nh3.clean(body.content[: message_preview.MAX_PREVIEW_CHARS], tags=set()))


def _text_document(text: str) -> str:
    return f"<pre>{html.escape(text, quote=True)}</pre>"


def _notice_response(sentence: str, status_code: int) -> Response:
    answer = message_preview.preview_response(f"<p><strong>{html.escape(sentence)}</strong></p>")
    answer.status_code = status_code
    return answer


def _audit_preview(
    ctx: AppContext,
    request: Request,
    who: Caller,
    source: _HitSource,
    body_format: str,
    outcome: str,
) -> None:
    hit = source.hit
    with write_session(ctx.sessions) as db:
        audit_service.record(
            db,
            actor=who.username,
            role=who.role.value,
            source_ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
            operation="message.preview",
            entity_type="message",
            entity_id=str(hit.id),
            after={
                "investigation": str(source.view.id),
                "hit": str(hit.id),
                "mailbox": hit.mailbox_upn,
                "message_id": hit.message_id,
                "internet_message_id": hit.internet_message_id,
                "subject": hit.subject[:500],
                "format": body_format,
            },
            outcome=outcome,
        )


@router.get("/investigations/{investigation_id}/hits/{hit_id}", response_class=HTMLResponse)
def hit_preview(
    request: Request,
    who: Who,
    db: Db,
    investigation_id: str,
    hit_id: str,
    format_: Annotated[str, Query(alias="format")] = "html",
) -> HTMLResponse:
    """One found message: its metadata (escaped) and its body in a sandboxed frame."""
    ensure(who.role, "investigation.read")
    source = _hit_source(db, investigation_id, hit_id)
    body_format = format_ if format_ in PREVIEW_FORMATS else "html"
    names = [n for n in source.hit.attachment_names.split("; ") if n.strip()]
    return page(
        request,
        who,
        "investigations/preview.html",
        {
            "investigation": source.view,
            "hit": investigations_service.hit_view(source.hit),
            "attachments": names,
            "body_format": body_format,
        },
    )


@router.get("/investigations/{investigation_id}/hits/{hit_id}/body")
async def hit_preview_body(
    request: Request,
    who: Who,
    ctx: Ctx,
    investigation_id: str,
    hit_id: str,
    format_: Annotated[str, Query(alias="format")] = "html",
) -> Response:
    """The message body, fetched now from the mailbox and sanitised (see `preview.py`)."""
    ensure(who.role, "investigation.read")
    body_format = format_ if format_ in PREVIEW_FORMATS else "html"

    def load() -> _HitSource:
        with ctx.sessions.begin() as db:
            return _hit_source(db, investigation_id, hit_id)

    source = await run_in_threadpool(load)
    if source.configuration is None:
        return _notice_response(
            "The investigation's mail configuration was removed, so the message cannot be fetched.",
            status.HTTP_409_CONFLICT,
        )
    try:
        fetched = await _fetch_body(
            ctx, source.configuration, _message_ref(source.hit), body_format
        )
    except NotFound:
        await run_in_threadpool(_audit_preview, ctx, request, who, source, body_format, "not_found")
        return _notice_response(GONE, status.HTTP_404_NOT_FOUND)
    except (ProviderError, MailtrawlError) as exc:
        await run_in_threadpool(_audit_preview, ctx, request, who, source, body_format, "failed")
        return _notice_response(
            f"The message could not be fetched from the mail platform: {exc.message}",
            status.HTTP_502_BAD_GATEWAY,
        )
    await run_in_threadpool(_audit_preview, ctx, request, who, source, body_format, "ok")
    body = fetched.body
    if body_format == "text" or body is None or body.content_type == "text":
        return message_preview.preview_response(_text_document(_as_text(fetched)))
    return message_preview.preview_response(body.content)


# Stop and duplicate -----------------------------------------------------------------------------


def _stop(ctx: AppContext, request: Request, who: Caller, investigation_id: str) -> None:
    with write_session(ctx.sessions) as db:
        found = _investigation(db, investigation_id)
        audited_investigations.stop(db, ref=found.id, actor=actor_of(request, who))


@router.post("/investigations/{investigation_id}/stop")
async def stop_investigation(
    request: Request, who: Who, ctx: Ctx, investigation_id: str
) -> Response:
    ensure(who.role, "investigation.stop")
    _from_this_site(request)
    await run_in_threadpool(_stop, ctx, request, who, investigation_id)
    return RedirectResponse(
        f"/investigations/{investigation_id}?done=stopped", status_code=status.HTTP_303_SEE_OTHER
    )


def _duplicate(ctx: AppContext, request: Request, who: Caller, investigation_id: str) -> str:
    with write_session(ctx.sessions) as db:
        source = _investigation(db, investigation_id)
        try:
            record = audited_investigations.duplicate(
                db, ref=source.id, actor=actor_of(request, who)
            )
        except MailtrawlError as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
        return str(record.id)


@router.post("/investigations/{investigation_id}/duplicate")
async def duplicate_investigation(
    request: Request, who: Who, ctx: Ctx, investigation_id: str
) -> Response:
    """Run the same query over the same scope again, as a new investigation."""
    ensure(who.role, "investigation.create")
    _from_this_site(request)
    created = await run_in_threadpool(_duplicate, ctx, request, who, investigation_id)
    _wake(ctx)
    return RedirectResponse(f"/investigations/{created}", status_code=status.HTTP_303_SEE_OTHER)


# Remediation: confirm, then request -------------------------------------------------------------


@dataclass
class Choice:
    """An action over a selection, as the hits table, a campaign row or a confirmation posts it."""

    action: str
    notify: bool
    hits: list[str]
    campaigns: list[str]
    everything: bool
    note: str = ""
    # warn + notify: the notice's subject and body templates as the analyst edited them
    # (empty: the runtime settings' templates).
    notice_subject: str = ""
    notice_body: str = ""

    @property
    def notifies(self) -> bool:
        return self.notify and self.action == "warn"

    def data(self, *, dry_run: bool, with_notice: bool = True) -> ActionCreate:
        selection = Selection(
            hits=[uuid.UUID(h) for h in self.hits],
            campaigns=[] if self.everything else self.campaigns,
        )
        if self.everything:
            selection = Selection()
        notice = None
        if with_notice and self.notifies and (self.notice_subject or self.notice_body):
            notice = NoticeOptions(
                subject=self.notice_subject or None, body=self.notice_body or None
            )
        return ActionCreate(
            action=self.action,  # type: ignore[arg-type]  # checked against ACTIONS
            selection=selection,
            notify=self.notifies,
            notice=notice,
            dry_run=dry_run,
            note=self.note or None,
        )

    def problem(self) -> str | None:
        if self.action not in ACTIONS:
            return "Choose an action: " + ", ".join(ACTIONS) + "."
        if not (self.everything or self.hits or self.campaigns):
            return "Select at least one found message (or choose all of them)."
        return None

    def notice_problem(self) -> str | None:
        """What is wrong with the edited notice (bounds, placeholders), if anything."""
        if not self.notifies:
            return None
        if len(self.notice_subject) > NOTICE_SUBJECT_MAX:
            return f"The notice's subject is longer than {NOTICE_SUBJECT_MAX} characters."
        if len(self.notice_body) > MAX_TEMPLATE:
            return f"The notice's body is longer than {MAX_TEMPLATE} characters."
        try:
            validate_template(
                self.notice_subject or DEFAULT_NOTICE_SUBJECT,
                self.notice_body or DEFAULT_NOTICE_BODY,
            )
        except NoticeTemplateError as exc:
            return str(exc)
        return None


def _uuids(values: list[str]) -> list[str]:
    out = []
    for value in values:
        try:
            out.append(str(uuid.UUID(value)))
        except ValueError:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "A selected message id is not valid."
            ) from None
    return list(dict.fromkeys(out))


def _choice(request: Request, form: FormData) -> Choice:
    only = request.query_params.get("only")
    campaign = request.query_params.get("campaign")
    hits = [only] if only else [v for v in form.getlist("hit") if isinstance(v, str)]
    campaigns = (
        [campaign] if campaign else [v for v in form.getlist("campaign") if isinstance(v, str)]
    )
    everything = not only and not campaign and form.get("target") == "all"
    return Choice(
        action=form_field(form, "action", max_length=20),
        notify=form.get("notify") == "1",
        hits=[] if everything else _uuids(hits[: HITS_PER_PAGE * 20]),
        campaigns=[] if everything or only else [c[:1000] for c in campaigns[:CAMPAIGNS_SHOWN]],
        everything=everything,
        note=form_field(form, "note", max_length=2000),
        # Read a little past the bounds, so a longer text is refused rather than cut.
        notice_subject=form_field(form, "notice_subject", max_length=NOTICE_SUBJECT_MAX + 1),
        notice_body=_template_text(form, "notice_body", MAX_TEMPLATE + 1),
    )


def _template_text(form: FormData, name: str, limit: int) -> str:
    """A template field as typed (line breaks kept, surrounding blank lines dropped)."""
    value = form.get(name)
    return value[:limit].strip("\r\n ") if isinstance(value, str) else ""


def _confirm_page(
    request: Request,
    who: Caller,
    view: InvestigationView,
    *,
    verb: str,
    post_to: str,
    choice: Choice | None,
    preview: Preview | None,
    error: str | None,
    status_code: int = 200,
    extra: dict[str, Any] | None = None,
) -> HTMLResponse:
    return page(
        request,
        who,
        "investigations/confirm.html",
        {
            "investigation": view,
            "verb": verb,
            "post_to": post_to,
            "choice": choice,
            "preview": preview,
            "error": error,
            "notice": None,
            "notice_error": None,
            "placeholders": sorted(PLACEHOLDERS),
            "restore": None,
            **(extra or {}),
        },
        status_code=status_code,
    )


def _sample_hit(db: Session, view: InvestigationView, choice: Choice) -> InvestigationHit | None:
    """One message the notice would be about: the first ticked one, else the first found."""
    for ref in choice.hits[:1]:
        hit = db.get(InvestigationHit, uuid.UUID(ref))
        if hit is not None and hit.investigation_id == view.id:
            return hit
    first = investigations_service.list_hits(db, ref=view.id, limit=1)
    if not first.items:
        return None
    return db.get(InvestigationHit, first.items[0].id)


def _notice_preview(
    db: Session, ctx: AppContext, view: InvestigationView, choice: Choice
) -> dict[str, Any]:
    """The notice one mailbox would receive (its templates filled in from the settings when
    left empty), rendered as the worker renders it and sanitised for a sandboxed frame."""
    effective = settings_store.effective_settings(db, ctx.settings)
    if not choice.notice_subject:
        choice.notice_subject = effective.warning_notice_subject or DEFAULT_NOTICE_SUBJECT
    if not choice.notice_body:
        choice.notice_body = effective.warning_notice_body or DEFAULT_NOTICE_BODY
    hit = _sample_hit(db, view, choice)
    if hit is None:
        return {}
    mailbox = MailboxRef(id=hit.mailbox_id, upn=hit.mailbox_upn, mail=hit.mailbox_upn)
    item = NoticeItem(
        subject=hit.subject,
        sender_address=hit.sender_address,
        sender_name=hit.sender_name,
        received=hit.received,
    )
    message = render_notice(
        mailbox=mailbox,
        items=[item],
        subject_template=choice.notice_subject,
        body_template=choice.notice_body,
        organisation=effective.organisation_name,
        internet_message_id=notice_message_id(f"preview:{view.id}"),
    )
    return {
        "mailbox": hit.mailbox_upn,
        "subject": message.subject,
        # A srcdoc frame inherits the page's CSP (no inline styles): drop them first, so the
        # browser has nothing to refuse (nh3's defaults keep formatting, not `style`).
        "srcdoc": message_preview.preview_srcdoc(nh3.clean(message.body)),
    }


_REFUSALS = (remediation_service.RemediationError, NoticeTemplateError)


def _refusal_text(exc: Exception) -> str:
    return exc.message if isinstance(exc, remediation_service.RemediationError) else str(exc)


def _preview_action(
    ctx: AppContext,
    request: Request,
    who: Caller,
    investigation_id: str,
    choice: Choice,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with ctx.sessions.begin() as db:
        view = _investigation(db, investigation_id)
        post_to = f"/investigations/{view.id}/actions"
        verb = VERBS.get(choice.action, choice.action)
        problem = choice.problem()
        if problem is not None:
            return _confirm_page(
                request,
                who,
                view,
                verb=verb,
                post_to=post_to,
                choice=None,
                preview=None,
                error=problem,
                status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
            )
        notice_error = choice.notice_problem()
        try:
            preview, _ = remediation_service.request_action(
                db,
                investigation=view.id,
                # With a broken notice the counts are still shown, next to what to fix.
                data=choice.data(dry_run=True, with_notice=notice_error is None),
                actor=actor_of(request, who),
                settings=ctx.settings,
            )
        except _REFUSALS as exc:
            return _confirm_page(
                request,
                who,
                view,
                verb=verb,
                post_to=post_to,
                choice=None,
                preview=None,
                error=_refusal_text(exc),
                status_code=status.HTTP_409_CONFLICT,
            )
        extra: dict[str, Any] = {"notice_error": notice_error}
        if choice.notifies and notice_error is None:
            extra["notice"] = _notice_preview(db, ctx, view, choice)
        if notice_error is not None and status_code == 200:
            status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
        return _confirm_page(
            request,
            who,
            view,
            verb=verb,
            post_to=post_to,
            choice=choice,
            preview=preview,
            error=error,
            status_code=status_code,
            extra=extra,
        )


@router.post("/investigations/{investigation_id}/actions/preview", response_class=HTMLResponse)
async def preview_action(
    request: Request, who: Who, ctx: Ctx, investigation_id: str
) -> HTMLResponse:
    """The confirmation step: the exact counts of the action (a dry run), and Confirm."""
    ensure(who.role, "remediation.request")
    _from_this_site(request)
    choice = _choice(request, await read_form(request))
    return await run_in_threadpool(_preview_action, ctx, request, who, investigation_id, choice)


def _request_action(
    ctx: AppContext, request: Request, who: Caller, investigation_id: str, choice: Choice
) -> tuple[str | None, str | None]:
    """(the new action's id, None) or (None, the service's refusal)."""
    with write_session(ctx.sessions) as db:
        view = _investigation(db, investigation_id)
        try:
            _, action = remediation_service.request_action(
                db,
                investigation=view.id,
                data=choice.data(dry_run=False),
                actor=actor_of(request, who),
                settings=ctx.settings,
            )
        except _REFUSALS as exc:
            db.rollback()
            return None, _refusal_text(exc)
        assert action is not None
        return str(action.id), None


async def _after_request(
    request: Request,
    who: Caller,
    ctx: AppContext,
    investigation_id: str,
    created: str | None,
    refusal: str | None,
    again: Any,
) -> Response:
    if created is None:
        return await run_in_threadpool(again, refusal)
    _wake(ctx)
    return RedirectResponse(
        f"/investigations/{investigation_id}?requested={created}#actions",
        status_code=status.HTTP_303_SEE_OTHER,
    )


@router.post("/investigations/{investigation_id}/actions")
async def request_action(request: Request, who: Who, ctx: Ctx, investigation_id: str) -> Response:
    """Confirmed: record the action (queued, or awaiting approval) and show it."""
    ensure(who.role, "remediation.request")
    _from_this_site(request)
    choice = _choice(request, await read_form(request))
    if choice.problem() is not None or choice.notice_problem() is not None:
        return await run_in_threadpool(_preview_action, ctx, request, who, investigation_id, choice)
    created, refusal = await run_in_threadpool(
        _request_action, ctx, request, who, investigation_id, choice
    )

    def again(refusal: str | None) -> HTMLResponse:
        return _preview_action(
            ctx, request, who, investigation_id, choice, refusal, status.HTTP_409_CONFLICT
        )

    return await _after_request(request, who, ctx, investigation_id, created, refusal, again)


# Restore --------------------------------------------------------------------------------------


MAX_RESTORE_MAILBOXES = 1000  # as many as the preview lists (`PREVIEW_MAILBOXES`)


def _chosen_mailboxes(form: FormData, name: str) -> list[str]:
    """The mailboxes a restore form names (addresses as the preview listed them), deduplicated."""
    values = [
        v.strip()[:320] for v in form.getlist(name)[:MAX_RESTORE_MAILBOXES] if isinstance(v, str)
    ]
    return list(dict.fromkeys(v for v in values if v))


def _undone_action(db: Session, view: InvestigationView, action_id: str) -> Any:
    try:
        undone = remediation_service.get_action(db, ref=action_id)
    except remediation_service.ActionNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    if undone.investigation_id != view.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such action on this investigation.")
    return undone


def _preview_restore(
    ctx: AppContext,
    request: Request,
    who: Caller,
    investigation_id: str,
    action_id: str,
    error: str | None = None,
    status_code: int = 200,
    mailboxes: list[str] | None = None,
) -> HTMLResponse:
    """The restore's confirmation: every mailbox of the undone action to choose from, and the
    exact counts of the chosen ones (all of them when `mailboxes` is None)."""
    with ctx.sessions.begin() as db:
        view = _investigation(db, investigation_id)
        post_to = f"/investigations/{view.id}/actions/{action_id}/restore"
        undone = _undone_action(db, view, action_id)
        verb = f"Restore (undo {undone.kind})"
        choice = Choice("restore", False, [], [], mailboxes is None)
        try:
            everything, _ = remediation_service.request_restore(
                db,
                action=undone.id,
                data=RestoreCreate(dry_run=True),
                actor=actor_of(request, who),
                settings=ctx.settings,
            )
            preview = everything
            if mailboxes:
                preview, _ = remediation_service.request_restore(
                    db,
                    action=undone.id,
                    data=RestoreCreate(mailboxes=mailboxes, dry_run=True),
                    actor=actor_of(request, who),
                    settings=ctx.settings,
                )
        except _REFUSALS as exc:
            return _confirm_page(
                request,
                who,
                view,
                verb=verb,
                post_to=post_to,
                choice=None,
                preview=None,
                error=_refusal_text(exc),
                status_code=status.HTTP_409_CONFLICT,
            )
        if mailboxes is not None and not mailboxes:
            error = error or "Tick at least one mailbox to restore, then count again."
            status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
        chosen = {m.casefold() for m in mailboxes or ()}
        extra = {
            "restore": {
                "choices": [
                    {
                        "mailbox": m.mailbox,
                        "messages": m.messages,
                        "chosen": mailboxes is None or m.mailbox.casefold() in chosen,
                    }
                    for m in everything.by_mailbox
                ],
                "truncated": everything.by_mailbox_truncated,
                "counted": [] if mailboxes is None else mailboxes,
                "total_mailboxes": everything.mailboxes,
            }
        }
        return _confirm_page(
            request,
            who,
            view,
            verb=verb,
            post_to=post_to,
            choice=None if mailboxes is not None and not mailboxes else choice,
            preview=preview,
            error=error,
            status_code=status_code,
            extra=extra,
        )


@router.post(
    "/investigations/{investigation_id}/actions/{action_id}/restore/preview",
    response_class=HTMLResponse,
)
async def preview_restore(
    request: Request, who: Who, ctx: Ctx, investigation_id: str, action_id: str
) -> HTMLResponse:
    """The confirmation step of a restore: how many copies go back, from where; with
    `choose_mailboxes=1` only the ticked `mailbox` fields are counted."""
    ensure(who.role, "remediation.request")
    _from_this_site(request)
    form = await read_form(request)
    mailboxes = _chosen_mailboxes(form, "mailbox") if form.get("choose_mailboxes") == "1" else None
    return await run_in_threadpool(
        _preview_restore, ctx, request, who, investigation_id, action_id, None, 200, mailboxes
    )


def _request_restore(
    ctx: AppContext,
    request: Request,
    who: Caller,
    action_id: str,
    note: str,
    mailboxes: list[str] | None = None,
) -> tuple[str | None, str | None]:
    with write_session(ctx.sessions) as db:
        try:
            _, action = remediation_service.request_restore(
                db,
                action=action_id,
                data=RestoreCreate(mailboxes=mailboxes or [], note=note or None),
                actor=actor_of(request, who),
                settings=ctx.settings,
            )
        except remediation_service.ActionNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
        except _REFUSALS as exc:
            db.rollback()
            return None, _refusal_text(exc)
        assert action is not None
        return str(action.id), None


@router.post("/investigations/{investigation_id}/actions/{action_id}/restore")
async def request_restore(
    request: Request, who: Who, ctx: Ctx, investigation_id: str, action_id: str
) -> Response:
    """Confirmed: undo the action (moved copies go back, deleted ones come from the vault),
    in every mailbox or only in the `restore_mailbox` ones the confirmation counted."""
    ensure(who.role, "remediation.request")
    _from_this_site(request)
    form = await read_form(request)
    note = form_field(form, "note", max_length=2000)
    mailboxes = _chosen_mailboxes(form, "restore_mailbox") or None

    def check() -> None:
        with ctx.sessions.begin() as db:
            _undone_action(db, _investigation(db, investigation_id), action_id)

    await run_in_threadpool(check)
    created, refusal = await run_in_threadpool(
        _request_restore, ctx, request, who, action_id, note, mailboxes
    )

    def again(refusal: str | None) -> HTMLResponse:
        return _preview_restore(
            ctx,
            request,
            who,
            investigation_id,
            action_id,
            refusal,
            status.HTTP_409_CONFLICT,
            mailboxes,
        )

    return await _after_request(request, who, ctx, investigation_id, created, refusal, again)
