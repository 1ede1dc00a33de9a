"""Remediation: preview, request, approve or reject, list, receipts, restore, vault retention.

An action is requested over a selection of an investigation's hits. The request writes the
action and one journal row per message (state `planned`) in one transaction, together with
its audit entry and, unless it waits for approval, the execution jobs. The counts shown in the
preview are the journal rows the action would have, so what an approver approves is exactly
what runs. Execution is `remediation.engine`.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from mailtrawl.audit import service as audit
from mailtrawl.audit.service import Actor
from mailtrawl.config import Settings
from mailtrawl.core.export import stream_rows
from mailtrawl.errors import MailtrawlError
from mailtrawl.investigations.models import Investigation, InvestigationHit
from mailtrawl.investigations.service import get_investigation
from mailtrawl.remediation.models import (
    ACTION_FINISHED,
    ActionStatus,
    ItemState,
    RemediationAction,
    RemediationItem,
    RemediationKind,
    VaultEntry,
)
from mailtrawl.remediation.schemas import (
    ActionCounts,
    ActionCreate,
    ActionView,
    ItemPage,
    ItemView,
    MailboxPreview,
    Preview,
    RestoreCreate,
    Selection,
)
from mailtrawl.settings_store.service import effective_settings
from mailtrawl.storage.base import utcnow
from mailtrawl.tasks.queue import cancel_group, enqueue

EXECUTE_JOB = "remediation.execute"
# Mailboxes per execution job: jobs are the unit a worker leases and resumes.
MAILBOXES_PER_JOB = 100
PREVIEW_MAILBOXES = 1000
MAX_PAGE = 1000
EXPORT_CHUNK = 500

# Where each action leaves a message (a well-known folder name; None: out of the folders).
DESTINATION: dict[RemediationKind, str | None] = {
    RemediationKind.JUNK: "junkemail",
    RemediationKind.TRASH: "deleteditems",
    RemediationKind.DELETE: "recoverableitemsdeletions",
    RemediationKind.PURGE: None,
}

EXPORT_FIELDS = (
    "id",
    "mailbox",
    "internet_message_id",
    "subject",
    "sender",
    "source_folder",
    "state",
    "changed",
    "result_folder",
    "attempts",
    "error",
    "vaulted",
    "applied_at",
    "verified_at",
    "undone_at",
)


class RemediationError(MailtrawlError):
    """A remediation request that cannot be done as asked."""


class ActionNotFound(RemediationError):
    pass


class ApprovalRefused(RemediationError):
    """The caller may not approve or reject this action (four-eyes, role, state)."""


class NothingToDo(RemediationError):
    """The selection holds no message the action applies to."""


# Which earlier remediation a copy may be in for each action to apply to it.
_ELIGIBLE: dict[RemediationKind, frozenset[str | None]] = {
    RemediationKind.WARN: frozenset({None, "warn", "junk", "trash"}),
    RemediationKind.JUNK: frozenset({None, "warn", "junk", "trash"}),
    RemediationKind.TRASH: frozenset({None, "warn", "junk", "trash"}),
    RemediationKind.DELETE: frozenset({None, "warn", "junk", "trash", "delete"}),
    RemediationKind.PURGE: frozenset({None, "warn", "junk", "trash", "delete"}),
}
_EXCLUDED_REASON = {
    "purge": "purged already (restore it first)",
    "delete": "soft-deleted already (purge or restore it)",
}


def approval_reason(settings: Settings, kind: RemediationKind, messages: int) -> str | None:
    """Why an action must wait for a second administrator, or None when it need not."""
    if not settings.approval_required:
        return None
    if kind.value in settings.approval_always_for:
        return f"every {kind.value} action needs a second administrator's approval"
    if messages > settings.approval_threshold:
        return (
            f"{messages} messages is more than the approval threshold "
            f"({settings.approval_threshold})"
        )
    return None


# Selecting hits -----------------------------------------------------------------------------


def _selected_hits(investigation_id: uuid.UUID, selection: Selection) -> Select[Any]:
    query = select(InvestigationHit).where(InvestigationHit.investigation_id == investigation_id)
    if selection.hits:
        query = query.where(InvestigationHit.id.in_(selection.hits))
    if selection.campaigns:
        query = query.where(InvestigationHit.internet_message_id.in_(selection.campaigns))
    if selection.mailboxes:
        names = [m.strip() for m in selection.mailboxes]
        lowered = [n.lower() for n in names]
        query = query.where(
            or_(
                func.lower(InvestigationHit.mailbox_upn).in_(lowered),
                InvestigationHit.mailbox_id.in_(names),
            )
        )
    if selection.folders:
        query = query.where(InvestigationHit.folder.in_([f.lower() for f in selection.folders]))
    return query.order_by(InvestigationHit.mailbox_id, InvestigationHit.id)


def _already_done(kind: RemediationKind, hit: InvestigationHit) -> bool:
    if kind is RemediationKind.WARN:
        return hit.remediation == "warn"
    destination = DESTINATION[kind]
    return destination is not None and hit.folder == destination


def _preview(
    settings: Settings,
    kind: RemediationKind,
    targets: Sequence[tuple[str, str | None, bool]],
    excluded: Counter[str],
) -> Preview:
    """Counts from (mailbox, folder, already done) per journal row."""
    by_folder: Counter[str] = Counter()
    by_mailbox: dict[str, Counter[str]] = defaultdict(Counter)
    already = 0
    for mailbox, folder, done in targets:
        name = folder or "other"
        by_folder[name] += 1
        by_mailbox[mailbox][name] += 1
        already += done
    ordered = sorted(by_mailbox.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    reason = approval_reason(settings, kind, len(targets))
    return Preview(
        action=kind.value,
        messages=len(targets),
        mailboxes=len(by_mailbox),
        will_change=len(targets) - already,
        already_done=already,
        excluded=dict(excluded),
        by_folder=dict(by_folder),
        by_mailbox=[
            MailboxPreview(mailbox=m, messages=sum(c.values()), folders=dict(c))
            for m, c in ordered[:PREVIEW_MAILBOXES]
        ],
        by_mailbox_truncated=len(ordered) > PREVIEW_MAILBOXES,
        requires_approval=reason is not None,
        approval_reason=reason,
    )


def _hits_with_pending_actions(session: Session, investigation_id: uuid.UUID) -> set[uuid.UUID]:
    """Hits an unfinished action (awaiting approval, queued, running) will still act on."""
    return set(
        session.scalars(
            select(RemediationItem.hit_id)
            .join(RemediationAction, RemediationAction.id == RemediationItem.action_id)
            .where(
                RemediationAction.investigation_id == investigation_id,
                RemediationAction.status.not_in([s.value for s in ACTION_FINISHED]),
                RemediationItem.state.in_((ItemState.PLANNED.value, ItemState.APPLIED.value)),
                RemediationItem.hit_id.is_not(None),
            )
        )
    )


def _batches(mailbox_ids: Iterable[str]) -> dict[str, int]:
    """Mailbox id -> execution batch (jobs of MAILBOXES_PER_JOB mailboxes)."""
    ordered = sorted(set(mailbox_ids))
    return {m: i // MAILBOXES_PER_JOB for i, m in enumerate(ordered)}


# Requesting ---------------------------------------------------------------------------------


def request_action(
    session: Session,
    *,
    investigation: str | uuid.UUID,
    data: ActionCreate,
    actor: Actor,
    settings: Settings,
) -> tuple[Preview, RemediationAction | None]:
    """Preview an action and, unless `data.dry_run`, record it with its journal.

    The action waits for approval when `approval_reason` says so; otherwise its execution
    jobs are enqueued in the same transaction. The approval rules, the warning notice and the
    vault retention are the effective ones (`settings` with the dashboard's overrides).
    """
    settings = effective_settings(session, settings)
    record = get_investigation(session, ref=investigation)
    kind = RemediationKind(data.action)
    eligible = _ELIGIBLE[kind]
    excluded: Counter[str] = Counter()
    rows: list[InvestigationHit] = []
    busy = _hits_with_pending_actions(session, record.id)
    for hit in session.scalars(_selected_hits(record.id, data.selection)):
        if hit.id in busy:
            excluded["another action on it is waiting or running"] += 1
            continue
        if hit.remediation not in eligible:
            excluded[_EXCLUDED_REASON.get(str(hit.remediation), str(hit.remediation))] += 1
            continue
        rows.append(hit)
    if data.selection.hits:
        wanted = set(data.selection.hits)
        known = session.scalar(
            select(func.count()).where(
                InvestigationHit.investigation_id == record.id, InvestigationHit.id.in_(wanted)
            )
        )
        if len(wanted) > (known or 0):
            excluded["not a hit of this investigation"] += len(wanted) - (known or 0)
    options = _options(kind, data, settings)  # a bad notice template fails the preview too
    preview = _preview(
        settings, kind, [(h.mailbox_upn, h.folder, _already_done(kind, h)) for h in rows], excluded
    )
    if data.dry_run:
        return preview, None
    if not rows:
        raise NothingToDo(
            "The selection holds no message this action applies to"
            + (f" ({', '.join(f'{n} {r}' for r, n in excluded.items())})." if excluded else ".")
        )
    if data.note:
        options["note"] = data.note
    action = _new_action(
        session,
        record=record,
        kind=kind,
        selection=data.selection.model_dump(mode="json"),
        options=options,
        preview=preview,
        actor=actor,
    )
    batches = _batches(h.mailbox_id for h in rows)
    now = utcnow()
    session.execute(
        insert(RemediationItem),
        [
            {
                "id": uuid.uuid4(),
                "action_id": action.id,
                "hit_id": h.id,
                "batch": batches[h.mailbox_id],
                "mailbox_id": h.mailbox_id,
                "mailbox_upn": h.mailbox_upn,
                "message_id": h.message_id,
                "internet_message_id": h.internet_message_id,
                "subject": h.subject[:2000],
                "sender_address": h.sender_address,
                "source_folder_id": h.folder_id,
                "source_folder": h.folder,
                "state": ItemState.PLANNED.value,
                "attempts": 0,
                "vaulted": False,
                "updated_at": now,
            }
            for h in rows
        ],
    )
    _after_request(session, action, actor, set(batches.values()), preview)
    return preview, action


def _options(kind: RemediationKind, data: ActionCreate, settings: Settings) -> dict[str, Any]:
    """What the worker needs besides the journal: the category, the notice template, and how
    long the vault keeps what it deletes (the retention in force when the action is requested)."""
    options: dict[str, Any] = {}
    if kind in (RemediationKind.DELETE, RemediationKind.PURGE):
        options["vault_retention_days"] = settings.vault_retention_days
    if kind is RemediationKind.WARN:
        options["category"] = settings.warning_category
        options["notify"] = data.notify
        if data.notify:
            from mailtrawl.remediation.notice import (
                DEFAULT_NOTICE_BODY,
                DEFAULT_NOTICE_SUBJECT,
                validate_template,
            )

            subject = (data.notice.subject if data.notice else None) or (
                settings.warning_notice_subject or DEFAULT_NOTICE_SUBJECT
            )
            body = (data.notice.body if data.notice else None) or (
                settings.warning_notice_body or DEFAULT_NOTICE_BODY
            )
            validate_template(subject, body)
            options["notice"] = {"subject": subject, "body": body}
            options["organisation"] = settings.organisation_name
    return options


def _new_action(
    session: Session,
    *,
    record: Investigation,
    kind: RemediationKind,
    selection: dict[str, Any],
    options: dict[str, Any],
    preview: Preview,
    actor: Actor,
    undoes: uuid.UUID | None = None,
) -> RemediationAction:
    action = RemediationAction(
        id=uuid.uuid4(),
        investigation_id=record.id,
        configuration_id=record.configuration_id,
        kind=kind.value,
        undoes_id=undoes,
        selection=selection,
        options=options,
        preview=preview.model_dump(mode="json"),
        status=(
            ActionStatus.AWAITING_APPROVAL if preview.requires_approval else ActionStatus.QUEUED
        ).value,
        requires_approval=preview.requires_approval,
        approval_reason=preview.approval_reason,
        requested_by=actor.name,
        requested_role=actor.role,
        total=preview.messages,
        applied=0,
        verified=0,
        unchanged=0,
        failed=0,
        undone=0,
        requests=0,
    )
    session.add(action)
    session.flush()
    return action


def _after_request(
    session: Session,
    action: RemediationAction,
    actor: Actor,
    batches: set[int],
    preview: Preview,
) -> None:
    if action.status == ActionStatus.QUEUED:
        _enqueue(session, action, batches)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="remediation.request",
        entity_type="remediation_action",
        entity_id=str(action.id),
        after={
            "investigation_id": str(action.investigation_id),
            "action": action.kind,
            "undoes": str(action.undoes_id) if action.undoes_id else None,
            "selection": action.selection,
            "messages": preview.messages,
            "mailboxes": preview.mailboxes,
            "by_folder": preview.by_folder,
            "status": action.status,
            "approval_reason": action.approval_reason,
        },
    )


def _enqueue(session: Session, action: RemediationAction, batches: Iterable[int]) -> None:
    for batch in sorted(batches):
        enqueue(
            session,
            EXECUTE_JOB,
            {"action_id": str(action.id), "batch": batch},
            group_key=str(action.id),
            max_attempts=8,
        )


def _action_batches(session: Session, action_id: uuid.UUID) -> set[int]:
    return set(
        session.scalars(
            select(RemediationItem.batch).where(RemediationItem.action_id == action_id).distinct()
        )
    )


# Restoring ----------------------------------------------------------------------------------


def request_restore(
    session: Session,
    *,
    action: str | uuid.UUID,
    data: RestoreCreate,
    actor: Actor,
    settings: Settings,
) -> tuple[Preview, RemediationAction | None]:
    """Undo an action: every applied copy goes back where it was (purged ones from the vault)."""
    settings = effective_settings(session, settings)  # the approval rules in force now
    undone = get_action(session, ref=action)
    if undone.kind == RemediationKind.RESTORE:
        raise RemediationError("A restore cannot be undone; run the original action again.")
    if undone.status not in (ActionStatus.COMPLETED, ActionStatus.RUNNING):
        raise RemediationError(
            f"Only an executed action can be restored; this one is {undone.status}."
        )
    query = select(RemediationItem).where(
        RemediationItem.action_id == undone.id,
        RemediationItem.state.in_((ItemState.APPLIED.value, ItemState.VERIFIED.value)),
        # A copy that was already in the wanted state was not changed: nothing to undo.
        RemediationItem.changed.is_not(False),
    )
    if data.items:
        query = query.where(RemediationItem.id.in_(data.items))
    if data.mailboxes:
        lowered = [m.strip().lower() for m in data.mailboxes]
        query = query.where(
            or_(
                func.lower(RemediationItem.mailbox_upn).in_(lowered),
                RemediationItem.mailbox_id.in_([m.strip() for m in data.mailboxes]),
            )
        )
    originals = list(session.scalars(query.order_by(RemediationItem.mailbox_id)))
    excluded: Counter[str] = Counter()
    pending = list(
        session.scalars(
            select(RemediationItem.undoes_item_id)
            .join(RemediationAction, RemediationAction.id == RemediationItem.action_id)
            .where(
                RemediationAction.undoes_id == undone.id,
                RemediationAction.status.not_in([s.value for s in ACTION_FINISHED]),
            )
        )
    )
    in_flight = set(pending)
    targets = []
    for item in originals:
        if item.id in in_flight:
            excluded["a restore of it is already waiting or running"] += 1
            continue
        if undone.kind == RemediationKind.PURGE and not item.vaulted:
            excluded["not in the undo vault"] += 1
            continue
        targets.append(item)
    if undone.kind in (RemediationKind.PURGE, RemediationKind.DELETE) and targets:
        erased = set(
            session.scalars(
                select(VaultEntry.item_id).where(
                    VaultEntry.item_id.in_([t.id for t in targets]), VaultEntry.mime.is_(None)
                )
            )
        )
        if erased and undone.kind == RemediationKind.PURGE:
            excluded["erased from the vault after its retention period"] += len(erased)
            targets = [t for t in targets if t.id not in erased]
    preview = _preview(
        settings,
        RemediationKind.RESTORE,
        [(t.mailbox_upn, t.source_folder, False) for t in targets],
        excluded,
    )
    if data.dry_run:
        return preview, None
    if not targets:
        raise NothingToDo("Nothing of this action can be restored.")
    record = session.get(Investigation, undone.investigation_id)
    assert record is not None
    options: dict[str, Any] = {"undoes_kind": undone.kind, **undone.options}
    if data.note:
        options["note"] = data.note
    restore = _new_action(
        session,
        record=record,
        kind=RemediationKind.RESTORE,
        selection=data.model_dump(mode="json", exclude={"dry_run", "note"}),
        options=options,
        preview=preview,
        actor=actor,
        undoes=undone.id,
    )
    batches = _batches(t.mailbox_id for t in targets)
    now = utcnow()
    session.execute(
        insert(RemediationItem),
        [
            {
                "id": uuid.uuid4(),
                "action_id": restore.id,
                "hit_id": t.hit_id,
                "undoes_item_id": t.id,
                "batch": batches[t.mailbox_id],
                "mailbox_id": t.mailbox_id,
                "mailbox_upn": t.mailbox_upn,
                # The copy to bring back: where the action left it.
                "message_id": t.result_message_id or t.message_id,
                "internet_message_id": t.internet_message_id,
                "subject": t.subject,
                "sender_address": t.sender_address,
                "source_folder_id": t.result_folder_id,
                "source_folder": t.result_folder,
                "state": ItemState.PLANNED.value,
                "attempts": 0,
                "vaulted": t.vaulted,
                "notice_message_id": t.notice_message_id,
                "updated_at": now,
            }
            for t in targets
        ],
    )
    _after_request(session, restore, actor, set(batches.values()), preview)
    return preview, restore


# Approvals ----------------------------------------------------------------------------------


def _awaiting(session: Session, ref: str | uuid.UUID) -> RemediationAction:
    action = get_action(session, ref=ref, lock=True)
    if action.status != ActionStatus.AWAITING_APPROVAL:
        raise ApprovalRefused(f"This action is {action.status}, not awaiting approval.")
    return action


def approve_action(
    session: Session, *, ref: str | uuid.UUID, actor: Actor, note: str | None = None
) -> RemediationAction:
    """A second administrator approves: the action is queued for execution."""
    action = _awaiting(session, ref)
    if actor.role is not None and actor.role != "admin":
        raise ApprovalRefused("Only an administrator can approve an action.")
    if actor.name == action.requested_by:
        raise ApprovalRefused(
            f"{actor.name} requested this action; another administrator must approve it "
            "(four-eyes rule)."
        )
    before = action.status
    action.status = ActionStatus.QUEUED.value
    action.decided_by = actor.name
    action.decided_role = actor.role
    action.decided_at = utcnow()
    action.decision_note = note
    _enqueue(session, action, _action_batches(session, action.id))
    audit.record(
        session,
        **actor.audit_fields(),
        operation="remediation.approve",
        entity_type="remediation_action",
        entity_id=str(action.id),
        before={"status": before, "requested_by": action.requested_by},
        after={"status": action.status, "note": note},
    )
    return action


def reject_action(
    session: Session, *, ref: str | uuid.UUID, actor: Actor, note: str | None = None
) -> RemediationAction:
    """An administrator (or the requester, withdrawing it) rejects: nothing will run."""
    action = _awaiting(session, ref)
    if actor.role not in (None, "admin") and actor.name != action.requested_by:
        raise ApprovalRefused("Only an administrator or the requester can reject an action.")
    before = action.status
    action.status = ActionStatus.REJECTED.value
    action.decided_by = actor.name
    action.decided_role = actor.role
    action.decided_at = utcnow()
    action.decision_note = note
    action.finished_at = action.decided_at
    cancel_group(session, str(action.id))
    audit.record(
        session,
        **actor.audit_fields(),
        operation="remediation.reject",
        entity_type="remediation_action",
        entity_id=str(action.id),
        before={"status": before},
        after={"status": action.status, "note": note},
    )
    return action


# Reading ------------------------------------------------------------------------------------


def get_action(session: Session, *, ref: str | uuid.UUID, lock: bool = False) -> RemediationAction:
    try:
        key = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
    except ValueError:
        raise ActionNotFound(
            f"'{ref}' is not an action id; `mailtrawl actions list` shows them."
        ) from None
    action = session.get(RemediationAction, key, with_for_update=lock or None)
    if action is None:
        raise ActionNotFound(f"No action {ref}; `mailtrawl actions list` shows them.")
    return action


def list_actions(
    session: Session,
    *,
    investigation: str | uuid.UUID | None = None,
    status: Sequence[str] = (),
    limit: int = 100,
    offset: int = 0,
) -> list[RemediationAction]:
    query = select(RemediationAction)
    if investigation is not None:
        query = query.where(
            RemediationAction.investigation_id == get_investigation(session, ref=investigation).id
        )
    if status:
        query = query.where(RemediationAction.status.in_(list(status)))
    query = query.order_by(RemediationAction.created_at.desc(), RemediationAction.id.desc())
    return list(session.scalars(query.offset(max(0, offset)).limit(_limit(limit))))


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def action_view(action: RemediationAction) -> ActionView:
    planned = action.total - action.applied - action.failed - action.undone
    return ActionView(
        id=action.id,
        investigation_id=action.investigation_id,
        action=action.kind,
        status=action.status,
        undoes=action.undoes_id,
        selection=action.selection,
        options={k: v for k, v in action.options.items() if k != "notice"}
        | ({"notice": action.options["notice"]} if "notice" in action.options else {}),
        preview=action.preview,
        requires_approval=action.requires_approval,
        approval_reason=action.approval_reason,
        requested_by=action.requested_by,
        requested_role=action.requested_role,
        decided_by=action.decided_by,
        decided_at=action.decided_at,
        decision_note=action.decision_note,
        counts=ActionCounts(
            total=action.total,
            planned=max(0, planned),
            applied=action.applied,
            verified=action.verified,
            unchanged=action.unchanged,
            failed=action.failed,
            undone=action.undone,
        ),
        requests=action.requests,
        created_at=action.created_at,
        started_at=action.started_at,
        finished_at=action.finished_at,
    )


def item_view(item: RemediationItem) -> ItemView:
    return ItemView(
        id=item.id,
        action_id=item.action_id,
        hit_id=item.hit_id,
        mailbox=item.mailbox_upn,
        internet_message_id=item.internet_message_id,
        subject=item.subject,
        sender=item.sender_address,
        source_folder=item.source_folder,
        state=item.state,
        changed=item.changed,
        result_folder=item.result_folder,
        attempts=item.attempts,
        error=item.error,
        vaulted=item.vaulted,
        applied_at=item.applied_at,
        verified_at=item.verified_at,
        undone_at=item.undone_at,
    )


def _items_query(action_id: uuid.UUID, state: Sequence[str], mailbox: str | None) -> Select[Any]:
    query = select(RemediationItem).where(RemediationItem.action_id == action_id)
    if state:
        query = query.where(RemediationItem.state.in_(list(state)))
    if mailbox:
        query = query.where(func.lower(RemediationItem.mailbox_upn) == mailbox.strip().lower())
    return query


def list_items(
    session: Session,
    *,
    ref: str | uuid.UUID,
    state: Sequence[str] = (),
    mailbox: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> ItemPage:
    """The receipts of an action, a page at a time."""
    action = get_action(session, ref=ref)
    query = _items_query(action.id, state, mailbox)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(RemediationItem.mailbox_upn, RemediationItem.id)
        .offset(max(0, offset))
        .limit(_limit(limit))
    )
    return ItemPage(
        items=[item_view(r) for r in rows], total=total, offset=offset, limit=_limit(limit)
    )


def export_items(session: Session, *, ref: str | uuid.UUID, fmt: str) -> Iterator[bytes]:
    """Every receipt of an action as CSV or JSON, streamed in chunks."""
    action = get_action(session, ref=ref)
    if fmt not in ("csv", "json"):
        raise ValueError("export format must be csv or json")
    query = (
        _items_query(action.id, (), None)
        .order_by(RemediationItem.mailbox_upn, RemediationItem.id)
        .execution_options(yield_per=EXPORT_CHUNK)
    )

    rows = (item_view(item).model_dump(mode="json") for item in session.scalars(query))
    return stream_rows(rows, EXPORT_FIELDS, "csv" if fmt == "csv" else "json")


# Vault retention ------------------------------------------------------------------------------


def vault_expiry(settings: Settings, now: datetime | None = None) -> datetime:
    return (now or utcnow()) + timedelta(days=settings.vault_retention_days)


def erase_expired(session: Session, *, now: datetime | None = None) -> int:
    """Erase the MIME of vault entries past their retention; returns how many."""
    moment = now or utcnow()
    result = session.execute(
        update(VaultEntry)
        .where(and_(VaultEntry.expires_at <= moment, VaultEntry.mime.is_not(None)))
        .values(mime=None, erased_at=moment)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def vault_summary(session: Session) -> dict[str, Any]:
    kept = session.execute(
        select(func.count(), func.coalesce(func.sum(VaultEntry.mime_size), 0)).where(
            VaultEntry.mime.is_not(None)
        )
    ).one()
    erased = session.scalar(select(func.count()).where(VaultEntry.mime.is_(None))) or 0
    next_expiry = session.scalar(
        select(func.min(VaultEntry.expires_at)).where(VaultEntry.mime.is_not(None))
    )
    return {
        "messages": int(kept[0]),
        "bytes": int(kept[1]),
        "erased": int(erased),
        "next_expiry": next_expiry,
    }
