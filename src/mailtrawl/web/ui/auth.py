"""Signing in and out of the dashboard, and the dependency every page uses to know who is there.

Accounts, sessions and the CSRF check of signed-in requests belong to `mailtrawl.accounts` and
`web.deps.caller`; this module only draws the pages on top of them:

- `signed_in`: the caller of a page; without a live session, a browser is sent to
  `/login?next=<the page>` (an htmx request gets `HX-Redirect` instead, so the login page is
  not swapped into a fragment).
- `/login`: the form carries a login-CSRF token before any session exists: a random nonce in a
  hidden field, and the same nonce sealed (AES-GCM, with an expiry) in a short-lived cookie.
  Both must match, so another site cannot sign a browser in to an account of its choosing.
- `/logout`: POST only, with the session's CSRF token (checked by `caller`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import Annotated
from urllib.parse import quote, urlsplit

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mailtrawl.accounts import sessions as web_sessions
from mailtrawl.accounts.errors import LoginRefused, LoginThrottled
from mailtrawl.accounts.service import authenticate
from mailtrawl.audit import service as audit
from mailtrawl.errors import DecryptionFailed
from mailtrawl.storage.engine import write_session
from mailtrawl.web.deps import AppContext, Caller, caller, context
from mailtrawl.web.ui.forms import field, read_form
from mailtrawl.web.ui.templating import render

router = APIRouter(include_in_schema=False)

Ctx = Annotated[AppContext, Depends(context)]

LOGIN_PATH = "/login"
LOGIN_CSRF_COOKIE = "mailtrawl_login"
LOGIN_CSRF_PURPOSE = "web.login-csrf"
LOGIN_CSRF_SECONDS = 3600
DEFAULT_NEXT = "/"
SIGNED_OUT = "You have signed out."


class LoginRequired(Exception):
    """No live session: the exception handler sends the browser to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def safe_next(value: str | None) -> str:
    """`value` when it is a path on this site, else `/`: never another origin."""
    if not value or len(value) > 2000:
        return DEFAULT_NEXT
    if not value.startswith("/") or value.startswith(("//", "/\\")):
        return DEFAULT_NEXT
    if any(ord(c) < 0x20 or c in "\\\x7f" for c in value):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    if parts.path == LOGIN_PATH or parts.path.startswith("/logout"):
        return DEFAULT_NEXT
    return value


