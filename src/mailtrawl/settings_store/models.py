"""The table of runtime setting overrides: one row per setting an administrator changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, func
from sqlalchemy.orm import Mapped, mapped_column

from mailtrawl.storage.base import Base, JSONType, UTCDateTime, utcnow


class SettingOverride(Base):
    """A setting's value as an administrator set it, replacing the environment's default.

    `value` is the JSON form of the setting (SQL NULL stands for None); there is no row for a
    setting left at its default.
    """

    __tablename__ = "setting_overrides"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, server_default=func.now(), nullable=False
    )

    def __repr__(self) -> str:
        return f"SettingOverride(key={self.key!r})"


__all__ = ["SettingOverride"]
