"""Reported-email cases: list, read, judge, tag, annotate, re-analyse, notify; clusters;
reporter tokens; notification templates; threat-intel lists and YARA rule sets.

Keyword-only functions over a SQLAlchemy session, in the caller's transaction (they flush,
never commit); the API, the CLI and the dashboard call these. State changes are audited by
the caller with the `before`/`after` these functions return, except where noted.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import pyzipper  # type: ignore[import-untyped]
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, defer

from mailtrawl.analysis.intel import IntelFormatError, load_intel_file
from mailtrawl.analysis.model import ParsedReport
from mailtrawl.analysis.parsing import parse_report
from mailtrawl.analysis.yara_engine import compile_yara_rules
from mailtrawl.errors import MailtrawlError
from mailtrawl.reports import notify
from mailtrawl.reports.jobs import enqueue_analysis, enqueue_notification
from mailtrawl.reports.models import (
    CaseEvent,
    CaseReporter,
    IntelListRecord,
    NotificationTemplate,
    ReportCase,
    ReportCluster,
    ReporterToken,
    VerdictSource,
    YaraRuleRecord,
)
from mailtrawl.reports.schemas import (
    CaseSort,
    CaseSummary,
    CaseUpdate,
    CaseView,
    ClusterAction,
    ClusterView,
    EventView,
    IntelListView,
    IssuedReporterToken,
    Page,
    ReporterTokenView,
    ReporterView,
    TemplateView,
    YaraRuleView,
)
from mailtrawl.reports.settings import load_report_settings
from mailtrawl.reports.timeline import add_event
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.secrets import SecretBox

MAX_PAGE = 500
MAX_TIMELINE = 1_000
ARCHIVE_PASSWORD = b"infected"  # the industry convention for sharing malware samples
REPORTER_TOKEN_PREFIX = "mtr_"  # noqa: S105 - a label, not a secret
TEMPLATE_KEYS = ("default", "undetected", "suspicious", "phishing", "malicious", "simulation")


class CaseNotFound(MailtrawlError):
    default_message = "No such case; `mailtrawl reports list` shows them."


class ClusterNotFound(MailtrawlError):
    default_message = "No such cluster."


class ReportsNotFound(MailtrawlError):
    """A reporter token, template, list or rule set that does not exist."""


class ReportsRejected(MailtrawlError):
    """A request that breaks a rule (the message says which)."""


# Cases --------------------------------------------------------------------------------------


def get_case(session: Session, *, ref: str | uuid.UUID, lock: bool = False) -> ReportCase:
    try:
        key = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        raise CaseNotFound(f"'{ref}' is not a case id.") from None
    record = session.get(ReportCase, key, with_for_update=lock)
    if record is None:
        raise CaseNotFound(f"No case {ref}; `mailtrawl reports list` shows them.")
    return record


def summary(case: ReportCase) -> CaseSummary:
    return CaseSummary(
        id=case.id,
        subject=case.subject,
        sender=case.sender_address,
        sender_name=case.sender_name,
        status=case.status,
        verdict=case.verdict,
        verdict_source=case.verdict_source,
        score=case.score,
        fidelity=case.fidelity,
        tags=list(case.tags or []),
        cluster_id=case.cluster_id,
        reporter_count=case.reporter_count,
        first_reported_at=case.first_reported_at,
        last_reported_at=case.last_reported_at,
        analysed_at=case.analysed_at,
        investigation_ids=list(case.investigation_ids or []),
    )


def case_view(session: Session, case: ReportCase) -> CaseView:
    """Everything the case page shows: reporters, analysis, indicators, timeline."""
    reporters = session.scalars(
        select(CaseReporter)
        .where(CaseReporter.case_id == case.id)
        .order_by(CaseReporter.reported_at, CaseReporter.id)
    ).all()
    events = session.scalars(
        select(CaseEvent)
        .where(CaseEvent.case_id == case.id)
        .order_by(CaseEvent.at, CaseEvent.id)
        .limit(MAX_TIMELINE)
    ).all()
    return CaseView(
        **summary(case).model_dump(),
        internet_message_id=case.internet_message_id,
        sent_at=case.sent_at,
        analysis=case.analysis,
        analysis_verdict=case.analysis_verdict,
        analysis_error=case.analysis_error,
        iocs=dict(case.iocs or {}),
        raw_size=case.raw_size,
        raw_sha256=case.raw_sha256,
        reporters=[
            ReporterView(
                address=r.address,
                name=r.name,
                channel=r.channel,
                claimed=r.claimed,
                submitted_by=r.submitted_by,
                reported_at=r.reported_at,
                last_reported_at=r.last_reported_at,
                report_count=r.report_count,
                notified_at=r.notified_at,
                notified_verdict=r.notified_verdict,
            )
            for r in reporters
        ],
        timeline=[
            EventView(
                id=e.id, at=e.at, kind=e.kind, actor=e.actor, message=e.message, detail=e.detail
            )
            for e in events
        ],
    )


_SORTS: dict[str, tuple[Any, ...]] = {
    "last_reported": (ReportCase.last_reported_at,),
    "first_reported": (ReportCase.first_reported_at,),
    "score": (ReportCase.score,),
    "reporters": (ReportCase.reporter_count,),
    "subject": (ReportCase.subject_key,),
}


@dataclass(frozen=True)
class CaseFilters:
    """The queue's filters; None means no filter."""

    status: Sequence[str] | None = None
    verdict: Sequence[str] | None = None  # "pending" selects cases not analysed yet
    tag: str | None = None
    cluster_id: uuid.UUID | None = None
    reporter: str | None = None
    sender: str | None = None
    text: str | None = None  # in the subject or the sender
    reported_after: datetime | None = None
    reported_before: datetime | None = None


