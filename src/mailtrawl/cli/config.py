"""`mailtrawl config`: mail configurations (add, list, show, test, remove).

Secrets never travel as plain arguments (they would land in shell history and process
listings): they come from a hidden prompt, a file, or an environment variable.
"""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from mailtrawl.cli.common import echo_json, fail, open_store

config_app = typer.Typer(
    help="Mail configurations: connect a mail platform and test it.", no_args_is_help=True
)
add_app = typer.Typer(help="Add a mail configuration.", no_args_is_help=True)
config_app.add_typer(add_app, name="add")

STATUS_SYMBOL = {"ok": "✓", "failed": "✗", "unknown": "?"}
CHECK_SYMBOL = {"ok": "✓", "failed": "✗", "warning": "!", "skipped": "-"}


def _read_secret(*, file: Path | None, env: str | None, prompt: str) -> str:
    if file is not None and env is not None:
        fail("give the secret by file or by environment variable, not both")
    if file is not None:
        try:
            return file.read_text().strip()
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
    if env is not None:
        value = os.environ.get(env)
        if not value:
            fail(f"the environment variable {env} is not set")
        return value.strip()
    return str(typer.prompt(prompt, hide_input=True)).strip()


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        parts.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


@add_app.command("m365")
def add_m365(
    name: str = typer.Option(..., "--name", help="A name for this configuration."),
    tenant: str = typer.Option(
        ..., "--tenant", help="Directory (tenant) ID, or a verified domain."
    ),
    client_id: str = typer.Option(..., "--client-id", help="Application (client) ID."),
    client_secret_file: Path | None = typer.Option(
        None, "--client-secret-file", help="Read the client secret's Value from this file."
    ),
    client_secret_env: str | None = typer.Option(
        None,
        "--client-secret-env",
        help="Read the client secret's Value from this environment variable.",
    ),
    secret_expires: datetime | None = typer.Option(
        None, "--secret-expires", help="When the client secret expires (shown in Entra)."
    ),
    certificate: Path | None = typer.Option(
        None, "--certificate", help="Certificate (PEM) uploaded to the app registration."
    ),
    private_key: Path | None = typer.Option(
        None, "--private-key", help="Its private key (PEM, unencrypted)."
    ),
    pfx: Path | None = typer.Option(
        None, "--pfx", help="A PFX/PKCS#12 file with the certificate and key."
    ),
    pfx_password_env: str | None = typer.Option(
        None, "--pfx-password-env", help="Environment variable holding the PFX password."
    ),
    cloud: str = typer.Option(
        "global", "--cloud", help="global, usgov-high, usgov-dod, china or custom."
    ),
    authority_host: str | None = typer.Option(
        None, "--authority-host", help="Custom cloud: the login host, https://…"
    ),
    graph_endpoint: str | None = typer.Option(
        None, "--graph-endpoint", help="Custom cloud: the Graph endpoint, https://…/v1.0 host"
    ),
    ca_bundle: Path | None = typer.Option(
        None, "--ca-bundle", help="Custom cloud: a PEM CA bundle to trust."
    ),
    test_mailbox: str | None = typer.Option(
        None, "--test-mailbox", help="Mailbox the connection test may write one draft to."
    ),
    authorized_domain: list[str] = typer.Option(
        ..., "--authorized-domain", help="Domain whose mailboxes may be touched (repeat)."
    ),
    test_now: bool = typer.Option(
        True, "--test/--no-test", help="Run the connection test after adding."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a Microsoft 365 configuration (client secret or certificate)."""
    from mailtrawl.configurations.schemas import ConfigurationCreate

    credential: dict[str, Any]
    if pfx is not None:
        password = os.environ.get(pfx_password_env) if pfx_password_env else None
        credential = {
            "kind": "pfx",
            "pfx_base64": base64.b64encode(pfx.read_bytes()).decode(),
            "password": password,
        }
    elif certificate is not None or private_key is not None:
        if certificate is None or private_key is None:
            fail("a certificate needs both --certificate and --private-key (or use --pfx)")
        credential = {
            "kind": "certificate",
            "certificate_pem": certificate.read_text(),
            "private_key_pem": private_key.read_text(),
        }
    else:
        secret = _read_secret(
            file=client_secret_file,
            env=client_secret_env,
            prompt="Client secret (the Value column)",
        )
        credential = {"kind": "secret", "client_secret": secret, "expires_at": secret_expires}
    payload: dict[str, Any] = {
        "name": name,
        "provider": "m365",
        "tenant": tenant,
        "client_id": client_id,
        "credential": credential,
        "cloud": cloud,
        "test_mailbox": test_mailbox,
        "authorized_domains": authorized_domain,
    }
    if cloud == "custom":
        payload["custom"] = {
            "authority_host": authority_host or "",
            "graph_endpoint": graph_endpoint or "",
            "ca_bundle_pem": ca_bundle.read_text() if ca_bundle else None,
        }
    try:
        data = ConfigurationCreate.model_validate(payload)
    except ValidationError as exc:
        fail(_validation_message(exc), code=2)
    from mailtrawl.configurations import service

    with open_store() as store:
        with store.sessions.begin() as session:
            record = service.create_configuration(session, box=store.box, data=data)
            ref = str(record.id)
        if test_now:
            _connection_test(store, ref)
        with store.sessions.begin() as session:
            view = service.to_view(service.get_configuration(session, ref=ref))
    _show(view.model_dump(mode="json"), as_json)


def _connection_test(store: Any, ref: str) -> None:
    from mailtrawl.configurations import service
    from mailtrawl.configurations.connection import run_connection_test

    async def go() -> None:
        with store.sessions.begin() as session:
            await service.test_configuration(
                session, box=store.box, ref=ref, runner=run_connection_test
            )

    asyncio.run(go())


def _show(view: dict[str, Any], as_json: bool) -> None:
    if as_json:
        echo_json(view)
        return
    typer.echo(
        f"{STATUS_SYMBOL.get(view['status'], '?')} {view['name']}  ({view['provider']}, tenant {view['tenant']})"
    )
    typer.echo(f"  client id       {view['client_id']}")
    cred = view["credential"]
    expiry = f", expires {cred['expires_at'][:10]}" if cred.get("expires_at") else ""
    typer.echo(f"  credential      {cred['kind']} {cred['hint']}{expiry}")
    typer.echo(f"  cloud           {view['cloud']}")
    typer.echo(f"  test mailbox    {view['test_mailbox'] or '-'}")
    typer.echo(f"  domains         {', '.join(view['authorized_domains'])}")
    typer.echo(f"  enabled         {'yes' if view['enabled'] else 'no'}")
    last = view.get("last_test")
    if last:
        typer.echo(f"  last test       {last['tested_at']}")
        for check in last["checks"]:
            typer.echo(
                f"    {CHECK_SYMBOL.get(check['status'], '?')} {check['title']}: {check['message']}"
            )
            if check.get("fix"):
                typer.echo(f"        fix: {check['fix']}")


@config_app.command("list")
def list_configurations(as_json: bool = typer.Option(False, "--json")) -> None:
    """List mail configurations with their status and last test."""
    from mailtrawl.configurations import service

    with open_store() as store, store.sessions.begin() as session:
        views = [
            service.to_view(r).model_dump(mode="json") for r in service.list_configurations(session)
        ]
    if as_json:
        echo_json(views)
        return
    if not views:
        typer.echo("No mail configurations yet; add one with `mailtrawl config add m365`.")
    for v in views:
        last = (v["last_test_at"] or "never tested")[:19]
        typer.echo(
            f"{STATUS_SYMBOL.get(v['status'], '?')} {v['name']:<24} {v['provider']:<6} {v['test_mailbox'] or '-':<32} last test {last}"
        )


@config_app.command("show")
def show(
    ref: str = typer.Argument(..., help="Name or id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show one configuration (the credential only as ••••abcd)."""
    from mailtrawl.configurations import service

    with open_store() as store, store.sessions.begin() as session:
        view = service.to_view(service.get_configuration(session, ref=ref)).model_dump(mode="json")
    _show(view, as_json)


@config_app.command("test")
def connection_test_command(
    ref: str = typer.Argument(..., help="Name or id."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the connection test; exits 1 when a required check fails."""
    from mailtrawl.configurations import service

    with open_store() as store:
        with store.sessions.begin() as session:
            target = str(service.get_configuration(session, ref=ref).id)
        _connection_test(store, target)
        with store.sessions.begin() as session:
            view = service.to_view(service.get_configuration(session, ref=target)).model_dump(
                mode="json"
            )
    _show(view, as_json)
    if view["status"] != "ok":
        raise typer.Exit(1)


@config_app.command("remove")
def remove(
    ref: str = typer.Argument(..., help="Name or id."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Remove a configuration and its stored credential."""
    from mailtrawl.configurations import service

    if not yes:
        typer.confirm(f"Remove mail configuration '{ref}' and its credential?", abort=True)
    with open_store() as store, store.sessions.begin() as session:
        service.delete_configuration(session, ref=ref)
    typer.echo(f"Removed {ref}.")
