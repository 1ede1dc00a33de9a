"""The store: effective values, validation with field messages, defaults, and the audit trail."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.audit import service as audit
from mailtrawl.config import Settings
from mailtrawl.settings_store import service as store
from mailtrawl.settings_store.models import SettingOverride
from mailtrawl.storage.engine import write_session


def _update(sessions: sessionmaker[Session], settings: Settings, **changes: Any) -> Settings:
    with write_session(sessions) as session:
        return store.update_settings(session, settings=settings, changes=changes, actor="ada")


def _effective(sessions: sessionmaker[Session], settings: Settings) -> Settings:
    with sessions() as session:
        return store.effective_settings(session, settings)


def _rows(sessions: sessionmaker[Session]) -> dict[str, Any]:
    with sessions() as session:
        return {r.key: r.value for r in session.scalars(select(SettingOverride))}


def test_without_overrides_the_environment_applies(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    assert _effective(sessions, settings) == settings


def test_overrides_replace_the_defaults_and_survive_a_new_session(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    result = _update(
        sessions,
        settings,
        approval_threshold="1",  # as a form sends it
        approval_always_for=["purge", "delete"],
        approval_required=True,
        vault_retention_days=7,
        warning_category="  Phish - SOC  ",
        warning_notice_subject="Warning from $organisation",
        warning_notice_body="",
        organisation_name="Contoso",
    )
    effective = _effective(sessions, settings)
    assert effective == result
    assert effective.approval_threshold == 1
    assert effective.approval_always_for == ["purge", "delete"]
    assert effective.vault_retention_days == 7
    assert effective.warning_category == "Phish - SOC"
    assert effective.warning_notice_subject == "Warning from $organisation"
    assert effective.warning_notice_body is None
    assert effective.organisation_name == "Contoso"
    # Unchanged settings (here approval_required, warning_notice_body) get no row.
    assert _rows(sessions) == {
        "approval_threshold": 1,
        "approval_always_for": ["purge", "delete"],
        "vault_retention_days": 7,
        "warning_category": "Phish - SOC",
        "warning_notice_subject": "Warning from $organisation",
        "organisation_name": "Contoso",
    }
    # The environment's settings object itself is untouched.
    assert settings.approval_threshold == 100


def test_a_value_back_at_the_default_removes_the_override(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    _update(sessions, settings, approval_threshold=5)
    assert "approval_threshold" in _rows(sessions)
    _update(sessions, settings, approval_threshold=settings.approval_threshold)
    assert _rows(sessions) == {}
    # So a later change of the environment's value applies again.
    changed_env = settings.model_copy(update={"approval_threshold": 42})
    assert _effective(sessions, changed_env).approval_threshold == 42


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"approval_threshold": -1}, "approval_threshold", "greater than or equal to 0"),
        ({"approval_threshold": "many"}, "approval_threshold", "valid integer"),
        ({"vault_retention_days": 0}, "vault_retention_days", "greater than or equal to 1"),
        ({"vault_retention_days": 4000}, "vault_retention_days", "less than or equal to 3650"),
        ({"approval_always_for": ["obliterate"]}, "approval_always_for", "item 1"),
        ({"warning_category": "   "}, "warning_category", "at least 1 character"),
        ({"organisation_name": "x" * 201}, "organisation_name", "at most 200"),
        ({"warning_notice_subject": "Hi $victim"}, "warning_notice_subject", "$victim"),
        ({"warning_notice_body": "<p>costs $5</p>"}, "warning_notice_body", "$$"),
        ({"session_max_hours": 1}, "session_max_hours", "cannot be changed here"),
    ],
)
def test_bad_values_are_refused_with_a_message_per_field(
    sessions: sessionmaker[Session],
    settings: Settings,
    changes: dict[str, Any],
    field: str,
    says: str,
) -> None:
    with pytest.raises(store.SettingsRejected) as refused:
        _update(sessions, settings, **({"organisation_name": "Contoso"} | changes))
    assert set(refused.value.errors) == {field}
    assert says in refused.value.errors[field]
    # Nothing was stored, not even the valid change sent with it.
    assert _rows(sessions) == {}


def test_every_change_is_audited_with_before_and_after(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    _update(sessions, settings, approval_threshold=1, organisation_name="Contoso")
    _update(sessions, settings, approval_threshold=1, organisation_name="Contoso")  # no change
    _update(sessions, settings, approval_threshold=100, organisation_name="Contoso")
    with sessions() as session:
        entries = [
            e
            for e in reversed(audit.list_entries(session, limit=100).items)
            if e.operation == "settings.update"
        ]
        assert audit.verify(session).ok
    assert len(entries) == 2
    first, second = entries
    assert (first.actor, first.entity_type, first.entity_id) == ("ada", "settings", "runtime")
    assert first.before == {"approval_threshold": 100, "organisation_name": ""}
    assert first.after == {"approval_threshold": 1, "organisation_name": "Contoso"}
    assert second.before == {"approval_threshold": 1}
    assert second.after == {"approval_threshold": 100}


def test_a_stored_value_that_is_no_longer_valid_is_ignored(
    sessions: sessionmaker[Session], settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with write_session(sessions) as session:
        session.add(SettingOverride(key="vault_retention_days", value=-5, updated_by="old"))
        session.add(SettingOverride(key="organisation_name", value="Fabrikam", updated_by="old"))
        session.add(SettingOverride(key="retired_setting", value=1, updated_by="old"))
    effective = _effective(sessions, settings)
    assert effective.vault_retention_days == settings.vault_retention_days
    assert effective.organisation_name == "Fabrikam"
    assert "vault_retention_days" in caplog.text
