"""The undo vault: sealed at rest, erased after its retention, and then nothing to restore."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from mailtrawl.remediation import service
from mailtrawl.remediation.engine import open_mime
from mailtrawl.remediation.models import VaultEntry
from mailtrawl.remediation.schemas import RestoreCreate
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session
from tests.remediation.conftest import ALICE, Remediation


def test_vault_is_sealed_and_erased_after_retention(remediation: Remediation) -> None:
    rem = remediation
    rem.settings_overrides = {"approval_always_for": []}
    action_id = rem.act("purge")
    assert rem.action(action_id).verified == 5

    with rem.store.sessions() as session:
        entries = list(session.scalars(select(VaultEntry)))
        assert len(entries) == 5
        for entry in entries:
            assert entry.mime is not None
            assert b"Invoice 4471" not in entry.mime  # sealed, not stored in clear
            mime = open_mime(rem.store.box, entry.mime)
            assert b"Invoice 4471 overdue" in mime
            assert hashlib.sha256(mime).hexdigest() == entry.mime_sha256
            assert entry.folder in ("inbox", "junkemail")
            retention = entry.expires_at - entry.created_at
            assert abs(retention - timedelta(days=30)) < timedelta(minutes=1)

    # Two entries reach the end of their retention: the worker's housekeeping erases them.
    with write_session(rem.store.sessions) as session:
        ids = [e.item_id for e in session.scalars(select(VaultEntry).limit(2))]
        session.execute(
            update(VaultEntry)
            .where(VaultEntry.item_id.in_(ids))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    rem.run()
    with rem.store.sessions() as session:
        erased = list(session.scalars(select(VaultEntry).where(VaultEntry.mime.is_(None))))
        assert sorted(e.item_id for e in erased) == sorted(ids)
        assert all(e.erased_at is not None for e in erased)
        summary = service.vault_summary(session)
        assert (summary["messages"], summary["erased"]) == (3, 2)

    with write_session(rem.store.sessions) as session:
        preview, _ = service.request_restore(
            session,
            action=action_id,
            data=RestoreCreate(dry_run=True),
            actor=ALICE,
            settings=rem.settings,
        )
    assert preview.messages == 3
    assert preview.excluded == {"erased from the vault after its retention period": 2}


def test_restore_refuses_what_cannot_be_undone(remediation: Remediation) -> None:
    rem = remediation
    action_id = rem.act("junk")
    restore_id = rem.restore(action_id)
    rem.run()
    with write_session(rem.store.sessions) as session, pytest.raises(service.RemediationError):
        service.request_restore(
            session, action=restore_id, data=RestoreCreate(), actor=ALICE, settings=rem.settings
        )
    # Everything restored already: a second restore has nothing to do.
    with write_session(rem.store.sessions) as session, pytest.raises(service.NothingToDo):
        service.request_restore(
            session, action=action_id, data=RestoreCreate(), actor=ALICE, settings=rem.settings
        )
