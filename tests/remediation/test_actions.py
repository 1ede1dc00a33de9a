"""Each action, then its restore, read back from the emulator's mailboxes."""

from __future__ import annotations

import uuid

import pytest

from mailtrawl.audit import service as audit
from mailtrawl.remediation import service
from mailtrawl.remediation.models import VaultEntry
from mailtrawl.remediation.schemas import Selection
from mailtrawl.storage.engine import write_session
from tests.remediation.conftest import ALICE, ANALYST, BOB, TARGETS, Remediation

ALL = [*TARGETS, "frank@contoso.com"]


def _body(rem: Remediation, mailbox: str, message_id: str) -> str:
    """The message body as Graph serves it (HTML)."""
    with rem.emulator.client(
        base_url=rem.emulator.graph + "/",
        headers={"Authorization": f"Bearer {rem.emulator.token()}"},
    ) as graph:
        reply = graph.get(f"users/{mailbox}/messages/{message_id}", params={"$select": "body"})
        reply.raise_for_status()
        return str(reply.json()["body"]["content"])


def _folders(rem: Remediation) -> dict[str, list[str]]:
    return {box: sorted(c["folder"] for c in rem.copies(box)) for box in ALL}


@pytest.mark.parametrize(("action", "folder"), [("junk", "junkemail"), ("trash", "deleteditems")])
def test_move_and_restore(remediation: Remediation, action: str, folder: str) -> None:
    rem = remediation
    before = _folders(rem)
    preview, action_id = rem.request(action)
    assert preview.messages == 5
    assert preview.mailboxes == 5
    assert preview.by_folder == {"inbox": 4, "junkemail": 1}
    assert preview.will_change == (4 if action == "junk" else 5)
    assert not preview.requires_approval
    assert action_id is not None
    rem.run()

    record = rem.action(action_id)
    assert record.status == "completed"
    assert (record.verified, record.failed) == (5, 0)
    assert record.unchanged == (1 if action == "junk" else 0)
    assert _folders(rem) == {box: [folder] for box in ALL}
    receipts = rem.items(action_id)
    assert {r.state for r in receipts} == {"verified"}
    assert all(r.result_folder == folder for r in receipts)
    hits = rem.store.hits(rem.investigation_id)
    assert {(h.folder, h.remediation) for h in hits} == {(folder, action)}

    restore_id = rem.restore(action_id)
    rem.run()
    restore = rem.action(restore_id)
    assert restore.status == "completed"
    assert restore.failed == 0
    assert _folders(rem) == before
    assert {r.state for r in rem.items(action_id)} == {"undone"} | (
        {"verified"} if action == "junk" else set()  # Frank's copy was in Junk already
    )
    assert rem.action(action_id).undone == (4 if action == "junk" else 5)
    hits = rem.store.hits(rem.investigation_id)
    assert {h.remediation for h in hits} == ({None, "junk"} if action == "junk" else {None})


def test_soft_delete_and_restore(remediation: Remediation) -> None:
    rem = remediation
    action_id = rem.act("delete")
    record = rem.action(action_id)
    assert (record.status, record.verified, record.failed) == ("completed", 5, 0)
    for box in ALL:
        assert [c["folder"] for c in rem.copies(box)] == ["recoverableitemsdeletions"]
    with rem.store.sessions() as session:
        assert session.query(VaultEntry).count() == 5

    rem.run()  # nothing left to do: running again changes nothing
    rem.restore(action_id)
    rem.run()
    assert _folders(rem) == {
        **{box: ["inbox"] for box in TARGETS},
        "frank@contoso.com": ["junkemail"],
    }