# What a queue row never reads: the sealed message and the large JSON columns.
_QUEUE_DEFERRED = (
    defer(ReportCase.raw),
    defer(ReportCase.analysis),
    defer(ReportCase.iocs),
    defer(ReportCase.body_signature),
)


def _filtered(filters: CaseFilters) -> Select[Any]:
    query = select(ReportCase).options(*_QUEUE_DEFERRED)
    conditions: list[ColumnElement[bool]] = []
    if filters.status:
        conditions.append(ReportCase.status.in_(list(filters.status)))
    if filters.verdict:
        wanted = [v for v in filters.verdict if v != "pending"]
        clause: ColumnElement[bool] = ReportCase.verdict.in_(wanted)
        if "pending" in filters.verdict:
            clause = or_(clause, ReportCase.verdict.is_(None))
        conditions.append(clause)
    if filters.cluster_id:
        conditions.append(ReportCase.cluster_id == filters.cluster_id)
    if filters.sender:
        conditions.append(ReportCase.sender_address == filters.sender.strip().lower())
    if filters.text:
        needle = f"%{_escape_like(filters.text.strip().lower()[:200])}%"
        conditions.append(
            or_(
                ReportCase.subject_key.like(needle, escape="\\"),
                ReportCase.sender_address.like(needle, escape="\\"),
            )
        )
    if filters.reporter:
        conditions.append(
            ReportCase.id.in_(
                select(CaseReporter.case_id).where(
                    CaseReporter.address == filters.reporter.strip().lower()
                )
            )
        )
    if filters.reported_after:
        conditions.append(ReportCase.last_reported_at >= filters.reported_after)
    if filters.reported_before:
        conditions.append(ReportCase.last_reported_at < filters.reported_before)
    if conditions:
        query = query.where(*conditions)
    return query


def _tagged(session: Session, tag: str) -> ColumnElement[bool]:
    """Cases whose JSON list of tags holds `tag`, decided by the database."""
    if session.get_bind().dialect.name == "postgresql":
        wanted = func.jsonb_build_array(cast(literal(tag), String))
        return ReportCase.tags.op("@>")(wanted)
    each = func.json_each(ReportCase.tags).table_valued("value")
    return exists(select(1).select_from(each).where(each.c.value == tag))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_cases(
    session: Session,
    *,
    filters: CaseFilters | None = None,
    sort: CaseSort = "-last_reported",
    limit: int = 50,
    offset: int = 0,
) -> Page[CaseSummary]:
    """A page of the queue, filtered and sorted (ties broken by id, for stable paging)."""
    filters = filters or CaseFilters()
    limit = max(1, min(limit, MAX_PAGE))
    query = _filtered(filters)
    if filters.tag:
        query = query.where(_tagged(session, filters.tag))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    descending = sort.startswith("-")
    columns = _SORTS[sort.lstrip("-")]
    order = [c.desc() if descending else c.asc() for c in (*columns, ReportCase.id)]
    rows = list(session.scalars(query.order_by(*order).limit(limit).offset(max(0, offset))))
    return Page(total=total, offset=offset, limit=limit, items=[summary(c) for c in rows])


