"""The reported-email pages: the queue (with upload), clusters, and each case with its tabs.

Thin handlers over `reports.actions` (each change written to the audit log there, as for the
REST API and the CLI) and the read side of `reports.service`. Everything on these pages
was written by the attacker (subject, names, addresses, file names, links, header values,
bodies): it reaches the templates as plain strings, which Jinja escapes, and no link from the
message becomes an `href`. The body is shown only in `<iframe sandbox>` from its own route,
sanitised by `preview.py` (links removed first) and sent with the preview CSP.
"""

from __future__ import annotations

import html
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, get_args

import nh3
import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mailtrawl.analysis.errors import ReportParseError, ReportTooLarge
from mailtrawl.analysis.model import ParsedReport
from mailtrawl.analysis.parsing import MAX_REPORT_BYTES
from mailtrawl.audit import service as audit_service
from mailtrawl.reports import actions
from mailtrawl.reports import service as reports_service
from mailtrawl.reports.autoinvestigate import build_query
from mailtrawl.reports.intake import InvalidReporter
from mailtrawl.reports.models import Channel, ReportCase
from mailtrawl.reports.schemas import (
    ALL_VERDICTS,
    CaseSort,
    CaseUpdate,
    CaseView,
    ClusterAction,
    NoteCreate,
    NotifyRequest,
    StatusName,
    VerdictChange,
)
from mailtrawl.reports.settings import effective_own_domains, load_report_settings
from mailtrawl.storage.engine import write_session
from mailtrawl.web.deps import AppContext, Caller, actor_of, audit_fields, context, db_session
from mailtrawl.web.ui import preview as message_preview
from mailtrawl.web.ui.auth import Who, same_origin
from mailtrawl.web.ui.forms import field as form_field
from mailtrawl.web.ui.forms import read_form
from mailtrawl.web.ui.layout import page
from mailtrawl.web.ui.permissions import ensure

router = APIRouter(include_in_schema=False)

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]

BASE = "/reports"
CASES_PER_PAGE = 50
CLUSTERS_PER_PAGE = 50
STATUSES: tuple[str, ...] = get_args(StatusName)
VERDICTS: tuple[str, ...] = ALL_VERDICTS
SORTS: frozenset[str] = frozenset(get_args(CaseSort))
TABS = (
    ("summary", "Summary and evidence"),
    ("headers", "Headers"),
    ("preview", "Preview"),
    ("urls", "Links"),
    ("attachments", "Attachments"),
    ("reporters", "Reporters"),
    ("timeline", "Timeline"),
)
TAB_NAMES = frozenset(name for name, _ in TABS)
PREVIEW_FORMATS = ("html", "text")
# The upload: the API's bound on the message, plus the multipart framing and small fields.
MULTIPART_SLACK = 64 * 1024
MAX_UPLOAD_BYTES = MAX_REPORT_BYTES + MULTIPART_SLACK
UPLOAD_FIELD = "file"
TOO_LARGE = (
    f"The message is larger than {MAX_REPORT_BYTES // (1024 * 1024)} MB; upload it without its "
    "largest attachments, or analyse them separately."
)
# Fixed sentences a redirect may ask a page to show (`?done=<key>`), never echoed input.
NOTICES = {
    "uploaded": "The message was uploaded; its analysis runs in the background.",
    "joined": "This message had been reported already: the upload joined its case.",
    "verdict": "The verdict was set.",
    "updated": "The case was updated.",
    "note": "The note was added.",
    "notify": "The reporters will be told the verdict again.",
    "reanalyse": "The message will be analysed again.",
    "cluster": "The change was applied to every case of the cluster.",
}
MAX_TAG_FIELD = 4_000
SORT_COLUMNS = (
    ("subject", "Subject", "subject"),
    ("score", "Risk", "-score"),
    ("reporters", "Reported by", "-reporters"),
    ("first_reported", "Created", "-first_reported"),
    ("last_reported", "Last reported", "-last_reported"),
)


def _wake(ctx: AppContext) -> None:
    if ctx.runner is not None:
        ctx.runner.wake()


def _from_this_site(request: Request) -> None:
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Submit the form from mailtrawl's own page.")


def _notice(request: Request) -> str | None:
    done = request.query_params.get("done")
    return NOTICES.get(done) if done else None


