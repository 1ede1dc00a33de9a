"""Investigations: create, explain, list, read progress and results, stop, duplicate, export.

Keyword-only functions over a SQLAlchemy session; the API and the CLI call these. Creating
an investigation only records it and enqueues its planning job (in the same transaction);
the work happens in the job queue (`mailtrawl.investigations.engine`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from mailtrawl.configurations.service import get_configuration
from mailtrawl.core.export import plain_cell, stream_rows
from mailtrawl.errors import MailtrawlError
from mailtrawl.investigations.engine import PLAN_JOB, eta_seconds
from mailtrawl.investigations.hits import subject_key
from mailtrawl.investigations.models import (
    FINISHED,
    Investigation,
    InvestigationCampaign,
    InvestigationHit,
    InvestigationMailbox,
    InvestigationStatus,
    WatchState,
)
from mailtrawl.investigations.planner import plan_hunt
from mailtrawl.investigations.query import hunt_to_document, parse_query
from mailtrawl.investigations.schemas import (
    CampaignView,
    HitView,
    InvestigationCreate,
    InvestigationView,
    MailboxView,
    Page,
    Progress,
    WatchView,
)
from mailtrawl.providers.registry import capabilities
from mailtrawl.tasks.models import Job, JobStatus
from mailtrawl.tasks.queue import cancel_group, enqueue

MAX_PAGE = 1000
EXPORT_CHUNK = 1000


MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=365)
_DURATION = re.compile(r"(\d{1,6})\s*([mhdw])")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class InvalidDuration(MailtrawlError):
    default_message = "Not a duration."


class InvestigationNotFound(MailtrawlError):
    default_message = "No such investigation; `mailtrawl investigations list` shows them."


def create_investigation(
    session: Session, *, data: InvestigationCreate, actor: str | None, now: datetime | None = None
) -> Investigation:
    """Validate the query (QueryError), record the investigation and enqueue its planning."""
    configuration = get_configuration(session, ref=data.configuration)
    hunt = parse_query(data.query, now=now)
    scope = data.scope.model_dump() if data.scope else dict(configuration.default_scope or {})
    record = Investigation(
        name=data.name,
        configuration_id=configuration.id,
        configuration_name=configuration.name,
        query=hunt_to_document(hunt),
        scope=scope or {"kind": "all", "values": []},
        plan=plan_hunt(hunt, capabilities(configuration.provider)).explain(),
        status=InvestigationStatus.QUEUED.value,
        created_by=actor,
    )
    _start_watching(record, duration=data.duration, action=data.action, now=now)
    session.add(record)
    session.flush()
    enqueue(session, PLAN_JOB, {"investigation_id": str(record.id)}, group_key=str(record.id))
    return record


def parse_duration(text: str) -> timedelta | None:
    """ "continuous" → None (until stopped); "90m", "24h", "7d", "2w" → that long.

    Raises InvalidDuration for anything else, or outside one minute to one year.
    """
    value = text.strip().lower()
    if value == "continuous":
        return None
    match = _DURATION.fullmatch(value)
    if match is None:
        raise InvalidDuration(
            f"'{text}' is not a duration: use a number and a unit (m, h, d or w, for example "
            "'24h' or '7d'), or 'continuous'"
        )
    length = timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})
    if not MIN_DURATION <= length <= MAX_DURATION:
        raise InvalidDuration(f"'{text}': a duration runs from one minute to 365 days")
    return length


def _start_watching(
    record: Investigation, *, duration: str | None, action: str | None, now: datetime | None
) -> None:
    """Make `record` active from now on for `duration` (nothing when it is None)."""
    if duration is None:
        if action is not None:
            raise InvalidDuration(
                "an automatic action needs a duration: it acts on new mail while active"
            )
        return
    length = parse_duration(duration)
    start = now or datetime.now(UTC)
    record.duration = "continuous" if length is None else duration.strip().lower()
    record.active_until = None if length is None else start + length
    record.auto_action = action
    record.watch_state = WatchState.ACTIVE.value
    record.watch_started_at = start


def explain_query(
    *, query: dict[str, Any], provider: str = "m365", mailboxes: int | None = None
) -> dict[str, Any]:
    """The plan of a query without running it (QueryError if the query is invalid)."""
    hunt = parse_query(query)
    return {
        "query": hunt_to_document(hunt),
        **plan_hunt(hunt, capabilities(provider)).explain(mailboxes=mailboxes),
    }


def get_investigation(session: Session, *, ref: str | uuid.UUID) -> Investigation:
    try:
        key = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        raise InvestigationNotFound(
            f"'{ref}' is not an investigation id; `mailtrawl investigations list` shows them."
        ) from None
    record = session.get(Investigation, key)
    if record is None:
        raise InvestigationNotFound(
            f"No investigation {ref}; `mailtrawl investigations list` shows them."
        )
    return record


def list_investigations(
    session: Session, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> Page[InvestigationView]:
    query = select(Investigation)
    if status:
        query = query.where(Investigation.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Investigation.created_at.desc(), Investigation.id.desc())
        .limit(_limit(limit))
        .offset(max(0, offset))
    ).all()
    return Page(total=total, offset=offset, limit=_limit(limit), items=[to_view(r) for r in rows])


def stop_investigation(session: Session, *, ref: str | uuid.UUID) -> Investigation:
    """Stop at once: queued work is cancelled, running work stops at its next check."""
    record = get_investigation(session, ref=ref)
    if record.watch_state == WatchState.ACTIVE:
        # Watching stops at once: the watcher checks this before recording any new copy.
        record.watch_state = WatchState.ENDED.value
        record.watch_ended_at = datetime.now(UTC)
    if record.status in FINISHED:
        session.flush()
        return record
    cancel_group(session, str(record.id))
    running = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.group_key == str(record.id), Job.status == JobStatus.RUNNING.value)
    )
    if running:
        record.status = InvestigationStatus.STOPPING.value
    else:
        record.status = InvestigationStatus.STOPPED.value
        record.finished_at = datetime.now(UTC)
    session.flush()
    return record


def duplicate_investigation(
    session: Session, *, ref: str | uuid.UUID, actor: str | None, name: str | None = None
) -> Investigation:
    """A new investigation with the same configuration, scope and query, started now."""
    source = get_investigation(session, ref=ref)
    if source.configuration_id is None:
        raise MailtrawlError("Its mail configuration was removed; create a new investigation.")
    copy = Investigation(
        name=name or f"{source.name} (copy)"[:200],
        configuration_id=source.configuration_id,
        configuration_name=source.configuration_name,
        query=dict(source.query),
        scope=dict(source.scope),
        plan=source.plan,
        status=InvestigationStatus.QUEUED.value,
        created_by=actor,
        duplicated_from=source.id,
    )
    _start_watching(copy, duration=source.duration, action=source.auto_action, now=None)
    session.add(copy)
    session.flush()
    enqueue(session, PLAN_JOB, {"investigation_id": str(copy.id)}, group_key=str(copy.id))
    return copy


def to_view(record: Investigation, now: datetime | None = None) -> InvestigationView:
    now = now or datetime.now(UTC)
    finished = record.mailboxes_done + record.mailboxes_failed
    total = record.mailboxes_total
    running = record.status not in FINISHED
    return InvestigationView(
        id=record.id,
        name=record.name,
        status=record.status,
        configuration_id=record.configuration_id,
        configuration=record.configuration_name,
        scope=record.scope,
        query=record.query,
        plan=record.plan,
        progress=Progress(
            mailboxes_total=total,
            mailboxes_done=record.mailboxes_done,
            mailboxes_failed=record.mailboxes_failed,
            mailboxes_skipped=record.mailboxes_skipped,
            mailboxes_pending=max(0, total - finished),
            messages_examined=record.messages_examined,
            hits=record.hits,
            requests=record.requests,
            throttled=record.throttled,
            throttle_wait_seconds=round(record.throttle_wait_seconds, 3),
            percent=round(100.0 * finished / total, 1)
            if total
            else (100.0 if record.status == InvestigationStatus.COMPLETED else 0.0),
            eta_seconds=eta_seconds(record, now) if running else None,
        ),
        error=record.error,
        created_by=record.created_by,
        duplicated_from=record.duplicated_from,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        watch=None
        if record.watch_state is None
        else WatchView(
            state=WatchState(record.watch_state).value,
            duration=record.duration or "",
            active_until=record.active_until,
            action=record.auto_action,
            new_hits=record.new_hits,
            started_at=record.watch_started_at,
            ended_at=record.watch_ended_at,
        ),
    )


# Results ---------------------------------------------------------------------------------

_HIT_SORTS = {
    "received": InvestigationHit.received,
    "mailbox": InvestigationHit.mailbox_upn,
    "sender": InvestigationHit.sender_address,
    "subject": InvestigationHit.subject_key,
    "folder": InvestigationHit.folder,
}


def _limit(limit: int) -> int:
    return max(1, min(MAX_PAGE, limit))


def _hit_filters(
    investigation_id: uuid.UUID,
    *,
    mailbox: str | None = None,
    folder: str | None = None,
    sender: str | None = None,
    subject: str | None = None,
    internet_message_id: str | None = None,
    received_after: datetime | None = None,
    received_before: datetime | None = None,
) -> list[ColumnElement[bool]]:
    """WHERE terms over indexed columns (addresses and subject keys are stored lower-cased)."""
    hits = InvestigationHit
    terms: list[ColumnElement[bool]] = [hits.investigation_id == investigation_id]
    if mailbox:
        terms.append(hits.mailbox_upn == mailbox.strip().lower())
    if folder:
        terms.append(hits.folder == folder.strip().lower())
    if sender:
        terms.append(hits.sender_address == sender.strip().lower())
    if subject:
        escaped = subject_key(subject).replace("\\", "\\\\").replace("%", "\\%")
        terms.append(hits.subject_key.like("%" + escaped.replace("_", "\\_") + "%", escape="\\"))
    if internet_message_id:
        terms.append(hits.internet_message_id == internet_message_id.strip())
    if received_after:
        terms.append(hits.received >= received_after)
    if received_before:
        terms.append(hits.received < received_before)
    return terms


def list_hits(
    session: Session,
    *,
    ref: str | uuid.UUID,
    sort: str = "-received",
    limit: int = 100,
    offset: int = 0,
    **filters: Any,
) -> Page[HitView]:
    """One page of hits, filtered and sorted in the database (never every row).

    The page's ids are found first, in the sort's index alone (a deep offset skips index
    entries, not table rows); only the page's rows are then read.
    """
    record = get_investigation(session, ref=ref)
    terms = _hit_filters(record.id, **filters)
    hits = InvestigationHit
    total = session.scalar(select(func.count(hits.id)).where(*terms)) or 0
    column = _HIT_SORTS.get(sort.lstrip("-"))
    if column is None:
        raise ValueError(f"cannot sort by '{sort}'; use one of {', '.join(_HIT_SORTS)}")
    # Ties are broken the way the sort's index is ordered (the folder's by date).
    keys = [column, hits.received, hits.id] if column is hits.folder else [column, hits.id]
    order = [k.desc() for k in keys] if sort.startswith("-") else [k.asc() for k in keys]
    page_ids = (
        select(hits.id).where(*terms).order_by(*order).limit(_limit(limit)).offset(max(0, offset))
    )
    ids = list(session.scalars(page_ids))
    rows = (
        session.scalars(select(hits).where(hits.id.in_(ids)).order_by(*order)).all() if ids else []
    )
    return Page(total=total, offset=offset, limit=_limit(limit), items=[hit_view(h) for h in rows])


def hit_view(hit: InvestigationHit) -> HitView:
    return HitView(
        id=hit.id,
        mailbox=hit.mailbox_upn,
        mailbox_id=hit.mailbox_id,
        folder=hit.folder,
        folder_id=hit.folder_id,
        message_id=hit.message_id,
        internet_message_id=hit.internet_message_id,
        subject=hit.subject,
        sender=hit.sender_address,
        sender_name=hit.sender_name,
        recipients=hit.recipients,
        received=hit.received,
        has_attachments=hit.has_attachments,
        attachment_names=hit.attachment_names,
        matched=list(hit.matched or []),
        via_attached_email=hit.via_attached_email,
        remediation=hit.remediation,
    )


def list_campaigns(
    session: Session, *, ref: str | uuid.UUID, limit: int = 100, offset: int = 0
) -> Page[CampaignView]:
    """Hits grouped by Internet message id: one row per email, with its copies, most first.

    Read from the counters kept by hits.store_hits (ix_investigation_campaigns_size), not
    grouped at request time.
    """
    record = get_investigation(session, ref=ref)
    campaigns = InvestigationCampaign
    where = campaigns.investigation_id == record.id
    total = session.scalar(select(func.count()).where(where)) or 0
    rows = session.scalars(
        select(campaigns)
        .where(where)
        .order_by(campaigns.copies.desc(), campaigns.internet_message_id)
        .limit(_limit(limit))
        .offset(max(0, offset))
    ).all()
    items = [
        CampaignView(
            internet_message_id=row.internet_message_id,
            subject=row.subject,
            sender=row.sender_address,
            copies=row.copies,
            mailboxes=row.mailboxes,
            first_received=_utc(row.first_received),
            last_received=_utc(row.last_received),
        )
        for row in rows
    ]
    return Page(total=total, offset=offset, limit=_limit(limit), items=items)


def _utc(value: datetime | None) -> datetime | None:
    # Aggregates bypass the column type on SQLite and come back naive (or as text).
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def list_mailboxes(
    session: Session,
    *,
    ref: str | uuid.UUID,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page[MailboxView]:
    record = get_investigation(session, ref=ref)
    query = select(InvestigationMailbox).where(InvestigationMailbox.investigation_id == record.id)
    if status:
        query = query.where(InvestigationMailbox.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(InvestigationMailbox.upn).limit(_limit(limit)).offset(max(0, offset))
    ).all()
    items = [
        MailboxView(
            mailbox=r.upn,
            mailbox_id=r.mailbox_id,
            display_name=r.display_name,
            status=r.status,
            reason=r.reason,
            messages_examined=r.messages_examined,
            hits=r.hits,
            search_cap_fallback=r.search_cap_fallback,
            finished_at=r.finished_at,
        )
        for r in rows
    ]
    return Page(total=total, offset=offset, limit=_limit(limit), items=items)


# Export ----------------------------------------------------------------------------------

EXPORT_FIELDS = (
    "mailbox",
    "folder",
    "message_id",
    "internet_message_id",
    "subject",
    "sender",
    "sender_name",
    "recipients",
    "received",
    "has_attachments",
    "attachment_names",
    "matched",
    "via_attached_email",
    "remediation",
)


def _csv_cell(value: Any) -> str:
    if isinstance(value, list):
        value = "; ".join(str(v) for v in value)
    return plain_cell(value)


def export_hits(session: Session, *, ref: str | uuid.UUID, fmt: str) -> Iterator[bytes]:
    """Every hit as CSV or JSON, streamed in chunks (memory stays flat)."""
    record = get_investigation(session, ref=ref)
    if fmt not in ("csv", "json"):
        raise ValueError("export format must be csv or json")
    query = (
        select(InvestigationHit)
        .where(InvestigationHit.investigation_id == record.id)
        .order_by(InvestigationHit.mailbox_upn, InvestigationHit.received, InvestigationHit.id)
        .execution_options(yield_per=EXPORT_CHUNK)
    )

    rows = (hit_view(hit).model_dump(mode="json") for hit in session.scalars(query))
    return stream_rows(rows, EXPORT_FIELDS, "csv" if fmt == "csv" else "json", cell=_csv_cell)