def test_purge_waits_for_a_second_administrator_and_restores_from_the_vault(
    remediation: Remediation,
) -> None:
    rem = remediation
    original = {box: rem.copies(box)[0] for box in ALL}
    bodies = {box: _body(rem, box, original[box]["immutableId"]) for box in ALL}
    assert "overdue" in bodies["alice@contoso.com"]
    preview, action_id = rem.request("purge")
    assert action_id is not None
    assert preview.requires_approval
    assert "purge" in (preview.approval_reason or "")
    assert rem.action(action_id).status == "awaiting_approval"
    rem.run()  # nothing runs before approval
    assert all(len(rem.copies(box)) == 1 for box in ALL)

    with pytest.raises(service.ApprovalRefused, match="four-eyes"):
        rem.approve(action_id, ALICE)
    with pytest.raises(service.ApprovalRefused, match="administrator"):
        rem.approve(action_id, ANALYST)
    rem.approve(action_id, BOB)
    rem.run()
    record = rem.action(action_id)
    assert (record.status, record.verified, record.decided_by) == ("completed", 5, "bob")
    for box in ALL:
        assert rem.copies(box) == []
        assert len(rem.purged(box)) == 1

    rem.restore(action_id)
    rem.run()
    for box in ALL:
        [copy] = rem.copies(box)
        kept = original[box]
        assert copy["folder"] == kept["folder"]
        for key in ("subject", "from", "receivedDateTime", "internetMessageId", "attachments"):
            assert copy[key] == kept[key], key
        assert copy["isDraft"] is False
        assert _body(rem, box, copy["immutableId"]) == bodies[box]
    operations = rem.audit_operations()
    assert operations.count("remediation.request") == 2
    assert "remediation.approve" in operations
    assert operations.count("remediation.execute") == 2
    with rem.store.sessions() as session:
        assert audit.verify(session).ok


def test_warn_tags_notifies_and_restore_withdraws(remediation: Remediation) -> None:
    rem = remediation
    category = rem.store.settings.warning_category
    action_id = rem.act("warn", notify=True)
    record = rem.action(action_id)
    assert (record.status, record.verified, record.failed) == ("completed", 5, 0)
    for box in ALL:
        snap = rem.emulator.snapshot(box)
        [copy] = rem.copies(box)
        assert category in copy["categories"]
        master = {c["displayName"]: c["color"] for c in snap["masterCategories"]}
        assert master[category] == "preset0"  # red
        inbox = next(f for f in snap["folders"] if f["wellKnownName"] == "inbox")
        notices = [
            m
            for m in inbox["messages"]
            if m["from"] != "billing@invoice-portal.example"
            and "suspicious" in m["subject"].lower()
        ]
        assert len(notices) == 1
        assert notices[0]["isDraft"] is False

    rem.restore(action_id)
    rem.run()
    for box in ALL:
        [copy] = rem.copies(box)
        assert category not in copy["categories"]
        inbox = next(
            f for f in rem.emulator.snapshot(box)["folders"] if f["wellKnownName"] == "inbox"
        )
        assert not [m for m in inbox["messages"] if "suspicious" in m["subject"].lower()]


def test_warn_without_mailbox_settings_permission_fails_per_mailbox_while_moves_work(
    remediation: Remediation,
) -> None:
    rem = remediation
    client_id = rem.emulator.info["client_id"]
    rem.emulator.control(
        "POST", f"/apps/{client_id}/permissions", {"revoke": ["MailboxSettings.ReadWrite"]}
    )
    warn_id = rem.act("warn")
    record = rem.action(warn_id)
    assert (record.status, record.failed, record.verified) == ("completed", 5, 0)
    for receipt in rem.items(warn_id):
        assert receipt.state == "failed"
        assert "MailboxSettings.ReadWrite" in (receipt.error or "")
    assert all(rem.copies(box)[0]["categories"] == [] for box in ALL)

    junk_id = rem.act("junk")
    assert rem.action(junk_id).verified == 5
    assert _folders(rem) == {box: ["junkemail"] for box in ALL}


def test_dry_run_and_selection_change_nothing_outside_them(remediation: Remediation) -> None:
    rem = remediation
    preview, action_id = rem.request("trash", dry_run=True)
    assert action_id is None
    assert preview.messages == 5
    assert _folders(rem)["alice@contoso.com"] == ["inbox"]

    selection = Selection(mailboxes=["alice@contoso.com", "BOB@contoso.com"])
    preview, action_id = rem.request("trash", selection=selection)
    assert preview.messages == 2
    rem.run()
    folders = _folders(rem)
    assert folders["alice@contoso.com"] == folders["bob@contoso.com"] == ["deleteditems"]
    assert folders["erin@contoso.com"] == ["inbox"]

    # Purged copies are left out of later actions, with the reason.
    rem.settings_overrides = {"approval_always_for": []}
    _, purge_id = rem.request("purge", selection=Selection(mailboxes=["alice@contoso.com"]))
    assert purge_id is not None
    rem.run()
    preview, _ = rem.request("junk", dry_run=True)
    assert preview.messages == 4
    assert preview.excluded == {"purged already (restore it first)": 1}


