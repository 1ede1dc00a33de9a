"""The settings page: one's own account, users and roles, API tokens, remediation settings.

Everyone signed in sees their account (and may change their password); administrators also
manage users and API tokens through `accounts.service`, and change the runtime remediation
settings through `settings_store.service`. Each form posts to its own route, which checks
the role and the origin (the CSRF token is checked by `caller`), writes in one transaction
with its audit entry (the operation names of the JSON API), and redirects back with a fixed
notice; a refused form is drawn again with the reason next to the field.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from mailtrawl.accounts import actions as account_actions
from mailtrawl.accounts import service as accounts
from mailtrawl.accounts.errors import (
    AccountError,
    LastAdmin,
    LoginThrottled,
    PasswordRejected,
    RoleTooHigh,
    UserExists,
    UsernameRejected,
    UserNotFound,
    WrongPassword,
)
from mailtrawl.accounts.models import Role, User
from mailtrawl.accounts.schemas import TokenCreate, TokenIssued, TokenView, UserView
from mailtrawl.audit import service as audit
from mailtrawl.config import ActionName, Settings
from mailtrawl.errors import NotFound
from mailtrawl.remediation.notice import DEFAULT_NOTICE_BODY, DEFAULT_NOTICE_SUBJECT, PLACEHOLDERS
from mailtrawl.settings_store import service as settings_store
from mailtrawl.storage.engine import write_session
from mailtrawl.web.deps import AppContext, Caller, actor_of, audit_fields, context
from mailtrawl.web.ui.auth import Who, same_origin
from mailtrawl.web.ui.forms import field, read_form
from mailtrawl.web.ui.layout import page
from mailtrawl.web.ui.permissions import ensure

router = APIRouter(include_in_schema=False)

Ctx = Annotated[AppContext, Depends(context)]
Errors = dict[str, dict[str, str]]

SETTINGS_PATH = "/settings"
ROLES = tuple(role.value for role in Role)
ACTION_KINDS: tuple[str, ...] = get_args(ActionName)
PASSWORD_MAX = accounts.MAX_PASSWORD_LENGTH

# Messages a redirect may ask the page to show (`?done=<key>`): fixed sentences, never input.
NOTICES: dict[str, str] = {
    "password": "Your password was changed; your other sessions were signed out.",
    "user_created": "The user was created; give them their initial password to sign in.",
    "role": "The role was changed.",
    "enabled": "The user may sign in again.",
    "disabled": "The user was disabled: their sessions ended and their API tokens stopped.",
    "reset": "The password was reset; the user's sessions ended.",
    "revoked": "The API token was revoked.",
    "remediation": "The remediation settings were saved.",
    "unchanged": "Nothing changed.",
}
REMEDIATION_FIELDS = settings_store.EDITABLE


# The page -----------------------------------------------------------------------------------


def _remediation_values(effective: Settings) -> dict[str, Any]:
    return {
        "approval_required": effective.approval_required,
        "approval_threshold": str(effective.approval_threshold),
        "approval_always_for": list(effective.approval_always_for),
        "vault_retention_days": str(effective.vault_retention_days),
        "warning_category": effective.warning_category,
        "warning_notice_subject": effective.warning_notice_subject or "",
        "warning_notice_body": effective.warning_notice_body or "",
        "organisation_name": effective.organisation_name,
    }


def _owners(db: Session) -> dict[uuid.UUID, str]:
    return {row.id: row.username for row in db.execute(select(User.id, User.username))}


def _settings_page(
    request: Request,
    who: Caller,
    ctx: AppContext,
    db: Session,
    *,
    errors: Errors | None = None,
    values: dict[str, dict[str, Any]] | None = None,
    issued: TokenIssued | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    done = request.query_params.get("done")
    context: dict[str, Any] = {
        "errors": errors or {},
        "values": values or {},
        "issued": issued,
        "roles": ROLES,
        "notice": NOTICES.get(done) if done and errors is None and issued is None else None,
        "settings": ctx.settings,
        "min_password": accounts.MIN_PASSWORD_LENGTH,
        "password_max": PASSWORD_MAX,
    }
    if who.role == Role.ADMIN:
        owners = _owners(db)
        effective = settings_store.effective_settings(db, ctx.settings)
        context |= {
            "users": [UserView.of(u) for u in accounts.list_users(db)],
            "tokens": [
                TokenView.of(t, owners.get(t.user_id) if t.user_id else None)
                for t in accounts.list_tokens(db)
            ],
            "assignable_roles": [r.value for r in Role if who.role.at_least(r)],
            "remediation": _remediation_values(effective),
            "defaults": _remediation_values(ctx.settings),
            "overrides": settings_store.list_overrides(db),
            "action_kinds": ACTION_KINDS,
            "placeholders": sorted(PLACEHOLDERS),
            "default_subject": DEFAULT_NOTICE_SUBJECT,
            "default_body": DEFAULT_NOTICE_BODY,
            "max_organisation": settings_store.MAX_ORGANISATION_NAME,
        }
    response = page(request, who, "settings.html", context, status_code=status_code)
    if issued is not None:
        # The one page that holds a token: keep it out of every cache.
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get(SETTINGS_PATH, response_class=HTMLResponse)
def settings_page(request: Request, who: Who, ctx: Ctx) -> HTMLResponse:
    """Your account for everyone; users, API tokens and remediation for administrators."""
    with ctx.sessions.begin() as db:
        return _settings_page(request, who, ctx, db)


# Shared by the forms ------------------------------------------------------------------------


async def _form(request: Request, who: Caller, permission: str | None) -> FormData:
    """The posted form, after the role and origin checks (the CSRF token was checked)."""
    if permission is not None:
        ensure(who.role, permission)
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Submit the form from mailtrawl's own page.")
    return await read_form(request)


def _done(key: str) -> RedirectResponse:
    return RedirectResponse(f"{SETTINGS_PATH}?done={key}", status_code=status.HTTP_303_SEE_OTHER)


async def _refused(
    request: Request,
    who: Caller,
    ctx: AppContext,
    errors: Errors,
    values: dict[str, dict[str, Any]] | None = None,
    status_code: int = status.HTTP_422_UNPROCESSABLE_CONTENT,
) -> HTMLResponse:
    def draw() -> HTMLResponse:
        with ctx.sessions.begin() as db:
            return _settings_page(
                request, who, ctx, db, errors=errors, values=values, status_code=status_code
            )

    return await run_in_threadpool(draw)


def _password_field(form: FormData, name: str) -> str:
    # Passwords keep their spaces; the service bounds their length.
    value = form.get(name)
    return value[: PASSWORD_MAX + 1] if isinstance(value, str) else ""


# Your account -------------------------------------------------------------------------------


def _change_password(
    ctx: AppContext, request: Request, who: Caller, current: str, new: str
) -> dict[str, str]:
    """{} when the password changed, else what is wrong by field."""
    assert who.user_id is not None
    with write_session(ctx.sessions) as db:
        try:
            account_actions.change_password(
                db,
                user_id=who.user_id,
                current=current,
                new=new,
                keep_session_id=who.session_id,
                actor=actor_of(request, who),
            )
        except LoginThrottled as exc:
            return {"current_password": exc.message}
        except WrongPassword as exc:
            # Audited as refused and committed: the failed attempt counts towards throttling.
            return {"current_password": exc.message}
        except PasswordRejected as exc:
            return {"new_password": exc.message}
    return {}


@router.post(f"{SETTINGS_PATH}/password")
async def change_password(request: Request, who: Who, ctx: Ctx) -> Response:
    """Change one's own password, proving the current one; one's other sessions end."""
    form = await _form(request, who, None)
    if who.user_id is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "This API token belongs to no user, so it has no password to change.",
        )
    current = _password_field(form, "current_password")
    new = _password_field(form, "new_password")
    errors: dict[str, str] = {}
    # Sentences, not passwords: S105 reads the field names.
    if not current:
        errors["current_password"] = "Enter your current password."  # noqa: S105
    if not new:
        errors["new_password"] = "Enter a new password."  # noqa: S105
    elif new != _password_field(form, "confirm_password"):
        errors["confirm_password"] = "The two new passwords differ; type them again."  # noqa: S105
    if not errors:
        errors = await run_in_threadpool(_change_password, ctx, request, who, current, new)
    if errors:
        return await _refused(request, who, ctx, {"password": errors})
    return _done("password")


# Users and roles ----------------------------------------------------------------------------


def _user_change(
    ctx: AppContext,
    request: Request,
    who: Caller,
    user_id: uuid.UUID,
    operation: str,
    change: Callable[[Session], User],
) -> AccountError | None:
    """Apply `change` to a user with its audit entry; the refusal, or None."""
    with write_session(ctx.sessions) as db:
        try:
            before = UserView.of(accounts.get_user(db, user_id)).model_dump(mode="json")
            user = change(db)
        except UserNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
        except AccountError as exc:
            db.rollback()
            return exc
        audit.record(
            db,
            **audit_fields(request, who),
            operation=operation,
            entity_type="user",
            entity_id=str(user.id),
            before=before,
            after=UserView.of(user).model_dump(mode="json"),
        )
    return None


def _create_user(
    ctx: AppContext, request: Request, who: Caller, values: dict[str, str], password: str
) -> dict[str, str]:
    """{} when the user was created, else what is wrong by field."""
    with write_session(ctx.sessions) as db:
        try:
            account_actions.create_user(
                db,
                username=values["username"],
                password=password,
                role=values["role"],
                display_name=values["display_name"],
                actor=actor_of(request, who),
            )
        except (UsernameRejected, UserExists) as exc:
            return {"username": exc.message}
        except PasswordRejected as exc:
            return {"password": exc.message}
    return {}


@router.post(f"{SETTINGS_PATH}/users")
async def create_user(request: Request, who: Who, ctx: Ctx) -> Response:
    """Add a user with a role and an initial password."""
    form = await _form(request, who, "settings.edit")
    values = {
        "username": field(form, "username", max_length=200),
        "display_name": field(form, "display_name", max_length=200),
        "role": field(form, "role", max_length=16),
    }
    password = _password_field(form, "password")
    errors: dict[str, str] = {}
    if not values["username"]:
        errors["username"] = "Enter a username."
    if values["role"] not in ROLES:
        errors["role"] = "Choose a role: " + ", ".join(ROLES) + "."
    if not password:
        errors["password"] = "Enter an initial password."  # noqa: S105 - a sentence
    if not errors:
        errors = await run_in_threadpool(_create_user, ctx, request, who, values, password)
    if errors:
        return await _refused(
            request,
            who,
            ctx,
            {"user_create": errors},
            {"user_create": values},
            status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    return _done("user_created")


async def _refused_user(
    request: Request, who: Caller, ctx: AppContext, user_id: uuid.UUID, refusal: AccountError
) -> HTMLResponse:
    code = (
        status.HTTP_409_CONFLICT
        if isinstance(refusal, LastAdmin)
        else status.HTTP_422_UNPROCESSABLE_CONTENT
    )
    errors = {f"user:{user_id}": {"user": refusal.message}}
    return await _refused(request, who, ctx, errors, None, code)


@router.post(f"{SETTINGS_PATH}/users/{{user_id}}/role")
async def set_role(request: Request, who: Who, ctx: Ctx, user_id: uuid.UUID) -> Response:
    """Change a user's role; the last active administrator cannot be demoted."""
    form = await _form(request, who, "settings.edit")
    role = field(form, "role", max_length=16)
    if role not in ROLES:
        message: AccountError | None = AccountError("Choose a role: " + ", ".join(ROLES) + ".")
    else:
        message = await run_in_threadpool(
            _user_change,
            ctx,
            request,
            who,
            user_id,
            "user.update",
            lambda db: accounts.set_role(db, user_id=user_id, role=role),
        )
    if message is not None:
        return await _refused_user(request, who, ctx, user_id, message)
    return _done("role")


