"""Mail configurations, with their credential encrypted at rest.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions spell out plain types so that they keep meaning what they meant when written.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Create `mail_configurations`."""
    op.create_table(
        "mail_configurations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("tenant", sa.String(length=255), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("credential_kind", sa.String(length=16), nullable=False),
        sa.Column("credential_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("credential_hint", sa.String(length=16), nullable=True),
        sa.Column("credential_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cloud", sa.String(length=32), nullable=False),
        sa.Column("authority_host", sa.String(length=2048), nullable=True),
        sa.Column("graph_endpoint", sa.String(length=2048), nullable=True),
        sa.Column("ca_bundle_pem", sa.Text(), nullable=True),
        sa.Column("test_mailbox", sa.String(length=320), nullable=True),
        sa.Column("authorized_domains", JSON, nullable=False),
        sa.Column("default_scope", JSON, nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="unknown", nullable=False),
        sa.Column("last_test_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_test_result", JSON, nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "credential_kind IN ('secret', 'certificate')",
            name=op.f("ck_mail_configurations_credential_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('unknown', 'ok', 'failed')", name=op.f("ck_mail_configurations_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_configurations")),
        sa.UniqueConstraint("name", name=op.f("uq_mail_configurations_name")),
    )


def downgrade() -> None:
    """Drop `mail_configurations`."""
    op.drop_table("mail_configurations")
