"""The reports settings (one row), their secrets, and what an analysis is assembled from.

Secrets (the SMTP password, online engines' API keys) are sealed by SecretBox apart from the
rest and are write-only: the view shows a hint. Threat-intel lists and YARA rule sets live in
their own tables; the index and the compiled rules are built once per change and cached in
the process (keyed by the lists' ids and update times), not per analysis.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtrawl.analysis.exclusions import Exclusions
from mailtrawl.analysis.intel import IntelEngine, IntelIndex, IntelList, load_intel_file
from mailtrawl.analysis.model import AnalysisContext, Engine
from mailtrawl.analysis.online import OnlineEnginesConfig
from mailtrawl.analysis.yara_engine import YaraEngine, YaraRuleSet, compile_yara_rules
from mailtrawl.errors import MailtrawlError
from mailtrawl.reports.models import (
    SETTINGS_SECRETS_PURPOSE,
    IntelListRecord,
    ReportSettingsRow,
    YaraRuleRecord,
)
from mailtrawl.reports.schemas import ReportSettings, SettingsUpdate, SettingsView
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.models import MailConfiguration
from mailtrawl.storage.secrets import SecretBox, mask

SETTINGS_ROW = 1
ONLINE_ENGINES = tuple(OnlineEnginesConfig.model_fields)


class ReportSettingsRejected(MailtrawlError):
    """A settings change breaks a rule; the message names the field."""


def load_report_settings(session: Session) -> ReportSettings:
    """The stored settings (defaults where nothing is stored; an unreadable stored value,
    after an upgrade, falls back to the defaults rather than stopping intake)."""
    row = session.get(ReportSettingsRow, SETTINGS_ROW)
    if row is None or not row.document:
        return ReportSettings()
    try:
        return ReportSettings.model_validate(row.document)
    except ValidationError:
        return ReportSettings()


def load_secrets(session: Session, box: SecretBox) -> dict[str, Any]:
    """{"smtp_password": str | None, "online": {engine: api key}} (decrypted)."""
    row = session.get(ReportSettingsRow, SETTINGS_ROW)
    if row is None or not row.secrets_encrypted:
        return {"smtp_password": None, "online": {}}
    document = orjson.loads(box.decrypt(row.secrets_encrypted, purpose=SETTINGS_SECRETS_PURPOSE))
    return {
        "smtp_password": document.get("smtp_password"),
        "online": dict(document.get("online") or {}),
    }


def online_config(settings: ReportSettings, secrets: Mapping[str, Any]) -> OnlineEnginesConfig:
    """The online engines' configuration with their keys (all off unless enabled)."""
    keys = secrets.get("online") or {}
    document: dict[str, Any] = {}
    for name in ONLINE_ENGINES:
        section = dict(settings.online.get(name) or {})
        if keys.get(name):
            section["api_key"] = keys[name]
        document[name] = section
    return OnlineEnginesConfig.model_validate(document)


def effective_own_domains(session: Session, settings: ReportSettings) -> list[str]:
    """The organisation's domains: as set, else every mail configuration's authorised ones."""
    if settings.own_domains:
        return [d.strip().lower() for d in settings.own_domains if d.strip()]
    found: dict[str, None] = {}
    for record in session.scalars(select(MailConfiguration).where(MailConfiguration.enabled)):
        for domain in record.authorized_domains or ():
            found[str(domain).lower()] = None
    return list(found)


def settings_view(session: Session, box: SecretBox) -> SettingsView:
    settings = load_report_settings(session)
    secrets = load_secrets(session, box)
    password = secrets.get("smtp_password")
    return SettingsView(
        **settings.model_dump(),
        effective_own_domains=effective_own_domains(session, settings),
        smtp_password=mask(password) if password else None,
        online_api_keys={name: mask(key) for name, key in secrets["online"].items() if key},
    )