@router.post(f"{SETTINGS_PATH}/users/{{user_id}}/active")
async def set_active(request: Request, who: Who, ctx: Ctx, user_id: uuid.UUID) -> Response:
    """Disable a user (their sessions end, their tokens stop) or enable them again."""
    form = await _form(request, who, "settings.edit")
    active = field(form, "active", max_length=8) == "true"
    message = await run_in_threadpool(
        _user_change,
        ctx,
        request,
        who,
        user_id,
        "user.update",
        lambda db: accounts.set_active(db, user_id=user_id, active=active),
    )
    if message is not None:
        return await _refused_user(request, who, ctx, user_id, message)
    if not active and user_id == who.user_id:
        # One's own session ended with the account: go to the sign-in page.
        return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    return _done("enabled" if active else "disabled")


@router.post(f"{SETTINGS_PATH}/users/{{user_id}}/password")
async def reset_password(request: Request, who: Who, ctx: Ctx, user_id: uuid.UUID) -> Response:
    """Set a new password for a user without the current one; their sessions end."""
    form = await _form(request, who, "settings.edit")
    password = _password_field(form, "password")
    if not password:
        message: AccountError | None = PasswordRejected("Enter the new password.")
    else:
        message = await run_in_threadpool(
            _user_change,
            ctx,
            request,
            who,
            user_id,
            "user.password_reset",
            lambda db: accounts.set_password(db, user_id=user_id, new=password),
        )
    if message is not None:
        return await _refused_user(request, who, ctx, user_id, message)
    if user_id == who.user_id:
        return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    return _done("reset")


