"""The remediation service acts on the effective settings: approval rules, vault retention
(fixed when the action is requested), and the warning notice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from mailtrawl.remediation.models import VaultEntry
from mailtrawl.remediation.schemas import Selection
from mailtrawl.settings_store import service as store
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session
from tests.remediation.conftest import BOB, Remediation


def _set(rem: Remediation, **changes: Any) -> None:
    with write_session(rem.store.sessions) as session:
        store.update_settings(session, settings=rem.store.settings, changes=changes, actor="ada")


def test_the_approval_threshold_set_at_run_time_applies_to_the_next_request(
    remediation: Remediation,
) -> None:
    rem = remediation
    preview, _ = rem.request("junk", dry_run=True)
    assert (preview.messages, preview.requires_approval) == (5, False)

    _set(rem, approval_threshold=1)
    preview, action_id = rem.request("junk")
    assert preview.requires_approval
    assert "approval threshold (1)" in (preview.approval_reason or "")
    assert action_id is not None
    assert rem.action(action_id).status == "awaiting_approval"

    # One message is not over the threshold.
    hit = rem.store.hits(rem.investigation_id)[0]
    _set(rem, approval_always_for=[])
    rem.approve(action_id, BOB)
    rem.run()
    assert rem.action(action_id).status == "completed"
    single, _ = rem.request("trash", selection=Selection(hits=[hit.id]), dry_run=True)
    assert not single.requires_approval

    _set(rem, approval_required=False)
    preview, _ = rem.request("purge", dry_run=True)
    assert not preview.requires_approval


def test_the_restore_of_an_action_follows_the_approval_rules_in_force(
    remediation: Remediation,
) -> None:
    rem = remediation
    action_id = rem.act("trash")
    _set(rem, approval_threshold=2)
    restore_id = rem.restore(action_id)
    assert rem.action(restore_id).status == "awaiting_approval"


def test_the_vault_keeps_messages_for_the_retention_in_force_at_request(
    remediation: Remediation,
) -> None:
    rem = remediation
    _set(rem, vault_retention_days=3, approval_threshold=1000)
    _, action_id = rem.request("delete")
    assert action_id is not None
    assert rem.action(action_id).options["vault_retention_days"] == 3
    # Changed after the request: the requested action keeps the retention it was given.
    _set(rem, vault_retention_days=90)
    rem.run()
    with rem.store.sessions() as session:
        expiries = list(session.scalars(select(VaultEntry.expires_at)))
    assert len(expiries) == 5
    expected = utcnow() + timedelta(days=3)
    assert all(abs(e - expected) < timedelta(minutes=5) for e in expiries)


def test_the_warning_uses_the_category_notice_and_organisation_set_here(
    remediation: Remediation,
) -> None:
    rem = remediation
    _set(
        rem,
        warning_category="Phish - SOC",
        warning_notice_subject="$organisation: suspicious email from $sender",
        organisation_name="Contoso Security",
    )
    _, action_id = rem.request("warn", notify=True)
    assert action_id is not None
    options = rem.action(action_id).options
    assert options["category"] == "Phish - SOC"
    assert options["organisation"] == "Contoso Security"
    assert options["notice"]["subject"] == "$organisation: suspicious email from $sender"
    rem.run()
    assert rem.action(action_id).status == "completed"
    copy = rem.copies("alice@contoso.com")[0]
    assert "Phish - SOC" in copy["categories"]
