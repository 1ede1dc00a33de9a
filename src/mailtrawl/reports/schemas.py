"""What the API and CLI accept and show for reported emails, and the reports settings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailtrawl.investigations.schemas import AutoAction, Page
from mailtrawl.reports.models import CaseStatus, CaseVerdict

VerdictName = Literal["undetected", "suspicious", "phishing", "malicious", "simulation"]
StatusName = Literal["open", "in_analysis", "in_progress", "closed", "false_positive"]
CaseSort = Literal[
    "-last_reported",
    "last_reported",
    "-first_reported",
    "first_reported",
    "-score",
    "score",
    "-reporters",
    "reporters",
    "subject",
    "-subject",
]
ALL_VERDICTS = ("undetected", "suspicious", "phishing", "malicious", "simulation")
MAX_TAG = 64
MAX_TAGS = 50
MAX_NOTE = 10_000
MAX_MESSAGE = 4_000
MAX_LIST_ENTRIES = 1_000


def _verdicts(*names: str) -> list[VerdictName]:
    return [name for name in names if name in ALL_VERDICTS]  # type: ignore[misc]


def _clean_tags(tags: list[str]) -> list[str]:
    cleaned = [" ".join(t.split())[:MAX_TAG] for t in tags]
    return list(dict.fromkeys(t for t in cleaned if t))[:MAX_TAGS]


# Cases ------------------------------------------------------------------------------------


class ReporterView(BaseModel):
    address: str
    name: str
    channel: str
    claimed: bool
    submitted_by: str
    reported_at: datetime
    last_reported_at: datetime
    report_count: int
    notified_at: datetime | None
    notified_verdict: str | None


class EventView(BaseModel):
    id: uuid.UUID
    at: datetime
    kind: str
    actor: str
    message: str
    detail: dict[str, Any]


class CaseSummary(BaseModel):
    """One line of the queue."""

    id: uuid.UUID
    subject: str
    sender: str
    sender_name: str
    status: str
    verdict: str | None
    verdict_source: str
    score: int | None
    fidelity: str
    tags: list[str]
    cluster_id: uuid.UUID | None
    reporter_count: int
    first_reported_at: datetime
    last_reported_at: datetime
    analysed_at: datetime | None
    investigation_ids: list[str]


class CaseView(CaseSummary):
    """A case with what its page shows: reporters, analysis, indicators, timeline."""

    internet_message_id: str
    sent_at: datetime | None
    analysis: dict[str, Any] | None
    analysis_verdict: str | None
    analysis_error: str | None
    iocs: dict[str, Any]
    raw_size: int
    raw_sha256: str
    reporters: list[ReporterView]
    timeline: list[EventView]


class IntakeView(BaseModel):
    """The answer to a submitted report."""

    case_id: uuid.UUID
    created: bool  # False: the message was already reported; this report joined its case
    reporter: str | None
    fidelity: str
    status: str
    verdict: str | None
    warnings: list[str] = Field(default_factory=list)


class CaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: StatusName | None = None
    tags: list[str] | None = Field(default=None, max_length=MAX_TAGS, description="replace")
    add_tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    remove_tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)

    @field_validator("tags", "add_tags", "remove_tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _clean_tags(value)


class VerdictChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: VerdictName
    message: str | None = Field(
        default=None, max_length=MAX_MESSAGE, description="shown to the reporters"
    )
    notify: bool = Field(default=True, description="tell the reporters about the new verdict")


class NoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=MAX_NOTE)


class NotifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str | None = Field(default=None, max_length=MAX_MESSAGE)


class ClusterAction(BaseModel):
    """Applied to every case of a cluster."""

    model_config = ConfigDict(extra="forbid")

    verdict: VerdictName | None = None
    message: str | None = Field(default=None, max_length=MAX_MESSAGE)
    status: StatusName | None = None
    add_tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    remove_tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)
    notify: bool = False

    @field_validator("add_tags", "remove_tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return _clean_tags(value)


class ClusterView(BaseModel):
    id: uuid.UUID
    label: str
    case_count: int
    investigation_ids: list[str]
    created_at: datetime
    updated_at: datetime
    cases: list[CaseSummary] = Field(default_factory=list)


# Reporter tokens --------------------------------------------------------------------------


class ReporterTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    expires_in_days: int | None = Field(default=365, ge=1, le=3650)


class ReporterTokenView(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class IssuedReporterToken(ReporterTokenView):
    token: str  # shown once


# Templates --------------------------------------------------------------------------------


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=1_000)
    body: str = Field(min_length=1, max_length=64 * 1024)


class TemplateView(BaseModel):
    verdict: str  # "default" or a verdict
    subject: str
    body: str
    custom: bool  # False: the built-in template
    updated_by: str | None
    updated_at: datetime | None


# Threat intel and YARA ----------------------------------------------------------------------


class IntelListView(BaseModel):
    id: uuid.UUID
    name: str
    kind: str
    size: int
    indicator_count: int
    warnings: list[str]
    enabled: bool
    created_by: str
    created_at: datetime
    updated_at: datetime


class YaraRuleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    source: str = Field(min_length=1, max_length=1024 * 1024)


class YaraRuleView(BaseModel):
    id: uuid.UUID
    name: str
    enabled: bool
    size: int
    created_by: str
    created_at: datetime
    updated_at: datetime


# Settings ---------------------------------------------------------------------------------


class SimulationHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[!-9;-~]+$")
    value: str | None = Field(default=None, max_length=500)


class ExclusionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domains: list[str] = Field(default_factory=list, max_length=MAX_LIST_ENTRIES)
    urls: list[str] = Field(default_factory=list, max_length=MAX_LIST_ENTRIES)
    ips: list[str] = Field(default_factory=list, max_length=MAX_LIST_ENTRIES)
    extensions: list[str] = Field(default_factory=list, max_length=MAX_LIST_ENTRIES)


class ReportingMailboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    configuration: str | None = Field(default=None, max_length=200, description="name or id")
    mailbox: str | None = Field(default=None, max_length=320, description="e.g. phishing@…")
    interval_seconds: int = Field(default=30, ge=5, le=3600)
    # At the first poll, messages received this long before are taken in too.
    backfill_hours: int = Field(default=24, ge=0, le=24 * 30)


class NotificationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    # "mailbox": the message is created in the reporter's inbox through a mail configuration
    # (Mail.ReadWrite, no Mail.Send); "smtp": sent through the SMTP server below.
    via: Literal["mailbox", "smtp"] = "mailbox"
    configuration: str | None = Field(
        default=None,
        max_length=200,
        description="name or id; default: the one whose authorised domains hold the reporter's",
    )
    on_analysis: bool = True  # tell reporters the engines' verdict, not only an analyst's
    verdicts: list[VerdictName] = Field(default_factory=lambda: _verdicts(*ALL_VERDICTS))
    sender_name: str = Field(default="Security team", max_length=200)


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str | None = Field(default=None, max_length=255)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = Field(default=None, max_length=320)
    from_address: str | None = Field(default=None, max_length=320)
    timeout_s: float = Field(default=15.0, gt=0, le=120)


class AutoInvestigationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    verdicts: list[VerdictName] = Field(default_factory=lambda: _verdicts("phishing", "malicious"))
    days: int = Field(default=7, ge=1, le=90)  # how far back the investigation looks
    duration: str = Field(default="24h", max_length=16)  # how long it stays active
    action: AutoAction | None = None


class ReportSettings(BaseModel):
    """Every setting of report intake and analysis (secrets excluded: see SettingsView)."""

    model_config = ConfigDict(extra="forbid")

    # Empty: the authorised domains of the mail configurations.
    own_domains: list[str] = Field(default_factory=list, max_length=MAX_LIST_ENTRIES)
    colleague_names: list[str] = Field(default_factory=list, max_length=MAX_LIST_ENTRIES)
    simulation_headers: list[SimulationHeader] = Field(default_factory=list, max_length=100)
    exclusions: ExclusionSettings = Field(default_factory=ExclusionSettings)
    reporting_mailbox: ReportingMailboxSettings = Field(default_factory=ReportingMailboxSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    auto_investigation: AutoInvestigationSettings = Field(default_factory=AutoInvestigationSettings)
    # Estimated Jaccard similarity of two bodies' word shingles that puts them in one cluster.
    cluster_similarity: float = Field(default=0.6, ge=0.3, le=1.0)
    # Online engines (analysis.online.OnlineEnginesConfig without the API keys); all off.
    online: dict[str, dict[str, Any]] = Field(default_factory=dict)
    engine_timeout_s: float = Field(default=30.0, gt=0, le=600)


class SettingsView(ReportSettings):
    """The settings as shown: secrets only as hints ("••••abcd") or None."""

    effective_own_domains: list[str] = Field(default_factory=list)
    smtp_password: str | None = None
    online_api_keys: dict[str, str] = Field(default_factory=dict)


class SettingsUpdate(BaseModel):
    """A partial change: the sections given replace (field by field) what is stored."""

    model_config = ConfigDict(extra="forbid")

    own_domains: list[str] | None = Field(default=None, max_length=MAX_LIST_ENTRIES)
    colleague_names: list[str] | None = Field(default=None, max_length=MAX_LIST_ENTRIES)
    simulation_headers: list[SimulationHeader] | None = Field(default=None, max_length=100)
    exclusions: dict[str, Any] | None = None
    reporting_mailbox: dict[str, Any] | None = None
    notifications: dict[str, Any] | None = None
    smtp: dict[str, Any] | None = None
    auto_investigation: dict[str, Any] | None = None
    cluster_similarity: float | None = None
    engine_timeout_s: float | None = None
    # {engine: {enabled, api_key, ...}}: api_key "" removes the key, absent keeps it.
    online: dict[str, dict[str, Any]] | None = None
    # "" removes the password, absent keeps it.
    smtp_password: str | None = Field(default=None, max_length=1_000)


__all__ = [
    "AutoInvestigationSettings",
    "CaseSort",
    "CaseStatus",
    "CaseSummary",
    "CaseUpdate",
    "CaseVerdict",
    "CaseView",
    "ClusterAction",
    "ClusterView",
    "EventView",
    "ExclusionSettings",
    "IntakeView",
    "IntelListView",
    "IssuedReporterToken",
    "NoteCreate",
    "NotificationSettings",
    "NotifyRequest",
    "Page",
    "ReportSettings",
    "ReporterTokenCreate",
    "ReporterTokenView",
    "ReporterView",
    "ReportingMailboxSettings",
    "SettingsUpdate",
    "SettingsView",
    "SimulationHeader",
    "SmtpSettings",
    "TemplateUpdate",
    "TemplateView",
    "VerdictChange",
    "YaraRuleCreate",
    "YaraRuleView",
]