# API tokens ---------------------------------------------------------------------------------


def _create_token(
    ctx: AppContext, request: Request, who: Caller, data: TokenCreate
) -> TokenIssued | dict[str, str]:
    with write_session(ctx.sessions) as db:
        owner = db.get(User, who.user_id) if who.user_id is not None else None
        try:
            issued = account_actions.create_token(
                db,
                name=data.name,
                role=Role(data.role),
                expires_in=timedelta(days=data.expires_days) if data.expires_days else None,
                owner=owner,
                actor=actor_of(request, who),
            )
        except RoleTooHigh as exc:
            return {"role": exc.message}
        view = TokenView.of(issued.record, owner.username if owner is not None else None)
        return TokenIssued(**view.model_dump(), token=issued.token)


_TOKEN_FIELDS = {"name": "name", "role": "role", "expires_days": "expires_days"}


@router.post(f"{SETTINGS_PATH}/tokens")
async def create_token(request: Request, who: Who, ctx: Ctx) -> Response:
    """Create an API token (its role at most one's own); the page shows it this once."""
    form = await _form(request, who, "settings.edit")
    values = {
        "name": field(form, "name", max_length=300),
        "role": field(form, "role", max_length=16),
        "expires_days": field(form, "expires_days", max_length=12),
    }
    errors: dict[str, str] = {}
    try:
        data = TokenCreate(
            name=values["name"],
            role=values["role"],  # type: ignore[arg-type]  # validated by TokenCreate
            expires_days=int(values["expires_days"]) if values["expires_days"] else None,
        )
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            for error in exc.errors(include_url=False, include_input=False):
                name = str(error["loc"][0]) if error["loc"] else "name"
                errors.setdefault(_TOKEN_FIELDS.get(name, "name"), str(error["msg"]))
        else:
            errors["expires_days"] = "Enter a whole number of days, or leave it empty."
    else:
        issued = await run_in_threadpool(_create_token, ctx, request, who, data)
        if isinstance(issued, TokenIssued):

            def shown_once() -> HTMLResponse:
                with ctx.sessions.begin() as db:
                    return _settings_page(
                        request, who, ctx, db, issued=issued, status_code=status.HTTP_201_CREATED
                    )

            return await run_in_threadpool(shown_once)
        errors = issued
    return await _refused(request, who, ctx, {"token_create": errors}, {"token_create": values})


