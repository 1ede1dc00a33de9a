"""REST API for mail configurations: `/api/v1/mail-configurations`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from sqlalchemy.orm import Session

from mailtrawl.accounts.models import Role
from mailtrawl.configurations import actions, service
from mailtrawl.configurations.schemas import (
    ConfigurationCreate,
    ConfigurationUpdate,
    ConfigurationView,
)
from mailtrawl.errors import ConfigError, MailtrawlError
from mailtrawl.web.deps import AppContext, Caller, actor_of, context, db_session, require

router = APIRouter(prefix="/mail-configurations", tags=["mail configurations"])

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
# Before `db_session` in every writing route: its dependency may write (token last use).
Admin = Annotated[Caller, require(Role.ADMIN)]


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
        record = actions.create(db, box=ctx.box, data=data, actor=actor_of(request, who))
    except service.ConfigurationExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
    except ConfigError as exc:
        raise _unprocessable("credential", exc) from None
    return service.to_view(record)


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
        record = actions.update(db, box=ctx.box, ref=ref, data=data, actor=actor_of(request, who))
        return service.to_view(record)
    except service.ConfigurationNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    except service.ConfigurationExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
    except ConfigError as exc:
        raise _unprocessable("credential", exc) from None


@router.delete("/{ref}", status_code=status.HTTP_204_NO_CONTENT)
def delete(who: Admin, ref: str, db: Db, request: Request) -> Response:
    try:
        actions.delete(db, ref=ref, actor=actor_of(request, who))
    except service.ConfigurationNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{ref}/test")
async def run_test(who: Admin, ref: str, ctx: Ctx, request: Request) -> ConfigurationView:
    """Run the connection test now; answers the configuration with each check's result and fix.

    A test that cannot run at all is audited as failed, then answered as the error it is.
    """
    failure: MailtrawlError
    with ctx.sessions.begin() as db:
        try:
            record = await actions.test_connection(
                db, box=ctx.box, ref=ref, settings=ctx.settings, actor=actor_of(request, who)
            )
        except service.ConfigurationNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
        except MailtrawlError as exc:
            failure = exc  # raised once the audit entry is committed
        else:
            return service.to_view(record)
    raise failure
