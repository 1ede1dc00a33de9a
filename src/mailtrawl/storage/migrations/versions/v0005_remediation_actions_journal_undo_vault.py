"""Remediation: actions, journal, undo vault

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:33:46.714271
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Remediation: actions, journal, undo vault."""
    op.create_table(
        "remediation_actions",
        sa.Column("investigation_id", sa.Uuid(), nullable=False),
        sa.Column("configuration_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("undoes_id", sa.Uuid(), nullable=True),
        sa.Column(
            "selection",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "options",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "preview",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("requires_approval", sa.Boolean(), nullable=False),
        sa.Column("approval_reason", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_role", sa.String(length=16), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_role", sa.String(length=16), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("applied", sa.Integer(), nullable=False),
        sa.Column("verified", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("undone", sa.Integer(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "kind IN ('warn', 'junk', 'trash', 'delete', 'purge', 'restore')",
            name=op.f("ck_remediation_actions_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('awaiting_approval', 'queued', 'running', 'completed', 'rejected', 'cancelled')",
            name=op.f("ck_remediation_actions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["mail_configurations.id"],
            name=op.f("fk_remediation_actions_configuration_id_mail_configurations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["investigation_id"],
            ["investigations.id"],
            name=op.f("fk_remediation_actions_investigation_id_investigations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["undoes_id"],
            ["remediation_actions.id"],
            name=op.f("fk_remediation_actions_undoes_id_remediation_actions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remediation_actions")),
    )
    with op.batch_alter_table("remediation_actions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_remediation_actions_investigation", ["investigation_id", "created_at"], unique=False
        )
        batch_op.create_index("ix_remediation_actions_status", ["status"], unique=False)

    op.create_table(
        "remediation_items",
        sa.Column("action_id", sa.Uuid(), nullable=False),
        sa.Column("hit_id", sa.Uuid(), nullable=True),
        sa.Column("undoes_item_id", sa.Uuid(), nullable=True),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("mailbox_id", sa.String(length=128), nullable=False),
        sa.Column("mailbox_upn", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=512), nullable=False),
        sa.Column("internet_message_id", sa.String(length=998), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sender_address", sa.String(length=320), nullable=False),
        sa.Column("source_folder_id", sa.String(length=512), nullable=True),
        sa.Column("source_folder", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("changed", sa.Boolean(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result_message_id", sa.String(length=512), nullable=True),
        sa.Column("result_folder_id", sa.String(length=512), nullable=True),
        sa.Column("result_folder", sa.String(length=64), nullable=True),
        sa.Column(
            "categories_before",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("notice_message_id", sa.String(length=512), nullable=True),
        sa.Column("vaulted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "state IN ('planned', 'applied', 'verified', 'failed', 'undone')",
            name=op.f("ck_remediation_items_state"),
        ),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["remediation_actions.id"],
            name=op.f("fk_remediation_items_action_id_remediation_actions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["hit_id"],
            ["investigation_hits.id"],
            name=op.f("fk_remediation_items_hit_id_investigation_hits"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["undoes_item_id"],
            ["remediation_items.id"],
            name=op.f("fk_remediation_items_undoes_item_id_remediation_items"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remediation_items")),
        sa.UniqueConstraint("action_id", "mailbox_id", "message_id", name="uq_remediation_item"),
    )
    with op.batch_alter_table("remediation_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_remediation_items_batch", ["action_id", "batch", "state"], unique=False
        )
        batch_op.create_index("ix_remediation_items_hit", ["hit_id"], unique=False)

    op.create_table(
        "vault_entries",
        sa.Column("item_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox_id", sa.String(length=128), nullable=False),
        sa.Column("internet_message_id", sa.String(length=998), nullable=False),
        sa.Column("folder_id", sa.String(length=512), nullable=True),
        sa.Column("folder", sa.String(length=64), nullable=True),
        sa.Column("received", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "categories",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("is_read", sa.Boolean(), nullable=True),
        sa.Column("flag_status", sa.String(length=32), nullable=True),
        sa.Column("importance", sa.String(length=16), nullable=True),
        sa.Column("mime", sa.LargeBinary(), nullable=True),
        sa.Column("mime_size", sa.BigInteger(), nullable=False),
        sa.Column("mime_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["remediation_items.id"],
            name=op.f("fk_vault_entries_item_id_remediation_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_vault_entries")),
    )
    with op.batch_alter_table("vault_entries", schema=None) as batch_op:
        batch_op.create_index("ix_vault_entries_expires", ["expires_at"], unique=False)

    with op.batch_alter_table("investigation_hits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remediation", sa.String(length=16), nullable=True))


def downgrade() -> None:
    """Undo Remediation: actions, journal, undo vault."""
    with op.batch_alter_table("investigation_hits", schema=None) as batch_op:
        batch_op.drop_column("remediation")

    with op.batch_alter_table("vault_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_vault_entries_expires")

    op.drop_table("vault_entries")
    with op.batch_alter_table("remediation_items", schema=None) as batch_op:
        batch_op.drop_index("ix_remediation_items_hit")
        batch_op.drop_index("ix_remediation_items_batch")

    op.drop_table("remediation_items")
    with op.batch_alter_table("remediation_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_remediation_actions_status")
        batch_op.drop_index("ix_remediation_actions_investigation")

    op.drop_table("remediation_actions")