def _case_record(db: Session, case_id: str, *, lock: bool = False) -> ReportCase:
    try:
        return reports_service.get_case(db, ref=case_id, lock=lock)
    except reports_service.CaseNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where}: {error.get('msg', 'not valid')}" if where else str(error.get("msg"))


def _split_tags(text: str) -> list[str]:
    return [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]


# The queue ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueQuery:
    """The queue's filters as the page's form gives them (invalid values are dropped)."""

    status: str = ""
    verdict: str = ""
    tag: str = ""
    q: str = ""
    sender: str = ""
    reporter: str = ""
    after: str = ""
    before: str = ""
    sort: str = "-last_reported"
    offset: int = 0

    def params(self) -> dict[str, Any]:
        """The query string of this view (defaults left out)."""
        return {
            "status": self.status,
            "verdict": self.verdict,
            "tag": self.tag,
            "q": self.q,
            "sender": self.sender,
            "reporter": self.reporter,
            "after": self.after,
            "before": self.before,
            "sort": None if self.sort == "-last_reported" else self.sort,
            "offset": self.offset or None,
        }

    @property
    def filtered(self) -> bool:
        values = (self.status, self.verdict, self.tag, self.q, self.sender, self.reporter)
        return any(values) or bool(self.after or self.before)


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip()[:10]) if value.strip() else None
    except ValueError:
        return None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def _queue_query(request: Request) -> QueueQuery:
    params = request.query_params

    def text(name: str, limit: int) -> str:
        return " ".join((params.get(name) or "").split())[:limit]

    status_ = text("status", 20)
    verdict = text("verdict", 20)
    sort = text("sort", 20)
    after, before = _day(text("after", 10)), _day(text("before", 10))
    try:
        offset = max(0, min(int(params.get("offset") or 0), 10_000_000))
    except ValueError:
        offset = 0
    return QueueQuery(
        status=status_ if status_ in STATUSES else "",
        verdict=verdict if verdict in (*VERDICTS, "pending") else "",
        tag=text("tag", 64),
        q=text("q", 200),
        sender=text("sender", 320),
        reporter=text("reporter", 320),
        after=after.isoformat() if after else "",
        before=before.isoformat() if before else "",
        sort=sort if sort in SORTS else "-last_reported",
        offset=offset,
    )


def _filters(query: QueueQuery) -> reports_service.CaseFilters:
    after, before = _day(query.after), _day(query.before)
    return reports_service.CaseFilters(
        status=[query.status] if query.status else None,
        verdict=[query.verdict] if query.verdict else None,
        tag=query.tag or None,
        sender=query.sender or None,
        reporter=query.reporter or None,
        text=query.q or None,
        reported_after=_midnight(after) if after else None,
        # The "until" day is included.
        reported_before=_midnight(before + timedelta(days=1)) if before else None,
    )


def _sort_columns(query: QueueQuery) -> dict[str, dict[str, Any]]:
    """Each sortable column's state and the sort its header link asks for next."""
    columns: dict[str, dict[str, Any]] = {}
    for key, label, first in SORT_COLUMNS:
        active = query.sort.lstrip("-") == key
        descending = query.sort.startswith("-")
        following = (key if descending else "-" + key) if active else first
        columns[key] = {
            "label": label,
            "active": active,
            "descending": descending,
            "next": None if following == "-last_reported" else following,
        }
    return columns


def _queue_context(db: Session, query: QueueQuery) -> dict[str, Any]:
    cases = reports_service.list_cases(
        db,
        filters=_filters(query),
        sort=query.sort,  # type: ignore[arg-type]
        limit=CASES_PER_PAGE,
        offset=query.offset,
    )
    details = reports_service.queue_details(db, case_ids=[c.id for c in cases.items])
    return {
        "cases": cases,
        "details": details,
        "query": query,
        "params": query.params(),
        "columns": _sort_columns(query),
        "statuses": STATUSES,
        "verdicts": VERDICTS,
    }


