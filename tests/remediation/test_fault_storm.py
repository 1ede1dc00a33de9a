"""5,000 messages in 1,000 mailboxes junked, then restored, while a fifth of Graph answers fail.

The tenant is generated with two background messages per mailbox; five different phishing
emails (five Internet message ids) are delivered to 1,000 enabled mailboxes, and an
investigation finds exactly those 5,000 copies. Faults (429, 503 and connection resets, with
`Retry-After: 0` and a fixed seed) are on only while the action and its restore run. Every
check reads the emulator's own state, mailbox by mailbox, and compares it with the journal,
the receipts and the action's counters.

Each copy is followed by its immutable id, which a move keeps: a copy seen twice, or seen
nowhere, is a duplicate or a loss, whatever the folder.

Junk and restore go entirely through `$batch`. Sub-requests meet 429 and 503 answers; whole
envelopes meet connection resets after the emulator carried them out (`rate_reset_after`), so
the client cannot tell whether those moves happened and the engine must find out without
moving anything twice. (Resets before a request is carried out only reach requests outside
`$batch`.)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailtrawl.config import load_settings
from mailtrawl.emulator.generator import generate
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.providers.retry import RetryPolicy
from mailtrawl.remediation import service
from mailtrawl.remediation.models import RemediationAction, RemediationItem
from mailtrawl.tasks.worker import build_runner, provider_factory
from tests.investigations.conftest import make_store
from tests.remediation.conftest import ATTACKER, FAST, Remediation, phishing_email

MAILBOXES = 1000
EMAILS = 5
PLANTED = MAILBOXES * EMAILS
# A fifth of Graph requests fail: throttled, unavailable, or the connection dropped.
STORM = {
    "rate_429": 0.08,
    "rate_503": 0.07,
    "rate_reset": 0.02,
    "rate_reset_after": 0.03,
    "retry_after": 0,
    "seed": 4711,
}
# Few tries per request, so that some messages fail past the client's retries and go round
# again in the engine (a new attempt on the journal row), as with a long real throttling spell.
STORM_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.1, budget=10.0)
CALM = {
    "rate_429": 0.0,
    "rate_503": 0.0,
    "rate_reset": 0.0,
    "rate_reset_after": 0.0,
    "retry_after": 1.0,
    "seed": None,
}


@dataclass
class Storm:
    rem: Remediation
    # (mailbox UPN, immutable id) -> the Internet message id of that planted copy.
    planted: dict[tuple[str, str], str]
    mailboxes: list[str]
    graph_requests: int = 0  # of the last stormy run, as the emulator counted them

    def placement(self) -> dict[tuple[str, str], list[str]]:
        """Every planted copy found in the emulator: (mailbox, immutable id) -> folders."""
        seen: dict[tuple[str, str], list[str]] = {}
        emu = self.rem.emulator
        headers = {"Authorization": f"Bearer {emu.info['control_token']}"}
        with emu.client(headers=headers) as client:
            for upn in self.mailboxes:
                response = client.get(f"{emu.info['control_url']}/mailboxes/{upn}")
                assert response.status_code == 200, response.text
                snapshot = response.json()
                assert snapshot["purged"] == [], upn
                for folder in snapshot["folders"]:
                    name = folder["wellKnownName"] or folder["displayName"]
                    for message in folder["messages"]:
                        if message["from"] == ATTACKER:
                            key = (upn, message["immutableId"])
                            seen.setdefault(key, []).append(name)
        return seen

    def assert_every_copy_once_in(self, folder: str) -> dict[tuple[str, str], list[str]]:
        seen = self.placement()
        lost = set(self.planted) - set(seen)
        foreign = set(seen) - set(self.planted)
        twice = {k: v for k, v in seen.items() if len(v) > 1}
        elsewhere = {k: v for k, v in seen.items() if v != [folder]}
        assert not lost, f"{len(lost)} planted copies are gone, e.g. {sorted(lost)[:3]}"
        assert not foreign, f"{len(foreign)} unexpected copies, e.g. {sorted(foreign)[:3]}"
        assert not twice, f"{len(twice)} copies seen twice, e.g. {list(twice.items())[:3]}"
        assert not elsewhere, f"{len(elsewhere)} not in {folder}: {list(elsewhere.items())[:3]}"
        return seen

    def journal(self, action_id: uuid.UUID) -> list[RemediationItem]:
        with self.rem.store.sessions() as session:
            rows = list(
                session.scalars(
                    select(RemediationItem).where(RemediationItem.action_id == action_id)
                )
            )
            session.expunge_all()
            return rows

    def receipts(self, action_id: uuid.UUID) -> list[dict[str, Any]]:
        with self.rem.store.sessions() as session:
            raw = b"".join(service.export_items(session, ref=action_id, fmt="json"))
        return list(json.loads(raw))

    def run_in_storm(self) -> dict[str, int]:
        """Run the queued jobs with faults on; the faults the emulator injected, by kind."""
        emu, store = self.rem.emulator, self.rem.store
        emu.control("DELETE", "/stats")
        emu.settings(faults=STORM)
        runner = build_runner(
            store.sessions,
            store.box,
            poll_interval=0.05,
            factory=provider_factory(store.sessions, store.box, retry=STORM_RETRY),
            remediation_settings=FAST,
        )

        async def go() -> None:
            try:
                await runner.run_until_idle(240)
            finally:
                await runner.stop()

        try:
            asyncio.run(go())
        finally:
            emu.settings(faults=CALM)
        stats = emu.stats()
        self.graph_requests = int(stats["total"]) - int(stats["batches"])
        return dict(stats["injectedFaults"])


def _mailboxes(tenant: Path) -> list[str]:
    users = json.loads((tenant / "tenant.json").read_text())["users"]
    usable = [
        u["userPrincipalName"]
        for u in users
        if u.get("accountEnabled", True) and u.get("hasMailbox", True) and u.get("mail")
    ]
    assert len(usable) >= MAILBOXES
    return usable[:MAILBOXES]


@pytest.fixture(scope="module")
def storm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storm]:
    """1,000 mailboxes, five planted emails in each inbox, found by one investigation."""
    work = tmp_path_factory.mktemp("fault-storm")
    tenant = work / "tenant"
    generate(tenant, users=MAILBOXES + 40, messages_per_mailbox=2, campaigns=0, seed=33)
    app = json.loads((tenant / "tenant.json").read_text())["apps"][0]
    mailboxes = _mailboxes(tenant)
    emu = EmulatorProcess.start(tenant_dir=tenant, state_dir=work / "state", timeout=120)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAILTRAWL_HOME", str(work / "home"))
        settings = load_settings(
            home=work / "home", database_url=f"sqlite:///{work / 'mailtrawl.db'}"
        )
        store = make_store(settings, emu, app)
        try:
            planted: dict[tuple[str, str], str] = {}
            for n in range(EMAILS):
                raw = phishing_email(f"Invoice {4471 + n} overdue")
                for copy in emu.deliver(raw, mailboxes):
                    planted[copy["mailbox"], copy["immutableId"]] = copy["internetMessageId"]
            assert len(planted) == PLANTED
            investigation_id = store.create({"match": {"from": ATTACKER}})
            store.run_all(timeout=120, batch_size=250, chunk_size=20)
            hits = store.hits(investigation_id)
            assert len(hits) == PLANTED
            assert {(h.mailbox, h.message_id) for h in hits} == set(planted)
            yield Storm(Remediation(store, emu, investigation_id), planted, mailboxes)
        finally:
            store.engine.dispose()
            emu.stop()


def _assert_journal(
    storm: Storm, action_id: uuid.UUID, *, folder: str, source: str
) -> list[RemediationItem]:
    rows = storm.journal(action_id)
    assert len(rows) == PLANTED
    states = Counter(r.state for r in rows)
    assert states == {"verified": PLANTED}, dict(states)
    keys = Counter((r.mailbox_upn, r.message_id) for r in rows)
    assert set(keys) == set(storm.planted)
    assert max(keys.values()) == 1
    for row in rows:
        assert row.internet_message_id == storm.planted[row.mailbox_upn, row.message_id]
        assert (row.source_folder, row.result_folder) == (source, folder)
        # A move keeps the immutable id: the journal points at the very same message.
        assert row.result_message_id == row.message_id
        assert row.attempts >= 1
        assert row.error is None
        assert row.changed is True
    return rows


def _assert_receipts(
    storm: Storm,
    action_id: uuid.UUID,
    seen: dict[tuple[str, str], list[str]],
    *,
    folder: str,
    source: str,
) -> None:
    """The exported receipts, message by message, against the emulator's mailboxes."""
    receipts = storm.receipts(action_id)
    assert len(receipts) == PLANTED
    by_key = Counter((r["mailbox"], r["internet_message_id"]) for r in receipts)
    assert max(by_key.values()) == 1, "two receipts for one message"
    in_emulator = {
        (upn, storm.planted[upn, immutable]): folders for (upn, immutable), folders in seen.items()
    }
    assert set(by_key) == set(in_emulator)
    for receipt in receipts:
        key = (receipt["mailbox"], receipt["internet_message_id"])
        assert in_emulator[key] == [receipt["result_folder"]] == [folder], (key, receipt)
        assert receipt["state"] == "verified"
        assert receipt["source_folder"] == source
        assert receipt["sender"] == ATTACKER
        assert receipt["error"] is None
        assert receipt["applied_at"]
        assert receipt["verified_at"]
        assert receipt["attempts"] >= 1


