"""Tables of reported emails: cases (one per reported message), who reported them, the case
timeline, campaign clusters, reporter tokens, notification templates, and the analysis
settings (threat-intel lists, YARA rule sets, the reporting mailbox's delta cursor)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailtrawl.storage.base import (
    Base,
    Ciphertext,
    JSONType,
    Timestamps,
    UTCDateTime,
    UUIDPrimaryKey,
    utcnow,
)
from mailtrawl.storage.models import one_of

# The purposes encrypted values are bound to; changing one makes stored values unreadable.
RAW_PURPOSE = "report-raw"
SETTINGS_SECRETS_PURPOSE = "report-settings-secrets"
SUBJECT_KEY_LENGTH = 400


class CaseStatus(enum.StrEnum):
    OPEN = "open"
    IN_ANALYSIS = "in_analysis"
    IN_PROGRESS = "in_progress"
    CLOSED = "closed"
    FALSE_POSITIVE = "false_positive"


class CaseVerdict(enum.StrEnum):
    """The analysis library's verdicts (`analysis.model.Verdict`), as stored."""

    UNDETECTED = "undetected"
    SUSPICIOUS = "suspicious"
    PHISHING = "phishing"
    MALICIOUS = "malicious"
    SIMULATION = "simulation"


class VerdictSource(enum.StrEnum):
    ANALYSIS = "analysis"  # the engines' verdict
    ANALYST = "analyst"  # set by a person; re-analysis no longer changes it


class Channel(enum.StrEnum):
    """How a report arrived."""

    UPLOAD = "upload"  # a signed-in user or API token uploaded the message
    REPORTER_TOKEN = "reporter_token"  # noqa: S105 - an add-in or gateway, by reporter token
    MAILBOX = "mailbox"  # sent to the reporting mailbox
    CLI = "cli"


class ReportCluster(UUIDPrimaryKey, Timestamps, Base):
    """Cases of one campaign: same sender domain and subject, shared links or attachments,
    or similar bodies (see `reports.clustering`)."""

    __tablename__ = "report_clusters"

    label: Mapped[str] = mapped_column(String(400), default="")
    case_count: Mapped[int] = mapped_column(Integer, default=0)
    # The investigations started for the campaign (one per mail configuration).
    investigation_ids: Mapped[list[str]] = mapped_column(default=list)


