"""`mailtrawl demo`: the whole product on one machine, with a Microsoft 365 tenant emulator.

It generates a demo tenant (a few hundred mailboxes with planted phishing campaigns), starts
the emulator, prepares a mailtrawl home with a ready mail configuration for that tenant and an
administrator account, and serves the dashboard and the API with the in-process worker. Run it
again and it reuses the same home, tenant, configuration and account.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import typer

from mailtrawl.cli.common import fail

DEMO_CONFIGURATION = "Demo tenant (emulator)"
DEMO_ADMIN = "admin"


def demo(
    home: Path = typer.Option(
        Path(".demo"), "--home", help="Where the demo keeps its database, keys and tenant."
    ),
    port: int = typer.Option(8443, "--port", min=1, max=65535, help="The dashboard's port."),
    users: int = typer.Option(300, "--users", min=10, max=20_000),
    messages_per_mailbox: int = typer.Option(40, "--messages-per-mailbox", min=1, max=2_000),
    campaigns: int = typer.Option(6, "--campaigns", min=1, max=100),
    seed: int = typer.Option(7, "--seed"),
) -> None:
    """Run mailtrawl against a generated Microsoft 365 tenant: print the URL and sign-in."""
    import uvicorn

    from mailtrawl.config import load_settings
    from mailtrawl.emulator.generator import generate
    from mailtrawl.emulator.testing import EmulatorProcess, EmulatorStartError
    from mailtrawl.errors import MailtrawlError
    from mailtrawl.web.app import create_app

    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["MAILTRAWL_HOME"] = str(home)
    tenant = home / f"tenant-u{users}-m{messages_per_mailbox}-c{campaigns}-s{seed}"
    if not (tenant / "tenant.json").exists():
        typer.echo(f"Generating the demo tenant ({users} mailboxes) ...", err=True)
        generate(
            tenant,
            users=users,
            messages_per_mailbox=messages_per_mailbox,
            campaigns=campaigns,
            seed=seed,
        )
    try:
        emulator = EmulatorProcess.start(
            tenant_dir=tenant,
            state_dir=home / "emulator-state",
            extra_args=["--port", str(port + 1)],
            timeout=180,
        )
    except EmulatorStartError as exc:
        fail(f"the emulator did not start: {exc}")
    try:
        settings = load_settings(home=home)
        password = _prepare(settings, emulator, tenant)
        app = create_app(settings, worker=True)
        url = f"http://127.0.0.1:{port}/"
        typer.echo(
            "\n".join(
                [
                    "",
                    f"  mailtrawl demo: {url}",
                    f"  sign in as {DEMO_ADMIN} / {password}",
                    f"  mail configuration: {DEMO_CONFIGURATION} ({users} mailboxes, "
                    f"{campaigns} planted campaigns)",
                    f"  API docs: {url}api/docs    stop with Ctrl+C",
                    "",
                ]
            ),
            err=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    except MailtrawlError as exc:
        fail(exc.message)
    finally:
        emulator.stop()


def _prepare(settings: Any, emulator: Any, tenant: Path) -> str:
    """The database at head, the demo configuration pointing at this emulator, the admin."""
    from mailtrawl.accounts.models import Role
    from mailtrawl.accounts.service import create_user, list_users
    from mailtrawl.configurations.schemas import ConfigurationCreate, ConfigurationUpdate
    from mailtrawl.configurations.service import (
        create_configuration,
        list_configurations,
        update_configuration,
    )
    from mailtrawl.storage.engine import make_engine, make_session_factory, write_session
    from mailtrawl.storage.migrate import upgrade_to_head
    from mailtrawl.storage.secrets import open_secret_box

    document = json.loads((tenant / "tenant.json").read_text())
    app = document["apps"][0]
    domains = [str(d) for d in document["tenant"].get("domains", [])] or [
        str(u["userPrincipalName"]).rpartition("@")[2] for u in document["users"][:1]
    ]
    test_mailbox = next(
        (
            str(u["userPrincipalName"])
            for u in document["users"]
            if u.get("accountEnabled", True) and u.get("hasMailbox", True) and u.get("mail")
        ),
        None,
    )
    ca = Path(emulator.ca_bundle).read_text() if emulator.ca_bundle else None
    custom = {
        "authority_host": emulator.authority_host,
        "graph_endpoint": emulator.authority_host,
        "ca_bundle_pem": ca,
    }
    engine = make_engine(settings)
    try:
        upgrade_to_head(settings, engine=engine)
        sessions = make_session_factory(engine)
        box = open_secret_box(settings)
        with write_session(sessions) as session:
            existing = [c for c in list_configurations(session) if c.name == DEMO_CONFIGURATION]
            if existing:
                # The emulator listens on the same port, but its CA is new on each start.
                update_configuration(
                    session,
                    box=box,
                    ref=existing[0].id,
                    data=ConfigurationUpdate.model_validate({"cloud": "custom", "custom": custom}),
                )
            else:
                create_configuration(
                    session,
                    box=box,
                    data=ConfigurationCreate.model_validate(
                        {
                            "name": DEMO_CONFIGURATION,
                            "tenant": emulator.tenant_id,
                            "client_id": app["clientId"],
                            "credential": {
                                "kind": "secret",
                                "client_secret": app["secrets"][0]["value"],
                            },
                            "cloud": "custom",
                            "custom": custom,
                            "authorized_domains": domains,
                            "test_mailbox": test_mailbox,
                        }
                    ),
                )
            password_file = settings.home / "demo-admin-password"
            if not any(u.username == DEMO_ADMIN for u in list_users(session)):
                password = secrets.token_urlsafe(12)
                create_user(session, username=DEMO_ADMIN, password=password, role=Role.ADMIN)
                password_file.write_text(password + "\n")
                password_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
            return (
                password_file.read_text().strip()
                if password_file.exists()
                else "(the password you set)"
            )
    finally:
        engine.dispose()