def _revoke_token(ctx: AppContext, request: Request, who: Caller, token_id: uuid.UUID) -> None:
    with write_session(ctx.sessions) as db:
        try:
            account_actions.revoke_token(db, token_id=token_id, actor=actor_of(request, who))
        except NotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None


@router.post(f"{SETTINGS_PATH}/tokens/{{token_id}}/revoke")
async def revoke_token(request: Request, who: Who, ctx: Ctx, token_id: uuid.UUID) -> Response:
    """Revoke an API token at once."""
    await _form(request, who, "settings.edit")
    await run_in_threadpool(_revoke_token, ctx, request, who, token_id)
    return _done("revoked")


# Remediation settings -----------------------------------------------------------------------


def _save_remediation(
    ctx: AppContext, request: Request, who: Caller, changes: dict[str, Any]
) -> dict[str, str] | bool:
    """True when something changed, False when nothing did, else the errors by field."""
    with write_session(ctx.sessions) as db:
        before = settings_store.effective_settings(db, ctx.settings)
        try:
            after = settings_store.update_settings(
                db, settings=ctx.settings, changes=changes, **audit_fields(request, who)
            )
        except settings_store.SettingsRejected as exc:
            return exc.errors
        return after != before


@router.post(f"{SETTINGS_PATH}/remediation")
async def save_remediation(request: Request, who: Who, ctx: Ctx) -> Response:
    """Approval rules, vault retention, the warning category and notice, the organisation."""
    form = await _form(request, who, "settings.edit")
    changes: dict[str, Any] = {
        "approval_required": field(form, "approval_required", max_length=8) == "on",
        "approval_threshold": field(form, "approval_threshold", max_length=20),
        "approval_always_for": [
            value for value in form.getlist("approval_always_for") if isinstance(value, str)
        ][: len(ACTION_KINDS)],
        "vault_retention_days": field(form, "vault_retention_days", max_length=20),
        "warning_category": field(form, "warning_category", max_length=300),
        "warning_notice_subject": field(form, "warning_notice_subject", max_length=1000),
        "warning_notice_body": field(form, "warning_notice_body", max_length=70_000),
        "organisation_name": field(form, "organisation_name", max_length=300),
    }
    saved = await run_in_threadpool(_save_remediation, ctx, request, who, changes)
    if isinstance(saved, dict):
        return await _refused(request, who, ctx, {"remediation": saved}, {"remediation": changes})
    return _done("remediation" if saved else "unchanged")


__all__ = ["router"]