def _counts(action: RemediationAction) -> dict[str, int]:
    return {
        "total": action.total,
        "applied": action.applied,
        "verified": action.verified,
        "unchanged": action.unchanged,
        "failed": action.failed,
        "undone": action.undone,
    }


def _assert_all_verified(
    storm: Storm, action_id: uuid.UUID, *, folder: str, source: str
) -> tuple[str, int]:
    """The action's counters, the mailboxes, the journal and the receipts all agree.

    Returns the action's status (checked by the caller, last) and how many journal rows
    needed more than one attempt.
    """
    action = storm.rem.action(action_id)
    assert _counts(action) == {
        "total": PLANTED,
        "applied": PLANTED,
        "verified": PLANTED,
        "unchanged": 0,
        "failed": 0,
        "undone": 0,
    }
    # Graph requests, retries included, as the emulator counted them ($batch items one by
    # one): a change per message and a check per mailbox at least.
    assert action.requests == storm.graph_requests
    assert action.requests >= PLANTED + MAILBOXES
    with storm.rem.store.sessions() as session:
        view = service.action_view(service.get_action(session, ref=action_id))
    assert view.counts.planned == 0
    seen = storm.assert_every_copy_once_in(folder)
    rows = _assert_journal(storm, action_id, folder=folder, source=source)
    _assert_receipts(storm, action_id, seen, folder=folder, source=source)
    return action.status, sum(1 for r in rows if r.attempts > 1)