def _queue_page(
    request: Request,
    who: Caller,
    db: Session,
    query: QueueQuery,
    *,
    upload_error: str | None = None,
    reporter: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    return page(
        request,
        who,
        "reports/list.html",
        {
            **_queue_context(db, query),
            "upload_error": upload_error,
            "upload_reporter": reporter,
            "notice": _notice(request),
            "max_upload_mb": MAX_REPORT_BYTES // (1024 * 1024),
        },
        status_code=status_code,
    )


@router.get(BASE, response_class=HTMLResponse)
def reports_queue(request: Request, who: Who, db: Db) -> HTMLResponse:
    """The queue of reported emails: filtered, sorted and paged in SQL; upload for analysts."""
    ensure(who.role, "report.read")
    return _queue_page(request, who, db, _queue_query(request))


@router.get(BASE + "/table", response_class=HTMLResponse)
def reports_table(request: Request, who: Who, db: Db) -> HTMLResponse:
    """The queue's table alone (what the filter form and the sort links swap in with htmx)."""
    ensure(who.role, "report.read")
    return page(request, who, "reports/_table.html", _queue_context(db, _queue_query(request)))


# Upload ---------------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class _InMemoryParser(MultiPartParser):
    # Customer email stays in memory (bounded by the size check), never in a temporary file.
    spool_max_size = MAX_UPLOAD_BYTES


async def _bounded_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        yield chunk


async def bounded_report_upload(request: Request) -> AsyncGenerator[None, None]:
    """Read the upload form (multipart, at most 50 MB plus framing) before anything else does.

    Listed before `Who`, whose CSRF check reads the form: Starlette's own parser would spool
    the message to a temporary file and knows no bound; this one keeps it in memory and
    answers 413 as soon as the body passes the bound.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "multipart/form-data":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "Send the upload as multipart/form-data (the page's form does).",
        )
    parser = _InMemoryParser(
        request.headers,
        _bounded_stream(request, MAX_UPLOAD_BYTES),
        max_files=1,
        max_fields=8,
        max_part_size=64 * 1024,
    )
    try:
        form = await parser.parse()
    except _TooLarge:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE) from None
    except MultiPartException as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, exc.message) from None
    request._form = form  # Starlette's cache: `request.form()` (the CSRF check) reads it
    try:
        yield
    finally:
        await form.close()  # refused or not, nothing of the upload outlives the request


BoundedUpload = Annotated[None, Depends(bounded_report_upload)]


def _intake(
    ctx: AppContext, request: Request, who: Caller, raw: bytes, filename: str | None, reporter: str
) -> tuple[str, bool]:
    """File the upload as the API does (`report.submit` in the audit log): (case id, created)."""
    with write_session(ctx.sessions) as session:
        result = actions.submit(
            session,
            box=ctx.box,
            raw=raw,
            filename=filename,
            channel=Channel.UPLOAD,
            actor=actor_of(request, who),
            reporter=reporter or None,
        )
        return str(result.case.id), result.created


@router.post(BASE + "/upload")
async def upload_report(request: Request, _bounded: BoundedUpload, who: Who, ctx: Ctx) -> Response:
    """Upload an .eml or .msg: a case is opened (or joined) and analysed in the background."""
    ensure(who.role, "report.edit")
    _from_this_site(request)
    form = await request.form()
    reporter_field = form.get("reporter")
    reporter = reporter_field.strip()[:400] if isinstance(reporter_field, str) else ""
    upload = form.get(UPLOAD_FIELD)
    raw = b""
    filename: str | None = None
    if isinstance(upload, UploadFile):
        raw = await upload.read(MAX_REPORT_BYTES + 1)
        filename = upload.filename

    def refuse(message: str, status_code: int) -> HTMLResponse:
        with ctx.sessions.begin() as db:
            return _queue_page(
                request,
                who,
                db,
                QueueQuery(),
                upload_error=message,
                reporter=reporter,
                status_code=status_code,
            )

    if not raw.strip():
        return await run_in_threadpool(
            refuse, "Choose an .eml or .msg file to upload (it is empty or missing).", 422
        )
    try:
        case_id, created = await run_in_threadpool(
            _intake, ctx, request, who, raw, filename, reporter
        )
    except ReportTooLarge:
        return await run_in_threadpool(refuse, TOO_LARGE, status.HTTP_413_CONTENT_TOO_LARGE)
    except (InvalidReporter, ReportParseError) as exc:
        return await run_in_threadpool(refuse, exc.message, 422)
    _wake(ctx)
    done = "uploaded" if created else "joined"
    return RedirectResponse(f"{BASE}/{case_id}?done={done}", status_code=status.HTTP_303_SEE_OTHER)


# Clusters -------------------------------------------------------------------------------------


@router.get(BASE + "/clusters", response_class=HTMLResponse)
def clusters(request: Request, who: Who, db: Db, offset: Offset = 0) -> HTMLResponse:
    """Clusters of two or more cases, with their case count and the indicator they share."""
    ensure(who.role, "report.read")
    found = reports_service.list_clusters(db, limit=CLUSTERS_PER_PAGE, offset=offset)
    return page(
        request,
        who,
        "reports/clusters.html",
        {"clusters": found, "params": {"offset": offset or None}},
    )


def _cluster_page(
    request: Request,
    who: Caller,
    db: Session,
    cluster_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        cluster = reports_service.get_cluster(db, ref=cluster_id)
    except reports_service.ClusterNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    view = reports_service.cluster_view(db, cluster)
    details = reports_service.queue_details(db, case_ids=[c.id for c in view.cases])
    return page(
        request,
        who,
        "reports/cluster.html",
        {
            "cluster": view,
            "details": details,
            "statuses": STATUSES,
            "verdicts": VERDICTS,
            "error": error,
            "notice": _notice(request),
        },
        status_code=status_code,
    )


@router.get(BASE + "/clusters/{cluster_id}", response_class=HTMLResponse)
def cluster(request: Request, who: Who, db: Db, cluster_id: str) -> HTMLResponse:
    """One cluster: its cases, and (analysts) one form acting on all of them."""
    ensure(who.role, "report.read")
    return _cluster_page(request, who, db, cluster_id)


def _cluster_action(form: FormData) -> ClusterAction:
    return ClusterAction(
        verdict=form_field(form, "verdict", max_length=20) or None,  # type: ignore[arg-type]
        message=form_field(form, "message", max_length=10_000) or None,
        status=form_field(form, "status", max_length=20) or None,  # type: ignore[arg-type]
        add_tags=_split_tags(form_field(form, "add_tags", max_length=MAX_TAG_FIELD)),
        remove_tags=_split_tags(form_field(form, "remove_tags", max_length=MAX_TAG_FIELD)),
        notify=form.get("notify") == "1",
    )


def _apply_to_cluster(
    ctx: AppContext, request: Request, who: Caller, cluster_id: str, data: ClusterAction
) -> None:
    with write_session(ctx.sessions) as db:
        try:
            cluster = reports_service.get_cluster(db, ref=cluster_id)
        except reports_service.ClusterNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
        actions.apply_to_cluster(db, cluster=cluster, data=data, actor=actor_of(request, who))


@router.post(BASE + "/clusters/{cluster_id}/actions")
async def cluster_action(request: Request, who: Who, ctx: Ctx, cluster_id: str) -> Response:
    """Verdict (with a message), status, tags or a notification for every case of the cluster."""
    ensure(who.role, "report.edit")
    _from_this_site(request)
    form = await read_form(request)
    problem: str | None = None
    try:
        data = _cluster_action(form)
    except ValidationError as exc:
        problem = _first_error(exc)
    else:
        if (
            data.verdict is None
            and data.status is None
            and not (data.add_tags or data.remove_tags or data.notify)
        ):
            problem = "Choose what to change: a verdict, a status, tags, or notify the reporters."
    if problem is not None:

        def refuse() -> HTMLResponse:
            with ctx.sessions.begin() as db:
                return _cluster_page(request, who, db, cluster_id, error=problem, status_code=422)

        return await run_in_threadpool(refuse)
    await run_in_threadpool(_apply_to_cluster, ctx, request, who, cluster_id, data)
    _wake(ctx)
    return RedirectResponse(
        f"{BASE}/clusters/{cluster_id}?done=cluster", status_code=status.HTTP_303_SEE_OTHER
    )


# The case page --------------------------------------------------------------------------------


def investigation_query(db: Session, case: ReportCase) -> dict[str, Any] | None:
    """The New investigation form's query for a case: its indicators as one `any` group
    (`reports.autoinvestigate.build_query`), over the auto-investigation's days, with the
    start day as a date (the form's date field shows it)."""
    settings = load_report_settings(db)
    days = settings.auto_investigation.days
    document = build_query(case, days=days, own_domains=effective_own_domains(db, settings))
    if document is None:
        return None
    start = datetime.now(UTC).date() - timedelta(days=days)
    document["received"] = {"after": start.isoformat()}
    return document


def _indicators(view: CaseView) -> list[dict[str, Any]]:
    found = (view.analysis or {}).get("indicators") or []
    rows = [i for i in found if isinstance(i, dict)]
    return sorted(rows, key=lambda i: -int(i.get("score") or 0))


def _reporter_fidelity(view: CaseView) -> dict[str, str]:
    """How each reporter's copy arrived (from the timeline's "reported" events)."""
    fidelity: dict[str, str] = {}
    for event in view.timeline:
        if event.kind == "reported":
            address = str(event.detail.get("reporter") or "")
            fidelity.setdefault(address, str(event.detail.get("fidelity") or view.fidelity))
    return fidelity


def _message(ctx: AppContext, case: ReportCase) -> tuple[ParsedReport | None, str | None]:
    try:
        return reports_service.parsed_message(case, box=ctx.box), None
    except ReportParseError as exc:
        return None, exc.message


def _case_page(
    request: Request,
    who: Caller,
    ctx: AppContext,
    db: Session,
    case_id: str,
    *,
    tab: str = "summary",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    case = _case_record(db, case_id)
    view = reports_service.case_view(db, case)
    tab = tab if tab in TAB_NAMES else "summary"
    message: ParsedReport | None = None
    message_error: str | None = None
    if tab in ("headers", "urls", "attachments"):
        message, message_error = _message(ctx, case)
    query = investigation_query(db, case) if tab == "summary" else None
    return page(
        request,
        who,
        "reports/case.html",
        {
            "case": view,
            "tab": tab,
            "tabs": TABS,
            "message": message,
            "message_error": message_error,
            "indicators": _indicators(view),
            "evidence": [str(e) for e in (view.analysis or {}).get("evidence") or []],
            "analysis_warnings": [str(w) for w in (view.analysis or {}).get("warnings") or []],
            "reporter_fidelity": _reporter_fidelity(view),
            "statuses": STATUSES,
            "verdicts": VERDICTS,
            # Compact in the hidden field (one line survives any form encoding), indented to read.
            "investigate_query": orjson.dumps(query).decode() if query else None,
            "investigate_pretty": (
                orjson.dumps(query, option=orjson.OPT_INDENT_2).decode() if query else None
            ),
            "investigate_name": (
                "Reported: " + (" ".join(view.subject.split())[:150] or "(no subject)")
            ),
            "error": error,
            "notice": _notice(request),
            "preview_format": "text" if request.query_params.get("format") == "text" else "html",
        },
        status_code=status_code,
    )


@router.get(BASE + "/{case_id}", response_class=HTMLResponse)
def case_page(
    request: Request,
    who: Who,
    ctx: Ctx,
    db: Db,
    case_id: str,
    tab: Annotated[str, Query(max_length=20)] = "summary",
) -> HTMLResponse:
    """A case: summary and evidence, headers, preview, links, attachments, reporters, timeline."""
    ensure(who.role, "report.read")
    return _case_page(request, who, ctx, db, case_id, tab=tab)


# Preview: the body as its own sandboxed document --------------------------------------------

# Attributes the link-removing pass keeps; the preview's own sanitiser then decides for real.
_PREVIEW_ATTRIBUTES = {
    "title", "dir", "lang", "style", "src", "alt", "width", "height", "align", "valign",
    "border", "bgcolor", "color", "face", "size", "cellpadding", "cellspacing", "summary",
    "colspan", "rowspan", "nowrap", "scope", "noshade", "span", "start", "type", "cite",
    "datetime",
}  # fmt: skip
_DROPPED_WITH_CONTENT = {"script", "style", "title", "head", "template", "noscript", "textarea"}


def without_links(email_html: str) -> str:
    """The email's HTML with every link target removed (the words stay, as text).

    A link inside the preview would navigate the frame to the sender's site; the Links tab
    lists every target as text instead. `preview.sanitize_email_html` runs on the result.
    """
    return nh3.clean(
        email_html[: message_preview.MAX_PREVIEW_CHARS],
        tags=set(nh3.ALLOWED_TAGS) | {"font", "center", "strike", "tt"},
        clean_content_tags=_DROPPED_WITH_CONTENT,
        attributes={"*": _PREVIEW_ATTRIBUTES},  # no href
        url_schemes={"data"},
        strip_comments=True,
        link_rel=None,
    )


def _text_document(text: str) -> str:
    return f'<pre style="white-space: pre-wrap">{html.escape(text, quote=True)}</pre>'


def _preview_source(
    ctx: AppContext, request: Request, who: Caller, case_id: str, body_format: str
) -> tuple[str | None, str]:
    """(the HTML body or None, the text body) of the case, the reading audited."""
    with write_session(ctx.sessions) as db:
        case = _case_record(db, case_id)
        message, problem = _message(ctx, case)
        audit_service.record(
            db,
            **audit_fields(request, who),
            operation="report.preview",
            entity_type="report_case",
            entity_id=str(case.id),
            after={"format": body_format},
            outcome="ok" if message is not None else "failed",
        )
        if message is None:
            return None, problem or "The message could not be read."
        return message.html, message.text


@router.get(BASE + "/{case_id}/body")
async def case_body(
    request: Request,
    who: Who,
    ctx: Ctx,
    case_id: str,
    format_: Annotated[str, Query(alias="format")] = "html",
) -> Response:
    """The reported message's body: sanitised, without links, scriptless (preview CSP)."""
    ensure(who.role, "report.read")
    body_format = format_ if format_ in PREVIEW_FORMATS else "html"
    email_html, text = await run_in_threadpool(
        _preview_source, ctx, request, who, case_id, body_format
    )
    if body_format == "text" or not email_html:
        return message_preview.preview_response(_text_document(text))
    return message_preview.preview_response(without_links(email_html))


# The attachment archive -----------------------------------------------------------------------


@router.get(BASE + "/{case_id}/attachments/{sha256}")
def case_attachment(request: Request, who: Who, ctx: Ctx, case_id: str, sha256: str) -> Response:
    """One attachment in a zip encrypted with AES-256 and the password "infected" (audited)."""
    ensure(who.role, "report.edit")
    wanted = sha256.strip().lower()
    if len(wanted) != 64 or any(c not in "0123456789abcdef" for c in wanted):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No attachment with that SHA-256.")
    # The download is audited, so this GET writes: it takes the write lock up front.
    with write_session(ctx.sessions) as db:
        case = _case_record(db, case_id)
        try:
            data = actions.download_attachment(
                db, case=case, sha256=wanted, box=ctx.box, actor=actor_of(request, who)
            )
        except (reports_service.ReportsNotFound, ReportParseError) as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{wanted}.zip"',
            "X-Archive-Password": "infected",
        },
    )


# Case actions ---------------------------------------------------------------------------------


async def _action_form(request: Request, who: Caller) -> FormData:
    ensure(who.role, "report.edit")
    _from_this_site(request)
    return await read_form(request)


def _done(case_id: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{BASE}/{case_id}?done={done}", status_code=status.HTTP_303_SEE_OTHER)


async def _refuse(
    request: Request, who: Caller, ctx: AppContext, case_id: str, message: str, status_code: int
) -> HTMLResponse:
    def show() -> HTMLResponse:
        with ctx.sessions.begin() as db:
            return _case_page(
                request, who, ctx, db, case_id, error=message, status_code=status_code
            )

    return await run_in_threadpool(show)


def _set_verdict(
    ctx: AppContext, request: Request, who: Caller, case_id: str, data: VerdictChange
) -> None:
    with write_session(ctx.sessions) as db:
        case = _case_record(db, case_id, lock=True)
        actions.set_verdict(db, case=case, data=data, actor=actor_of(request, who))


@router.post(BASE + "/{case_id}/verdict")
async def case_verdict(request: Request, who: Who, ctx: Ctx, case_id: str) -> Response:
    """Set the verdict (kept over re-analyses); the reporters are told unless unticked."""
    form = await _action_form(request, who)
    try:
        data = VerdictChange(
            verdict=form_field(form, "verdict", max_length=20),  # type: ignore[arg-type]
            message=form_field(form, "message", max_length=10_000) or None,
            notify=form.get("notify") == "1",
        )
    except ValidationError as exc:
        return await _refuse(request, who, ctx, case_id, _first_error(exc), 422)
    await run_in_threadpool(_set_verdict, ctx, request, who, case_id, data)
    _wake(ctx)
    return _done(case_id, "verdict")


def _update(ctx: AppContext, request: Request, who: Caller, case_id: str, data: CaseUpdate) -> None:
    with write_session(ctx.sessions) as db:
        case = _case_record(db, case_id, lock=True)
        actions.update_case(db, case=case, data=data, actor=actor_of(request, who))


@router.post(BASE + "/{case_id}/update")
async def case_update(request: Request, who: Who, ctx: Ctx, case_id: str) -> Response:
    """Status (`status`) and tags (`tags`, comma-separated, replacing the case's tags)."""
    form = await _action_form(request, who)
    changes: dict[str, Any] = {}
    if "status" in form:
        changes["status"] = form_field(form, "status", max_length=20)
    if "tags" in form:
        changes["tags"] = _split_tags(form_field(form, "tags", max_length=MAX_TAG_FIELD))
    if not changes:
        return await _refuse(request, who, ctx, case_id, "Choose a status or edit the tags.", 422)
    try:
        data = CaseUpdate(**changes)
    except ValidationError as exc:
        return await _refuse(request, who, ctx, case_id, _first_error(exc), 422)
    await run_in_threadpool(_update, ctx, request, who, case_id, data)
    return _done(case_id, "updated")


def _note(ctx: AppContext, request: Request, who: Caller, case_id: str, data: NoteCreate) -> None:
    with write_session(ctx.sessions) as db:
        case = _case_record(db, case_id)
        actions.add_note(db, case=case, text=data.text, actor=actor_of(request, who))


@router.post(BASE + "/{case_id}/notes")
async def case_note(request: Request, who: Who, ctx: Ctx, case_id: str) -> Response:
    """Add a note to the case's timeline."""
    form = await _action_form(request, who)
    try:
        data = NoteCreate(text=form_field(form, "text", max_length=20_000))
    except ValidationError:
        return await _refuse(
            request, who, ctx, case_id, "Write the note (up to 10,000 characters).", 422
        )
    await run_in_threadpool(_note, ctx, request, who, case_id, data)
    return _done(case_id, "note")


def _notify(
    ctx: AppContext, request: Request, who: Caller, case_id: str, data: NotifyRequest
) -> str | None:
    with write_session(ctx.sessions) as db:
        case = _case_record(db, case_id)
        try:
            actions.request_notification(
                db, case=case, message=data.message, actor=actor_of(request, who)
            )
        except reports_service.ReportsRejected as exc:
            return exc.message
        return None


@router.post(BASE + "/{case_id}/notify")
async def case_notify(request: Request, who: Who, ctx: Ctx, case_id: str) -> Response:
    """Tell every reporter the current verdict again (with an optional message)."""
    form = await _action_form(request, who)
    try:
        data = NotifyRequest(message=form_field(form, "message", max_length=10_000) or None)
    except ValidationError as exc:
        return await _refuse(request, who, ctx, case_id, _first_error(exc), 422)
    refused = await run_in_threadpool(_notify, ctx, request, who, case_id, data)
    if refused is not None:
        return await _refuse(request, who, ctx, case_id, refused, status.HTTP_409_CONFLICT)
    _wake(ctx)
    return _done(case_id, "notify")


def _reanalyse(ctx: AppContext, request: Request, who: Caller, case_id: str) -> None:
    with write_session(ctx.sessions) as db:
        case = _case_record(db, case_id)
        actions.reanalyse(db, case=case, actor=actor_of(request, who))


@router.post(BASE + "/{case_id}/reanalyse")
async def case_reanalyse(request: Request, who: Who, ctx: Ctx, case_id: str) -> Response:
    """Analyse the message again in the background (new lists, rules or engines)."""
    await _action_form(request, who)
    await run_in_threadpool(_reanalyse, ctx, request, who, case_id)
    _wake(ctx)
    return _done(case_id, "reanalyse")


__all__ = ["bounded_report_upload", "investigation_query", "router", "without_links"]
