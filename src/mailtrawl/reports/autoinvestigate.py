"""An investigation for the whole campaign once a case is judged phishing or malicious.

The query is built from the case's indicators as one `any` group (see
`investigations.query`), over the last N days (setting, default 7):

- `from`: the sender's address, unless it is in the organisation's own domains (a spoofed
  colleague's address would match all of their real mail);
- `subject` equals the subject, when it has at least 8 characters;
- `url`: the links, outside the organisation's domains (at most 50);
- `url_domain`: the registrable domains of links an analysis engine flagged (the domain of a
  brand's logo in a phishing email is not flagged, so it is not searched), at most 20;
- `attachment_hash`: the SHA-256 of every attachment, archive members included (at most 50);
- `internet_message_id`: the original's Message-ID (not for an inline forward, whose id is
  the forwarder's own).

One investigation per enabled mail configuration, active for `duration` (default 24 h) with
the action chosen in the settings (default: none). Identical reports share it: the case keeps
the investigations' ids, and so does its cluster, whose other cases then link to them rather
than start their own. Administrators are told through the audit log (the dashboard's recent
activity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtrawl.analysis.domains import domain_of_address, registrable_domain
from mailtrawl.audit import service as audit
from mailtrawl.errors import MailtrawlError
from mailtrawl.investigations.query import MAX_TEXT, QueryError
from mailtrawl.investigations.schemas import InvestigationCreate
from mailtrawl.investigations.service import create_investigation
from mailtrawl.reports.models import ReportCase, ReportCluster
from mailtrawl.reports.schemas import ReportSettings
from mailtrawl.reports.timeline import add_event
from mailtrawl.storage.models import MailConfiguration

SYSTEM_ACTOR = "mailtrawl"
MIN_SUBJECT = 8
MAX_URLS = 50
MAX_DOMAINS = 20
MAX_HASHES = 50


def _owned(domain: str, own: Sequence[str]) -> bool:
    domain = domain.lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in own)


def build_query(
    case: ReportCase, *, days: int, own_domains: Sequence[str]
) -> dict[str, Any] | None:
    """The investigation's query document, or None when the case has no usable indicator."""
    iocs = case.iocs or {}
    own = [d.lower() for d in own_domains]
    alternatives: list[dict[str, Any]] = []
    sender = str(iocs.get("sender") or case.sender_address or "")
    if "@" in sender and not _owned(domain_of_address(sender), own):
        alternatives.append({"from": sender})
    subject = " ".join(case.subject.split())
    if len(subject) >= MIN_SUBJECT:
        alternatives.append({"subject": {"equals": subject[:MAX_TEXT]}})
    urls = [
        str(u)
        for u in iocs.get("urls") or ()
        if isinstance(u, str) and len(u) <= MAX_TEXT and not _owned(_host(u), own)
    ][:MAX_URLS]
    if urls:
        alternatives.append({"url": urls})
    flagged = _flagged_values(case)
    domains = []
    for url in urls:
        domain = registrable_domain(_host(url)) if _host(url) else ""
        if domain and "." in domain and any(domain in value for value in flagged):
            domains.append(domain)
    domains = list(dict.fromkeys(domains))[:MAX_DOMAINS]
    if domains:
        alternatives.append({"url_domain": domains})
    hashes = list(
        dict.fromkeys(
            str(a["sha256"])
            for a in iocs.get("attachments") or ()
            if isinstance(a, dict) and len(str(a.get("sha256") or "")) == 64
        )
    )[:MAX_HASHES]
    if hashes:
        alternatives.append({"attachment_hash": hashes})
    if case.fidelity == "original" and case.internet_message_id.strip():
        alternatives.append({"internet_message_id": case.internet_message_id.strip()[:MAX_TEXT]})
    if not alternatives:
        return None
    return {"match": {"any": alternatives}, "received": {"after": f"{days}d"}}


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return host.rsplit("@", 1)[-1].split(":", 1)[0].lower()


def _flagged_values(case: ReportCase) -> list[str]:
    indicators = (case.analysis or {}).get("indicators") or []
    return [
        str(i.get("value")).lower()
        for i in indicators
        if isinstance(i, dict) and i.get("value") and int(i.get("score") or 0) > 0
    ]


def start_auto_investigation(
    session: Session,
    *,
    case: ReportCase,
    settings: ReportSettings,
    own_domains: Sequence[str],
    actor: str = SYSTEM_ACTOR,
) -> list[str]:
    """Start (or link) the campaign's investigations when the case's verdict asks for it.

    Returns the ids of the investigations the case is linked to (none when not wanted).
    """
    wanted = settings.auto_investigation
    if not wanted.enabled or case.verdict not in wanted.verdicts:
        return list(case.investigation_ids or [])
    if case.investigation_ids:
        return list(case.investigation_ids)
    cluster = session.get(ReportCluster, case.cluster_id) if case.cluster_id else None
    if cluster is not None and cluster.investigation_ids:
        case.investigation_ids = list(cluster.investigation_ids)
        add_event(
            session,
            case.id,
            "investigation",
            actor=actor,
            message="Linked to the campaign's investigation (a case of the same cluster).",
            detail={"investigation_ids": case.investigation_ids, "shared": True},
        )
        return list(case.investigation_ids)
    query = build_query(case, days=wanted.days, own_domains=own_domains)
    if query is None:
        add_event(
            session,
            case.id,
            "investigation",
            actor=actor,
            message="No investigation was started: the message has no indicator to search for.",
        )
        return []
    started: list[str] = []
    configurations = session.scalars(
        select(MailConfiguration)
        .where(MailConfiguration.enabled)
        .order_by(MailConfiguration.created_at)
    ).all()
    for configuration in configurations:
        name = f"Reported {case.verdict}: {' '.join(case.subject.split())[:150] or '(no subject)'}"
        try:
            with session.begin_nested():
                record = create_investigation(
                    session,
                    data=InvestigationCreate(
                        name=name[:200],
                        configuration=str(configuration.id),
                        scope=None,
                        query=query,
                        duration=wanted.duration,
                        action=wanted.action,
                    ),
                    actor=actor,
                )
        except (QueryError, MailtrawlError, ValueError) as exc:
            add_event(
                session,
                case.id,
                "investigation_failed",
                actor=actor,
                message=f"The investigation in {configuration.name} could not start: "
                f"{str(exc)[:500]}",
            )
            continue
        started.append(str(record.id))
        audit.record(
            session,
            actor=actor,
            operation="investigation.create",
            entity_type="investigation",
            entity_id=str(record.id),
            after={"name": record.name, "configuration": configuration.name, "query": query},
        )
    if not started:
        return []
    case.investigation_ids = started
    if cluster is not None:
        cluster.investigation_ids = list(started)
    add_event(
        session,
        case.id,
        "investigation",
        actor=actor,
        message=f"Started {len(started)} investigation(s) for the campaign over the last "
        f"{wanted.days} days, active for {wanted.duration}"
        + (f", acting by {wanted.action}." if wanted.action else ", without automatic action."),
        detail={"investigation_ids": started, "query": query},
    )
    # The administrators' notice: the dashboard's recent activity lists the audit log.
    audit.record(
        session,
        actor=actor,
        operation="report.auto_investigation",
        entity_type="report_case",
        entity_id=str(case.id),
        after={
            "verdict": case.verdict,
            "investigation_ids": started,
            "cluster_id": str(case.cluster_id) if case.cluster_id else None,
            "action": wanted.action,
        },
    )
    return started


__all__ = ["build_query", "start_auto_investigation"]
