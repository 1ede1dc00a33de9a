"""Investigations, their mailboxes and hits; the job queue

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:52:37.416579
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Investigations, their mailboxes and hits; the job queue."""
    op.create_table(
        "jobs",
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("group_key", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed', 'cancelled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_group_key", ["group_key"], unique=False)
        batch_op.create_index("ix_jobs_status_run_after", ["status", "run_after"], unique=False)

    op.create_table(
        "investigations",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("configuration_id", sa.Uuid(), nullable=True),
        sa.Column("configuration_name", sa.String(length=200), nullable=False),
        sa.Column(
            "query",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "scope",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "plan",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("duplicated_from", sa.Uuid(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mailboxes_total", sa.Integer(), nullable=False),
        sa.Column("mailboxes_done", sa.Integer(), nullable=False),
        sa.Column("mailboxes_failed", sa.Integer(), nullable=False),
        sa.Column("mailboxes_skipped", sa.Integer(), nullable=False),
        sa.Column("messages_examined", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("throttled", sa.Integer(), nullable=False),
        sa.Column("throttle_wait_seconds", sa.Float(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'stopping', 'stopped', 'completed', 'failed')",
            name=op.f("ck_investigations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["mail_configurations.id"],
            name=op.f("fk_investigations_configuration_id_mail_configurations"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_investigations")),
    )
    with op.batch_alter_table("investigations", schema=None) as batch_op:
        batch_op.create_index("ix_investigations_created_at", ["created_at"], unique=False)

    op.create_table(
        "investigation_hits",
        sa.Column("investigation_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.String(length=128), nullable=False),
        sa.Column("mailbox_upn", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=512), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=True),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("internet_message_id", sa.String(length=998), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sender_address", sa.String(length=320), nullable=False),
        sa.Column("sender_name", sa.String(length=256), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("received", sa.DateTime(timezone=True), nullable=True),
        sa.Column("has_attachments", sa.Boolean(), nullable=False),
        sa.Column("attachment_names", sa.Text(), nullable=False),
        sa.Column(
            "matched",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("via_attached_email", sa.Boolean(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["investigation_id"],
            ["investigations.id"],
            name=op.f("fk_investigation_hits_investigation_id_investigations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_investigation_hits")),
        sa.UniqueConstraint(
            "investigation_id", "mailbox_id", "message_id", name="uq_investigation_hit"
        ),
    )
    with op.batch_alter_table("investigation_hits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_investigation_hits_imid", ["investigation_id", "internet_message_id"], unique=False
        )
        batch_op.create_index(
            "ix_investigation_hits_mailbox", ["investigation_id", "mailbox_upn"], unique=False
        )
        batch_op.create_index(
            "ix_investigation_hits_received", ["investigation_id", "received"], unique=False
        )

    op.create_table(
        "investigation_mailboxes",
        sa.Column("investigation_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.String(length=128), nullable=False),
        sa.Column("upn", sa.String(length=320), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("messages_examined", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("search_cap_fallback", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'scanning', 'done', 'skipped', 'failed')",
            name=op.f("ck_investigation_mailboxes_status"),
        ),
        sa.ForeignKeyConstraint(
            ["investigation_id"],
            ["investigations.id"],
            name=op.f("fk_investigation_mailboxes_investigation_id_investigations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_investigation_mailboxes")),
        sa.UniqueConstraint("investigation_id", "mailbox_id", name="uq_investigation_mailbox"),
    )
    with op.batch_alter_table("investigation_mailboxes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_investigation_mailboxes_batch",
            ["investigation_id", "batch", "status"],
            unique=False,
        )
    op.create_table(
        "known_folders",
        sa.Column("configuration_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.String(length=128), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["mail_configurations.id"],
            name=op.f("fk_known_folders_configuration_id_mail_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "configuration_id", "mailbox_id", "folder_id", name=op.f("pk_known_folders")
        ),
    )


def downgrade() -> None:
    """Undo Investigations, their mailboxes and hits; the job queue."""
    op.drop_table("known_folders")
    with op.batch_alter_table("investigation_mailboxes", schema=None) as batch_op:
        batch_op.drop_index("ix_investigation_mailboxes_batch")

    op.drop_table("investigation_mailboxes")
    with op.batch_alter_table("investigation_hits", schema=None) as batch_op:
        batch_op.drop_index("ix_investigation_hits_received")
        batch_op.drop_index("ix_investigation_hits_mailbox")
        batch_op.drop_index("ix_investigation_hits_imid")

    op.drop_table("investigation_hits")
    with op.batch_alter_table("investigations", schema=None) as batch_op:
        batch_op.drop_index("ix_investigations_created_at")

    op.drop_table("investigations")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_status_run_after")
        batch_op.drop_index("ix_jobs_group_key")

    op.drop_table("jobs")
