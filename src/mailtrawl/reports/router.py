"""REST API for reported emails: `/api/v1/reports` (intake, cases, clusters) and their settings.

`POST /api/v1/reports` takes an .eml or .msg as a multipart `file` field or as the raw body
(`message/rfc822`, `application/vnd.ms-outlook`, `application/octet-stream`), from a signed-in
analyst or administrator, an API token of those roles, or a **reporter token** (`mtr_…`,
which can do nothing else). The reporter's address comes in the `Reporter` header or the
`reporter` form field; with a reporter token it is required and recorded as claimed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mailtrawl.accounts.models import Role
from mailtrawl.analysis.errors import ReportParseError, ReportTooLarge
from mailtrawl.analysis.intel import IntelFormatError
from mailtrawl.analysis.parsing import MAX_REPORT_BYTES
from mailtrawl.analysis.yara_engine import YaraCompileError
from mailtrawl.audit.service import Actor
from mailtrawl.reports import actions, service
from mailtrawl.reports.intake import InvalidReporter
from mailtrawl.reports.models import Channel
from mailtrawl.reports.notify import TemplateRejected
from mailtrawl.reports.schemas import (
    CaseSort,
    CaseSummary,
    CaseUpdate,
    CaseView,
    ClusterAction,
    ClusterView,
    IntakeView,
    IntelListView,
    IssuedReporterToken,
    NoteCreate,
    NotifyRequest,
    Page,
    ReporterTokenCreate,
    ReporterTokenView,
    SettingsUpdate,
    SettingsView,
    StatusName,
    TemplateUpdate,
    TemplateView,
    VerdictChange,
    YaraRuleCreate,
    YaraRuleView,
)
from mailtrawl.reports.settings import ReportSettingsRejected, settings_view
from mailtrawl.storage.engine import write_session
from mailtrawl.web.deps import (
    AppContext,
    Caller,
    actor_of,
    caller,
    context,
    db_session,
    require,
)

router = APIRouter(prefix="/reports", tags=["reports"])

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
Analyst = Annotated[Caller, require(Role.ANALYST)]
Admin = Annotated[Caller, require(Role.ADMIN)]

MULTIPART_SLACK = 64 * 1024  # boundaries and small fields around the file
RAW_TYPES = ("message/rfc822", "application/vnd.ms-outlook", "application/octet-stream")
MAX_INTEL_UPLOAD = 64 * 1024 * 1024
TOO_LARGE = (
    f"The reported message is larger than {MAX_REPORT_BYTES} bytes (50 MB); send the message "
    "without its largest attachments, or analyse them separately."
)


class _TooLarge(Exception):
    pass


class _InMemoryParser(MultiPartParser):
    # Customer email stays in memory (bounded by the size check), never in a temporary file.
    spool_max_size = MAX_REPORT_BYTES + MULTIPART_SLACK


def _wake(ctx: AppContext) -> None:
    if ctx.runner is not None:
        ctx.runner.wake()


def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, getattr(exc, "message", str(exc)))


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


# Intake -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submitter:
    """Who submits a report: a user or API token (analyst+), or a reporter token."""

    actor: str
    caller: Caller | None
    reporter_token_id: uuid.UUID | None = None


def _reporter_token(ctx: AppContext, token: str) -> Submitter:
    with write_session(ctx.sessions) as session:
        record = service.resolve_reporter_token(session, token=token)
        if record is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "The reporter token is unknown, expired or revoked.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        service.note_reporter_token_use(session, token_id=record.id)
        return Submitter(
            actor=f"reporter-token:{record.name}", caller=None, reporter_token_id=record.id
        )


async def submitter(request: Request, ctx: Ctx) -> Submitter:
    """A reporter token (`mtr_…`), else the usual caller with at least the analyst role."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token.startswith(service.REPORTER_TOKEN_PREFIX):
        return await run_in_threadpool(_reporter_token, ctx, token)
    who = await caller(request, ctx)
    if not who.role.at_least(Role.ANALYST):
        holder = "the token has" if who.via == "token" else "you have"
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"This needs the {Role.ANALYST.value} role; {holder} {who.role.value}.",
        )
    return Submitter(actor=who.username, caller=who)


async def _bounded(request: Request, limit: int) -> Any:
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        yield chunk


