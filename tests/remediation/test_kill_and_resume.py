"""A remediating process killed with SIGKILL mid-run, and a new worker finishing the action.

The tenant is generated (300 mailboxes, two background messages each); three phishing emails
are delivered to every mailbox and found by an investigation. The action runs in a worker
process of its own, with Graph slowed down so that it is killed while waves are in flight:
some journal rows are final, others were attempted (their `attempts` written) but not
recorded, and the emulator may already have carried out changes the dead process never
wrote down. A new worker takes the dead one's jobs once their lease (2 s) expires.

The end state must be that of a clean run, read from the emulator: every message changed
exactly once (one copy in the destination, one vault entry per deleted message, the warning
category once, one notice per mailbox), nothing skipped (every row verified), and the
journal as a clean run writes it (every message changed, none "unchanged"), so that the
restore that follows brings every message back. Delete, purge (restored from the undo vault)
and warn with a notice run on SQLite, delete on PostgreSQL as well (which, as in the other
database tests, fails rather than skips in CI when the server is missing).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mailtrawl.config import load_settings
from mailtrawl.emulator.generator import generate
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.remediation.models import RemediationItem, VaultEntry
from tests.investigations.conftest import Store, make_store
from tests.remediation.conftest import ATTACKER, Remediation, phishing_email
from tests.storage import databases

postgres_database = databases.postgres_database

MAILBOXES = 300
EMAILS = 3
PLANTED = MAILBOXES * EMAILS
LATENCY_MS = 150
LEASE_SECONDS = 2
WAVE = 15  # journal rows per wave in the killed worker

# The worker process: small waves (many commits, several in flight) and a short lease.
WORKER = f"""
import asyncio
from mailtrawl.config import load_settings
from mailtrawl.providers.retry import RetryPolicy
from mailtrawl.remediation.engine import RemediationSettings
from mailtrawl.storage.engine import make_engine, make_session_factory
from mailtrawl.storage.secrets import open_secret_box
from mailtrawl.tasks.worker import build_runner, provider_factory

settings = load_settings()
sessions = make_session_factory(make_engine(settings))
box = open_secret_box(settings)
retry = RetryPolicy(max_attempts=15, base_delay=0.01, max_delay=0.2, budget=20.0)
runner = build_runner(
    sessions,
    box,
    poll_interval=0.05,
    lease_seconds=settings.job_lease_seconds,
    factory=provider_factory(sessions, box, retry=retry),
    remediation_settings=RemediationSettings(wave_size={WAVE}, waves_in_flight=4, round_pause=0.05),
)
asyncio.run(runner.run_until_idle(300))
"""


@dataclass(frozen=True)
class Tenant:
    directory: Path
    app: dict[str, Any]
    mailboxes: list[str]


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    out = tmp_path_factory.mktemp("kill-tenant")
    generate(out, users=MAILBOXES + 20, messages_per_mailbox=2, campaigns=0, seed=44)
    document = json.loads((out / "tenant.json").read_text())
    usable = [
        u["userPrincipalName"]
        for u in document["users"]
        if u.get("accountEnabled", True) and u.get("hasMailbox", True) and u.get("mail")
    ]
    assert len(usable) >= MAILBOXES
    return Tenant(out, document["apps"][0], usable[:MAILBOXES])


@pytest.fixture(scope="module")
def tenant_emulator(
    tenant: Tenant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmulatorProcess]:
    emu = EmulatorProcess.start(
        tenant_dir=tenant.directory, state_dir=tmp_path_factory.mktemp("kill-state")
    )
    try:
        yield emu
    finally:
        emu.stop()


@dataclass
class Planted:
    rem: Remediation
    tenant: Tenant
    # (mailbox UPN, immutable id) -> Internet message id of each planted copy.
    copies: dict[tuple[str, str], str]

    @property
    def store(self) -> Store:
        return self.rem.store

    @property
    def emulator(self) -> EmulatorProcess:
        return self.rem.emulator

    def snapshots(self) -> dict[str, dict[str, Any]]:
        emu = self.emulator
        headers = {"Authorization": f"Bearer {emu.info['control_token']}"}
        out = {}
        with emu.client(headers=headers) as client:
            for upn in self.tenant.mailboxes:
                response = client.get(f"{emu.info['control_url']}/mailboxes/{upn}")
                assert response.status_code == 200, response.text
                out[upn] = response.json()
        return out

    def journal(self, action_id: uuid.UUID) -> list[RemediationItem]:
        with self.store.sessions() as session:
            rows = list(
                session.scalars(
                    select(RemediationItem).where(RemediationItem.action_id == action_id)
                )
            )
            session.expunge_all()
            return rows

    def states(self, action_id: uuid.UUID) -> Counter[str]:
        with self.store.sessions() as session:
            rows = session.execute(
                select(RemediationItem.state, func.count())
                .where(RemediationItem.action_id == action_id)
                .group_by(RemediationItem.state)
            ).all()
        return Counter({state: count for state, count in rows})


def _planted_in(
    snapshots: dict[str, dict[str, Any]],
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every copy from the attacker: (mailbox, immutable id) -> where it is (one per sighting)."""
    seen: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for upn, snapshot in snapshots.items():
        for folder in snapshot["folders"]:
            for message in folder["messages"]:
                if message["from"] == ATTACKER:
                    where = {**message, "folder": folder["wellKnownName"] or folder["displayName"]}
                    seen.setdefault((upn, message["immutableId"]), []).append(where)
        for message in snapshot["purged"]:
            if message["from"] == ATTACKER:
                seen.setdefault((upn, message["immutableId"]), []).append(
                    {**message, "folder": "(purged)"}
                )
    return seen


