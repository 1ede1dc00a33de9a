"""Storing hits: the one way rows enter `investigation_hits`, keeping the campaign counters true.

Every writer (a scan's flushes, a finished mailbox, a watcher finding new mail) goes through
`store_hits`, which normalises the columns the dashboard filters and sorts on, inserts the
rows (a copy already stored is ignored), and recounts the campaigns the batch touched.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailtrawl.investigations.models import (
    SUBJECT_KEY_LENGTH,
    Investigation,
    InvestigationCampaign,
    InvestigationHit,
)

_CHUNK = 500  # Internet message ids per IN (...) list


def subject_key(subject: str | None) -> str:
    """What the hits table sorts and filters subjects on (case-insensitive, bounded)."""
    return (subject or "").lower()[:SUBJECT_KEY_LENGTH]


def normalise_hit(row: dict[str, Any]) -> dict[str, Any]:
    """The row as stored: addresses lower-cased, the subject key filled in."""
    return {
        **row,
        "mailbox_upn": (row.get("mailbox_upn") or "").lower(),
        "sender_address": (row.get("sender_address") or "").lower(),
        "subject_key": subject_key(row.get("subject")),
    }


def _dialect(session: Session) -> Any:
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


def store_hits(session: Session, rows: list[dict[str, Any]]) -> list[uuid.UUID]:
    """Insert hits (ignoring copies already stored) and recount the campaigns they belong to.

    Returns the ids of the rows inserted (a copy stored before is not among them).

    The investigation rows are locked first, so two writers of one investigation recount
    one after the other and the second sees the first's hits (PostgreSQL; SQLite has a
    single writer anyway).
    """
    if not rows:
        return []
    stored = [normalise_hit(row) for row in rows]
    touched: dict[uuid.UUID, dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in stored:
        touched[row["investigation_id"]].setdefault(row["internet_message_id"], row)
    session.execute(
        select(Investigation.id).where(Investigation.id.in_(sorted(touched))).with_for_update()
    )
    module = _dialect(session)
    table = InvestigationHit.__table__
    inserted = list(
        session.scalars(
            module.insert(table).on_conflict_do_nothing().returning(table.c.id),
            stored,
        )
    )
    for investigation_id, firsts in touched.items():
        refresh_campaigns(session, investigation_id, firsts)
    return inserted


def refresh_campaigns(
    session: Session, investigation_id: uuid.UUID, firsts: dict[str, dict[str, Any]]
) -> None:
    """Recount the campaigns named in `firsts` (Internet message id -> one of its hits).

    The counts come from the stored hits (through ix_investigation_hits_campaign, without
    table reads); the subject is the one of the first copy stored.
    """
    hits = InvestigationHit
    module = _dialect(session)
    table = InvestigationCampaign.__table__
    imids = sorted(firsts)
    for start in range(0, len(imids), _CHUNK):
        chunk = imids[start : start + _CHUNK]
        counted = session.execute(
            select(
                hits.internet_message_id,
                func.count(),
                func.count(func.distinct(hits.mailbox_id)),
                func.min(hits.received),
                func.max(hits.received),
                func.min(hits.sender_address),
            )
            .where(hits.investigation_id == investigation_id, hits.internet_message_id.in_(chunk))
            .group_by(hits.internet_message_id)
        ).all()
        values = [
            {
                "investigation_id": investigation_id,
                "internet_message_id": imid,
                "subject": (firsts[imid].get("subject") or "")[:2000],
                "sender_address": sender or "",
                "copies": copies,
                "mailboxes": boxes,
                "first_received": _as_datetime(first),
                "last_received": _as_datetime(last),
            }
            for imid, copies, boxes, first, last, sender in counted
        ]
        if not values:
            continue
        statement = module.insert(table)
        excluded = statement.excluded
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["investigation_id", "internet_message_id"],
                set_={
                    "sender_address": excluded.sender_address,
                    "copies": excluded.copies,
                    "mailboxes": excluded.mailboxes,
                    "first_received": excluded.first_received,
                    "last_received": excluded.last_received,
                },
            ),
            values,
        )


def _as_datetime(value: Any) -> datetime | None:
    # Aggregates bypass the column type on SQLite and come back as text.
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(when, datetime)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