async def _read_upload(request: Request) -> tuple[bytes, str | None, str | None]:
    """(message bytes, file name, reporter field) from a multipart or raw body."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_REPORT_BYTES + MULTIPART_SLACK:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        parser = _InMemoryParser(
            request.headers,
            _bounded(request, MAX_REPORT_BYTES + MULTIPART_SLACK),
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
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _unprocessable("Send the message as the multipart field 'file'.")
        data = await upload.read(MAX_REPORT_BYTES + 1)
        await upload.close()
        reporter = form.get("reporter")
        return data, upload.filename, reporter if isinstance(reporter, str) else None
    if content_type in RAW_TYPES:
        chunks = []
        try:
            async for chunk in _bounded(request, MAX_REPORT_BYTES):
                chunks.append(chunk)
        except _TooLarge:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE) from None
        return b"".join(chunks), None, None
    raise HTTPException(
        status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        "Send the message as multipart/form-data (field 'file') or as a message/rfc822 body.",
    )


def _intake(
    ctx: AppContext,
    who: Submitter,
    raw: bytes,
    filename: str | None,
    reporter: str | None,
    request: Request,
) -> IntakeView:
    by_token = who.reporter_token_id is not None
    with write_session(ctx.sessions) as session:
        actor = (
            actor_of(request, who.caller)
            if who.caller is not None
            else Actor(
                name=who.actor,
                role="reporter",
                source_ip=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
            )
        )
        result = actions.submit(
            session,
            box=ctx.box,
            raw=raw,
            filename=filename,
            channel=Channel.REPORTER_TOKEN if by_token else Channel.UPLOAD,
            actor=actor,
            reporter=reporter,
            claimed=by_token,
        )
        return IntakeView(
            case_id=result.case.id,
            created=result.created,
            reporter=result.reporter,
            fidelity=result.fidelity,
            status=result.case.status,
            verdict=result.case.verdict,
            warnings=result.warnings,
        )


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def submit(
    who: Annotated[Submitter, Depends(submitter)], request: Request, ctx: Ctx
) -> IntakeView:
    """Submit a reported message (.eml or .msg); it is analysed in the background."""
    raw, filename, field = await _read_upload(request)
    if not raw.strip():
        raise _unprocessable("The message is empty.")
    reporter = field or request.headers.get("reporter") or request.headers.get("x-reporter")
    if who.reporter_token_id is not None and not (reporter or "").strip():
        raise _unprocessable(
            "A reporter token must say who reported the message: the 'Reporter' header or the "
            "'reporter' form field."
        )
    try:
        view = await run_in_threadpool(_intake, ctx, who, raw, filename, reporter, request)
    except ReportTooLarge:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, TOO_LARGE) from None
    except InvalidReporter as exc:
        raise _unprocessable(exc.message) from None
    except ReportParseError as exc:
        raise _unprocessable(exc.message) from None
    _wake(ctx)
    return view


# Settings, templates, intel lists, YARA rules, reporter tokens, clusters (before /{case_id})


@router.get("/settings", dependencies=[require(Role.ADMIN)])
def get_settings(db: Db, ctx: Ctx) -> SettingsView:
    """Intake and analysis settings; secrets appear only as hints."""
    return settings_view(db, ctx.box)


@router.patch("/settings")
def patch_settings(
    who: Admin, data: SettingsUpdate, db: Db, ctx: Ctx, request: Request
) -> SettingsView:
    """Change some settings; sections given are merged field by field."""
    try:
        actions.update_settings(db, box=ctx.box, data=data, actor=actor_of(request, who))
    except ReportSettingsRejected as exc:
        raise _unprocessable(exc.message) from None
    return settings_view(db, ctx.box)


@router.get("/templates", dependencies=[require(Role.ADMIN)])
def get_templates(db: Db) -> list[TemplateView]:
    """The notification templates (the default, and any per verdict)."""
    return service.list_templates(db)


@router.put("/templates/{verdict}")
def put_template(
    who: Admin, verdict: str, data: TemplateUpdate, db: Db, request: Request
) -> list[TemplateView]:
    try:
        actions.save_template(
            db,
            verdict=verdict,
            subject=data.subject,
            body=data.body,
            actor=actor_of(request, who),
        )
    except service.ReportsNotFound as exc:
        raise _not_found(exc) from None
    except TemplateRejected as exc:
        raise _unprocessable(exc.message) from None
    return service.list_templates(db)


@router.delete("/templates/{verdict}")
def delete_template(who: Admin, verdict: str, db: Db, request: Request) -> list[TemplateView]:
    try:
        actions.delete_template(db, verdict=verdict, actor=actor_of(request, who))
    except service.ReportsNotFound as exc:
        raise _not_found(exc) from None
    return service.list_templates(db)


@router.get("/intel-lists", dependencies=[require(Role.ADMIN)])
def get_intel_lists(db: Db) -> list[IntelListView]:
    return service.list_intel_lists(db)


@router.post("/intel-lists", status_code=status.HTTP_201_CREATED)
async def post_intel_list(who: Admin, request: Request, ctx: Ctx) -> IntelListView:
    """Import a list (multipart `file`, optional `name` and `kind`: csv, lines, stix, misp)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_INTEL_UPLOAD + MULTIPART_SLACK:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "The list is larger than 64 MB.")
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Send the list as the multipart field 'file'."
        )
    parser = _InMemoryParser(
        request.headers,
        _bounded(request, MAX_INTEL_UPLOAD + MULTIPART_SLACK),
        max_files=1,
        max_fields=8,
        max_part_size=64 * 1024,
    )
    try:
        form = await parser.parse()
    except _TooLarge:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, "The list is larger than 64 MB."
        ) from None
    except MultiPartException as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, exc.message) from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _unprocessable("Send the list as the multipart field 'file'.")
    data = await upload.read(MAX_INTEL_UPLOAD + 1)
    name_field = form.get("name")
    kind_field = form.get("kind")
    name = (name_field if isinstance(name_field, str) else "") or upload.filename or "intel"
    kind = kind_field if isinstance(kind_field, str) and kind_field else None

    def store() -> IntelListView:
        with write_session(ctx.sessions) as session:
            record = actions.import_intel_list(
                session,
                data=data,
                name=name.strip()[:200],
                kind=kind,
                actor=actor_of(request, who),
            )
            return service.intel_view(record)

    try:
        return await run_in_threadpool(store)
    except (IntelFormatError, service.ReportsRejected) as exc:
        raise _unprocessable(str(exc)) from None


