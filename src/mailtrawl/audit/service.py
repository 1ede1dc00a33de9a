"""Record, list, verify and export the audit log.

Each entry's `hash` is SHA-256 over the previous entry's hash followed by the canonical JSON
(sorted keys, no whitespace, UTC ISO timestamps) of every other field, `seq` included; the
first entry follows 64 zeros. Editing, deleting or moving an entry breaks the chain where it
happened, and `verify` says where.

`record` writes in the caller's transaction, so an entry commits or rolls back with the change
it describes. Writers are serialised: on PostgreSQL by a transaction-level advisory lock taken
before the head is read; on SQLite by the write lock (`write_session`); the `seq` primary key
refuses whatever slips through.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mailtrawl.audit.models import AuditEntry
from mailtrawl.audit.schemas import AuditEntryView, AuditPage
from mailtrawl.core.export import plain_cell, stream_rows
from mailtrawl.storage.base import utcnow

GENESIS_HASH = "0" * 64
REDACTED = "••••"
# Keys whose values never reach the log, whatever the caller passes.
SECRET_MARKERS = ("secret", "password", "token", "credential", "private_key", "pfx")
# pg_advisory_xact_lock key of the audit log's head ("mtaudit" in ASCII).
ADVISORY_LOCK_KEY = 0x6D7461756469_74
MAX_PAGE = 1000
EXPORT_CHUNK = 500
# How far `verify` looks for the position a moved entry was written at.
REORDER_WINDOW = 64

EXPORT_FIELDS = (
    "seq",
    "at",
    "actor",
    "role",
    "source_ip",
    "user_agent",
    "operation",
    "entity_type",
    "entity_id",
    "before",
    "after",
    "outcome",
    "prev_hash",
    "hash",
)


def redact(value: Any) -> Any:
    """`value` with every secret-looking key's value replaced by ••••, at any depth."""
    if isinstance(value, dict):
        return {
            key: REDACTED
            if any(marker in str(key).lower() for marker in SECRET_MARKERS)
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _hashed_fields(entry: AuditEntry, *, seq: int | None = None) -> dict[str, Any]:
    return {
        "seq": entry.seq if seq is None else seq,
        "at": _timestamp(entry.at),
        "actor": entry.actor,
        "role": entry.role,
        "source_ip": entry.source_ip,
        "user_agent": entry.user_agent,
        "operation": entry.operation,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "before": entry.before,
        "after": entry.after,
        "outcome": entry.outcome,
    }


def entry_hash(entry: AuditEntry, *, seq: int | None = None) -> str:
    """The hash `entry` must carry (as if it were at `seq`, when given)."""
    canonical = orjson.dumps(_hashed_fields(entry, seq=seq), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(entry.prev_hash.encode("ascii") + canonical).hexdigest()


def _lock_head(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and from where, as the audit log records it (and journals name them)."""

    name: str
    role: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None

    def audit_fields(self) -> dict[str, Any]:
        return {
            "actor": self.name,
            "role": self.role,
            "source_ip": self.source_ip,
            "user_agent": self.user_agent,
        }


def record(
    session: Session,
    *,
    actor: str,
    operation: str,
    entity_type: str,
    entity_id: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    outcome: str = "ok",
    role: str | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction (flushed, not committed)."""
    _lock_head(session)
    head = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (head[0] + 1, head[1]) if head is not None else (1, GENESIS_HASH)
    entry = AuditEntry(
        seq=seq,
        at=utcnow(),
        actor=actor[:200],
        role=role,
        source_ip=source_ip,
        user_agent=user_agent[:512] if user_agent else user_agent,
        operation=operation,
        entity_type=entity_type,
        entity_id=str(entity_id) if entity_id is not None else None,
        before=_json_safe(redact(before)) if before is not None else None,
        after=_json_safe(redact(after)) if after is not None else None,
        outcome=outcome,
        prev_hash=prev_hash,
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.flush()
    return entry


def _json_safe(value: Any) -> Any:
    # What the database gives back must hash the same as what was hashed at write time.
    return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: Literal["edited", "deleted", "reordered", "broken_link"]
    message: str


@dataclass
class VerifyReport:
    ok: bool
    entries: int
    problems: list[Problem] = field(default_factory=list)


def _written_at(entry: AuditEntry) -> int | None:
    """The seq a moved entry's hash was computed for, when it is nearby."""
    for offset in range(1, REORDER_WINDOW + 1):
        for candidate in (entry.seq - offset, entry.seq + offset):
            if candidate > 0 and entry_hash(entry, seq=candidate) == entry.hash:
                return candidate
    return None


def verify(session: Session) -> VerifyReport:
    """Walk the chain oldest first (streamed) and report every place where it breaks."""
    problems: list[Problem] = []
    count = 0
    previous_seq = 0
    previous_hash = GENESIS_HASH
    query = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=EXPORT_CHUNK)
    for entry in session.scalars(query):
        count += 1
        gap = entry.seq != previous_seq + 1
        if gap:
            missing = (
                f"entry {previous_seq + 1}"
                if entry.seq == previous_seq + 2
                else f"entries {previous_seq + 1}-{entry.seq - 1}"
            )
            problems.append(Problem(previous_seq + 1, "deleted", f"{missing} missing"))
        moved = False
        if entry_hash(entry) != entry.hash:
            original = _written_at(entry)
            if original is not None:
                moved = True
                problems.append(
                    Problem(
                        entry.seq,
                        "reordered",
                        f"entry {entry.seq} was written as entry {original} (entries moved)",
                    )
                )
            else:
                problems.append(
                    Problem(
                        entry.seq, "edited", f"entry {entry.seq} was changed after it was written"
                    )
                )
        if not gap and not moved and entry.prev_hash != previous_hash:
            problems.append(
                Problem(
                    entry.seq,
                    "broken_link",
                    f"entry {entry.seq} does not follow entry {previous_seq}: "
                    f"entry {previous_seq} was replaced or an entry before {entry.seq} removed",
                )
            )
        previous_seq, previous_hash = entry.seq, entry.hash
        session.expunge(entry)
    return VerifyReport(ok=not problems, entries=count, problems=problems)


def to_view(entry: AuditEntry) -> AuditEntryView:
    return AuditEntryView.model_validate(entry, from_attributes=True)


def list_entries(
    session: Session,
    *,
    operation: str | None = None,
    actor: str | None = None,
    entity_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> AuditPage:
    """One page of entries, newest first."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(AuditEntry)
    if operation:
        query = query.where(AuditEntry.operation == operation)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit).offset(offset))
    return AuditPage(total=total, offset=offset, limit=limit, items=[to_view(row) for row in rows])


def _csv_cell(value: Any) -> str:
    if isinstance(value, dict | list):
        value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return plain_cell(value)


def export(session: Session, fmt: Literal["jsonl", "csv"]) -> Iterator[bytes]:
    """Every entry, oldest first, as JSON lines or CSV, streamed in chunks."""
    if fmt not in ("jsonl", "csv"):
        raise ValueError("export format must be jsonl or csv")
    query = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=EXPORT_CHUNK)

    def rows() -> Iterator[dict[str, Any]]:
        for entry in session.scalars(query):
            row = to_view(entry).model_dump(mode="json")
            session.expunge(entry)
            yield row

    return stream_rows(rows(), EXPORT_FIELDS, fmt, cell=_csv_cell)


__all__ = [
    "GENESIS_HASH",
    "REDACTED",
    "Problem",
    "VerifyReport",
    "entry_hash",
    "export",
    "list_entries",
    "record",
    "redact",
    "verify",
]
