"""The audit log: the chain, tampering found where it happened, redaction, transactions."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from mailtrawl.audit import service as audit
from mailtrawl.storage.engine import write_session


def _write(sessions: sessionmaker[Session], count: int, *, actor: str = "alice") -> None:
    for i in range(count):
        with write_session(sessions) as session:
            audit.record(
                session,
                actor=actor,
                operation="investigation.create",
                entity_type="investigation",
                entity_id=f"inv-{i}",
                after={"name": f"hunt {i}", "n": i, "nested": {"k": [1, 2.5, None]}},
            )


def _verify(sessions: sessionmaker[Session]) -> audit.VerifyReport:
    with sessions() as session:
        return audit.verify(session)


def _seqs(sessions: sessionmaker[Session]) -> list[int]:
    with sessions() as session:
        return list(session.scalars(text("SELECT seq FROM audit_entries ORDER BY seq")))


def test_an_empty_log_verifies(sessions: sessionmaker[Session]) -> None:
    report = _verify(sessions)
    assert report.ok
    assert report.entries == 0
    assert report.problems == []


def test_the_chain_verifies_after_many_entries(sessions: sessionmaker[Session]) -> None:
    _write(sessions, 120)
    report = _verify(sessions)
    assert report.ok, report.problems
    assert report.entries == 120
    assert _seqs(sessions) == list(range(1, 121))
    with sessions() as session:
        first = audit.list_entries(session, limit=1, offset=119).items[0]
    assert first.seq == 1
    assert first.prev_hash == audit.GENESIS_HASH


def test_an_edited_entry_is_found(sessions: sessionmaker[Session]) -> None:
    _write(sessions, 10)
    with sessions.begin() as session:
        session.execute(text("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 4"))
    report = _verify(sessions)
    assert not report.ok
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "edited")]


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link(
    sessions: sessionmaker[Session],
) -> None:
    _write(sessions, 10)
    with sessions.begin() as session:
        session.execute(text("UPDATE audit_entries SET hash = :h WHERE seq = 6"), {"h": "f" * 64})
    report = _verify(sessions)
    assert [(p.seq, p.kind) for p in report.problems] == [(6, "edited"), (7, "broken_link")]


def test_a_deleted_entry_is_found(sessions: sessionmaker[Session]) -> None:
    _write(sessions, 10)
    with sessions.begin() as session:
        session.execute(text("DELETE FROM audit_entries WHERE seq = 5"))
    report = _verify(sessions)
    assert [(p.seq, p.kind) for p in report.problems] == [(5, "deleted")]
    assert "entry 5 missing" in report.problems[0].message


def test_swapped_entries_are_found(sessions: sessionmaker[Session]) -> None:
    _write(sessions, 10)
    with sessions.begin() as session:
        session.execute(text("UPDATE audit_entries SET seq = 1000 WHERE seq = 3"))
        session.execute(text("UPDATE audit_entries SET seq = 3 WHERE seq = 7"))
        session.execute(text("UPDATE audit_entries SET seq = 7 WHERE seq = 1000"))
    report = _verify(sessions)
    assert [(p.seq, p.kind) for p in report.problems][:2] == [(3, "reordered"), (4, "broken_link")]
    assert (7, "reordered") in [(p.seq, p.kind) for p in report.problems]
    assert "written as entry 7" in report.problems[0].message


def test_secrets_are_redacted(sessions: sessionmaker[Session]) -> None:
    with write_session(sessions) as session:
        audit.record(
            session,
            actor="admin",
            operation="configuration.update",
            entity_type="mail_configuration",
            before={"client_secret": "s3cr3t", "name": "a"},
            after={
                "name": "b",
                "credential": {"kind": "certificate", "pfx_base64": "AAAA"},
                "items": [{"Password": "hunter2", "api_token": "mtk_x", "private_key": "k"}],
            },
        )
    with sessions() as session:
        entry = audit.list_entries(session).items[0]
    assert entry.before == {"client_secret": "••••", "name": "a"}
    assert entry.after == {
        "name": "b",
        "credential": "••••",
        "items": [{"Password": "••••", "api_token": "••••", "private_key": "••••"}],
    }
    dumped = json.dumps(entry.model_dump(mode="json"))
    for secret in ("s3cr3t", "AAAA", "hunter2", "mtk_x"):
        assert secret not in dumped
    assert _verify(sessions).ok


def test_an_entry_rolls_back_with_its_transaction(sessions: sessionmaker[Session]) -> None:
    _write(sessions, 2)

    def failing_change() -> None:
        with write_session(sessions) as session:
            audit.record(session, actor="a", operation="x.y", entity_type="x")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert _seqs(sessions) == [1, 2]
    _write(sessions, 1)
    assert _seqs(sessions) == [1, 2, 3]
    assert _verify(sessions).ok


def test_concurrent_writers_leave_one_gap_free_chain(sessions: sessionmaker[Session]) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            _write(sessions, 25, actor=f"writer-{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _seqs(sessions) == list(range(1, 101))
    report = _verify(sessions)
    assert report.ok, report.problems
    assert report.entries == 100


def test_list_filters_and_pages_newest_first(sessions: sessionmaker[Session]) -> None:
    _write(sessions, 5, actor="alice")
    _write(sessions, 3, actor="bob")
    with sessions() as session:
        page = audit.list_entries(session, actor="alice", limit=2, offset=1)
        assert page.total == 5
        assert [e.seq for e in page.items] == [4, 3]
        assert audit.list_entries(session, entity_id="inv-0").total == 2
        assert audit.list_entries(session, operation="nothing").total == 0
        newest = audit.list_entries(session).items[0]
        assert audit.list_entries(session, since=newest.at).items[0].seq == 8
        assert audit.list_entries(session, until=newest.at).total == 7


def test_export_jsonl_and_csv_oldest_first(sessions: sessionmaker[Session]) -> None:
    with write_session(sessions) as session:
        audit.record(session, actor="=HYPERLINK(1)", operation="x.y", entity_type="x")
    _write(sessions, 2)
    with sessions() as session:
        lines = b"".join(audit.export(session, "jsonl")).decode().splitlines()
        rows = list(csv.DictReader(io.StringIO(b"".join(audit.export(session, "csv")).decode())))
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[0])["actor"] == "=HYPERLINK(1)"
    assert [row["seq"] for row in rows] == ["1", "2", "3"]
    assert rows[0]["actor"] == "'=HYPERLINK(1)"
    assert json.loads(rows[1]["after"])["name"] == "hunt 0"
