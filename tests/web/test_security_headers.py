"""Every response carries the security headers; a response may set its own (previews do)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.testclient import TestClient

from mailtrawl.web.security import (
    CONTENT_SECURITY_POLICY,
    NO_STORE,
    STATIC_CACHE,
    SecurityHeadersMiddleware,
)
from mailtrawl.web.ui.preview import PREVIEW_CSP, preview_response

EXPECTED = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/page")
    def page() -> PlainTextResponse:
        return PlainTextResponse("hello")

    @app.get("/stream")
    def stream() -> StreamingResponse:
        return StreamingResponse(iter([b"a", b"b"]), media_type="text/plain")

    @app.get("/preview")
    def preview() -> object:
        return preview_response("<p>hi</p>")

    @app.get("/static/app.css")
    def static() -> PlainTextResponse:
        return PlainTextResponse("body{}", media_type="text/css")

    app.add_middleware(SecurityHeadersMiddleware)
    return app


def test_the_policy_is_strict() -> None:
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in CONTENT_SECURITY_POLICY


def test_every_response_gets_the_headers_and_no_store() -> None:
    with TestClient(_app()) as client:
        for path in ("/page", "/stream", "/missing"):
            response = client.get(path)
            for name, value in EXPECTED.items():
                assert response.headers[name] == value, (path, name)
            assert response.headers["cache-control"] == NO_STORE, path
        assert client.get("/stream").text == "ab"


def test_static_files_may_be_cached_and_previews_keep_their_own_policy() -> None:
    with TestClient(_app()) as client:
        static = client.get("/static/app.css")
        assert static.headers["cache-control"] == STATIC_CACHE
        assert static.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        preview = client.get("/preview")
        assert preview.headers["content-security-policy"] == PREVIEW_CSP
        assert preview.headers["x-frame-options"] == "SAMEORIGIN"
        assert preview.headers["cache-control"] == "no-store"
        assert preview.headers["x-content-type-options"] == "nosniff"


def test_the_application_sends_them_on_pages_api_and_static(client: TestClient) -> None:
    for path in ("/login", "/api/v1/health", "/api/v1/investigations", "/", "/nowhere"):
        response = client.get(path)
        for name, value in EXPECTED.items():
            assert response.headers[name] == value, (path, name)
        assert response.headers["cache-control"] == NO_STORE, path
    static = client.get("/static/vendor/htmx.min.js")
    assert static.status_code == 200
    assert static.headers["cache-control"] == STATIC_CACHE
    assert static.headers["content-type"].startswith(("text/javascript", "application/javascript"))