@router.delete("/intel-lists/{list_id}")
def delete_intel_list(who: Admin, list_id: str, db: Db, request: Request) -> IntelListView:
    try:
        return actions.delete_intel_list(db, ref=list_id, actor=actor_of(request, who))
    except service.ReportsNotFound as exc:
        raise _not_found(exc) from None


@router.get("/yara-rules", dependencies=[require(Role.ADMIN)])
def get_yara_rules(db: Db) -> list[YaraRuleView]:
    return service.list_yara_rules(db)


@router.post("/yara-rules", status_code=status.HTTP_201_CREATED)
def post_yara_rules(who: Admin, data: YaraRuleCreate, db: Db, request: Request) -> YaraRuleView:
    """Store a rule set (replacing one of the same name) once it compiles."""
    try:
        return actions.save_yara_rules(
            db, name=data.name, source=data.source, actor=actor_of(request, who)
        )
    except YaraCompileError as exc:
        raise _unprocessable(str(exc)) from None


@router.delete("/yara-rules/{rule_id}")
def delete_yara_rules(who: Admin, rule_id: str, db: Db, request: Request) -> YaraRuleView:
    try:
        return actions.delete_yara_rules(db, ref=rule_id, actor=actor_of(request, who))
    except service.ReportsNotFound as exc:
        raise _not_found(exc) from None


@router.get("/reporter-tokens", dependencies=[require(Role.ADMIN)])
def get_reporter_tokens(db: Db) -> list[ReporterTokenView]:
    return service.list_reporter_tokens(db)


@router.post("/reporter-tokens", status_code=status.HTTP_201_CREATED)
def post_reporter_token(
    who: Admin, data: ReporterTokenCreate, db: Db, request: Request
) -> IssuedReporterToken:
    """A token for an add-in or mail gateway; it can only submit reports. Shown once."""
    return actions.create_reporter_token(
        db,
        name=data.name,
        expires_in=timedelta(days=data.expires_in_days) if data.expires_in_days else None,
        actor=actor_of(request, who),
    )


@router.delete("/reporter-tokens/{token_id}")
def delete_reporter_token(who: Admin, token_id: str, db: Db, request: Request) -> ReporterTokenView:
    try:
        record = actions.revoke_reporter_token(db, ref=token_id, actor=actor_of(request, who))
    except service.ReportsNotFound as exc:
        raise _not_found(exc) from None
    return service.reporter_token_view(record)


