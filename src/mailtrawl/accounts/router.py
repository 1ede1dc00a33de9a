"""REST API for accounts: signing in and out, one's own password, users, API tokens.

POST /auth/login            {username, password} -> the session (cookie) and its CSRF token
POST /auth/logout           end this session, drop the cookie
GET  /auth/me               who is calling
POST /auth/password         {current, new}: change one's password (ends one's other sessions)
GET  /users, POST /users    list, add (administrators)
PATCH /users/{id}           role, active, display_name (administrators)
GET  /tokens, POST /tokens  list, create API tokens (administrators)
DELETE /tokens/{id}         revoke a token (administrators)
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailtrawl.accounts import actions, service
from mailtrawl.accounts.errors import (
    LastAdmin,
    LoginRefused,
    LoginThrottled,
    PasswordRejected,
    RoleTooHigh,
    UserExists,
    UsernameRejected,
    UserNotFound,
    WrongPassword,
)
from mailtrawl.accounts.models import Role, User
from mailtrawl.accounts.schemas import (
    LoginRequest,
    MeView,
    PasswordChange,
    SessionView,
    TokenCreate,
    TokenIssued,
    TokenView,
    UserCreate,
    UserUpdate,
    UserView,
)
from mailtrawl.accounts.sessions import (
    SESSION_COOKIE,
    clear_session_cookie,
    end_session,
    session_expires_at,
    set_session_cookie,
    start_session,
)
from mailtrawl.audit import service as audit
from mailtrawl.errors import NotFound
from mailtrawl.web.deps import (
    AppContext,
    Caller,
    actor_of,
    audit_fields,
    caller,
    context,
    db_session,
    require,
)

Db = Annotated[Session, Depends(db_session)]
Ctx = Annotated[AppContext, Depends(context)]
# Before `db_session` in every writing route: its dependency may write (last use).
Anyone = Annotated[Caller, Depends(caller)]
Admin = Annotated[Caller, require(Role.ADMIN)]

auth_router = APIRouter(prefix="/auth", tags=["auth"])
users_router = APIRouter(prefix="/users", tags=["users"])
tokens_router = APIRouter(prefix="/tokens", tags=["tokens"])


def _source_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _throttled(exc: LoginThrottled) -> JSONResponse:
    return JSONResponse(
        {"detail": exc.message},
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(exc.retry_after_seconds)},
    )


# Signing in and out ---------------------------------------------------------------------------


def _audit_login(
    db: Session,
    request: Request,
    *,
    actor: str,
    outcome: str,
    role: str | None = None,
    entity_id: str | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    # Never the password, not even a refused one.
    audit.record(
        db,
        actor=actor,
        role=role,
        source_ip=_source_ip(request),
        user_agent=request.headers.get("user-agent"),
        operation="auth.login",
        entity_type="user",
        entity_id=entity_id,
        after=after,
        outcome=outcome,
    )


@auth_router.post(
    "/login",
    response_model=SessionView,
    responses={
        401: {"description": "wrong username or password (one message for every reason)"},
        429: {"description": "too many failed sign-ins; see Retry-After"},
    },
)
def login(
    data: LoginRequest, request: Request, response: Response, db: Db, ctx: Ctx
) -> SessionView | JSONResponse:
    """Sign in: sets the session cookie and returns the CSRF token to send with writes."""
    source_ip = _source_ip(request)
    user_agent = request.headers.get("user-agent")
    typed = data.username.strip().lower()[:64]
    # Refusals are returned, not raised, so the transaction (failure count, audit) commits.
    try:
        user = service.authenticate(
            db, username=data.username, password=data.password, source_ip=source_ip
        )
    except LoginThrottled as exc:
        _audit_login(
            db,
            request,
            actor=typed,
            outcome="throttled",
            after={"retry_after_seconds": exc.retry_after_seconds},
        )
        return _throttled(exc)
    except LoginRefused as exc:
        _audit_login(db, request, actor=typed, outcome="refused")
        return JSONResponse({"detail": exc.message}, status_code=status.HTTP_401_UNAUTHORIZED)
    # A new sign-in replaces the browser's previous session rather than leaving it live.
    end_session(db, request.cookies.get(SESSION_COOKIE))
    value, record = start_session(
        db, user, source_ip=source_ip, user_agent=user_agent, settings=ctx.settings
    )
    _audit_login(
        db,
        request,
        actor=user.username,
        role=user.role,
        entity_id=str(user.id),
        after={"session_id": str(record.id), "expires_at": record.expires_at},
        outcome="ok",
    )
    set_session_cookie(response, value, ctx.settings, request)
    return SessionView(
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role).value,
        csrf_token=record.csrf_token,
        expires_at=session_expires_at(record, ctx.settings),
    )


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(who: Anyone, request: Request, db: Db, ctx: Ctx) -> Response:
    """Sign out: ends this session and drops the cookie (a bearer token stays valid)."""
    if who.via == "session":
        end_session(db, request.cookies.get(SESSION_COOKIE))
        audit.record(
            db,
            **audit_fields(request, who),
            operation="auth.logout",
            entity_type="user",
            entity_id=str(who.user_id),
            after={"session_id": str(who.session_id)},
        )
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response, ctx.settings, request)
    return response


@auth_router.get("/me")
def me(who: Anyone, db: Db) -> MeView:
    """Who is calling, with which role; for a session, its CSRF token and expiry."""
    user = db.get(User, who.user_id) if who.user_id is not None else None
    return MeView(
        username=who.username,
        display_name=user.display_name if user is not None else "",
        role=who.role.value,
        csrf_token=who.csrf_token,
        expires_at=who.expires_at,
        user_id=who.user_id,
        via=who.via,
    )


@auth_router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        403: {"description": "the current password is wrong"},
        422: {"description": "the new password breaks the policy"},
        429: {"description": "too many wrong passwords; see Retry-After"},
    },
)
def change_password(who: Anyone, data: PasswordChange, request: Request, db: Db) -> Response:
    """Change one's own password; one's other sessions end."""
    if who.user_id is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "This API token belongs to no user, so it has no password to change.",
        )
    try:
        actions.change_password(
            db,
            user_id=who.user_id,
            current=data.current,
            new=data.new,
            keep_session_id=who.session_id,
            actor=actor_of(request, who),
        )
    except LoginThrottled as exc:
        return _throttled(exc)
    except WrongPassword as exc:
        # Audited as refused. Returned, not raised: the failed attempt must commit (it counts towards throttling).
        return JSONResponse({"detail": exc.message}, status_code=status.HTTP_403_FORBIDDEN)
    except PasswordRejected as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Users (administrators) -----------------------------------------------------------------------


@users_router.get("", dependencies=[require(Role.ADMIN)])
def list_users(db: Db) -> list[UserView]:
    """Every user, by username."""
    return [UserView.of(u) for u in service.list_users(db)]


@users_router.post("", status_code=status.HTTP_201_CREATED)
def create_user(who: Admin, data: UserCreate, request: Request, db: Db) -> UserView:
    """Add a user with an initial password (they can change it after signing in)."""
    try:
        user = actions.create_user(
            db,
            username=data.username,
            password=data.password,
            role=Role(data.role),
            display_name=data.display_name,
            actor=actor_of(request, who),
        )
    except (UsernameRejected, PasswordRejected) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message) from None
    except UserExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
    return UserView.of(user)


@users_router.patch("/{user_id}")
def update_user(
    who: Admin, user_id: uuid.UUID, data: UserUpdate, request: Request, db: Db
) -> UserView:
    """Change a user's role, display name, or whether they may sign in.

    Disabling a user ends their sessions and stops their tokens; the last active
    administrator can be neither demoted nor disabled.
    """
    try:
        before = UserView.of(service.get_user(db, user_id)).model_dump(mode="json")
        user = service.update_user(
            db,
            user_id=user_id,
            role=Role(data.role) if data.role is not None else None,
            active=data.active,
            display_name=data.display_name,
        )
    except UserNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    except LastAdmin as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None
    view = UserView.of(user)
    audit.record(
        db,
        **audit_fields(request, who),
        operation="user.update",
        entity_type="user",
        entity_id=str(user.id),
        before=before,
        after=view.model_dump(mode="json"),
    )
    return view


# API tokens (administrators) ------------------------------------------------------------------


def _owners(db: Session) -> dict[uuid.UUID, str]:
    return {row.id: row.username for row in db.execute(select(User.id, User.username))}


@tokens_router.get("", dependencies=[require(Role.ADMIN)])
def list_tokens(db: Db) -> list[TokenView]:
    """Every token (never the token itself), oldest first."""
    owners = _owners(db)
    return [
        TokenView.of(t, owners.get(t.user_id) if t.user_id else None)
        for t in service.list_tokens(db)
    ]


@tokens_router.post("", status_code=status.HTTP_201_CREATED)
def create_token(who: Admin, data: TokenCreate, request: Request, db: Db) -> TokenIssued:
    """Create a token, shown once. Created by a user, it is theirs: it stops when they are
    disabled and never acts above their role."""
    owner = db.get(User, who.user_id) if who.user_id is not None else None
    try:
        issued = actions.create_token(
            db,
            name=data.name,
            role=Role(data.role),
            expires_in=timedelta(days=data.expires_days) if data.expires_days else None,
            owner=owner,
            actor=actor_of(request, who),
        )
    except RoleTooHigh as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message) from None
    view = TokenView.of(issued.record, owner.username if owner is not None else None)
    return TokenIssued(**view.model_dump(), token=issued.token)


@tokens_router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(who: Admin, token_id: uuid.UUID, request: Request, db: Db) -> Response:
    """Revoke a token at once."""
    try:
        actions.revoke_token(db, token_id=token_id, actor=actor_of(request, who))
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, exc.message) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


router = APIRouter()
router.include_router(auth_router)
router.include_router(users_router)
router.include_router(tokens_router)

__all__ = ["auth_router", "router", "tokens_router", "users_router"]
