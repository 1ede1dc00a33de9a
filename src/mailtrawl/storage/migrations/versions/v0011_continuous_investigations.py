"""Continuous investigations: durations, watch state, schedules, delta cursors, subscriptions

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Columns on investigations (no table rebuild) and the watcher's three tables."""
    for column in (
        sa.Column("duration", sa.String(length=16), nullable=True),
        sa.Column("active_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("auto_action", sa.String(length=16), nullable=True),
        sa.Column("watch_state", sa.String(length=16), nullable=True),
        sa.Column("watch_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("watch_ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("new_hits", sa.BigInteger(), nullable=False, server_default="0"),
    ):
        op.add_column("investigations", column)
    op.create_index("ix_investigations_watch_state", "investigations", ["watch_state"])

    op.create_table(
        "monitor_mailboxes",
        sa.Column("configuration_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.String(length=128), nullable=False),
        sa.Column("upn", sa.String(length=320), nullable=False),
        sa.Column("next_poll_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_hit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["mail_configurations.id"],
            name=op.f("fk_monitor_mailboxes_configuration_id_mail_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "configuration_id", "mailbox_id", name=op.f("pk_monitor_mailboxes")
        ),
    )
    op.create_index(
        "ix_monitor_mailboxes_due", "monitor_mailboxes", ["configuration_id", "next_poll_at"]
    )
    op.create_table(
        "monitor_cursors",
        sa.Column("configuration_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.String(length=128), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["mail_configurations.id"],
            name=op.f("fk_monitor_cursors_configuration_id_mail_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "configuration_id", "mailbox_id", "folder", name=op.f("pk_monitor_cursors")
        ),
    )
    op.create_table(
        "monitor_subscriptions",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("configuration_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.String(length=128), nullable=False),
        sa.Column("folder", sa.String(length=64), nullable=False),
        sa.Column("client_state_sha256", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["mail_configurations.id"],
            name=op.f("fk_monitor_subscriptions_configuration_id_mail_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_monitor_subscriptions")),
    )
    op.create_index(
        "ix_monitor_subscriptions_mailbox",
        "monitor_subscriptions",
        ["configuration_id", "mailbox_id", "folder"],
    )


def downgrade() -> None:
    """Drop the watcher's tables and columns."""
    op.drop_index("ix_monitor_subscriptions_mailbox", table_name="monitor_subscriptions")
    op.drop_table("monitor_subscriptions")
    op.drop_table("monitor_cursors")
    op.drop_index("ix_monitor_mailboxes_due", table_name="monitor_mailboxes")
    op.drop_table("monitor_mailboxes")
    op.drop_index("ix_investigations_watch_state", table_name="investigations")
    # Plain ALTER TABLE DROP COLUMN (SQLite 3.35+): rebuilding the table would cascade.
    for name in (
        "new_hits",
        "watch_ended_at",
        "watch_started_at",
        "watch_state",
        "auto_action",
        "active_until",
        "duration",
    ):
        op.drop_column("investigations", name)
