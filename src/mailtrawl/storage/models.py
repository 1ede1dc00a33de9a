"""The mail configuration table, and `load_all_models()` for everything that needs every table.

Domains keep their tables in `mailtrawl/<domain>/models.py`; `load_all_models()` imports each
of them, so the migration environment compares against the whole schema and key rotation sees
every `Ciphertext` column, whatever the caller happened to import before.
"""

from __future__ import annotations

import enum
import importlib
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column

from mailtrawl.storage.base import (
    Base,
    Ciphertext,
    JSONType,
    Timestamps,
    UTCDateTime,
    UUIDPrimaryKey,
)

# The purpose an encrypted credential is bound to; changing it makes stored values unreadable.
CREDENTIAL_PURPOSE = "mail_configurations.credential"


class CredentialKind(enum.StrEnum):
    """What the encrypted credential of a mail configuration holds."""

    SECRET = "secret"  # noqa: S105 - a kind of credential, not a credential
    CERTIFICATE = "certificate"


class ConfigurationStatus(enum.StrEnum):
    """The outcome of the last connection test."""

    UNKNOWN = "unknown"
    OK = "ok"
    FAILED = "failed"


def one_of(column: str, values: type[enum.StrEnum]) -> str:
    """A CHECK constraint's text: `column` holds one of an enum's values."""
    listed = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({listed})"


class MailConfiguration(UUIDPrimaryKey, Timestamps, Base):
    """One connection to a mail platform (a Microsoft 365 tenant's app registration, ...)."""

    __tablename__ = "mail_configurations"
    __table_args__ = (
        CheckConstraint(one_of("credential_kind", CredentialKind), name="credential_kind"),
        CheckConstraint(one_of("status", ConfigurationStatus), name="status"),
    )

    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(32))
    # Tenant id (GUID) or a verified domain.
    tenant: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    credential_kind: Mapped[str] = mapped_column(String(16), default=CredentialKind.SECRET.value)
    # The client secret, or the certificate's private key and chain, sealed by SecretBox.
    credential_encrypted: Mapped[bytes] = mapped_column(Ciphertext(purpose=CREDENTIAL_PURPOSE))
    # The last four characters of a secret or a certificate thumbprint, shown as ••••abcd.
    credential_hint: Mapped[str | None] = mapped_column(String(16))
    credential_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cloud: Mapped[str] = mapped_column(String(32), default="global")
    # Only for the custom cloud: the emulator, a sovereign endpoint, a TLS-inspecting proxy.
    authority_host: Mapped[str | None] = mapped_column(String(2048))
    graph_endpoint: Mapped[str | None] = mapped_column(String(2048))
    ca_bundle_pem: Mapped[str | None] = mapped_column(Text)
    test_mailbox: Mapped[str | None] = mapped_column(String(320))
    # Mailboxes outside these domains are never touched.
    authorized_domains: Mapped[list[str]] = mapped_column(JSONType, default=list)
    default_scope: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    status: Mapped[str] = mapped_column(
        String(16),
        default=ConfigurationStatus.UNKNOWN.value,
        server_default=ConfigurationStatus.UNKNOWN.value,
    )
    last_test_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_test_result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    def __repr__(self) -> str:
        # Never the credential: reprs end up in logs and tracebacks.
        return f"MailConfiguration(id={self.id!s}, name={self.name!r}, provider={self.provider!r})"


def load_all_models() -> type[Base]:
    """Import every `mailtrawl.<domain>.models` module; returns `Base` with complete metadata."""
    package = Path(__file__).resolve().parent.parent
    for candidate in sorted(package.glob("*/models.py")):
        importlib.import_module(f"mailtrawl.{candidate.parent.name}.models")
    return Base


__all__ = [
    "CREDENTIAL_PURPOSE",
    "Base",
    "ConfigurationStatus",
    "CredentialKind",
    "MailConfiguration",
    "load_all_models",
]
