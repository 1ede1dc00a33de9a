"""What people do to reported emails and their settings, each audited in one place.

The API, the dashboard and the CLI call these rather than `service` directly, so an
operation is recorded the same way whichever interface asked for it. Each runs in the
caller's transaction; the caller commits.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session

from mailtrawl.audit import service as audit
from mailtrawl.audit.service import Actor
from mailtrawl.reports import service
from mailtrawl.reports.intake import IntakeResult, submit_report
from mailtrawl.reports.models import CaseEvent, Channel, IntelListRecord, ReportCase, ReportCluster
from mailtrawl.reports.models import ReporterToken as ReporterTokenRecord
from mailtrawl.reports.schemas import (
    CaseUpdate,
    ClusterAction,
    IntelListView,
    IssuedReporterToken,
    SettingsUpdate,
    VerdictChange,
    YaraRuleView,
)
from mailtrawl.reports.settings import update_report_settings
from mailtrawl.storage.secrets import SecretBox

CASE = "report_case"


def submit(
    session: Session,
    *,
    box: SecretBox,
    raw: bytes,
    filename: str | None,
    channel: Channel,
    actor: Actor,
    reporter: str | None = None,
    claimed: bool = False,
    analyse: bool = True,
) -> IntakeResult:
    """File a report (`report.submit`); see `intake.submit_report` for what it raises."""
    result = submit_report(
        session,
        box=box,
        raw=raw,
        filename=filename,
        channel=channel,
        actor=actor.name,
        reporter=reporter,
        claimed=claimed,
        analyse=analyse,
    )
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.submit",
        entity_type=CASE,
        entity_id=str(result.case.id),
        after={
            "channel": channel.value,
            "reporter": result.reporter,
            "claimed": claimed,
            "created": result.created,
            "fidelity": result.fidelity,
            "size": len(raw),
        },
    )
    return result


def set_verdict(
    session: Session, *, case: ReportCase, data: VerdictChange, actor: Actor
) -> service.Change:
    """An analyst's verdict (`report.verdict`); reporters are told unless `data.notify` is off."""
    change = service.set_verdict(
        session,
        case=case,
        verdict=data.verdict,
        actor=actor.name,
        message=data.message,
        notify_reporters=data.notify,
    )
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.verdict",
        entity_type=CASE,
        entity_id=str(case.id),
        before=change.before,
        after={**change.after, "message": data.message, "notify": data.notify},
    )
    return change


def update_case(
    session: Session, *, case: ReportCase, data: CaseUpdate, actor: Actor
) -> service.Change:
    """Status and tags (`report.update`)."""
    change = service.update_case(session, case=case, data=data, actor=actor.name)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.update",
        entity_type=CASE,
        entity_id=str(case.id),
        before=change.before,
        after=change.after,
    )
    return change


def add_note(session: Session, *, case: ReportCase, text: str, actor: Actor) -> CaseEvent:
    """A note on the timeline (`report.note`; the log keeps its length, not its text)."""
    event = service.add_note(session, case=case, text=text, actor=actor.name)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.note",
        entity_type=CASE,
        entity_id=str(case.id),
        after={"event_id": str(event.id), "length": len(text)},
    )
    return event


def reanalyse(session: Session, *, case: ReportCase, actor: Actor) -> None:
    """Analyse again in the background (`report.reanalyse`)."""
    service.reanalyse(session, case=case, actor=actor.name)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.reanalyse",
        entity_type=CASE,
        entity_id=str(case.id),
    )


def request_notification(
    session: Session, *, case: ReportCase, message: str | None, actor: Actor
) -> str:
    """Tell the reporters the verdict again (`report.notify.request`); raises ReportsRejected."""
    key = service.request_notification(session, case=case, actor=actor.name, message=message)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.notify.request",
        entity_type=CASE,
        entity_id=str(case.id),
        after={"message": message},
    )
    return key


def apply_to_cluster(
    session: Session, *, cluster: ReportCluster, data: ClusterAction, actor: Actor
) -> list[uuid.UUID]:
    """One action on every case of a cluster (`report.cluster.action`)."""
    case_ids = service.apply_to_cluster(session, cluster=cluster, data=data, actor=actor.name)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.cluster.action",
        entity_type="report_cluster",
        entity_id=str(cluster.id),
        after={**data.model_dump(mode="json"), "cases": [str(c) for c in case_ids]},
    )
    return case_ids