def _assert_each_once_in(planted: Planted, folder: str) -> dict[str, dict[str, Any]]:
    snapshots = planted.snapshots()
    seen = _planted_in(snapshots)
    assert set(seen) == set(planted.copies), "planted copies lost or added"
    twice = {k: [w["folder"] for w in v] for k, v in seen.items() if len(v) != 1}
    assert not twice, f"{len(twice)} copies seen more than once: {list(twice.items())[:3]}"
    elsewhere = {k: v[0]["folder"] for k, v in seen.items() if v[0]["folder"] != folder}
    assert not elsewhere, f"{len(elsewhere)} copies not in {folder}: {list(elsewhere.items())[:3]}"
    return snapshots


@pytest.fixture(params=["sqlite", "postgresql"])
def planted(
    request: pytest.FixtureRequest,
    tenant: Tenant,
    tenant_emulator: EmulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Planted]:
    """Three phishing emails in each of 300 inboxes, found by an investigation."""
    emu = tenant_emulator
    emu.reset()
    emu.settings(faults={"latency_ms": 0})
    monkeypatch.setenv("MAILTRAWL_HOME", str(tmp_path / "home"))
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'mailtrawl.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        databases.reset_postgres(url)
    settings = load_settings(home=tmp_path / "home", database_url=url)
    store = make_store(settings, emu, tenant.app)
    try:
        copies: dict[tuple[str, str], str] = {}
        for n in range(EMAILS):
            for copy in emu.deliver(
                phishing_email(f"Invoice {4471 + n} overdue"), tenant.mailboxes
            ):
                copies[copy["mailbox"], copy["immutableId"]] = copy["internetMessageId"]
        investigation_id = store.create({"match": {"from": ATTACKER}})
        store.run_all()
        hits = store.hits(investigation_id)
        assert {(h.mailbox, h.message_id) for h in hits} == set(copies)
        yield Planted(Remediation(store, emu, investigation_id), tenant, copies)
    finally:
        store.engine.dispose()
        emu.settings(faults={"latency_ms": 0})


def _progress(planted: Planted, action_id: uuid.UUID) -> tuple[int, int]:
    """(rows final so far, rows whose attempt has begun but whose outcome is not written)."""
    with planted.store.sessions() as session:
        rows = session.execute(
            select(RemediationItem.state, RemediationItem.attempts, func.count())
            .where(RemediationItem.action_id == action_id)
            .group_by(RemediationItem.state, RemediationItem.attempts)
        ).all()
    final = sum(n for state, _, n in rows if state in ("applied", "verified"))
    in_flight = sum(n for state, attempts, n in rows if state == "planned" and attempts)
    return final, in_flight