@dataclass(frozen=True)
class QueueDetails:
    """What the dashboard's queue shows beside a case's summary (read for one page of cases)."""

    first_reporter: str  # address ("" for an upload without a reporter)
    first_reporter_name: str
    originating_ip: str | None
    attachment_names: list[str]
    attachment_count: int  # top-level attachments (archive members are not counted)
    created_at: datetime
    updated_at: datetime


MAX_QUEUE_ATTACHMENT_NAMES = 5


def queue_details(
    session: Session, *, case_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, QueueDetails]:
    """The first reporter, sender IP and attachment names of up to MAX_PAGE cases (2 queries)."""
    ids = list(dict.fromkeys(case_ids))[:MAX_PAGE]
    if not ids:
        return {}
    ranked = (
        select(
            CaseReporter.case_id,
            CaseReporter.address,
            CaseReporter.name,
            func.row_number()
            .over(
                partition_by=CaseReporter.case_id,
                order_by=(CaseReporter.reported_at, CaseReporter.id),
            )
            .label("rank"),
        )
        .where(CaseReporter.case_id.in_(ids))
        .subquery()
    )
    first = {
        row.case_id: (row.address, row.name)
        for row in session.execute(
            select(ranked.c.case_id, ranked.c.address, ranked.c.name).where(ranked.c.rank == 1)
        )
    }
    details: dict[uuid.UUID, QueueDetails] = {}
    rows = session.execute(
        select(ReportCase.id, ReportCase.iocs, ReportCase.created_at, ReportCase.updated_at).where(
            ReportCase.id.in_(ids)
        )
    )
    for case_id, iocs, created_at, updated_at in rows:
        iocs = iocs if isinstance(iocs, dict) else {}
        top = [
            a
            for a in iocs.get("attachments") or ()
            if isinstance(a, dict) and int(a.get("depth") or 0) == 0
        ]
        address, name = first.get(case_id, ("", ""))
        ip = iocs.get("originating_ip")
        details[case_id] = QueueDetails(
            first_reporter=address,
            first_reporter_name=name,
            originating_ip=str(ip) if ip else None,
            attachment_names=[str(a.get("name") or "") for a in top[:MAX_QUEUE_ATTACHMENT_NAMES]],
            attachment_count=len(top),
            created_at=created_at,
            updated_at=updated_at,
        )
    return details


def parsed_message(case: ReportCase, *, box: SecretBox) -> ParsedReport:
    """The reported message parsed again from its sealed copy, for the case page's headers,
    links, attachments (with every hash) and preview (bounded as at intake; a malformed
    message gives warnings, not errors)."""
    from mailtrawl.reports.intake import open_raw

    return parse_report(open_raw(box, case.raw), filename=case.raw_filename)


@dataclass(frozen=True)
class Change:
    """What a state change did, for the audit log."""

    before: dict[str, Any]
    after: dict[str, Any]


def set_verdict(
    session: Session,
    *,
    case: ReportCase,
    verdict: str,
    actor: str,
    message: str | None = None,
    notify_reporters: bool = True,
) -> Change:
    """An analyst's verdict: kept over later re-analyses; reporters told again (a job)."""
    before = {"verdict": case.verdict, "verdict_source": case.verdict_source}
    case.verdict = verdict
    case.verdict_source = VerdictSource.ANALYST.value
    if case.score is None:
        case.score = 0
    add_event(
        session,
        case.id,
        "verdict",
        actor=actor,
        message=f"Verdict set to {verdict}" + (f": {message}" if message else "."),
        detail={"before": before["verdict"], "after": verdict, "message": message},
    )
    settings = load_report_settings(session)
    if (
        notify_reporters
        and settings.notifications.enabled
        and verdict in settings.notifications.verdicts
    ):
        enqueue_notification(session, case.id, reason="verdict", message=message, actor=actor)
    _after_verdict(session, case)
    session.flush()
    return Change(before, {"verdict": verdict, "verdict_source": case.verdict_source})