def download_attachment(
    session: Session, *, case: ReportCase, sha256: str, box: SecretBox, actor: Actor
) -> bytes:
    """One attachment in an AES zip (`report.attachment.download`); raises ReportsNotFound."""
    wanted = sha256.strip().lower()
    data = service.attachment_archive(case, wanted, box=box)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.attachment.download",
        entity_type=CASE,
        entity_id=str(case.id),
        after={"sha256": wanted},
    )
    return data


def import_intel_list(
    session: Session,
    *,
    data: bytes,
    name: str,
    actor: Actor,
    kind: str | None = None,
    strict: bool = False,
) -> IntelListRecord:
    """Import or replace a threat-intelligence list (`report.intel.import`)."""
    record = service.import_intel_list(
        session, data=data, name=name, actor=actor.name, kind=kind, strict=strict
    )
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.intel.import",
        entity_type="report_intel_list",
        entity_id=str(record.id),
        after={"name": record.name, "kind": record.kind, "indicators": record.indicator_count},
    )
    return record


def create_reporter_token(
    session: Session, *, name: str, expires_in: timedelta | None, actor: Actor
) -> IssuedReporterToken:
    """A token that can only submit reports (`report.reporter_token.create`)."""
    issued = service.create_reporter_token(
        session, name=name, actor=actor.name, expires_in=expires_in
    )
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.reporter_token.create",
        entity_type="reporter_token",
        entity_id=str(issued.id),
        after={"name": issued.name, "prefix": issued.prefix, "expires_at": str(issued.expires_at)},
    )
    return issued


def revoke_reporter_token(session: Session, *, ref: str, actor: Actor) -> ReporterTokenRecord:
    """Revoke a reporter token by id or name (`report.reporter_token.revoke`)."""
    record = service.revoke_reporter_token(session, ref=ref)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.reporter_token.revoke",
        entity_type="reporter_token",
        entity_id=str(record.id),
        after={"name": record.name},
    )
    return record


# Administration ------------------------------------------------------------------------------


def update_settings(
    session: Session, *, box: SecretBox, data: SettingsUpdate, actor: Actor
) -> None:
    """Change report settings (`report.settings`; secrets logged as hints only)."""
    before, after = update_report_settings(session, box=box, data=data, actor=actor.name)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.settings",
        entity_type="report_settings",
        entity_id="reports",
        before=before,
        after=after,
    )


def save_template(
    session: Session, *, verdict: str, subject: str, body: str, actor: Actor
) -> service.Change:
    """Store a notification template (`report.template.save`)."""
    change = service.save_template(
        session, verdict=verdict, subject=subject, body=body, actor=actor.name
    )
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.template.save",
        entity_type="report_template",
        entity_id=verdict,
        before=change.before,
        after=change.after,
    )
    return change


def delete_template(session: Session, *, verdict: str, actor: Actor) -> service.Change:
    """Remove a notification template (`report.template.delete`)."""
    change = service.delete_template(session, verdict=verdict)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.template.delete",
        entity_type="report_template",
        entity_id=verdict,
        before=change.before,
    )
    return change


def delete_intel_list(session: Session, *, ref: str, actor: Actor) -> IntelListView:
    """Remove a threat-intelligence list (`report.intel.delete`)."""
    view = service.delete_intel_list(session, ref=ref)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.intel.delete",
        entity_type="report_intel_list",
        entity_id=str(view.id),
        before={"name": view.name},
    )
    return view


def save_yara_rules(session: Session, *, name: str, source: str, actor: Actor) -> YaraRuleView:
    """Store a rule set once it compiles (`report.yara.save`); raises YaraCompileError."""
    view = service.yara_view(
        service.save_yara_rules(session, name=name, source=source, actor=actor.name)
    )
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.yara.save",
        entity_type="report_yara_rules",
        entity_id=str(view.id),
        after={"name": view.name, "size": view.size},
    )
    return view


def delete_yara_rules(session: Session, *, ref: str, actor: Actor) -> YaraRuleView:
    """Remove a rule set (`report.yara.delete`)."""
    view = service.delete_yara_rules(session, ref=ref)
    audit.record(
        session,
        **actor.audit_fields(),
        operation="report.yara.delete",
        entity_type="report_yara_rules",
        entity_id=str(view.id),
        before={"name": view.name},
    )
    return view
