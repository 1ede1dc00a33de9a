"""Hit sort keys and campaign counters: every dashboard page fast at 100,000 hits

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBJECT_KEY_LENGTH = 400
_BATCH = 5_000


def upgrade() -> None:
    """Lower-cased addresses and a subject key on hits; a campaigns table kept by the writers.

    Existing rows are rewritten in Python (lower-casing non-ASCII text the way new rows
    are), then the campaigns of existing investigations are counted once.
    """
    op.add_column(
        "investigation_hits",
        sa.Column(
            "subject_key",
            sa.String(length=SUBJECT_KEY_LENGTH),
            nullable=False,
            server_default="",
        ),
    )
    bind = op.get_bind()
    hits = sa.table(
        "investigation_hits",
        sa.column("id", sa.Uuid()),
        sa.column("subject", sa.Text()),
        sa.column("subject_key", sa.String()),
        sa.column("mailbox_upn", sa.String()),
        sa.column("sender_address", sa.String()),
    )
    last = None
    while True:
        query = sa.select(hits.c.id, hits.c.subject, hits.c.mailbox_upn, hits.c.sender_address)
        if last is not None:
            query = query.where(hits.c.id > last)
        rows = bind.execute(query.order_by(hits.c.id).limit(_BATCH)).all()
        if not rows:
            break
        bind.execute(
            hits.update()
            .where(hits.c.id == sa.bindparam("row_id"))
            .values(
                subject_key=sa.bindparam("key"),
                mailbox_upn=sa.bindparam("upn"),
                sender_address=sa.bindparam("sender"),
            ),
            [
                {
                    "row_id": row_id,
                    "key": (subject or "").lower()[:SUBJECT_KEY_LENGTH],
                    "upn": (upn or "").lower(),
                    "sender": (sender or "").lower(),
                }
                for row_id, subject, upn, sender in rows
            ],
        )
        last = rows[-1][0]

    with op.batch_alter_table("investigation_hits", schema=None) as batch_op:
        batch_op.drop_index("ix_investigation_hits_received")
        batch_op.drop_index("ix_investigation_hits_mailbox")
        batch_op.drop_index("ix_investigation_hits_folder")
        batch_op.create_index(
            "ix_investigation_hits_folder",
            ["investigation_id", "folder", "received", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_investigation_hits_received", ["investigation_id", "received", "id"], unique=False
        )
        batch_op.create_index(
            "ix_investigation_hits_mailbox", ["investigation_id", "mailbox_upn", "id"], unique=False
        )
        batch_op.create_index(
            "ix_investigation_hits_subject", ["investigation_id", "subject_key", "id"], unique=False
        )

    op.create_table(
        "investigation_campaigns",
        sa.Column("investigation_id", sa.Uuid(), nullable=False),
        sa.Column("internet_message_id", sa.String(length=998), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sender_address", sa.String(length=320), nullable=False),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.Column("mailboxes", sa.Integer(), nullable=False),
        sa.Column("first_received", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_received", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["investigation_id"],
            ["investigations.id"],
            name=op.f("fk_investigation_campaigns_investigation_id_investigations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "investigation_id", "internet_message_id", name=op.f("pk_investigation_campaigns")
        ),
    )
    op.create_index(
        "ix_investigation_campaigns_size",
        "investigation_campaigns",
        ["investigation_id", "copies", "internet_message_id"],
    )
    op.execute(
        "INSERT INTO investigation_campaigns (investigation_id, internet_message_id, subject,"
        " sender_address, copies, mailboxes, first_received, last_received)"
        " SELECT investigation_id, internet_message_id, min(subject), min(sender_address),"
        " count(*), count(DISTINCT mailbox_id), min(received), max(received)"
        " FROM investigation_hits GROUP BY investigation_id, internet_message_id"
    )


def downgrade() -> None:
    """Back to grouping hits at request time, and indexes without the id."""
    op.drop_index("ix_investigation_campaigns_size", table_name="investigation_campaigns")
    op.drop_table("investigation_campaigns")
    with op.batch_alter_table("investigation_hits", schema=None) as batch_op:
        batch_op.drop_index("ix_investigation_hits_subject")
        batch_op.drop_index("ix_investigation_hits_folder")
        batch_op.create_index(
            "ix_investigation_hits_folder", ["investigation_id", "folder", "id"], unique=False
        )
        batch_op.drop_index("ix_investigation_hits_mailbox")
        batch_op.drop_index("ix_investigation_hits_received")
        batch_op.create_index(
            "ix_investigation_hits_received", ["investigation_id", "received"], unique=False
        )
        batch_op.create_index(
            "ix_investigation_hits_mailbox", ["investigation_id", "mailbox_upn"], unique=False
        )
        batch_op.drop_column("subject_key")