def test_junk_then_restore_under_a_fault_storm(storm: Storm) -> None:
    rem = storm.rem
    storm.assert_every_copy_once_in("inbox")

    preview, action_id = rem.request("junk")
    assert action_id is not None
    assert (preview.messages, preview.mailboxes, preview.will_change) == (
        PLANTED,
        MAILBOXES,
        PLANTED,
    )
    assert preview.requires_approval
    rem.approve(action_id)
    faults = storm.run_in_storm()
    assert faults.get("429", 0) > 100, faults
    assert faults.get("503", 0) > 100, faults
    assert faults.get("reset_after", 0) > 5, faults
    junk_status, junk_retried = _assert_all_verified(
        storm, action_id, folder="junkemail", source="inbox"
    )
    hits = rem.store.hits(rem.investigation_id)
    assert Counter((h.folder, h.remediation) for h in hits) == {("junkemail", "junk"): PLANTED}

    restore_id = rem.restore(action_id)
    rem.approve(restore_id)  # 5,000 messages: over the approval threshold as well
    restore_faults = storm.run_in_storm()
    assert restore_faults.get("429", 0) > 100
    assert restore_faults.get("503", 0) > 100
    assert restore_faults.get("reset_after", 0) > 5
    restore_status, restore_retried = _assert_all_verified(
        storm, restore_id, folder="inbox", source="junkemail"
    )
    assert _counts(rem.action(action_id)) == {
        "total": PLANTED,
        "applied": 0,
        "verified": 0,
        "unchanged": 0,
        "failed": 0,
        "undone": PLANTED,
    }
    assert {r.state for r in storm.journal(action_id)} == {"undone"}
    hits = rem.store.hits(rem.investigation_id)
    assert Counter((h.folder, h.remediation) for h in hits) == {("inbox", None): PLANTED}

    print(
        f"\ninjected faults: junk {faults}, restore {restore_faults}; journal rows tried more "
        f"than once: junk {junk_retried}, restore {restore_retried}"
    )
    # Some messages failed past the client's retries and were tried again by the engine.
    assert junk_retried > 0
    assert restore_retried > 0
    # Last, so that a stuck status does not hide the checks above: an action whose every
    # message is final must be completed, whichever of its jobs finishes last.
    assert (junk_status, restore_status) == ("completed", "completed")
