"""Taking a report in: unwrap and parse it, find or open its case, record the reporter.

Whatever the way in (upload, reporter token, reporting mailbox, CLI), a report ends here.
The same message reported by many people is one case: the key is the original's Internet
Message-ID when it has one, else a digest of sender, subject, date and body. The message as
analysed is stored zlib-compressed and sealed by SecretBox (purpose "report-raw"); it is
customer email and never logged. Analysis runs as a job, enqueued in the same transaction.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailtrawl.analysis.domains import domain_of_address, registrable_domain
from mailtrawl.analysis.errors import ReportTooLarge
from mailtrawl.analysis.model import ParsedReport
from mailtrawl.analysis.parsing import MAX_REPORT_BYTES, Unwrapped, parse_reported_email
from mailtrawl.errors import MailtrawlError
from mailtrawl.reports.jobs import enqueue_analysis, enqueue_notification
from mailtrawl.reports.models import (
    RAW_PURPOSE,
    SUBJECT_KEY_LENGTH,
    CaseReporter,
    Channel,
    ReportCase,
)
from mailtrawl.reports.settings import load_report_settings
from mailtrawl.reports.timeline import add_event
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.secrets import SecretBox

MAX_IOCS = 200
COMPRESSION_LEVEL = 6


class InvalidReporter(MailtrawlError):
    """The reporter's address given with a report is not an email address."""


def seal_raw(box: SecretBox, raw: bytes) -> bytes:
    """Compress, then encrypt, a reported message for storage."""
    return box.encrypt(zlib.compress(raw, COMPRESSION_LEVEL), purpose=RAW_PURPOSE)


def open_raw(box: SecretBox, sealed: bytes) -> bytes:
    """The stored message, decrypted and decompressed (bounded: never over the intake limit)."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(box.decrypt(sealed, purpose=RAW_PURPOSE), MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise ReportTooLarge(len(data), MAX_REPORT_BYTES)
    return data


def normalise_reporter(address: str | None) -> str | None:
    """A reporter address as given in a header or field, lower-cased; InvalidReporter if not
    an address."""
    if address is None or not address.strip():
        return None
    _, parsed = parseaddr(address.strip()[:400])
    local, at, domain = parsed.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain
        or len(parsed) > 320
        or any(c.isspace() for c in parsed)
    ):
        raise InvalidReporter(
            f"The reporter '{address.strip()[:100]}' is not an email address; give the address "
            "of the person who reported the message (e.g. alice@contoso.com)."
        )
    return parsed.lower()


def dedup_key(report: ParsedReport) -> str:
    """The original's Message-ID, else a digest of sender, subject, date and body."""
    message_id = (report.message_id or "").strip().strip("<>").strip().lower()
    if message_id and report.fidelity == "original":
        return "mid:" + hashlib.sha256(message_id.encode()).hexdigest()
    body = hashlib.sha256(report.text.encode("utf-8", "replace")).hexdigest()
    parts = [
        report.sender.address,
        " ".join(report.subject.split()).lower(),
        report.date.isoformat() if report.date else "",
        body,
        # An inline forward carries the forwarder's own Message-ID: distinct per forward.
        message_id if report.fidelity != "original" else "",
    ]
    return "sum:" + hashlib.sha256("\0".join(parts).encode("utf-8", "replace")).hexdigest()


def indicators_of(report: ParsedReport) -> dict[str, Any]:
    """The report's indicators of compromise, bounded, for the case and its investigation."""
    attachments = [
        {
            "name": a.name[:255],
            "sha256": a.sha256,
            "md5": a.md5,
            "size": a.size,
            "type": a.sniffed_type,
            "declared_type": a.declared_type[:100],
            "depth": a.depth,
            "container": (a.container or "")[:255] or None,
            "has_content": a.content is not None,
        }
        for a in report.attachments[:MAX_IOCS]
    ]
    return {
        "message_id": (report.message_id or "")[:998],
        "subject": report.subject[:1000],
        "sender": report.sender.address,
        "sender_name": report.sender.name[:256],
        "reply_to": [a.address for a in report.reply_to[:20]],
        "return_path": report.return_path,
        "originating_ip": report.originating_ip,
        "urls": list(dict.fromkeys(u.url for u in report.urls))[:MAX_IOCS],
        "domains": list(report.domains[:MAX_IOCS]),
        "ips": list(report.ips[:MAX_IOCS]),
        "attachments": attachments,
    }


@dataclass
class IntakeResult:
    case: ReportCase
    created: bool
    reporter: str | None
    fidelity: str
    warnings: list[str] = field(default_factory=list)