def update_report_settings(
    session: Session, *, box: SecretBox, data: SettingsUpdate, actor: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply a partial change; returns (before, after) for the audit log (secrets as hints).

    Raises ReportSettingsRejected naming the problem (nothing stored).
    """
    current = load_report_settings(session)
    secrets = load_secrets(session, box)
    document = current.model_dump(mode="json")
    before = _audit_form(document, secrets)
    changes = data.model_dump(exclude_unset=True, mode="json")
    for name, value in changes.items():
        if name in ("online", "smtp_password"):
            continue
        if isinstance(value, dict) and isinstance(document.get(name), dict):
            document[name] = {**document[name], **value}
        else:
            document[name] = value
    if "online" in changes:
        online = dict(document.get("online") or {})
        for engine, section in (changes["online"] or {}).items():
            if engine not in ONLINE_ENGINES:
                raise ReportSettingsRejected(
                    f"online.{engine}: unknown engine; known: {', '.join(ONLINE_ENGINES)}"
                )
            section = dict(section or {})
            if "api_key" in section:
                key = section.pop("api_key")
                if key:
                    secrets["online"][engine] = str(key)
                else:
                    secrets["online"].pop(engine, None)
            online[engine] = {**dict(online.get(engine) or {}), **section}
        document["online"] = online
    if "smtp_password" in changes:
        secrets["smtp_password"] = changes["smtp_password"] or None
    try:
        validated = ReportSettings.model_validate(document)
        online_config(validated, secrets)
        Exclusions(**validated.exclusions.model_dump())  # invalid globs and CIDRs refused
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise ReportSettingsRejected(f"The settings were not saved: {problems}.") from None
    except ValueError as exc:
        raise ReportSettingsRejected(f"The settings were not saved: {exc}.") from None
    row = session.get(ReportSettingsRow, SETTINGS_ROW, with_for_update=True)
    if row is None:
        row = ReportSettingsRow(id=SETTINGS_ROW)
        session.add(row)
    row.document = validated.model_dump(mode="json")
    row.secrets_encrypted = box.encrypt(
        orjson.dumps(secrets, option=orjson.OPT_SORT_KEYS), purpose=SETTINGS_SECRETS_PURPOSE
    )
    row.updated_by = actor[:200]
    row.updated_at = utcnow()
    session.flush()
    return before, _audit_form(row.document, secrets)


def _audit_form(document: Mapping[str, Any], secrets: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **document,
        "smtp_password_set": bool(secrets.get("smtp_password")),
        "online_keys_set": sorted(k for k, v in (secrets.get("online") or {}).items() if v),
    }


# What an analysis runs with ------------------------------------------------------------------


@dataclass(frozen=True)
class AnalysisInputs:
    context: AnalysisContext
    exclusions: Exclusions
    offline_engines: list[Engine]  # intel and YARA, when configured
    online: OnlineEnginesConfig
    engine_timeout: float


def analysis_inputs(session: Session, box: SecretBox) -> AnalysisInputs:
    """The context, exclusions and configured engines of the current settings."""
    settings = load_report_settings(session)
    context = AnalysisContext(
        own_domains=tuple(effective_own_domains(session, settings)),
        colleague_names=tuple(n.strip() for n in settings.colleague_names if n.strip()),
        simulation_headers=tuple((h.name, h.value) for h in settings.simulation_headers),
    )
    try:
        exclusions = Exclusions(**settings.exclusions.model_dump())
    except ValueError:
        exclusions = Exclusions()  # validated on save; an upgrade may still refuse one
    engines: list[Engine] = []
    index = intel_index(session)
    if index is not None:
        engines.append(IntelEngine(index))
    rules = yara_rules(session)
    if rules is not None:
        engines.append(YaraEngine(rules))
    return AnalysisInputs(
        context=context,
        exclusions=exclusions,
        offline_engines=engines,
        online=online_config(settings, load_secrets(session, box)),
        engine_timeout=settings.engine_timeout_s,
    )


_cache_lock = threading.Lock()
_intel_cache: dict[str, tuple[tuple[tuple[uuid.UUID, datetime], ...], IntelIndex]] = {}
_yara_cache: dict[str, tuple[tuple[tuple[uuid.UUID, datetime], ...], YaraRuleSet]] = {}


def intel_index(session: Session) -> IntelIndex | None:
    """One index over every enabled list, rebuilt only when the lists changed."""
    rows = session.execute(
        select(IntelListRecord.id, IntelListRecord.updated_at)
        .where(IntelListRecord.enabled)
        .order_by(IntelListRecord.id)
    ).all()
    if not rows:
        return None
    fingerprint = tuple((r.id, r.updated_at) for r in rows)
    key = str(session.get_bind().engine.url)
    with _cache_lock:
        cached = _intel_cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
    lists: list[IntelList] = []
    for record in session.scalars(
        select(IntelListRecord).where(IntelListRecord.enabled).order_by(IntelListRecord.id)
    ):
        lists.append(read_intel_list(record))
    index = IntelIndex(lists)
    with _cache_lock:
        _intel_cache[key] = (fingerprint, index)
    return index


def read_intel_list(record: IntelListRecord) -> IntelList:
    """The stored list, parsed again (it was validated when imported)."""
    return load_intel_file(
        zlib.decompress(record.content), record.kind, name=record.name, strict=False
    )


def yara_rules(session: Session) -> YaraRuleSet | None:
    """Every enabled rule set compiled together, once per change."""
    rows = session.execute(
        select(YaraRuleRecord.id, YaraRuleRecord.updated_at)
        .where(YaraRuleRecord.enabled)
        .order_by(YaraRuleRecord.id)
    ).all()
    if not rows:
        return None
    fingerprint = tuple((r.id, r.updated_at) for r in rows)
    key = str(session.get_bind().engine.url)
    with _cache_lock:
        cached = _yara_cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
    sources = {
        record.name: record.source
        for record in session.scalars(
            select(YaraRuleRecord).where(YaraRuleRecord.enabled).order_by(YaraRuleRecord.id)
        )
    }
    rules = compile_yara_rules(sources=sources)
    with _cache_lock:
        _yara_cache[key] = (fingerprint, rules)
    return rules


__all__ = [
    "AnalysisInputs",
    "ReportSettingsRejected",
    "analysis_inputs",
    "effective_own_domains",
    "intel_index",
    "load_report_settings",
    "load_secrets",
    "online_config",
    "read_intel_list",
    "settings_view",
    "update_report_settings",
    "yara_rules",
]