def _after_verdict(session: Session, case: ReportCase) -> None:
    from mailtrawl.reports.autoinvestigate import start_auto_investigation
    from mailtrawl.reports.settings import effective_own_domains

    settings = load_report_settings(session)
    start_auto_investigation(
        session,
        case=case,
        settings=settings,
        own_domains=effective_own_domains(session, settings),
    )


def update_case(session: Session, *, case: ReportCase, data: CaseUpdate, actor: str) -> Change:
    """Status and tags."""
    before = {"status": case.status, "tags": list(case.tags or [])}
    if data.status is not None and data.status != case.status:
        add_event(
            session,
            case.id,
            "status",
            actor=actor,
            message=f"Status changed from {case.status} to {data.status}.",
            detail={"before": case.status, "after": data.status},
        )
        case.status = data.status
    tags = list(case.tags or []) if data.tags is None else list(data.tags)
    tags = [t for t in tags if t not in data.remove_tags]
    tags = list(dict.fromkeys([*tags, *data.add_tags]))[:50]
    if tags != list(case.tags or []):
        add_event(
            session,
            case.id,
            "tags",
            actor=actor,
            message="Tags: " + (", ".join(tags) or "(none)"),
            detail={"before": case.tags or [], "after": tags},
        )
        case.tags = tags
    session.flush()
    return Change(before, {"status": case.status, "tags": list(case.tags or [])})


def add_note(session: Session, *, case: ReportCase, text: str, actor: str) -> CaseEvent:
    event = add_event(session, case.id, "note", actor=actor, message=text)
    case.updated_at = utcnow()
    session.flush()
    return event


def reanalyse(session: Session, *, case: ReportCase, actor: str) -> None:
    """Run the analysis again (a job): new engines, lists or rules may say more."""
    add_event(session, case.id, "reanalyse", actor=actor, message="Re-analysis requested.")
    enqueue_analysis(session, case.id, reason="reanalyse")
    session.flush()


def request_notification(
    session: Session, *, case: ReportCase, actor: str, message: str | None = None
) -> str:
    """Tell every reporter the current verdict again (a job); the case must have a verdict."""
    if case.verdict is None:
        raise ReportsRejected("The case has no verdict yet; wait for the analysis.")
    key = enqueue_notification(session, case.id, reason="manual", message=message, actor=actor)
    session.flush()
    return key


# Clusters -----------------------------------------------------------------------------------


def get_cluster(session: Session, *, ref: str | uuid.UUID) -> ReportCluster:
    try:
        key = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        raise ClusterNotFound(f"'{ref}' is not a cluster id.") from None
    record = session.get(ReportCluster, key)
    if record is None:
        raise ClusterNotFound(f"No cluster {ref}.")
    return record


def cluster_view(
    session: Session, cluster: ReportCluster, *, with_cases: bool = True
) -> ClusterView:
    cases = (
        session.scalars(
            select(ReportCase)
            .where(ReportCase.cluster_id == cluster.id)
            .order_by(ReportCase.first_reported_at, ReportCase.id)
            .limit(MAX_PAGE)
        ).all()
        if with_cases
        else []
    )
    return ClusterView(
        id=cluster.id,
        label=cluster.label,
        case_count=cluster.case_count,
        investigation_ids=list(cluster.investigation_ids or []),
        created_at=cluster.created_at,
        updated_at=cluster.updated_at,
        cases=[summary(c) for c in cases],
    )


