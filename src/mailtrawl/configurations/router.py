"""REST API for mail configurations: `/api/v1/mail-configurations`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy.orm import Session

from mailtrawl.accounts.models import Role
from mailtrawl.audit import service as audit
from mailtrawl.configurations import service
from mailtrawl.configurations.schemas import (
    ConfigurationCreate,
    ConfigurationUpdate,
    ConfigurationView,
)
from mailtrawl.errors import ConfigError
from mailtrawl.web.deps import AppContext, Caller, audit_fields, context, db_session, require

router = APIRouter(prefix="/mail-configurations", tags=["mail configurations"])

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
# Before `db_session` in every writing route: its dependency may write (token last use).
Admin = Annotated[Caller, require(Role.ADMIN)]

ENTITY = "mail_configuration"


def _unprocessable(field: str, error: ConfigError) -> HTTPException:
    # The same shape FastAPI uses for validation errors, so clients handle one format.
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"loc": ["body", field], "msg": error.message, "type": "value_error"}],
    )


@router.post("", status_code=status.HTTP_201_CREATED)
def create(
    who: Admin, data: ConfigurationCreate, db: Db, ctx: Ctx, request: Request
) -> ConfigurationView:
    """Add a configuration. The credential is encrypted at once and never returned."""
    try:
        record = service.create_configuration(db, box=ctx.box, data=data)
    except service.ConfigurationExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
    except ConfigError as exc:
        raise _unprocessable("credential", exc) from None
    view = service.to_view(record)
    audit.record(
        db,
        **audit_fields(request, who),
        operation="configuration.create",
        entity_type=ENTITY,
        entity_id=str(record.id),
        after=view.model_dump(mode="json"),
    )
    return view


@router.get("", dependencies=[require(Role.VIEWER)])
def list_all(db: Db) -> list[ConfigurationView]:
    return [service.to_view(r) for r in service.list_configurations(db)]


@router.get("/{ref}", dependencies=[require(Role.VIEWER)])
def get(ref: str, db: Db) -> ConfigurationView:
    """One configuration, by id or by name."""
    try:
        return service.to_view(service.get_configuration(db, ref=ref))
    except service.ConfigurationNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None


@router.patch("/{ref}")
def update(
    who: Admin, ref: str, data: ConfigurationUpdate, db: Db, ctx: Ctx, request: Request
) -> ConfigurationView:
    try:
        before = service.to_view(service.get_configuration(db, ref=ref))
        view = service.to_view(service.update_configuration(db, box=ctx.box, ref=ref, data=data))
        audit.record(
            db,
            **audit_fields(request, who),
            operation="configuration.update",
            entity_type=ENTITY,
            entity_id=str(view.id),
            before=before.model_dump(mode="json"),
            after=view.model_dump(mode="json"),
        )
        return view
    except service.ConfigurationNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    except service.ConfigurationExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
    except ConfigError as exc:
        raise _unprocessable("credential", exc) from None


@router.delete("/{ref}", status_code=status.HTTP_204_NO_CONTENT)
def delete(who: Admin, ref: str, db: Db, request: Request) -> Response:
    try:
        before = service.to_view(service.get_configuration(db, ref=ref))
        service.delete_configuration(db, ref=ref)
    except service.ConfigurationNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    audit.record(
        db,
        **audit_fields(request, who),
        operation="configuration.delete",
        entity_type=ENTITY,
        entity_id=str(before.id),
        before=before.model_dump(mode="json"),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{ref}/test")
async def run_test(who: Admin, ref: str, ctx: Ctx, request: Request) -> ConfigurationView:
    """Run the connection test now; answers the configuration with each check's result and fix."""
    from mailtrawl.configurations.connection import run_connection_test

    with ctx.sessions.begin() as db:
        try:
            record = await service.test_configuration(
                db, box=ctx.box, ref=ref, runner=run_connection_test
            )
        except service.ConfigurationNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
        view = service.to_view(record)
        audit.record(
            db,
            **audit_fields(request, who),
            operation="configuration.test",
            entity_type=ENTITY,
            entity_id=str(record.id),
            after={"status": record.status},
            outcome="ok" if record.status == "ok" else f"failed: connection test {record.status}",
        )
        return view