def submit_report(
    session: Session,
    *,
    box: SecretBox,
    raw: bytes,
    filename: str | None,
    channel: Channel,
    actor: str,
    reporter: str | None = None,
    reporter_name: str = "",
    claimed: bool = False,
    analyse: bool = True,
    now: datetime | None = None,
) -> IntakeResult:
    """Take one report in (in the caller's transaction); see the module docstring.

    `reporter` is an address stated by the submitter (`claimed` when a reporter token stated
    it); without one, the sender of a report that wraps or forwards the original is the
    reporter. Raises ReportTooLarge (over 50 MB), ReportParseError (an unreadable form),
    InvalidReporter. With `analyse`, the analysis job is enqueued for a new case.
    """
    if len(raw) > MAX_REPORT_BYTES:
        raise ReportTooLarge(len(raw), MAX_REPORT_BYTES)
    stated = normalise_reporter(reporter)
    report, unwrapped = parse_reported_email(raw, filename=filename)
    moment = now or utcnow()
    address, name, is_claimed = _reporter(stated, reporter_name, claimed, unwrapped)
    key = dedup_key(report)
    case = session.scalar(select(ReportCase).where(ReportCase.dedup_key == key))
    created = False
    if case is None:
        case = _new_case(box, report, unwrapped, key, filename, moment)
        try:
            with session.begin_nested():
                session.add(case)
                session.flush()
            created = True
        except IntegrityError:  # reported at the same moment by someone else
            case = session.scalar(select(ReportCase).where(ReportCase.dedup_key == key))
            if case is None:
                raise
    if created:
        add_event(
            session,
            case.id,
            "reported",
            actor=actor,
            message=f"Reported by {address or 'an upload without a reporter'} ({channel.value}).",
            detail={"channel": channel.value, "reporter": address, "fidelity": report.fidelity},
            at=moment,
        )
        if analyse:
            enqueue_analysis(session, case.id)
    new_reporter = _record_reporter(
        session,
        case,
        address=address,
        name=name,
        channel=channel,
        claimed=is_claimed,
        actor=actor,
        wrapper_subject=unwrapped.wrapper_subject if unwrapped.reporter else "",
        at=moment,
    )
    if not created:
        case.last_reported_at = moment
        add_event(
            session,
            case.id,
            "reported",
            actor=actor,
            message=f"Reported again by {address or 'an upload without a reporter'} "
            f"({channel.value}).",
            detail={"channel": channel.value, "reporter": address, "fidelity": report.fidelity},
            at=moment,
        )
        # Someone new reported a message already judged: tell them too.
        if new_reporter and address and case.verdict is not None:
            settings = load_report_settings(session)
            if settings.notifications.enabled and case.verdict in settings.notifications.verdicts:
                enqueue_notification(session, case.id, reason="new_reporter", addresses=[address])
    session.flush()
    return IntakeResult(
        case=case,
        created=created,
        reporter=address or None,
        fidelity=report.fidelity,
        warnings=list(report.warnings[:20]),
    )


def _reporter(
    stated: str | None, stated_name: str, claimed: bool, unwrapped: Unwrapped
) -> tuple[str, str, bool]:
    if stated:
        return stated, stated_name.strip()[:256], claimed
    if unwrapped.reporter is not None and unwrapped.reporter.address:
        return unwrapped.reporter.address.lower()[:320], unwrapped.reporter.name[:256], False
    return "", "", False


def _new_case(
    box: SecretBox,
    report: ParsedReport,
    unwrapped: Unwrapped,
    key: str,
    filename: str | None,
    moment: datetime,
) -> ReportCase:
    original = unwrapped.original
    sender = report.sender.address
    domain = domain_of_address(sender) if sender else ""
    return ReportCase(
        dedup_key=key,
        internet_message_id=(report.message_id or "")[:998],
        subject=report.subject[:10_000],
        subject_key=report.subject.lower()[:SUBJECT_KEY_LENGTH],
        sender_address=sender[:320],
        sender_name=report.sender.name[:256],
        sender_domain=(registrable_domain(domain) if domain else "")[:255],
        sent_at=report.date,
        fidelity=report.fidelity,
        iocs=indicators_of(report),
        tags=[],
        body_signature=[],
        investigation_ids=[],
        raw=seal_raw(box, original),
        raw_size=len(original),
        raw_sha256=hashlib.sha256(original).hexdigest(),
        raw_filename=(filename or "")[:255] or None,
        reporter_count=0,
        first_reported_at=moment,
        last_reported_at=moment,
    )


def _record_reporter(
    session: Session,
    case: ReportCase,
    *,
    address: str,
    name: str,
    channel: Channel,
    claimed: bool,
    actor: str,
    wrapper_subject: str,
    at: datetime,
) -> bool:
    """Add the reporter to the case, or count a repeat; True when they are new to it."""
    row = session.scalar(
        select(CaseReporter).where(CaseReporter.case_id == case.id, CaseReporter.address == address)
    )
    if row is not None:
        row.report_count += 1
        row.last_reported_at = at
        return False
    session.add(
        CaseReporter(
            case_id=case.id,
            address=address,
            name=name,
            channel=channel.value,
            claimed=claimed,
            submitted_by=actor[:200],
            reported_at=at,
            last_reported_at=at,
            report_count=1,
            wrapper_subject=wrapper_subject[:1000],
        )
    )
    case.reporter_count = (case.reporter_count or 0) + 1
    return True


__all__ = [
    "IntakeResult",
    "InvalidReporter",
    "dedup_key",
    "indicators_of",
    "normalise_reporter",
    "open_raw",
    "seal_raw",
    "submit_report",
]
