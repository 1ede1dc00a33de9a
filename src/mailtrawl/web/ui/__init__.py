"""The server-rendered dashboard: pages, sign-in, static files, and HTML error pages.

`install_ui(app)` mounts it all on the application that also serves the REST API; errors on
API paths keep FastAPI's JSON answers, errors on pages become pages.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from mailtrawl import __version__
from mailtrawl.web.ui.auth import LoginRequired, login_redirect
from mailtrawl.web.ui.auth import router as auth_router
from mailtrawl.web.ui.configurations import router as configurations_router
from mailtrawl.web.ui.investigations import router as investigations_router
from mailtrawl.web.ui.pages import router as pages_router
from mailtrawl.web.ui.reports import router as reports_router
from mailtrawl.web.ui.settings import router as settings_router
from mailtrawl.web.ui.templating import STATIC, STATIC_PREFIX, render

API_PREFIX = "/api/"

_TITLES = {
    400: "The request could not be read",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Refused",
    413: "Too large",
    415: "Not a form",
    422: "The request could not be read",
}


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(API_PREFIX) or request.url.path == "/api"


def error_page(request: Request, status_code: int, message: str) -> Response:
    """An error as a page: a sentence that says what happened, never a stack trace."""
    return render(
        request,
        "error.html",
        {
            "who": None,
            "nav": [],
            "csrf_token": None,
            "notice": None,
            "version": __version__,
            "title": _TITLES.get(status_code, "Something went wrong"),
            "message": message,
            "status_code": status_code,
        },
        status_code=status_code,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if _is_api(request) or request.headers.get("hx-request") == "true":
        return await http_exception_handler(request, exc)
    detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "")
    if exc.status_code == 404 and detail == "Not Found":
        detail = "There is no page here; use the navigation to find your way."
    response = error_page(request, exc.status_code, detail)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if _is_api(request):
        return await request_validation_exception_handler(request, exc)
    return error_page(request, 422, "A value in the address is not valid; go back and try again.")


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return login_redirect(request, exc.next_path)


def install_ui(app: FastAPI) -> None:
    """Mount the dashboard (pages, /login, /logout, /static) and its error pages on `app`."""
    app.include_router(auth_router)
    app.include_router(investigations_router)
    app.include_router(pages_router)
    app.include_router(settings_router)
    app.include_router(configurations_router)
    app.include_router(reports_router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


__all__ = ["install_ui"]