def list_clusters(
    session: Session, *, limit: int = 50, offset: int = 0, min_cases: int = 2
) -> Page[ClusterView]:
    query = select(ReportCluster).where(ReportCluster.case_count >= min_cases)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    limit = max(1, min(limit, MAX_PAGE))
    rows = session.scalars(
        query.order_by(ReportCluster.updated_at.desc(), ReportCluster.id.desc())
        .limit(limit)
        .offset(max(0, offset))
    ).all()
    return Page(
        total=total,
        offset=offset,
        limit=limit,
        items=[cluster_view(session, r, with_cases=False) for r in rows],
    )


def apply_to_cluster(
    session: Session, *, cluster: ReportCluster, data: ClusterAction, actor: str
) -> list[uuid.UUID]:
    """Verdict, status, tags and notification on every case of the cluster; returns them."""
    cases = session.scalars(
        select(ReportCase).where(ReportCase.cluster_id == cluster.id).order_by(ReportCase.id)
    ).all()
    for case in cases:
        if data.verdict is not None:
            set_verdict(
                session,
                case=case,
                verdict=data.verdict,
                actor=actor,
                message=data.message,
                notify_reporters=data.notify,
            )
        elif data.notify and case.verdict is not None:
            request_notification(session, case=case, actor=actor, message=data.message)
        if data.status is not None or data.add_tags or data.remove_tags:
            update_case(
                session,
                case=case,
                data=CaseUpdate(
                    status=data.status, add_tags=data.add_tags, remove_tags=data.remove_tags
                ),
                actor=actor,
            )
    session.flush()
    return [c.id for c in cases]


# The attachment archive --------------------------------------------------------------------