def _requested_path(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    # An htmx fragment is not a page to come back to: return to the page it was part of.
    if request.headers.get("hx-request") == "true":
        current = request.headers.get("hx-current-url", "")
        parts = urlsplit(current)
        if parts.netloc == request.url.netloc:
            path = parts.path + ("?" + parts.query if parts.query else "")
    return safe_next(path)


def login_redirect(request: Request, next_path: str | None = None) -> Response:
    """Where a request without a session goes: the sign-in page, then back."""
    target = LOGIN_PATH
    wanted = safe_next(next_path) if next_path is not None else _requested_path(request)
    if wanted != DEFAULT_NEXT:
        target += "?next=" + quote(wanted, safe="/")
    if request.headers.get("hx-request") == "true":
        return Response(status_code=status.HTTP_401_UNAUTHORIZED, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


async def signed_in(request: Request, ctx: Ctx) -> Caller:
    """The caller of a page (session or token); raises `LoginRequired` when there is none.

    POST, PUT, PATCH and DELETE from a session must carry its CSRF token (`caller` checks it:
    the `csrf_token` field or the `X-CSRF-Token` header), or are refused with 403.
    """
    try:
        return await caller(request, ctx)
    except HTTPException as exc:
        if exc.status_code == status.HTTP_401_UNAUTHORIZED:
            raise LoginRequired(_requested_path(request)) from None
        raise


Who = Annotated[Caller, Depends(signed_in)]


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site.

    A second line behind the CSRF tokens. Browsers send `Sec-Fetch-Site`; `Origin` is
    compared when it names an origin (with `Referrer-Policy: no-referrer` a form POST
    carries `Origin: null` even from our own pages, so "null" proves nothing either way).
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    # The host only: behind a TLS-terminating proxy the scheme we see is not the browser's.
    return urlsplit(origin).netloc == request.url.netloc


# The login-CSRF token ---------------------------------------------------------------------------


def _seal_nonce(ctx: AppContext, nonce: str) -> str:
    payload = orjson.dumps({"n": nonce, "exp": int(time.time()) + LOGIN_CSRF_SECONDS})
    sealed = ctx.box.encrypt(payload, purpose=LOGIN_CSRF_PURPOSE)
    return base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def _open_nonce(ctx: AppContext, cookie: str | None) -> str | None:
    if not cookie or len(cookie) > 512:
        return None
    try:
        sealed = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
        payload = orjson.loads(ctx.box.decrypt(sealed, purpose=LOGIN_CSRF_PURPOSE))
    except (binascii.Error, ValueError, DecryptionFailed, orjson.JSONDecodeError):
        return None
    if not isinstance(payload, dict) or int(payload.get("exp", 0)) < time.time():
        return None
    nonce = payload.get("n")
    return nonce if isinstance(nonce, str) else None


def _login_page(
    request: Request,
    ctx: AppContext,
    *,
    next_path: str,
    username: str = "",
    error: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "who": None,
            "nav": [],
            "csrf_token": None,
            "login_nonce": nonce,
            "next_path": next_path,
            "username": username,
            "error": error,
            "notice": notice,
            "version": _version(),
        },
        status_code=status_code,
        headers=headers,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        _seal_nonce(ctx, nonce),
        max_age=LOGIN_CSRF_SECONDS,
        path=LOGIN_PATH,
        secure=web_sessions.cookie_is_secure(ctx.settings, request),
        httponly=True,
        samesite="strict",
    )
    return response


def _version() -> str:
    from mailtrawl import __version__

    return __version__


def _sign_in(
    ctx: AppContext, username: str, password: str, source_ip: str | None, user_agent: str | None
) -> tuple[str, LoginRefused | LoginThrottled | None]:
    """(cookie value, None) for a good password, else ("", why); audited either way.

    A refusal is committed too: throttling counts the failed attempt.
    """
    with write_session(ctx.sessions) as session:
        try:
            user = authenticate(session, username=username, password=password, source_ip=source_ip)
            cookie_value, record = web_sessions.start_session(
                session, user, source_ip=source_ip, user_agent=user_agent, settings=ctx.settings
            )
        except (LoginRefused, LoginThrottled) as refusal:
            audit.record(
                session,
                actor=username[:64],
                source_ip=source_ip,
                user_agent=user_agent,
                operation="auth.login",
                entity_type="user",
                outcome=f"refused: {refusal.message}",
            )
            return "", refusal
        audit.record(
            session,
            actor=user.username,
            role=user.role,
            source_ip=source_ip,
            user_agent=user_agent,
            operation="auth.login",
            entity_type="web_session",
            entity_id=str(record.id),
        )
        return cookie_value, None


def _sign_out(
    ctx: AppContext, who: Caller, cookie: str | None, source_ip: str | None, user_agent: str | None
) -> None:
    with write_session(ctx.sessions) as session:
        ended = web_sessions.end_session(session, cookie)
        if ended is not None:
            audit.record(
                session,
                actor=who.username,
                role=who.role.value,
                source_ip=source_ip,
                user_agent=user_agent,
                operation="auth.logout",
                entity_type="web_session",
                entity_id=str(ended.id),
            )


@router.get(LOGIN_PATH)
async def login_form(request: Request, ctx: Ctx, next: str | None = None) -> Response:
    """The sign-in form (or straight on, for a browser that is signed in already)."""
    if request.cookies.get(web_sessions.SESSION_COOKIE):
        try:
            await caller(request, ctx)
        except HTTPException:
            pass
        else:
            return RedirectResponse(safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    notice = SIGNED_OUT if request.query_params.get("signed_out") == "1" else None
    return _login_page(request, ctx, next_path=safe_next(next), notice=notice)


@router.post(LOGIN_PATH)
async def login(request: Request, ctx: Ctx) -> Response:
    """Check the password; on success open a session, set its cookie and go to `next`."""
    form = await read_form(request)
    next_path = safe_next(field(form, "next", max_length=2000))
    username = field(form, "username", max_length=200)
    raw_password = form.get("password")
    password = raw_password if isinstance(raw_password, str) else ""
    expected = _open_nonce(ctx, request.cookies.get(LOGIN_CSRF_COOKIE))
    presented = field(form, web_sessions.CSRF_FIELD, max_length=200)
    if (
        not same_origin(request)
        or expected is None
        or not secrets.compare_digest(expected.encode(), presented.encode())
    ):
        return _login_page(
            request,
            ctx,
            next_path=next_path,
            username=username,
            error="The sign-in form had expired; please sign in again.",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    if not username or not password:
        return _login_page(
            request,
            ctx,
            next_path=next_path,
            username=username,
            error="Enter your username and password.",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    source_ip = request.client.host if request.client else None
    user_agent = request.headers.get("user-agent")
    # Password hashing and the database run off the event loop.
    cookie_value, refusal = await run_in_threadpool(
        _sign_in, ctx, username, password, source_ip, user_agent
    )
    if isinstance(refusal, LoginThrottled):
        return _login_page(
            request,
            ctx,
            next_path=next_path,
            username=username,
            error=refusal.message,
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(refusal.retry_after_seconds)},
        )
    if refusal is not None:
        # One sentence whether or not the user exists.
        return _login_page(
            request,
            ctx,
            next_path=next_path,
            username=username,
            error=LoginRefused.default_message,
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    response = RedirectResponse(next_path, status_code=status.HTTP_303_SEE_OTHER)
    web_sessions.set_session_cookie(response, cookie_value, ctx.settings, request)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=LOGIN_PATH, httponly=True, samesite="strict")
    return response


@router.post("/logout")
async def logout(request: Request, ctx: Ctx, who: Who) -> Response:
    """End this browser's session (the CSRF token was checked by `caller`)."""
    if not same_origin(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Sign out from mailtrawl's own page.")
    await run_in_threadpool(
        _sign_out,
        ctx,
        who,
        request.cookies.get(web_sessions.SESSION_COOKIE),
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )
    response = RedirectResponse(LOGIN_PATH + "?signed_out=1", status_code=status.HTTP_303_SEE_OTHER)
    web_sessions.clear_session_cookie(response, ctx.settings, request)
    return response
