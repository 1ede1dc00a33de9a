"""The declarative base every table derives from, and the column types they share.

Works unchanged on SQLite and PostgreSQL: UUIDs are native on PostgreSQL and 32-character
hex on SQLite, timestamps always come back timezone-aware in UTC, and JSON is JSONB on
PostgreSQL.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, LargeBinary, MetaData, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

# Alembic needs stable constraint names to alter or drop them later, on both backends.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    """A random UUID whose first 48 bits are the time in milliseconds (UUIDv7, RFC 9562).

    Time-ordered ids keep B-tree inserts at the right edge of the index on PostgreSQL.
    """
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10)) & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite keeps no offset, so naive values read back are UTC by construction; naive values
    written are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware value (datetime.now(UTC))")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Ciphertext(TypeDecorator[bytes]):
    """Bytes produced by `SecretBox.encrypt` for one `purpose`.

    The type does no encryption itself (services call the `SecretBox` explicitly); it marks
    the column so `mailtrawl keys rotate` finds every encrypted value, and records the purpose
    the value is bound to.
    """

    impl = LargeBinary
    cache_ok = True

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose

    def __repr__(self) -> str:
        return f"Ciphertext(purpose={self.purpose!r})"


# JSON is JSONB on PostgreSQL so later issues can index into it.
JSONType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base with the naming convention and the shared type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute as is
        uuid.UUID: Uuid(),
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[str]: JSONType,
        list[Any]: JSONType,
        bytes: LargeBinary(),
    }


class UUIDPrimaryKey:
    """Mixin: a UUIDv7 primary key generated in Python, so ids are known before flush."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=new_id)


class Timestamps:
    """Mixin: `created_at` and `updated_at`, set by the application and by the database."""

    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(),
        default=utcnow,
        onupdate=utcnow,
        server_default=func.now(),
        nullable=False,
    )


__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "Ciphertext",
    "JSONType",
    "Timestamps",
    "UTCDateTime",
    "UUIDPrimaryKey",
    "new_id",
    "utcnow",
]