def attachment_archive(case: ReportCase, attachment_sha256: str, *, box: SecretBox) -> bytes:
    """One attachment of the case in a password-protected zip (AES-256, password "infected").

    Raises ReportsNotFound when the message has no attachment with that SHA-256 or its
    content was over the parser's read bound (25 MB).
    """
    from mailtrawl.reports.intake import open_raw

    wanted = attachment_sha256.strip().lower()
    report = parse_report(open_raw(box, case.raw), filename=case.raw_filename)
    found = next((a for a in report.attachments if a.sha256 == wanted), None)
    if found is None:
        raise ReportsNotFound("The reported message has no attachment with that SHA-256.")
    if found.content is None:
        raise ReportsNotFound(
            "The attachment is larger than the parser keeps (25 MB); it cannot be downloaded."
        )
    buffer = io.BytesIO()
    with pyzipper.AESZipFile(
        buffer, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as archive:
        archive.setpassword(ARCHIVE_PASSWORD)
        archive.setencryption(pyzipper.WZ_AES, nbits=256)
        archive.writestr(_safe_name(found.name, wanted), found.content)
    return buffer.getvalue()


def _safe_name(name: str, sha256: str) -> str:
    """A file name with no directories, controls or traversal; the hash when nothing is left."""
    base = PureWindowsPath(PurePosixPath(name.replace("\x00", "")).name).name
    cleaned = "".join(c for c in base if c.isprintable() and c not in '<>:"/\\|?*').strip(" .")
    return cleaned[:200] or f"{sha256}.bin"


# Reporter tokens ---------------------------------------------------------------------------


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def reporter_token_view(record: ReporterToken) -> ReporterTokenView:
    return ReporterTokenView(
        id=record.id,
        name=record.name,
        prefix=record.prefix,
        created_by=record.created_by,
        created_at=record.created_at,
        expires_at=record.expires_at,
        revoked_at=record.revoked_at,
        last_used_at=record.last_used_at,
    )


def create_reporter_token(
    session: Session, *, name: str, actor: str, expires_in: timedelta | None = timedelta(days=365)
) -> IssuedReporterToken:
    """A token that can only submit reports; shown once, only its SHA-256 is kept."""
    token = REPORTER_TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ReporterToken(
        name=name.strip()[:200] or "reporter",
        token_sha256=_token_digest(token),
        prefix=token[: len(REPORTER_TOKEN_PREFIX) + 6],
        created_by=actor[:200],
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(record)
    session.flush()
    return IssuedReporterToken(**reporter_token_view(record).model_dump(), token=token)


def resolve_reporter_token(
    session: Session, *, token: str, now: datetime | None = None
) -> ReporterToken | None:
    """The live reporter token for a presented value, or None (unknown, revoked, expired)."""
    if not token.startswith(REPORTER_TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = _token_digest(token)
    record = session.scalar(select(ReporterToken).where(ReporterToken.token_sha256 == digest))
    if record is None or not hmac.compare_digest(record.token_sha256, digest):
        return None
    moment = now or utcnow()
    if record.revoked_at is not None or (
        record.expires_at is not None and record.expires_at <= moment
    ):
        return None
    return record


def note_reporter_token_use(session: Session, *, token_id: uuid.UUID) -> None:
    session.execute(
        update(ReporterToken).where(ReporterToken.id == token_id).values(last_used_at=utcnow())
    )


def list_reporter_tokens(session: Session) -> list[ReporterTokenView]:
    return [
        reporter_token_view(r)
        for r in session.scalars(select(ReporterToken).order_by(ReporterToken.created_at))
    ]


def revoke_reporter_token(session: Session, *, ref: str | uuid.UUID) -> ReporterToken:
    record = None
    try:
        record = session.get(ReporterToken, uuid.UUID(str(ref)))
    except ValueError:
        record = session.scalar(select(ReporterToken).where(ReporterToken.name == str(ref)))
    if record is None:
        raise ReportsNotFound(f"No reporter token {ref}; `mailtrawl reports tokens list`.")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    session.flush()
    return record


# Templates ---------------------------------------------------------------------------------


def _check_template_key(verdict: str) -> None:
    if verdict not in TEMPLATE_KEYS:
        raise ReportsNotFound(
            f"No template '{verdict}'; templates are: {', '.join(TEMPLATE_KEYS)}."
        )


def template_for(session: Session, verdict: str) -> tuple[str, str]:
    """(subject, body) for a verdict: its own, else the stored default, else the built-in."""
    for key in (verdict, "default"):
        row = session.get(NotificationTemplate, key)
        if row is not None:
            return row.subject, row.body
    return notify.DEFAULT_SUBJECT, notify.DEFAULT_BODY


def list_templates(session: Session) -> list[TemplateView]:
    stored = {r.verdict: r for r in session.scalars(select(NotificationTemplate))}
    views = []
    for key in TEMPLATE_KEYS:
        row = stored.get(key)
        if row is None and key != "default":
            continue
        views.append(
            TemplateView(
                verdict=key,
                subject=row.subject if row else notify.DEFAULT_SUBJECT,
                body=row.body if row else notify.DEFAULT_BODY,
                custom=row is not None,
                updated_by=row.updated_by if row else None,
                updated_at=row.updated_at if row else None,
            )
        )
    return views


def save_template(session: Session, *, verdict: str, subject: str, body: str, actor: str) -> Change:
    """Store a template after checking it renders (TemplateRejected otherwise)."""
    _check_template_key(verdict)
    notify.validate_template(subject, body)
    row = session.get(NotificationTemplate, verdict)
    before = {"subject": row.subject, "body": row.body} if row else {}
    if row is None:
        row = NotificationTemplate(verdict=verdict)
        session.add(row)
    row.subject, row.body = subject, body
    row.updated_by = actor[:200]
    row.updated_at = utcnow()
    session.flush()
    return Change(before, {"subject": subject, "body": body})


def delete_template(session: Session, *, verdict: str) -> Change:
    """Back to the default (or the built-in one for "default")."""
    _check_template_key(verdict)
    row = session.get(NotificationTemplate, verdict)
    if row is None:
        raise ReportsNotFound(f"The {verdict} template is not customised.")
    before = {"subject": row.subject, "body": row.body}
    session.delete(row)
    session.flush()
    return Change(before, {})


# Threat-intel lists and YARA rule sets -----------------------------------------------------


def intel_view(record: IntelListRecord) -> IntelListView:
    return IntelListView(
        id=record.id,
        name=record.name,
        kind=record.kind,
        size=record.size,
        indicator_count=record.indicator_count,
        warnings=list(record.warnings or []),
        enabled=record.enabled,
        created_by=record.created_by,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def import_intel_list(
    session: Session,
    *,
    data: bytes,
    name: str,
    actor: str,
    kind: str | None = None,
    strict: bool = False,
) -> IntelListRecord:
    """Import (or replace, by name) a list: CSV, one per line, STIX 2.x or MISP JSON.

    Raises IntelFormatError naming the line or object (with `strict`, any bad value; else
    only an unreadable file), and ReportsRejected for a list with no usable indicator.
    """
    parsed = load_intel_file(data, kind, name=name, strict=strict)
    if not parsed.indicators:
        raise ReportsRejected(
            f"The list {name} holds no usable indicator"
            + (f" ({parsed.warnings[0]})" if parsed.warnings else "")
            + "."
        )
    record = session.scalar(select(IntelListRecord).where(IntelListRecord.name == name))
    if record is None:
        record = IntelListRecord(name=name[:200], created_by=actor[:200])
        session.add(record)
    record.kind = parsed.source_kind
    record.content = zlib.compress(data, 6)
    record.size = len(data)
    record.indicator_count = len(parsed.indicators)
    record.warnings = [str(w)[:500] for w in parsed.warnings[:50]]
    record.enabled = True
    record.updated_at = utcnow()
    session.flush()
    return record


def list_intel_lists(session: Session) -> list[IntelListView]:
    return [
        intel_view(r)
        for r in session.scalars(select(IntelListRecord).order_by(IntelListRecord.name))
    ]


def delete_intel_list(session: Session, *, ref: str) -> IntelListView:
    record = _by_id_or_name(session, IntelListRecord, ref)
    view = intel_view(record)
    session.delete(record)
    session.flush()
    return view


def yara_view(record: YaraRuleRecord) -> YaraRuleView:
    return YaraRuleView(
        id=record.id,
        name=record.name,
        enabled=record.enabled,
        size=len(record.source),
        created_by=record.created_by,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def save_yara_rules(session: Session, *, name: str, source: str, actor: str) -> YaraRuleRecord:
    """Store (or replace, by name) a rule set once it compiles (YaraCompileError otherwise)."""
    compile_yara_rules(sources={name: source})
    record = session.scalar(select(YaraRuleRecord).where(YaraRuleRecord.name == name))
    if record is None:
        record = YaraRuleRecord(name=name, created_by=actor[:200])
        session.add(record)
    record.source = source
    record.enabled = True
    record.updated_at = utcnow()
    session.flush()
    return record


def list_yara_rules(session: Session) -> list[YaraRuleView]:
    return [
        yara_view(r) for r in session.scalars(select(YaraRuleRecord).order_by(YaraRuleRecord.name))
    ]


def delete_yara_rules(session: Session, *, ref: str) -> YaraRuleView:
    record = _by_id_or_name(session, YaraRuleRecord, ref)
    view = yara_view(record)
    session.delete(record)
    session.flush()
    return view


def _by_id_or_name(session: Session, model: Any, ref: str) -> Any:
    record = None
    try:
        record = session.get(model, uuid.UUID(str(ref)))
    except ValueError:
        record = session.scalar(select(model).where(model.name == str(ref)))
    if record is None:
        raise ReportsNotFound(f"No entry {ref}.")
    return record


__all__ = [
    "ARCHIVE_PASSWORD",
    "REPORTER_TOKEN_PREFIX",
    "CaseFilters",
    "CaseNotFound",
    "Change",
    "ClusterNotFound",
    "IntelFormatError",
    "QueueDetails",
    "ReportsNotFound",
    "ReportsRejected",
    "add_note",
    "apply_to_cluster",
    "attachment_archive",
    "case_view",
    "cluster_view",
    "create_reporter_token",
    "delete_intel_list",
    "delete_template",
    "delete_yara_rules",
    "get_case",
    "get_cluster",
    "import_intel_list",
    "list_cases",
    "list_clusters",
    "list_intel_lists",
    "list_reporter_tokens",
    "list_templates",
    "list_yara_rules",
    "note_reporter_token_use",
    "parsed_message",
    "queue_details",
    "reanalyse",
    "request_notification",
    "resolve_reporter_token",
    "revoke_reporter_token",
    "save_template",
    "save_yara_rules",
    "set_verdict",
    "summary",
    "template_for",
    "update_case",
]
