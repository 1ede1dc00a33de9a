"""Security headers on every response: a strict CSP, no sniffing, no referrer, no framing, no caching.

A pure ASGI middleware (not `BaseHTTPMiddleware`), so streamed exports pass through untouched.
A response may set its own value for any of these headers (message previews send their own,
looser-for-styles and stricter-for-everything-else policy, and may be framed by our pages);
the middleware only adds what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No 'unsafe-inline' anywhere: templates carry no inline script, no style attribute; htmx is
# configured by a meta tag and our one static script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()"),
)
# Static files are named by content (`?v=<hash>`), so browsers may keep them; nothing else.
STATIC_CACHE = "public, max-age=31536000, immutable"
NO_STORE = "no-store"


class SecurityHeadersMiddleware:
    """Adds the headers above to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp, *, static_prefixes: Iterable[str] = ("/static/",)) -> None:
        self.app = app
        self.static_prefixes = tuple(static_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        static = path.startswith(self.static_prefixes)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in BASE_HEADERS:
                    if name not in headers:
                        headers[name] = value
                if "cache-control" not in headers:
                    cacheable = static and message["status"] == 200
                    headers["cache-control"] = STATIC_CACHE if cacheable else NO_STORE
            await send(message)

        await self.app(scope, receive, send_with_headers)
