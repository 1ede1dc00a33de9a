"""Reported emails: cases, reporters, timeline, clusters, reporter tokens, templates, settings

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the reported-email tables (cases and what hangs off them, and the settings)."""
    op.create_table(
        "report_clusters",
        sa.Column("label", sa.String(length=400), nullable=False),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column(
            "investigation_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_clusters")),
    )
    op.create_table(
        "report_intel_lists",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("indicator_count", sa.Integer(), nullable=False),
        sa.Column(
            "warnings",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_intel_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_report_intel_lists_name")),
    )
    op.create_table(
        "report_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("secrets_encrypted", sa.LargeBinary(), nullable=True),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_settings")),
    )
    op.create_table(
        "report_templates",
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("verdict", name=op.f("pk_report_templates")),
    )
    op.create_table(
        "report_yara_rules",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_yara_rules")),
        sa.UniqueConstraint("name", name=op.f("uq_report_yara_rules_name")),
    )
    op.create_table(
        "reporter_tokens",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporter_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_reporter_tokens_token_sha256")),
    )
    op.create_table(
        "report_cases",
        sa.Column("dedup_key", sa.String(length=128), nullable=False),
        sa.Column("internet_message_id", sa.String(length=998), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("subject_key", sa.String(length=400), nullable=False),
        sa.Column("sender_address", sa.String(length=320), nullable=False),
        sa.Column("sender_name", sa.String(length=256), nullable=False),
        sa.Column("sender_domain", sa.String(length=255), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fidelity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("verdict_source", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column(
            "analysis",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("analysis_verdict", sa.String(length=16), nullable=True),
        sa.Column("analysed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("analysis_error", sa.Text(), nullable=True),
        sa.Column(
            "iocs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("cluster_id", sa.Uuid(), nullable=True),
        sa.Column(
            "body_signature",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "investigation_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("raw_size", sa.BigInteger(), nullable=False),
        sa.Column("raw_sha256", sa.String(length=64), nullable=False),
        sa.Column("raw_filename", sa.String(length=255), nullable=True),
        sa.Column("reporter_count", sa.Integer(), nullable=False),
        sa.Column("first_reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "status IN ('open', 'in_analysis', 'in_progress', 'closed', 'false_positive')",
            name=op.f("ck_report_cases_status"),
        ),
        sa.CheckConstraint(
            "verdict IS NULL OR verdict IN ('undetected', 'suspicious', 'phishing', 'malicious', 'simulation')",
            name=op.f("ck_report_cases_verdict"),
        ),
        sa.CheckConstraint(
            "verdict_source IN ('analysis', 'analyst')", name=op.f("ck_report_cases_verdict_source")
        ),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["report_clusters.id"],
            name=op.f("fk_report_cases_cluster_id_report_clusters"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_cases")),
        sa.UniqueConstraint("dedup_key", name="uq_report_cases_dedup_key"),
    )
    op.create_index("ix_report_cases_cluster", "report_cases", ["cluster_id"], unique=False)
    op.create_index(
        "ix_report_cases_last_reported", "report_cases", ["last_reported_at", "id"], unique=False
    )
    op.create_index(
        "ix_report_cases_status", "report_cases", ["status", "last_reported_at"], unique=False
    )
    op.create_index(
        "ix_report_cases_verdict", "report_cases", ["verdict", "last_reported_at"], unique=False
    )
    op.create_table(
        "report_mailbox_seen",
        sa.Column("configuration_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=512), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("case_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["mail_configurations.id"],
            name=op.f("fk_report_mailbox_seen_configuration_id_mail_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "configuration_id", "mailbox", "message_id", name=op.f("pk_report_mailbox_seen")
        ),
    )
    op.create_index("ix_report_mailbox_seen_at", "report_mailbox_seen", ["seen_at"], unique=False)
    op.create_table(
        "report_mailbox_state",
        sa.Column("configuration_id", sa.Uuid(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("resyncs", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["mail_configurations.id"],
            name=op.f("fk_report_mailbox_state_configuration_id_mail_configurations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "configuration_id", "mailbox", name=op.f("pk_report_mailbox_state")
        ),
    )
    op.create_table(
        "report_case_events",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["report_cases.id"],
            name=op.f("fk_report_case_events_case_id_report_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_case_events")),
    )
    op.create_index(
        "ix_report_case_events_case", "report_case_events", ["case_id", "at"], unique=False
    )
    op.create_table(
        "report_case_keys",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["report_cases.id"],
            name=op.f("fk_report_case_keys_case_id_report_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", "digest", name=op.f("pk_report_case_keys")),
    )
    op.create_index("ix_report_case_keys_digest", "report_case_keys", ["digest"], unique=False)
    op.create_table(
        "report_case_reporters",
        sa.Column("case_id", sa.Uuid(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("claimed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("submitted_by", sa.String(length=200), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report_count", sa.Integer(), nullable=False),
        sa.Column("wrapper_subject", sa.Text(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_verdict", sa.String(length=16), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["report_cases.id"],
            name=op.f("fk_report_case_reporters_case_id_report_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_case_reporters")),
        sa.UniqueConstraint("case_id", "address", name="uq_report_case_reporter"),
    )
    op.create_index(
        "ix_report_case_reporters_address", "report_case_reporters", ["address"], unique=False
    )


def downgrade() -> None:
    """Drop the reported-email tables (every case and its stored message with them)."""
    op.drop_index("ix_report_case_reporters_address", table_name="report_case_reporters")
    op.drop_table("report_case_reporters")
    op.drop_index("ix_report_case_keys_digest", table_name="report_case_keys")
    op.drop_table("report_case_keys")
    op.drop_index("ix_report_case_events_case", table_name="report_case_events")
    op.drop_table("report_case_events")
    op.drop_table("report_mailbox_state")
    op.drop_index("ix_report_mailbox_seen_at", table_name="report_mailbox_seen")
    op.drop_table("report_mailbox_seen")
    op.drop_index("ix_report_cases_cluster", table_name="report_cases")
    op.drop_index("ix_report_cases_last_reported", table_name="report_cases")
    op.drop_index("ix_report_cases_status", table_name="report_cases")
    op.drop_index("ix_report_cases_verdict", table_name="report_cases")
    op.drop_table("report_cases")
    op.drop_table("reporter_tokens")
    op.drop_table("report_yara_rules")
    op.drop_table("report_templates")
    op.drop_table("report_settings")
    op.drop_table("report_intel_lists")
    op.drop_table("report_clusters")
