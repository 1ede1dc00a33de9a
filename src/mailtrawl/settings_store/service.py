"""Reading and changing the runtime settings: overrides of the environment's defaults.

Every function works in the caller's transaction and flushes; none commits.

- `effective_settings(session, settings)`: `settings` with the stored overrides applied; what
  the remediation service acts on (approval rules, vault retention, warning notice).
- `update_settings(...)`: validate changes with the `Settings` fields' own rules (and the
  notice templates with `remediation.notice.validate_template`), store them, and audit
  `settings.update` with the values before and after. A change back to the environment's
  default removes the override, so a later change of the environment applies again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtrawl.audit import service as audit
from mailtrawl.config import Settings
from mailtrawl.errors import MailtrawlError
from mailtrawl.remediation.notice import (
    DEFAULT_NOTICE_BODY,
    DEFAULT_NOTICE_SUBJECT,
    NoticeTemplateError,
    validate_template,
)
from mailtrawl.settings_store.models import SettingOverride
from mailtrawl.storage.base import utcnow

log = logging.getLogger(__name__)

# The settings an administrator may change at run time; the others need a restart.
EDITABLE: tuple[str, ...] = (
    "approval_required",
    "approval_threshold",
    "approval_always_for",
    "vault_retention_days",
    "warning_category",
    "warning_notice_subject",
    "warning_notice_body",
    "organisation_name",
)
# Settings leaves the organisation's name unbounded; a page heading and a notice need less.
MAX_ORGANISATION_NAME = 200
# Empty means "the built-in template".
_BLANK_IS_NONE = frozenset({"warning_notice_subject", "warning_notice_body"})

# The editable fields exactly as `Settings` declares them (types, bounds, defaults).
_Editable: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "EditableSettings",
    __config__=ConfigDict(extra="forbid"),
    **{
        name: (Settings.model_fields[name].annotation, Settings.model_fields[name])
        for name in EDITABLE
    },
)


class SettingsRejected(MailtrawlError):
    """Changes that break a setting's rules; `errors` maps each setting to what is wrong."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__(
            "The settings were not saved: "
            + "; ".join(f"{name}: {message}" for name, message in self.errors.items())
            + "."
        )


def _field_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        name = str(loc[0]) if loc else "settings"
        message = str(error["msg"])
        if len(loc) > 1 and isinstance(loc[1], int):
            message = f"item {loc[1] + 1}: {message}"
        errors.setdefault(name, message)
    return errors


def _normalise(name: str, value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if name in _BLANK_IS_NONE and not value:
            return None
    return value


def validate_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changes as validated Python values; raises `SettingsRejected` naming each field."""
    errors = {
        name: "this setting cannot be changed here" for name in changes if name not in EDITABLE
    }
    wanted = {name: _normalise(name, value) for name, value in changes.items() if name in EDITABLE}
    try:
        model = _Editable.model_validate(wanted)
    except ValidationError as exc:
        errors |= _field_errors(exc)
        model = None
    organisation = wanted.get("organisation_name")
    if isinstance(organisation, str) and len(organisation) > MAX_ORGANISATION_NAME:
        errors["organisation_name"] = f"use at most {MAX_ORGANISATION_NAME} characters"
    for name, subject, body in (
        ("warning_notice_subject", wanted.get("warning_notice_subject"), None),
        ("warning_notice_body", None, wanted.get("warning_notice_body")),
    ):
        if name in wanted and name not in errors and wanted[name] is not None:
            try:
                validate_template(subject or DEFAULT_NOTICE_SUBJECT, body or DEFAULT_NOTICE_BODY)
            except NoticeTemplateError as exc:
                errors[name] = str(exc)
    if errors or model is None:
        raise SettingsRejected(errors)
    return {name: getattr(model, name) for name in wanted}


def _validated_value(name: str, value: Any) -> Any:
    return getattr(_Editable.model_validate({name: value}), name)


def overrides(session: Session) -> dict[str, Any]:
    """The stored overrides that are still valid, as Python values.

    A stored value that the current version's rules refuse (after an upgrade) is skipped
    with a warning: the environment's default applies.
    """
    found: dict[str, Any] = {}
    for row in session.scalars(select(SettingOverride).where(SettingOverride.key.in_(EDITABLE))):
        try:
            found[row.key] = _validated_value(row.key, row.value)
        except ValidationError:
            log.warning("ignoring the stored value of setting %s: it is no longer valid", row.key)
    return found


def effective_settings(session: Session, settings: Settings) -> Settings:
    """`settings` (the environment's and TOML file's) with the administrators' overrides."""
    found = overrides(session)
    return settings.model_copy(update=found) if found else settings


def list_overrides(session: Session) -> dict[str, SettingOverride]:
    """The override rows by setting name (who changed what, when)."""
    return {
        row.key: row
        for row in session.scalars(select(SettingOverride).where(SettingOverride.key.in_(EDITABLE)))
    }


def editable_values(settings: Settings) -> dict[str, Any]:
    """The editable settings of `settings` in their JSON form."""
    return settings.model_dump(mode="json", include=set(EDITABLE))


def _json(name: str, value: Any) -> Any:
    return _Editable.model_validate({name: value}).model_dump(mode="json", include={name})[name]


def update_settings(
    session: Session,
    *,
    settings: Settings,
    changes: Mapping[str, Any],
    actor: str,
    role: str | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
    now: datetime | None = None,
) -> Settings:
    """Validate and store `changes`; audit `settings.update`; return the effective settings.

    `settings` are the defaults (environment and TOML). Only settings whose effective value
    changes are written and audited; a value equal to the default removes the override.
    Raises `SettingsRejected` (nothing stored) when any change breaks a rule.
    """
    wanted = validate_changes(changes)
    current = effective_settings(session, settings)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    moment = now or utcnow()
    for name, value in wanted.items():
        if getattr(current, name) == value:
            continue
        before[name] = _json(name, getattr(current, name))
        after[name] = _json(name, value)
        row = session.get(SettingOverride, name, with_for_update=True)
        if value == getattr(settings, name):
            if row is not None:
                session.delete(row)
            continue
        if row is None:
            row = SettingOverride(key=name)
            session.add(row)
        row.value = after[name]
        row.updated_by = actor[:200]
        row.updated_at = moment
    if not after:
        return current
    session.flush()
    audit.record(
        session,
        actor=actor,
        role=role,
        source_ip=source_ip,
        user_agent=user_agent,
        operation="settings.update",
        entity_type="settings",
        entity_id="runtime",
        before=before,
        after=after,
    )
    return effective_settings(session, settings)


__all__ = [
    "EDITABLE",
    "MAX_ORGANISATION_NAME",
    "SettingsRejected",
    "editable_values",
    "effective_settings",
    "list_overrides",
    "overrides",
    "update_settings",
    "validate_changes",
]
