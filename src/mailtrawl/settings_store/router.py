"""REST API for the runtime settings: `GET /api/v1/settings` and `PATCH /api/v1/settings`.

The same settings, rules and audit entry (`settings.update`, before and after) as the
dashboard's Settings page: both call `service.update_settings`. Administrators and analysts
read them (analysts act within the approval rules, so they may know them); administrators
change them. Only the runtime-editable settings are ever shown: no key, password, database
address or credential is among them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from mailtrawl.accounts.models import Role
from mailtrawl.settings_store import service
from mailtrawl.storage.engine import write_session
from mailtrawl.web.deps import AppContext, Caller, audit_fields, context, db_session, require

router = APIRouter(prefix="/settings", tags=["settings"])

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
# A PATCH names at most every editable setting; the templates are bounded by their own rules.
MAX_PATCH_KEYS = 32


class OverrideView(BaseModel):
    """Who changed a setting away from the environment's default, and when."""

    updated_by: str
    updated_at: datetime


class SettingsView(BaseModel):
    """The runtime settings: what is in force, the environment's defaults, and which differ."""

    values: dict[str, Any] = Field(description="the effective values (JSON form)")
    defaults: dict[str, Any] = Field(description="the environment's and TOML file's values")
    overridden: dict[str, OverrideView] = Field(
        description="settings an administrator changed, with who and when"
    )


class SettingsProblem(BaseModel):
    """A refused change: the sentence, and what is wrong with each setting."""

    message: str
    errors: dict[str, str]


def settings_view(session: Session, ctx: AppContext) -> SettingsView:
    """The view `GET /settings` answers (also what the CLI prints as JSON)."""
    effective = service.effective_settings(session, ctx.settings)
    rows = service.list_overrides(session)
    return SettingsView(
        values=service.editable_values(effective),
        defaults=service.editable_values(ctx.settings),
        overridden={
            name: OverrideView(updated_by=row.updated_by, updated_at=row.updated_at)
            for name, row in rows.items()
        },
    )


@router.get("", dependencies=[require(Role.ANALYST)])
def read_settings(db: Db, ctx: Ctx) -> SettingsView:
    """The runtime settings: approval rules, vault retention, warning category and notice."""
    return settings_view(db, ctx)


@router.patch(
    "",
    responses={422: {"model": SettingsProblem, "description": "a change breaks a rule"}},
)
def change_settings(
    request: Request,
    ctx: Ctx,
    who: Annotated[Caller, require(Role.ADMIN)],
    changes: Annotated[
        dict[str, Any],
        Body(
            description="setting name -> new value; a value equal to the default removes the "
            "override, null or an empty template means the built-in one",
            examples=[{"approval_threshold": 50, "warning_category": "Phish - do not open"}],
        ),
    ],
) -> SettingsView:
    """Change runtime settings (administrators); audited as `settings.update`."""
    if len(changes) > MAX_PATCH_KEYS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "Too many settings at once.")
    with write_session(ctx.sessions) as db:
        try:
            service.update_settings(
                db, settings=ctx.settings, changes=changes, **audit_fields(request, who)
            )
        except service.SettingsRejected as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                SettingsProblem(message=exc.message, errors=exc.errors).model_dump(),
            ) from None
        return settings_view(db, ctx)


__all__ = ["SettingsView", "router", "settings_view"]
