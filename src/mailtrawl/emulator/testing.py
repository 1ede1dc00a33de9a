"""Run the emulator in a child process and steer it: for tests, benchmarks and the demo.

with EmulatorProcess.start(tenant_dir=path) as emu:
    token = emu.token()
    emu.control("POST", "/reset")
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


class EmulatorStartError(RuntimeError):
    pass


@dataclass
class EmulatorProcess:
    process: subprocess.Popen[str]
    info: dict[str, Any]
    _stderr: list[str] = field(default_factory=list)
    _ssl_context: ssl.SSLContext | None = None

    @classmethod
    def start(
        cls,
        *,
        tenant_dir: Path | None = None,
        state_dir: Path,
        http: bool = False,
        extra_args: list[str] | None = None,
        timeout: float = 60.0,
    ) -> EmulatorProcess:
        args = [
            sys.executable,
            "-m",
            "mailtrawl",
            "emulator",
            "serve",
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
        ]
        if tenant_dir is not None:
            args += ["--tenant", str(tenant_dir)]
        if http:
            args.append("--http")
        args += extra_args or []
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
        }
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        stderr: list[str] = []

        def drain() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                stderr.append(line)

        threading.Thread(target=drain, daemon=True).start()
        line_holder: list[str] = []

        def read_ready() -> None:
            assert process.stdout is not None
            line_holder.append(process.stdout.readline())

        reader = threading.Thread(target=read_ready, daemon=True)
        reader.start()
        reader.join(timeout)
        if not line_holder or not line_holder[0].strip():
            process.kill()
            raise EmulatorStartError("emulator did not start:\n" + "".join(stderr[-40:]))
        return cls(process, json.loads(line_holder[0]), stderr)

    # Connection details ----------------------------------------------------------------
    @property
    def authority(self) -> str:
        return str(self.info["authority"])

    @property
    def authority_host(self) -> str:
        return str(self.info["authority_host"])

    @property
    def graph(self) -> str:
        return str(self.info["graph"])

    @property
    def ca_bundle(self) -> str | None:
        return self.info.get("ca_bundle")

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx needs to trust the emulator: an SSL context with its CA only."""
        if not self.ca_bundle:
            return True
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context(cafile=self.ca_bundle)
        return self._ssl_context

    @property
    def tenant_id(self) -> str:
        return str(self.info["tenant_id"])

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client that trusts the emulator's CA and ignores proxy/CA environment."""
        return httpx.Client(verify=self.verify, trust_env=False, timeout=30.0, **kwargs)

    # Control plane ----------------------------------------------------------------------
    def control(self, method: str, path: str, json_body: Any = None, **kwargs: Any) -> Any:
        with self.client() as client:
            response = client.request(
                method,
                f"{self.info['control_url']}{path}",
                json=json_body,
                headers={
                    "Authorization": f"Bearer {self.info['control_token']}",
                    **kwargs.pop("headers", {}),
                },
                **kwargs,
            )
        if response.status_code >= 400:
            raise AssertionError(f"control {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def reset(self) -> None:
        self.control("POST", "/reset")

    def deliver(
        self, raw: bytes, recipients: list[str], folder: str = "inbox", received: str | None = None
    ) -> list[dict[str, Any]]:
        import base64

        body: dict[str, Any] = {
            "mime": base64.b64encode(raw).decode(),
            "recipients": recipients,
            "folder": folder,
        }
        if received:
            body["receivedDateTime"] = received
        return list(self.control("POST", "/deliver", body)["delivered"])

    def snapshot(self, mailbox: str) -> dict[str, Any]:
        return dict(self.control("GET", f"/mailboxes/{mailbox}"))

    def stats(self) -> dict[str, Any]:
        return dict(self.control("GET", "/stats"))

    def settings(self, **changes: Any) -> dict[str, Any]:
        return dict(self.control("PATCH", "/settings", changes))

    # Change notifications (Graph subscriptions) ----------------------------------------
    def subscriptions(self) -> list[dict[str, Any]]:
        """Every live subscription, with its mailbox, folder and delivery state."""
        return list(self.control("GET", "/subscriptions")["value"])

    def lifecycle_event(self, subscription_id: str, event: str) -> dict[str, Any]:
        """Send `missed`, `reauthorizationRequired` or `subscriptionRemoved` (which deletes)."""
        return dict(
            self.control("POST", f"/subscriptions/{subscription_id}/lifecycle", {"event": event})
        )

    def pause_notifications(self, subscription_id: str, paused: bool = True) -> dict[str, Any]:
        """Drop (or resume) a subscription's change notifications, to create a gap."""
        action = "pause" if paused else "resume"
        return dict(self.control("POST", f"/subscriptions/{subscription_id}/{action}"))

    def expire_subscription(self, subscription_id: str) -> None:
        self.control("POST", f"/subscriptions/{subscription_id}/expire")

    def notification_stats(self) -> dict[str, int]:
        """Delivery counters: delivered, retried, failed, dropped, requests, ..."""
        return dict(self.stats()["notifications"])

    def expire_delta(self, mailboxes: list[str] | None = None) -> None:
        """Expire delta tokens (of these mailboxes' folders, or all): the next read answers 410."""
        self.control("POST", "/delta/expire", {} if mailboxes is None else {"mailboxes": mailboxes})

    def token(self, client_id: str | None = None, secret: str | None = None) -> str:
        """An access token by a plain client-credentials request (tests of Graph, not of msal)."""
        with self.client() as client:
            response = client.post(
                f"{self.authority}/oauth2/v2.0/token",
                data={
                    "client_id": client_id or self.info["client_id"],
                    "client_secret": secret or self.info["client_secret"],
                    "grant_type": "client_credentials",
                    "scope": "https://graph.microsoft.com/.default",
                },
            )
        if response.status_code != 200:
            raise AssertionError(f"token request failed: {response.status_code} {response.text}")
        return str(response.json()["access_token"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stderr_tail(self) -> Iterator[str]:
        return iter(self._stderr[-40:])
