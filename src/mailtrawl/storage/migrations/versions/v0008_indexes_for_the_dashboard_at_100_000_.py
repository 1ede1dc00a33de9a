"""Indexes for the dashboard at 100,000 hits: campaigns, hit sorts and filters

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 16:44:19.574555
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Indexes for the dashboard at 100,000 hits: campaigns, hit sorts and filters.

    The campaigns index (replacing ix_investigation_hits_imid, its prefix) covers
    list_campaigns' GROUP BY; the others serve the hits table's sorts (and, scanned
    without table reads, its sender filter). No subject index: PostgreSQL refuses
    B-tree rows over 2,704 bytes and a subject is unbounded text.
    """
    op.drop_index("ix_investigation_hits_imid", table_name="investigation_hits")
    op.create_index(
        "ix_investigation_hits_campaign",
        "investigation_hits",
        ["investigation_id", "internet_message_id", "mailbox_id", "received", "sender_address"],
    )
    op.create_index(
        "ix_investigation_hits_folder", "investigation_hits", ["investigation_id", "folder", "id"]
    )
    op.create_index(
        "ix_investigation_hits_sender",
        "investigation_hits",
        ["investigation_id", "sender_address", "id"],
    )


def downgrade() -> None:
    """Back to ix_investigation_hits_imid alone."""
    for name in (
        "ix_investigation_hits_sender",
        "ix_investigation_hits_folder",
        "ix_investigation_hits_campaign",
    ):
        op.drop_index(name, table_name="investigation_hits")
    op.create_index(
        "ix_investigation_hits_imid",
        "investigation_hits",
        ["investigation_id", "internet_message_id"],
    )