@router.get("/clusters", dependencies=[require(Role.VIEWER)])
def get_clusters(
    db: Db,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[ClusterView]:
    """Clusters of at least two cases, most recently active first."""
    return service.list_clusters(db, limit=limit, offset=offset)


@router.get("/clusters/{cluster_id}", dependencies=[require(Role.VIEWER)])
def get_cluster(cluster_id: str, db: Db) -> ClusterView:
    try:
        return service.cluster_view(db, service.get_cluster(db, ref=cluster_id))
    except service.ClusterNotFound as exc:
        raise _not_found(exc) from None


@router.post("/clusters/{cluster_id}/actions")
def post_cluster_action(
    who: Analyst, cluster_id: str, data: ClusterAction, db: Db, ctx: Ctx, request: Request
) -> ClusterView:
    """Verdict, status, tags or notification for every case of the cluster."""
    try:
        cluster = service.get_cluster(db, ref=cluster_id)
    except service.ClusterNotFound as exc:
        raise _not_found(exc) from None
    actions.apply_to_cluster(db, cluster=cluster, data=data, actor=actor_of(request, who))
    view = service.cluster_view(db, cluster)
    db.commit()
    _wake(ctx)
    return view


# Cases --------------------------------------------------------------------------------------


@router.get("", dependencies=[require(Role.VIEWER)])
def list_cases(
    db: Db,
    status_: Annotated[list[StatusName] | None, Query(alias="status")] = None,
    verdict: Annotated[list[str] | None, Query(description="a verdict, or 'pending'")] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    cluster: Annotated[uuid.UUID | None, Query()] = None,
    reporter: Annotated[str | None, Query(max_length=320)] = None,
    sender: Annotated[str | None, Query(max_length=320)] = None,
    q: Annotated[str | None, Query(max_length=200, description="in subject or sender")] = None,
    after: Annotated[datetime | None, Query(description="last reported at or after")] = None,
    before: Annotated[datetime | None, Query(description="last reported before")] = None,
    sort: CaseSort = "-last_reported",
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[CaseSummary]:
    """The queue of cases, filtered, sorted and paged."""
    return service.list_cases(
        db,
        filters=service.CaseFilters(
            status=status_,
            verdict=verdict,
            tag=tag,
            cluster_id=cluster,
            reporter=reporter,
            sender=sender,
            text=q,
            reported_after=after,
            reported_before=before,
        ),
        sort=sort,
        limit=limit,
        offset=offset,
    )


def _case(db: Session, case_id: str, *, lock: bool = False) -> Any:
    try:
        return service.get_case(db, ref=case_id, lock=lock)
    except service.CaseNotFound as exc:
        raise _not_found(exc) from None


@router.get("/{case_id}", dependencies=[require(Role.VIEWER)])
def get_case(case_id: str, db: Db) -> CaseView:
    """A case: reporters, verdict and evidence, indicators, timeline."""
    return service.case_view(db, _case(db, case_id))


@router.patch("/{case_id}")
def patch_case(who: Analyst, case_id: str, data: CaseUpdate, db: Db, request: Request) -> CaseView:
    """Status and tags."""
    case = _case(db, case_id, lock=True)
    actions.update_case(db, case=case, data=data, actor=actor_of(request, who))
    return service.case_view(db, case)


@router.post("/{case_id}/verdict")
def post_verdict(
    who: Analyst, case_id: str, data: VerdictChange, db: Db, ctx: Ctx, request: Request
) -> CaseView:
    """Set the verdict (kept over re-analyses); reporters are told again unless notify=false."""
    case = _case(db, case_id, lock=True)
    actions.set_verdict(db, case=case, data=data, actor=actor_of(request, who))
    view = service.case_view(db, case)
    db.commit()
    _wake(ctx)
    return view


@router.post("/{case_id}/notes", status_code=status.HTTP_201_CREATED)
def post_note(who: Analyst, case_id: str, data: NoteCreate, db: Db, request: Request) -> CaseView:
    case = _case(db, case_id)
    actions.add_note(db, case=case, text=data.text, actor=actor_of(request, who))
    return service.case_view(db, case)


@router.post("/{case_id}/reanalyse", status_code=status.HTTP_202_ACCEPTED)
def post_reanalyse(who: Analyst, case_id: str, db: Db, ctx: Ctx, request: Request) -> CaseView:
    """Analyse again in the background (new lists, rules or engines may say more)."""
    case = _case(db, case_id)
    actions.reanalyse(db, case=case, actor=actor_of(request, who))
    view = service.case_view(db, case)
    db.commit()
    _wake(ctx)
    return view


@router.post("/{case_id}/notify", status_code=status.HTTP_202_ACCEPTED)
def post_notify(
    who: Analyst, case_id: str, data: NotifyRequest, db: Db, ctx: Ctx, request: Request
) -> CaseView:
    """Tell every reporter the current verdict again."""
    case = _case(db, case_id)
    try:
        actions.request_notification(
            db, case=case, message=data.message, actor=actor_of(request, who)
        )
    except service.ReportsRejected as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
    view = service.case_view(db, case)
    db.commit()
    _wake(ctx)
    return view


@router.get("/{case_id}/attachments/{sha256}", response_class=Response)
def get_attachment(who: Analyst, case_id: str, sha256: str, ctx: Ctx, request: Request) -> Response:
    """One attachment in a zip encrypted with the password "infected" (AES-256)."""
    # A download is audited, so this GET writes: it takes the write lock up front.
    with write_session(ctx.sessions) as session:
        case = _case(session, case_id)
        try:
            data = actions.download_attachment(
                session, case=case, sha256=sha256, box=ctx.box, actor=actor_of(request, who)
            )
        except service.ReportsNotFound as exc:
            raise _not_found(exc) from None
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{sha256.lower()[:64]}.zip"',
            "X-Archive-Password": "infected",
        },
    )


__all__ = ["router"]
