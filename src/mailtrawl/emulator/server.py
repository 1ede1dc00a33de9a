"""Start the emulator: load or generate a tenant, serve HTTPS (or HTTP), print one ready line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mailtrawl.emulator.app import create_app
from mailtrawl.emulator.runtime import EmulatorState, MailboxBuilder, TenantSource
from mailtrawl.emulator.settings import EmulatorSettings
from mailtrawl.emulator.state import Tenant
from mailtrawl.emulator.tls import ensure_tls_files


class ResettableHttpProtocol(HttpToolsProtocol):
    """uvicorn's protocol, plus a hook the app calls to drop a connection with a TCP reset."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        extensions: dict[str, Any] = {"mailtrawl.reset": self._reset}
        self.scope["extensions"] = extensions

    def _reset(self) -> None:
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if self.cycle is not None:
            self.cycle.disconnected = True
        self.transport.abort()


@dataclass
class ServeOptions:
    tenant_dir: Path | None
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    https: bool = True
    control_token: str | None = None
    settings: EmulatorSettings | None = None
    banner: bool = False


def tenant_source(tenant_dir: Path) -> TenantSource:
    from mailtrawl.emulator.fixtures import load_tenant

    def load() -> tuple[Tenant, MailboxBuilder]:
        loaded = load_tenant(tenant_dir)
        return loaded.tenant, loaded.build_mailbox

    return TenantSource(load)


def ready_info(
    state: EmulatorState, base: str, ca_bundle: Path | None, tenant_dir: Path | None
) -> dict[str, Any]:
    tenant = state.tenant
    app = next(iter(tenant.apps.values()), None)
    secret = next((s for s in app.secrets if s.expires > state.now()), None) if app else None
    ground_truth = tenant_dir / "ground-truth.json" if tenant_dir else None
    return {
        "authority": f"{base}/{tenant.id}",
        "authority_host": base,
        "graph": f"{base}/v1.0",
        "ca_bundle": str(ca_bundle) if ca_bundle else None,
        "tenant_id": tenant.id,
        "tenant_domain": tenant.domains[0] if tenant.domains else None,
        "client_id": app.client_id if app else None,
        "client_secret": secret.value if secret else None,
        "control_url": f"{base}/_emulator",
        "control_token": state.control_token,
        "users": len(tenant.users),
        "ground_truth": str(ground_truth) if ground_truth and ground_truth.exists() else None,
    }


async def serve(options: ServeOptions, source: TenantSource) -> None:
    """Run until cancelled; print the ready JSON line on stdout once listening."""
    if options.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(
            "the emulator binds to the loopback interface only (127.0.0.1, localhost or ::1)"
        )
    settings = options.settings or EmulatorSettings()
    state = EmulatorState(
        source=source,
        settings=settings,
        state_dir=options.state_dir,
        control_token=options.control_token,
    )
    ssl_kwargs: dict[str, Any] = {}
    ca_bundle: Path | None = None
    if options.https:
        files = ensure_tls_files(options.state_dir)
        ssl_kwargs = {"ssl_certfile": str(files.server_cert), "ssl_keyfile": str(files.server_key)}
        ca_bundle = files.ca_cert
    config = uvicorn.Config(
        create_app(state),
        host=options.host,
        port=options.port,
        http=ResettableHttpProtocol,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
        backlog=4096,
        **ssl_kwargs,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            return
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    host = options.host if options.host != "::1" else "[::1]"
    base = f"{'https' if options.https else 'http'}://{host}:{port}"
    state.public_base_url = base
    info = ready_info(state, base, ca_bundle, options.tenant_dir)
    print(json.dumps(info), flush=True)
    if options.banner:
        print(banner_text(info), file=sys.stderr, flush=True)
    await task


def banner_text(info: dict[str, Any]) -> str:
    ca = f"  CA bundle     {info['ca_bundle']}\n" if info["ca_bundle"] else ""
    return (
        "\nmailtrawl Microsoft 365 tenant emulator is running (Ctrl-C stops it)\n\n"
        f"  Authority     {info['authority']}\n"
        f"  Graph         {info['graph']}\n"
        f"{ca}"
        f"  Tenant        {info['tenant_id']} ({info['tenant_domain']}, {info['users']} users)\n"
        f"  Client id     {info['client_id']}\n"
        f"  Client secret {info['client_secret']}\n"
        f"  Control API   {info['control_url']}  (Authorization: Bearer {info['control_token']})\n"
        + (f"  Ground truth  {info['ground_truth']}\n" if info.get("ground_truth") else "")
        + "\nTry it:\n"
        f"  curl --cacert {info['ca_bundle']} -d client_id={info['client_id']} \\\n"
        f"       --data-urlencode client_secret='{info['client_secret']}' -d grant_type=client_credentials \\\n"
        f"       -d scope=https://graph.microsoft.com/.default {info['authority']}/oauth2/v2.0/token\n"
    )
