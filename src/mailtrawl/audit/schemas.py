"""The public shape of audit entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntryView(BaseModel):
    seq: int
    at: datetime
    actor: str
    role: str | None
    source_ip: str | None
    user_agent: str | None
    operation: str
    entity_type: str
    entity_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    outcome: str
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[AuditEntryView]


class ProblemView(BaseModel):
    seq: int
    kind: str
    message: str


class VerifyView(BaseModel):
    ok: bool
    entries: int
    problems: list[ProblemView]