def test_threshold_asks_for_approval_and_reject_runs_nothing(remediation: Remediation) -> None:
    rem = remediation
    rem.settings_overrides = {"approval_threshold": 3}
    preview, action_id = rem.request("junk")
    assert preview.requires_approval
    assert "threshold" in (preview.approval_reason or "")
    assert action_id is not None
    with write_session(rem.store.sessions) as session:
        service.reject_action(session, ref=action_id, actor=BOB, note="wrong campaign")
    rem.run()
    assert rem.action(action_id).status == "rejected"
    assert _folders(rem)["alice@contoso.com"] == ["inbox"]


def test_lost_answers_never_apply_anything_twice(remediation: Remediation) -> None:
    """A third of the answers are lost after Graph carried the request out."""
    rem = remediation
    category = rem.store.settings.warning_category
    rem.emulator.settings(faults={"rate_reset_after": 0.3, "seed": 11})
    try:
        warn_id = rem.act("warn", notify=True)
        junk_id = rem.act("junk")
        restore_id = rem.restore(junk_id)
        rem.run()
    finally:
        rem.emulator.settings(faults={"rate_reset_after": 0.0})
    assert rem.emulator.stats()["injectedFaults"]["reset_after"] > 0
    for action_id in (warn_id, junk_id, restore_id):
        record = rem.action(action_id)
        failures = [(r.mailbox, r.error) for r in rem.items(action_id) if r.state == "failed"]
        assert (record.status, failures) == ("completed", [])
    for box in ALL:
        snap = rem.emulator.snapshot(box)
        [copy] = rem.copies(box)
        assert copy["folder"] == ("junkemail" if box == "frank@contoso.com" else "inbox")
        assert copy["categories"].count(category) == 1
        assert [c["displayName"] for c in snap["masterCategories"]].count(category) == 1
        notices = [
            m
            for f in snap["folders"]
            for m in f["messages"]
            if m["from"] != "billing@invoice-portal.example"
            and "suspicious" in m["subject"].lower()
        ]
        assert len(notices) == 1


def test_copies_under_a_pending_action_are_left_out_of_another(remediation: Remediation) -> None:
    rem = remediation
    _, purge_id = rem.request("purge", selection=Selection(mailboxes=["alice@contoso.com"]))
    assert rem.action(purge_id).status == "awaiting_approval"
    preview, junk_id = rem.request("junk")
    assert preview.messages == 4
    assert preview.excluded == {"another action on it is waiting or running": 1}
    rem.run()
    assert _folders(rem)["alice@contoso.com"] == ["inbox"]  # the purge still waits
    assert rem.action(junk_id).verified == 4


def test_requests_that_cannot_run_are_refused_before_anything_is_recorded(
    remediation: Remediation,
) -> None:
    rem = remediation
    from mailtrawl.remediation.notice import NoticeTemplateError
    from mailtrawl.remediation.schemas import ActionCreate

    with pytest.raises(NoticeTemplateError, match="nope"):
        rem.request("warn", notify=True, notice={"subject": "$nope"}, dry_run=True)
    with pytest.raises(ValueError, match="only goes with the warn"):
        ActionCreate(action="junk", notify=True)
    [inbox_hit, junk_hit] = sorted(
        (
            h
            for h in rem.store.hits(rem.investigation_id)
            if h.mailbox in ("alice@contoso.com", "frank@contoso.com")
        ),
        key=lambda h: h.mailbox,
    )
    preview, _ = rem.request(
        "trash",
        selection=Selection(hits=[inbox_hit.id, junk_hit.id, uuid.uuid4()], folders=["inbox"]),
        dry_run=True,
    )
    assert preview.messages == 1
    assert preview.excluded == {"not a hit of this investigation": 1}


def test_restore_of_a_delete_falls_back_to_the_vault(remediation: Remediation) -> None:
    """The soft-deleted copy is gone from Recoverable Items (retention, an administrator):
    restore re-creates it from the vault."""
    rem = remediation
    action_id = rem.act("delete", selection=Selection(mailboxes=["alice@contoso.com"]))
    [copy] = rem.copies("alice@contoso.com")
    assert copy["folder"] == "recoverableitemsdeletions"
    with rem.emulator.client(
        base_url=rem.emulator.graph + "/",
        headers={"Authorization": f"Bearer {rem.emulator.token()}"},
    ) as graph:
        graph.post(
            f"users/alice@contoso.com/messages/{copy['immutableId']}/permanentDelete"
        ).raise_for_status()
    assert rem.copies("alice@contoso.com") == []
    rem.restore(action_id)
    rem.run()
    [back] = rem.copies("alice@contoso.com")
    assert back["folder"] == "inbox"
    assert back["internetMessageId"] == copy["internetMessageId"]
    assert back["isDraft"] is False
