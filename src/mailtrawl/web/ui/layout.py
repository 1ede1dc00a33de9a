"""What every dashboard page gets: the signed-in user, the navigation, the CSRF token, `can`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from mailtrawl import __version__
from mailtrawl.web.deps import Caller
from mailtrawl.web.ui.permissions import allowed
from mailtrawl.web.ui.templating import render


@dataclass(frozen=True)
class NavItem:
    label: str
    href: str
    permission: str
    current: bool = False


NAV: tuple[tuple[str, str, str], ...] = (
    ("Dashboard", "/", "investigation.read"),
    ("Mail configurations", "/configurations", "configuration.read"),
    ("Investigations", "/investigations", "investigation.read"),
    ("Reported", "/reports", "report.read"),
    ("Approvals", "/approvals", "investigation.read"),
    ("Audit log", "/audit", "audit.read"),
    ("Settings", "/settings", "investigation.read"),
)

# Messages a redirect may ask a page to show (`?done=<key>`): fixed sentences, never echoed input.
NOTICES: dict[str, str] = {
    "approved": "The action was approved and queued.",
    "rejected": "The action was rejected; nothing will run.",
}


def navigation(request: Request, who: Caller) -> list[NavItem]:
    path = request.url.path
    items = []
    for label, href, permission in NAV:
        if not allowed(who.role, permission):
            continue
        current = path == href if href == "/" else path == href or path.startswith(href + "/")
        items.append(NavItem(label, href, permission, current))
    return items


def page(
    request: Request,
    who: Caller,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a dashboard page (or fragment) with the layout's context filled in."""
    done = request.query_params.get("done")
    base: dict[str, Any] = {
        "who": who,
        "csrf_token": who.csrf_token or "",
        "nav": navigation(request, who),
        "can": lambda permission: allowed(who.role, permission),
        "version": __version__,
        "notice": NOTICES.get(done) if done else None,
    }
    return render(request, template, {**base, **(context or {})}, status_code=status_code)
