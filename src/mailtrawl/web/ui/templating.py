"""Jinja2 for the dashboard: autoescaped everywhere, strict about undefined names.

Everything a template shows from email (subjects, names, attachment names) arrives as plain
strings and is escaped by Jinja; no template uses `|safe` on such a value. Templates carry no
inline script and no style attribute (the CSP refuses both).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

WEB = Path(__file__).resolve().parent.parent
TEMPLATES = WEB / "templates"
STATIC = WEB / "static"
STATIC_PREFIX = "/static"


@cache
def _static_version(name: str) -> str:
    # Content-addressed URLs let browsers cache static files for good (see web.security).
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`."""
    return f"{STATIC_PREFIX}/{name}?v={_static_version(name)}"


def when(value: datetime | str | None, missing: str = "—") -> str:
    """A timestamp as `2025-01-31 14:05 UTC`."""
    if value is None:
        return missing
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def number(value: int | float | None) -> str:
    """1234567 as `1,234,567`."""
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def pretty_json(value: Any) -> str:
    """JSON for a `<pre>` block (escaped by the template like any other text)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def query_string(base: Mapping[str, Any], **changes: Any) -> str:
    """`?a=1&b=2` from `base` with `changes` applied; None or "" drops a parameter."""
    merged = {**base, **changes}
    pairs = [(k, v) for k, v in merged.items() if v is not None and v != ""]
    return "?" + urlencode(pairs) if pairs else "?"


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    env.globals["query_string"] = query_string
    env.filters["when"] = when
    env.filters["number"] = number
    env.filters["duration"] = duration
    env.filters["pretty_json"] = pretty_json
    return env


def render_html(name: str, context: Mapping[str, Any]) -> str:
    return environment().get_template(name).render(context)


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any],
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A template as a response; `request` is in its context (for the current path)."""
    return HTMLResponse(
        render_html(name, {"request": request, **context}),
        status_code=status_code,
        headers=dict(headers or {}),
    )
