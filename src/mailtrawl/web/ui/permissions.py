"""What each role may do in the dashboard: one table, read by templates and handlers alike.

Templates call `can("remediation.approve")` to decide whether a button is drawn; the handler
behind the button checks the same permission (`ensure`), so a hidden button is never the only
guard. The roles match the REST API's (`require(Role...)` on each route).
"""

from __future__ import annotations

from fastapi import HTTPException, status

from mailtrawl.accounts.models import Role

PERMISSIONS: dict[str, Role] = {
    "investigation.read": Role.VIEWER,
    "investigation.create": Role.ANALYST,
    "investigation.stop": Role.ANALYST,
    "remediation.request": Role.ANALYST,
    "remediation.reject": Role.ANALYST,  # an analyst may withdraw their own request
    "remediation.approve": Role.ADMIN,
    "report.read": Role.VIEWER,
    "report.edit": Role.ANALYST,  # upload, verdict, status, tags, notes, notify, archives
    "configuration.read": Role.VIEWER,
    "configuration.edit": Role.ADMIN,
    "configuration.test": Role.ADMIN,
    "audit.read": Role.ADMIN,
    "settings.edit": Role.ADMIN,
}


def allowed(role: Role | str, permission: str) -> bool:
    """Whether `role` has `permission` (an unknown permission is refused)."""
    needed = PERMISSIONS.get(permission)
    return needed is not None and Role(role).at_least(needed)


def ensure(role: Role | str, permission: str) -> None:
    """Raise 403 unless `role` has `permission`."""
    if not allowed(role, permission):
        needed = PERMISSIONS.get(permission)
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"This needs the {needed.value if needed else 'administrator'} role; "
            f"you are signed in as {Role(role).value}.",
        )
