"""Active investigations find (and act on) mail delivered while they are active, and only then."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import update

from mailtrawl.audit import service as audit
from mailtrawl.investigations import service
from mailtrawl.investigations.models import Investigation
from mailtrawl.storage.base import utcnow
from mailtrawl.storage.engine import write_session
from tests.monitor.conftest import Watching, phishing, wait_for

ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"


def test_new_copies_are_found_and_deleted_while_active(any_watching: Watching) -> None:
    w = any_watching
    investigation_id = w.create(action="delete", users=[ALICE, BOB])
    w.worker()
    w.ready(investigation_id, ALICE, BOB)
    assert w.hit_subjects(investigation_id) == []

    w.emulator.deliver(phishing("Invoice 1 overdue"), [ALICE, BOB])
    w.emulator.deliver(phishing("Lunch on Friday", sender="carol@contoso.com"), [ALICE])
    wait_for(lambda: len(w.hit_subjects(investigation_id)) == 2, what="two new hits")
    # The action asked for removes both copies (delete: to Recoverable Items).
    for mailbox in (ALICE, BOB):
        wait_for(
            lambda m=mailbox: w.folder_of(m, "Invoice 1 overdue") == ["recoverableitemsdeletions"],
            what=f"the copy in {mailbox} deleted",
        )
    assert w.folder_of(ALICE, "Lunch on Friday") == ["inbox"]
    record = w.record(investigation_id)
    assert (record.hits, record.new_hits, record.watch_state) == (2, 2, "active")
    with w.store.sessions() as session:
        operations = [e.operation for e in audit.list_entries(session, limit=100).items]
    assert "remediation.request" in operations


def test_mail_delivered_after_the_period_is_not_found(watching: Watching) -> None:
    w = watching
    investigation_id = w.create(duration="1h")
    worker = w.worker()
    w.ready(investigation_id, ALICE)
    w.emulator.deliver(phishing("During"), [ALICE])
    wait_for(lambda: w.hit_subjects(investigation_id) == ["During"], what="the hit")

    # The hour is over.
    with write_session(w.store.sessions) as session:
        session.execute(
            update(Investigation)
            .where(Investigation.id == investigation_id)
            .values(active_until=utcnow() - timedelta(seconds=1))
        )
    wait_for(lambda: w.record(investigation_id).watch_state == "expired", what="expiry")
    w.emulator.deliver(phishing("After"), [ALICE])
    rounds = worker.watcher.stats.rounds
    wait_for(lambda: worker.watcher.stats.rounds > rounds + 6, what="a few more rounds")
    assert w.hit_subjects(investigation_id) == ["During"]
    with w.store.sessions() as session:
        operations = [e.operation for e in audit.list_entries(session, limit=100).items]
    assert "investigation.expire" in operations


def test_stopping_is_immediate(watching: Watching) -> None:
    w = watching
    investigation_id = w.create(duration="continuous")
    worker = w.worker()
    w.ready(investigation_id, ALICE)
    assert w.record(investigation_id).active_until is None
    with write_session(w.store.sessions) as session:
        service.stop_investigation(session, ref=investigation_id)
    assert w.record(investigation_id).watch_state == "ended"
    w.emulator.deliver(phishing("After the stop"), [ALICE])
    rounds = worker.watcher.stats.rounds
    wait_for(lambda: worker.watcher.stats.rounds > rounds + 6, what="a few more rounds")
    assert w.hit_subjects(investigation_id) == []


def test_a_restart_in_the_middle_loses_nothing(watching: Watching) -> None:
    w = watching
    investigation_id = w.create(duration="24h")
    first = w.worker()
    w.ready(investigation_id, ALICE)
    first.stop()

    w.emulator.deliver(phishing("While down"), [ALICE])
    time.sleep(0.5)
    w.worker()
    wait_for(lambda: w.hit_subjects(investigation_id) == ["While down"], what="the hit")
    w.emulator.deliver(phishing("After restart"), [ALICE])
    wait_for(lambda: len(w.hit_subjects(investigation_id)) == 2, what="the second hit")
    assert w.hit_subjects(investigation_id) == ["After restart", "While down"]


def test_an_expired_delta_cursor_resyncs_without_duplicates(watching: Watching) -> None:
    w = watching
    investigation_id = w.create(duration="24h")
    worker = w.worker()
    w.ready(investigation_id, ALICE)
    w.emulator.deliver(phishing("Before the resync"), [ALICE])
    wait_for(lambda: w.hit_subjects(investigation_id) == ["Before the resync"], what="hit 1")

    w.emulator.expire_delta([ALICE])
    w.emulator.deliver(phishing("After the resync"), [ALICE])
    wait_for(lambda: len(w.hit_subjects(investigation_id)) == 2, what="hit 2")
    assert worker.watcher.stats.resyncs >= 1
    rounds = worker.watcher.stats.rounds
    wait_for(lambda: worker.watcher.stats.rounds > rounds + 4, what="a few more rounds")
    assert w.hit_subjects(investigation_id) == ["After the resync", "Before the resync"]
    assert w.record(investigation_id).new_hits == 2


def test_new_members_of_a_watched_group_are_read_after_the_directory_refresh(
    watching: Watching,
) -> None:
    w = watching
    investigation_id = w.create(
        duration="24h", scope={"kind": "groups", "values": ["Finance Team"]}
    )
    w.worker()
    w.ready(investigation_id, ALICE)
    assert w.cursors(BOB) == 0  # not in the group: never read
    w.emulator.control(
        "POST", "/groups/9a000000-0000-4000-8000-0000000000f1/members", {"add": [BOB]}
    )
    w.ready(investigation_id, BOB)  # watched from the next directory refresh (5 s here)
    w.emulator.deliver(phishing("For the new member"), [BOB])
    wait_for(lambda: w.hit_subjects(investigation_id) == ["For the new member"], what="Bob's hit")


STORM = {
    "rate_429": 0.15,
    "rate_503": 0.1,
    "rate_reset": 0.05,
    "rate_reset_after": 0.05,
    "retry_after": 0,
    "seed": 1234,
}
CALM = {
    "rate_429": 0.0,
    "rate_503": 0.0,
    "rate_reset": 0.0,
    "rate_reset_after": 0.0,
    "retry_after": 1.0,
    "seed": None,
}


def test_a_throttling_storm_loses_nothing_and_records_nothing_twice(watching: Watching) -> None:
    w = watching
    investigation_id = w.create(duration="24h", users=[ALICE, BOB], action="junk")
    worker = w.worker()
    w.ready(investigation_id, ALICE, BOB)
    w.emulator.settings(faults=STORM)
    try:
        subjects = [f"Storm {n}" for n in range(6)]
        for n, subject in enumerate(subjects):
            w.emulator.deliver(phishing(subject), [ALICE if n % 2 else BOB])
            time.sleep(0.3)
        wait_for(
            lambda: w.hit_subjects(investigation_id) == sorted(subjects),
            timeout=60,
            what="every message found once",
        )
        stats = w.emulator.stats()
    finally:
        w.emulator.settings(faults=CALM)
    assert sum(int(v) for v in stats["injectedFaults"].values()) > 5, stats["injectedFaults"]
    for n, subject in enumerate(subjects):
        mailbox = ALICE if n % 2 else BOB
        wait_for(
            lambda m=mailbox, s=subject: w.folder_of(m, s) == ["junkemail"],
            timeout=60,
            what=f"{subject} moved to Junk Email",
        )
    rounds = worker.watcher.stats.rounds
    wait_for(lambda: worker.watcher.stats.rounds > rounds + 4, what="a few more rounds")
    assert w.hit_subjects(investigation_id) == sorted(subjects)
    assert w.record(investigation_id).new_hits == len(subjects)


def test_moves_and_deletions_by_the_user_keep_the_found_copy_current(
    any_watching: Watching,
) -> None:
    w = any_watching
    investigation_id = w.create(duration="continuous")
    w.worker()
    w.ready(investigation_id, ALICE)
    [delivered] = w.emulator.deliver(phishing("Moved around"), [ALICE])
    wait_for(lambda: w.hit_subjects(investigation_id) == ["Moved around"], what="the hit")
    assert w.hit_folders(investigation_id) == ["inbox"]

    def move(destination: str) -> None:
        token = w.emulator.token()
        with w.emulator.client() as graph:
            answer = graph.post(
                f"{w.emulator.graph}/users/{ALICE}/messages/{delivered['immutableId']}/move",
                json={"destinationId": destination},
                headers={"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'},
            )
        assert answer.status_code == 201, answer.text

    # Into the other watched folder: delta reports it removed from one, created in the other.
    move("junkemail")
    wait_for(lambda: w.hit_folders(investigation_id) == ["junkemail"], what="the move to junk")
    # Out of the watched folders: only the removal is seen, so where it is becomes unknown.
    move("archive")
    wait_for(lambda: w.hit_folders(investigation_id) == [None], what="the move out of sight")
    # Seen again in a watched folder: known again, and still one hit.
    move("inbox")
    wait_for(lambda: w.hit_folders(investigation_id) == ["inbox"], what="the move back")
    assert w.hit_subjects(investigation_id) == ["Moved around"]


def test_an_expired_access_token_is_renewed_and_nothing_is_missed(watching: Watching) -> None:
    w = watching
    investigation_id = w.create(duration="24h")
    w.worker()
    w.ready(investigation_id, ALICE)
    # An hour and more passes on Graph's clock: the token the watcher holds has expired.
    w.emulator.control("POST", "/clock", {"advanceSeconds": 3700})
    w.emulator.deliver(phishing("After the token expired"), [ALICE])
    wait_for(
        lambda: w.hit_subjects(investigation_id) == ["After the token expired"],
        what="the hit read with a new token",
    )
    assert w.emulator.stats()["byStatus"].get("401", 0) >= 1