class ReportCase(UUIDPrimaryKey, Timestamps, Base):
    """One reported message, however many people reported it."""

    __tablename__ = "report_cases"
    __table_args__ = (
        CheckConstraint(one_of("status", CaseStatus), name="status"),
        CheckConstraint(f"verdict IS NULL OR {one_of('verdict', CaseVerdict)}", name="verdict"),
        CheckConstraint(one_of("verdict_source", VerdictSource), name="verdict_source"),
        UniqueConstraint("dedup_key", name="uq_report_cases_dedup_key"),
        # The queue page's sorts and filters, each ending in the id for stable paging.
        Index("ix_report_cases_last_reported", "last_reported_at", "id"),
        Index("ix_report_cases_status", "status", "last_reported_at"),
        Index("ix_report_cases_verdict", "verdict", "last_reported_at"),
        Index("ix_report_cases_cluster", "cluster_id"),
    )

    # The original's Message-ID when present, else a digest of sender, subject, date, body.
    dedup_key: Mapped[str] = mapped_column(String(128))
    internet_message_id: Mapped[str] = mapped_column(String(998), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    subject_key: Mapped[str] = mapped_column(String(SUBJECT_KEY_LENGTH), default="")
    sender_address: Mapped[str] = mapped_column(String(320), default="")
    sender_name: Mapped[str] = mapped_column(String(256), default="")
    sender_domain: Mapped[str] = mapped_column(String(255), default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # "original" (the message as received) or "forward" (an inline forward: lower fidelity).
    fidelity: Mapped[str] = mapped_column(String(16), default="original")
    status: Mapped[str] = mapped_column(String(16), default=CaseStatus.OPEN.value)
    verdict: Mapped[str | None] = mapped_column(String(16))
    verdict_source: Mapped[str] = mapped_column(String(16), default=VerdictSource.ANALYSIS.value)
    score: Mapped[int | None] = mapped_column(Integer)
    # What the engines said last: `AnalysisResult.as_dict()`, kept even after an analyst's
    # verdict so the evidence stays visible.
    analysis: Mapped[dict[str, Any] | None] = mapped_column()
    analysis_verdict: Mapped[str | None] = mapped_column(String(16))
    analysed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    analysis_error: Mapped[str | None] = mapped_column(Text)
    # Indicators of compromise found when the message was parsed (sender, URLs, domains,
    # attachment hashes...): the auto-investigation's query and the dashboard read these.
    iocs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tags: Mapped[list[str]] = mapped_column(default=list)
    cluster_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("report_clusters.id", ondelete="SET NULL")
    )
    # MinHash signature of the body's word shingles (clustering by similar bodies).
    body_signature: Mapped[list[int]] = mapped_column(JSONType, default=list)
    investigation_ids: Mapped[list[str]] = mapped_column(default=list)
    # The message as analysed: zlib-compressed, then sealed by SecretBox (RAW_PURPOSE).
    raw: Mapped[bytes] = mapped_column(Ciphertext(purpose=RAW_PURPOSE))
    raw_size: Mapped[int] = mapped_column(BigInteger, default=0)
    raw_sha256: Mapped[str] = mapped_column(String(64), default="")
    raw_filename: Mapped[str | None] = mapped_column(String(255))
    reporter_count: Mapped[int] = mapped_column(Integer, default=0)
    first_reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __repr__(self) -> str:
        # Never the subject or sender: reprs end up in logs, and this is customer email.
        return f"ReportCase(id={self.id!s}, status={self.status!r}, verdict={self.verdict!r})"


class CaseReporter(UUIDPrimaryKey, Base):
    """Someone who reported a case (one row per address; `report_count` counts repeats)."""

    __tablename__ = "report_case_reporters"
    __table_args__ = (
        UniqueConstraint("case_id", "address", name="uq_report_case_reporter"),
        Index("ix_report_case_reporters_address", "address"),
    )

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("report_cases.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320), default="")  # "" for anonymous uploads
    name: Mapped[str] = mapped_column(String(256), default="")
    channel: Mapped[str] = mapped_column(String(16))
    # The address was stated by the submitter (a reporter token's `reporter`), not read
    # from a message the reporter sent.
    claimed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    submitted_by: Mapped[str] = mapped_column(String(200), default="")
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    report_count: Mapped[int] = mapped_column(Integer, default=1)
    wrapper_subject: Mapped[str] = mapped_column(Text, default="")
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notified_verdict: Mapped[str | None] = mapped_column(String(16))


class CaseEvent(UUIDPrimaryKey, Base):
    """One line of a case's timeline: reported, analysed, verdict, status, note, notified..."""

    __tablename__ = "report_case_events"
    __table_args__ = (Index("ix_report_case_events_case", "case_id", "at"),)

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("report_cases.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class CaseKey(Base):
    """A clustering key of a case (digest of kind and value): subject, URL, hash, MinHash band.

    Cases sharing a key are cluster candidates, found with one indexed lookup.
    """

    __tablename__ = "report_case_keys"
    __table_args__ = (Index("ix_report_case_keys_digest", "digest"),)

    case_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("report_cases.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))


class ReporterToken(UUIDPrimaryKey, Timestamps, Base):
    """A token that can only submit reports (add-ins, mail gateways); only its SHA-256 kept."""

    __tablename__ = "reporter_tokens"

    name: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"ReporterToken(id={self.id!s}, name={self.name!r}, prefix={self.prefix!r})"


class NotificationTemplate(Base):
    """The reporter notification for one verdict ("default": every verdict without its own)."""

    __tablename__ = "report_templates"

    verdict: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # HTML, Jinja2 (sandboxed, autoescaped)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ReportSettingsRow(Base):
    """The analysis and intake settings: one row (id 1); secrets sealed apart from the rest."""

    __tablename__ = "report_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # JSON {"smtp_password": ..., "online": {engine: api key}} sealed by SecretBox.
    secrets_encrypted: Mapped[bytes | None] = mapped_column(
        Ciphertext(purpose=SETTINGS_SECRETS_PURPOSE)
    )
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class IntelListRecord(UUIDPrimaryKey, Timestamps, Base):
    """An imported threat-intelligence list: the file as given (zlib), re-read on index builds."""

    __tablename__ = "report_intel_lists"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # csv | lines | stix | misp
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    indicator_count: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[list[str]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class YaraRuleRecord(UUIDPrimaryKey, Timestamps, Base):
    """A YARA rule set as source text (compiled with the others once per change)."""

    __tablename__ = "report_yara_rules"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class ReportingMailboxState(Base):
    """Where the reporting mailbox's delta read stopped, durably."""

    __tablename__ = "report_mailbox_state"

    configuration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    mailbox: Mapped[str] = mapped_column(String(320), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    # Messages received before this are not reports for us (set at the first poll).
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    resyncs: Mapped[int] = mapped_column(Integer, default=0)


class ReportingMailboxSeen(Base):
    """A message of the reporting mailbox already taken in (so a resync adds no duplicates)."""

    __tablename__ = "report_mailbox_seen"
    __table_args__ = (Index("ix_report_mailbox_seen_at", "seen_at"),)

    configuration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("mail_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    mailbox: Mapped[str] = mapped_column(String(320), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    case_id: Mapped[uuid.UUID | None] = mapped_column()


__all__ = [
    "RAW_PURPOSE",
    "SETTINGS_SECRETS_PURPOSE",
    "CaseEvent",
    "CaseKey",
    "CaseReporter",
    "CaseStatus",
    "CaseVerdict",
    "Channel",
    "IntelListRecord",
    "NotificationTemplate",
    "ReportCase",
    "ReportCluster",
    "ReportSettingsRow",
    "ReporterToken",
    "ReportingMailboxSeen",
    "ReportingMailboxState",
    "VerdictSource",
    "YaraRuleRecord",
]
