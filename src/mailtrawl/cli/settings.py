"""`mailtrawl settings`: show and change the runtime settings (as the Settings page does).

The same `settings_store.service` functions, rules and audit entry (`settings.update`, actor
`cli:<user>`) as the dashboard and `PATCH /api/v1/settings`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from mailtrawl.cli.common import cli_actor, echo_json, fail, open_store

settings_app = typer.Typer(
    help="Runtime settings: approval rules, vault retention, the warning category and notice.",
    no_args_is_help=True,
)

# Settings whose value is text as typed (a JSON-looking category stays a string).
_TEXT_SETTINGS = frozenset(
    {"warning_category", "warning_notice_subject", "warning_notice_body", "organisation_name"}
)
# Read from standard input when VALUE is "-" (notice bodies are long), bounded.
MAX_STDIN_CHARS = 70_000


def parse_value(name: str, raw: str) -> Any:
    """VALUE as typed on the command line, in the form the setting takes.

    Text settings keep the text; others accept JSON (`true`, `50`, `["delete","purge"]`)
    or plain words; `approval_always_for` also takes a comma-separated list.
    """
    if name in _TEXT_SETTINGS:
        return raw
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw.strip()
    if name == "approval_always_for" and isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "(built-in)"
    if isinstance(value, str):
        first = value.splitlines()[0] if value else ""
        return first[:77] + "…" if len(first) > 78 or "\n" in value else first or '""'
    return json.dumps(value)


@settings_app.command("show")
def show_cmd(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The effective runtime settings, and which ones an administrator changed."""
    from mailtrawl.settings_store.router import SettingsView
    from mailtrawl.settings_store.service import (
        EDITABLE,
        editable_values,
        effective_settings,
        list_overrides,
    )

    with open_store() as store, store.sessions.begin() as session:
        values = editable_values(effective_settings(session, store.settings))
        defaults = editable_values(store.settings)
        rows = list_overrides(session)
        view = SettingsView.model_validate(
            {
                "values": values,
                "defaults": defaults,
                "overridden": {
                    name: {"updated_by": row.updated_by, "updated_at": row.updated_at}
                    for name, row in rows.items()
                },
            }
        )
    if as_json:
        echo_json(view.model_dump(mode="json"))
        return
    for name in EDITABLE:
        row = rows.get(name)
        where = f"  (set by {row.updated_by}, {row.updated_at:%Y-%m-%d %H:%M})" if row else ""
        typer.echo(f"{name:<24} {_shown(values[name])}{where}")


@settings_app.command("set")
def set_cmd(
    key: str = typer.Argument(..., help="The setting, e.g. approval_threshold."),
    value: str = typer.Argument(..., help='Its new value; "-" reads it from standard input.'),
    as_json: bool = typer.Option(False, "--json", help="Print the settings after as JSON."),
) -> None:
    """Change one runtime setting (audited as settings.update)."""
    from mailtrawl.settings_store.service import (
        EDITABLE,
        SettingsRejected,
        editable_values,
        update_settings,
    )

    if key not in EDITABLE:
        fail(f"'{key}' is not a runtime setting; these are: {', '.join(EDITABLE)}.")
    raw = sys.stdin.read(MAX_STDIN_CHARS + 1) if value == "-" else value
    if len(raw) > MAX_STDIN_CHARS:
        fail(f"The value is longer than {MAX_STDIN_CHARS} characters.")
    with open_store() as store, store.sessions.begin() as session:
        try:
            after = update_settings(
                session,
                settings=store.settings,
                changes={key: parse_value(key, raw)},
                actor=cli_actor(),
                role="admin",
            )
        except SettingsRejected as exc:
            fail(f"{key}: {exc.errors[key]}" if key in exc.errors else exc.message)
        values = editable_values(after)
    if as_json:
        echo_json(values)
    else:
        typer.echo(f"{key} = {_shown(values[key])}")


__all__ = ["parse_value", "settings_app"]