def _kill_mid_run(
    planted: Planted, action_id: uuid.UUID, change: str, changed: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Run the action in a worker process; SIGKILL it while the emulator has carried out
    changes (`change`: the Graph request that makes them) that the journal does not show yet.

    Returns what the journal and the mailboxes looked like after the kill.
    """
    settings = planted.store.settings
    env = {
        **os.environ,
        "MAILTRAWL_HOME": str(settings.home),
        "MAILTRAWL_DATABASE_URL": settings.database_url,
        "MAILTRAWL_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    log = Path(settings.home) / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    emu = planted.emulator
    emu.control("DELETE", "/stats")
    # Answers spread out (jitter): a wave's changes are carried out one by one, and the wave
    # is only written down once the last has answered.
    emu.settings(faults={"latency_ms": LATENCY_MS, "jitter_ms": 2 * LATENCY_MS})
    try:
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER], env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )
            try:
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and process.poll() is None:
                    answered = int(emu.stats()["byEndpoint"].get(change, 0))
                    final, _ = _progress(planted, action_id)
                    # A sixth of the messages done (well under way, far from over), and more
                    # changes answered than the journal records: a wave is half carried out.
                    if final >= PLANTED // 6 and answered > final:
                        break
                    time.sleep(0.005)
            finally:
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
                process.wait(30)
        # Requests the dead worker left in flight are answered meanwhile.
        time.sleep(4 * LATENCY_MS / 1000)
    finally:
        emu.settings(faults={"latency_ms": 0, "jitter_ms": 0})
    assert process.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    final, in_flight = _progress(planted, action_id)
    assert 0 < final < PLANTED, f"killed too late or too early to test resuming: {final}"
    # Rows whose attempt was cut short (written as tried, no outcome), and among them the
    # messages the dead worker had changed without writing it down.
    cut_short = {
        (r.mailbox_upn, r.message_id)
        for r in planted.journal(action_id)
        if r.state == "planned" and r.attempts > 0
    }
    seen = _planted_in(planted.snapshots())
    unrecorded = sum(1 for key in cut_short if changed(seen[key][0]))
    assert unrecorded, f"the kill landed between waves ({final} final, {in_flight} in flight)"
    return {"final": final, "in_flight": in_flight, "changed_unrecorded": unrecorded}


def _assert_journal_as_a_clean_run(planted: Planted, action_id: uuid.UUID) -> str:
    """One verified row per message, each journaled as changed; returns the action's status."""
    rows = planted.journal(action_id)
    assert Counter(r.state for r in rows) == {"verified": PLANTED}
    assert Counter((r.mailbox_upn, r.message_id) for r in rows).most_common(1)[0][1] == 1
    assert {(r.mailbox_upn, r.message_id) for r in rows} == set(planted.copies)
    action = planted.rem.action(action_id)
    assert (action.total, action.applied, action.verified, action.failed) == (
        PLANTED,
        PLANTED,
        PLANTED,
        0,
    )
    # Every message was changed by this action, whichever attempt did it: a row journaled
    # "unchanged" (changed=False) is left out of the restore, and its message stays deleted
    # or tagged. (Unknown, None, is honest after a cut-short attempt: restore includes it.)
    unchanged = Counter(r.attempts for r in rows if r.changed is False)
    assert not unchanged, (
        f"{sum(unchanged.values())} messages changed by this action are journaled as "
        f"unchanged (by attempts: {dict(unchanged)}); a restore leaves them out"
    )
    assert action.unchanged == 0
    return action.status


def _restore_everything(planted: Planted, action_id: uuid.UUID) -> tuple[dict[str, Any], str]:
    """Restore the action (no faults, no kill): every message back in the inbox, once."""
    restore_id = planted.rem.restore(action_id)
    planted.rem.approve(restore_id)  # over the approval threshold
    planted.rem.run()
    restore = planted.rem.action(restore_id)
    assert (restore.total, restore.verified, restore.failed) == (PLANTED, PLANTED, 0)
    return _assert_each_once_in(planted, "inbox"), restore.status


def _request(planted: Planted, action: str, **options: Any) -> uuid.UUID:
    preview, action_id = planted.rem.request(action, **options)
    assert action_id is not None
    assert preview.messages == PLANTED
    planted.rem.approve(action_id)  # over the approval threshold
    return action_id


def _assert_one_vault_entry_each(planted: Planted, action_id: uuid.UUID) -> None:
    rows = planted.journal(action_id)
    with planted.store.sessions() as session:
        vault = session.execute(
            select(VaultEntry.item_id, VaultEntry.mailbox_id, VaultEntry.internet_message_id)
        ).all()
    assert {v.item_id for v in vault} == {r.id for r in rows}
    per_message = Counter((v.mailbox_id, v.internet_message_id) for v in vault)
    assert len(per_message) == PLANTED
    assert set(per_message.values()) == {1}
    assert all(r.vaulted for r in rows)


def test_killed_delete_resumes_without_deleting_twice_or_skipping(planted: Planted) -> None:
    action_id = _request(planted, "delete")
    killed = _kill_mid_run(
        planted,
        action_id,
        "DELETE /users/{user}/messages/{message}",
        lambda copy: copy["folder"] == "recoverableitemsdeletions",
    )
    planted.rem.run()

    _assert_each_once_in(planted, "recoverableitemsdeletions")  # none purged either
    _assert_one_vault_entry_each(planted, action_id)
    status = _assert_journal_as_a_clean_run(planted, action_id)

    _, restore_status = _restore_everything(planted, action_id)
    print(f"\ndelete, killed: {killed}")
    # Last: an action whose every message is final is completed, whichever job ends last.
    assert (status, restore_status) == ("completed", "completed")


@pytest.mark.parametrize("planted", ["sqlite"], indirect=True)
def test_killed_purge_resumes_and_everything_comes_back_from_the_vault(
    planted: Planted,
) -> None:
    action_id = _request(planted, "purge")
    killed = _kill_mid_run(
        planted,
        action_id,
        "POST /users/{user}/messages/{message}/permanentDelete",
        lambda copy: copy["folder"] == "(purged)",
    )
    planted.rem.run()

    _assert_each_once_in(planted, "(purged)")
    _assert_one_vault_entry_each(planted, action_id)
    status = _assert_journal_as_a_clean_run(planted, action_id)

    # Purged messages come back from the vault: recreated, one copy each (new immutable ids).
    restore_id = planted.rem.restore(action_id)
    planted.rem.approve(restore_id)
    planted.rem.run()
    restore = planted.rem.action(restore_id)
    assert (restore.total, restore.verified, restore.failed) == (PLANTED, PLANTED, 0)
    back = Counter()
    for upn, snapshot in planted.snapshots().items():
        for folder in snapshot["folders"]:
            for message in folder["messages"]:
                if message["from"] == ATTACKER:
                    back[upn, message["internetMessageId"], folder["wellKnownName"]] += 1
    expected = Counter((upn, imid, "inbox") for (upn, _), imid in planted.copies.items())
    assert back == expected
    print(f"\npurge, killed: {killed}")
    assert (status, restore.status) == ("completed", "completed")


@pytest.mark.parametrize("planted", ["sqlite"], indirect=True)  # PostgreSQL: the delete test
def test_killed_warning_resumes_without_tagging_or_notifying_twice(planted: Planted) -> None:
    category = planted.store.settings.warning_category
    action_id = _request(planted, "warn", notify=True)
    killed = _kill_mid_run(
        planted,
        action_id,
        "PATCH /users/{user}/messages/{message}",
        lambda copy: category in copy["categories"],
    )
    planted.rem.run()

    snapshots = _assert_each_once_in(planted, "inbox")
    notice_of: dict[str, str] = {}
    for upn, snapshot in snapshots.items():
        master = [c for c in snapshot["masterCategories"] if c["displayName"] == category]
        assert len(master) == 1, (upn, snapshot["masterCategories"])
        planted_here = [
            m for folder in snapshot["folders"] for m in folder["messages"] if m["from"] == ATTACKER
        ]
        assert [m["categories"] for m in planted_here] == [[category]] * EMAILS, upn
        notices = [
            m
            for folder in snapshot["folders"]
            for m in folder["messages"]
            if m["internetMessageId"].endswith("@mailtrawl.invalid>")
        ]
        assert len(notices) == 1, (upn, [n["subject"] for n in notices])
        notice_of[upn] = notices[0]["immutableId"]
    # Every message's receipt points at its mailbox's one notice.
    for row in planted.journal(action_id):
        assert row.notice_message_id == notice_of[row.mailbox_upn], row.mailbox_upn
    status = _assert_journal_as_a_clean_run(planted, action_id)

    snapshots, restore_status = _restore_everything(planted, action_id)
    for upn, snapshot in snapshots.items():
        for folder in snapshot["folders"]:
            for message in folder["messages"]:
                assert category not in message["categories"], upn
                assert not message["internetMessageId"].endswith("@mailtrawl.invalid>"), upn
    print(f"\nwarn, killed: {killed}")
    assert (status, restore_status) == ("completed", "completed")
