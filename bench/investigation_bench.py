"""Investigations: speed and Graph requests against a sequential loop, and memory at scale.

On the emulator with 1,000 mailboxes x 100 messages and 50 ms latency per request, in one run:

- a server-filterable query (sender + date range): mailtrawl against the loop an
  administrator writes (list the users, then each mailbox's messages with the same
  `$filter`, one after the other). Targets: >= 25x faster, <= 1.1 Graph requests per
  mailbox ($batch sub-requests counted one by one);
- a regex-on-body query: the same comparison (the loop lists bodies and runs the regex);
- 10,000 mailboxes: the peak memory of the investigating process (`mailtrawl investigate`,
  a process of its own). Target: <= 300 MB.

Graph requests are read from the emulator's own counters (every request it answered,
sub-requests included), so both sides are counted the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.common import PeakMemory
from mailtrawl.config import load_settings
from mailtrawl.configurations.schemas import ConfigurationCreate
from mailtrawl.configurations.service import create_configuration
from mailtrawl.emulator.generator import generate
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.investigations import service
from mailtrawl.investigations.schemas import InvestigationCreate
from mailtrawl.storage.engine import make_engine, make_session_factory, write_session
from mailtrawl.storage.migrate import upgrade_to_head
from mailtrawl.storage.secrets import open_secret_box
from mailtrawl.tasks.worker import build_runner

LATENCY_MS = 50
REGEX = r"verify\s+(?:your|the)\s+account"


def _graph_requests(emu: EmulatorProcess) -> int:
    stats = emu.stats()
    # Every Graph request the emulator answered: batch envelopes replaced by their items.
    return int(stats["total"]) - int(stats["batches"])


def _campaign_query(truth: dict[str, Any]) -> tuple[str, datetime, datetime, int]:
    """The campaign reaching the most mailboxes: its sender and a date range around it."""
    campaign = max(truth["campaigns"], key=lambda c: c["counts"]["mailboxes"])
    start = datetime.fromisoformat(campaign["start"].replace("Z", "+00:00"))
    sender = campaign["indicators"]["senderAddresses"][0]
    direct = sum(1 for m in campaign["messages"] if m["variant"] != "forwarded")
    return sender, start - timedelta(days=1), start + timedelta(days=10), direct


# The loop an administrator writes ---------------------------------------------------------


def sequential_loop(
    emu: EmulatorProcess, *, params: dict[str, str], check: re.Pattern[str] | None = None
) -> dict[str, Any]:
    """Users, then each mailbox's messages, one request after the other."""
    token = emu.token(emu.info["client_id"], emu.info["client_secret"])
    before = _graph_requests(emu)
    started = time.perf_counter()
    hits = 0
    mailboxes = 0
    with httpx.Client(
        verify=emu.verify,
        trust_env=False,
        timeout=120,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        users: list[dict[str, Any]] = []
        url: str | None = f"{emu.graph}/users?$select=id,userPrincipalName,accountEnabled&$top=999"
        while url:
            page = client.get(url).json()
            users.extend(page["value"])
            url = page.get("@odata.nextLink")
        for user in users:
            if not user.get("accountEnabled", True):
                continue
            url = f"{emu.graph}/users/{user['id']}/messages"
            query: dict[str, str] | None = params
            while url:
                response = client.get(url, params=query)
                query = None
                if response.status_code != 200:
                    break  # no mailbox
                page = response.json()
                for message in page["value"]:
                    if check is None or check.search(message.get("body", {}).get("content", "")):
                        hits += 1
                url = page.get("@odata.nextLink")
            mailboxes += 1
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "mailboxes": mailboxes,
        "hits": hits,
        "graph_requests": _graph_requests(emu) - before,
    }


# mailtrawl ---------------------------------------------------------------------------------


class Mailtrawl:
    """A mailtrawl home (SQLite) with a configuration for the emulator's tenant."""

    def __init__(self, home: Path, emu: EmulatorProcess, app: dict[str, Any]) -> None:
        self.home = home
        os.environ["MAILTRAWL_HOME"] = str(home)
        self.settings = load_settings(home=home)
        self.engine = make_engine(self.settings)
        upgrade_to_head(self.settings, engine=self.engine)
        self.sessions = make_session_factory(self.engine)
        self.box = open_secret_box(self.settings)
        with write_session(self.sessions) as session:
            create_configuration(
                session,
                box=self.box,
                data=ConfigurationCreate.model_validate(
                    {
                        "name": "bench",
                        "tenant": emu.tenant_id,
                        "client_id": app["clientId"],
                        "credential": {
                            "kind": "secret",
                            "client_secret": app["secrets"][0]["value"],
                        },
                        "cloud": "custom",
                        "custom": {
                            "authority_host": emu.authority_host,
                            "graph_endpoint": emu.authority_host,
                            "ca_bundle_pem": Path(str(emu.ca_bundle)).read_text(),
                        },
                        "authorized_domains": ["contoso.com"],
                    }
                ),
            )

    def investigate(self, emu: EmulatorProcess, query: dict[str, Any]) -> dict[str, Any]:
        before = _graph_requests(emu)
        started = time.perf_counter()
        with write_session(self.sessions) as session:
            record = service.create_investigation(
                session,
                data=InvestigationCreate(name="bench", configuration="bench", query=query),
                actor="bench",
            )
            investigation_id = record.id
        runner = build_runner(self.sessions, self.box, poll_interval=0.02)

        async def go() -> None:
            try:
                await runner.run_until_idle(3600)
            finally:
                await runner.stop()

        asyncio.run(go())
        seconds = time.perf_counter() - started
        with self.sessions() as session:
            view = service.to_view(service.get_investigation(session, ref=investigation_id))
        progress = view.progress
        mailboxes = progress.mailboxes_done + progress.mailboxes_failed
        requests = _graph_requests(emu) - before
        return {
            "status": view.status,
            "seconds": round(seconds, 2),
            "mailboxes": mailboxes,
            "mailboxes_failed": progress.mailboxes_failed,
            "messages_examined": progress.messages_examined,
            "hits": progress.hits,
            "graph_requests": requests,
            "requests_per_mailbox": round(requests / max(1, mailboxes), 3),
            "plan_mode": (view.plan or {}).get("server", {}).get("mode"),
        }


def _tenant(work: Path, users: int, messages: int) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    out = work / f"tenant-{users}x{messages}"
    generate(out, users=users, messages_per_mailbox=messages, campaigns=12, seed=25)
    truth = json.loads((out / "ground-truth.json").read_text())
    app = json.loads((out / "tenant.json").read_text())["apps"][0]
    return out, truth, app


def speed(work: Path, *, users: int = 1000, messages: int = 100) -> dict[str, Any]:
    tenant_dir, truth, app = _tenant(work, users, messages)
    emu = EmulatorProcess.start(
        tenant_dir=tenant_dir,
        state_dir=work / "state-speed",
        extra_args=["--latency-ms", str(LATENCY_MS)],
        timeout=120,
    )
    try:
        sender, after, before, direct = _campaign_query(truth)
        odata = "%Y-%m-%dT%H:%M:%SZ"
        filter_params = {
            "$filter": f"receivedDateTime ge {after:{odata}} and receivedDateTime lt {before:{odata}}"
            f" and from/emailAddress/address eq '{sender}'",
            "$select": "id,subject,from,receivedDateTime,internetMessageId",
            "$top": "100",
        }
        mt = Mailtrawl(work / "home-speed", emu, app)
        query = {
            "match": {"from": sender},
            "received": {"after": after.isoformat(), "before": before.isoformat()},
        }
        # The first run also warms the emulator's mailbox cache for the loop, and learns the
        # well-known folder ids of the mailboxes with hits (kept for later investigations).
        cold = mt.investigate(emu, {**query, "attached_emails": False})
        loop = sequential_loop(emu, params=filter_params)
        exact = mt.investigate(emu, {**query, "attached_emails": False})
        default = mt.investigate(emu, query)
        filterable = {
            "query": "from = campaign sender, received within an 11-day window",
            "sequential_loop": loop,
            "mailtrawl_first_run": cold,
            "mailtrawl": exact,
            "mailtrawl_with_attached_emails": default,
            "speedup": round(loop["seconds"] / exact["seconds"], 1),
            "speedup_with_attached_emails": round(loop["seconds"] / default["seconds"], 1),
            "planted_direct_copies": direct,
            "targets": {"speedup": ">= 25", "requests_per_mailbox": "<= 1.1"},
        }

        body_params = {"$select": "id,subject,body", "$top": "100"}
        loop_regex = sequential_loop(emu, params=body_params, check=re.compile(REGEX, re.I))
        regex = mt.investigate(emu, {"match": {"body_regex": REGEX}, "attached_emails": False})
        body = {
            "query": f"body_regex {REGEX!r} over every message",
            "sequential_loop": loop_regex,
            "mailtrawl": regex,
            "speedup": round(loop_regex["seconds"] / regex["seconds"], 1),
        }
        return {
            "tenant": {"users": users, "messages_per_mailbox": messages, "latency_ms": LATENCY_MS},
            "server_filterable": filterable,
            "regex_on_body": body,
        }
    finally:
        emu.stop()


def memory(work: Path, *, users: int = 10_000, messages: int = 100) -> dict[str, Any]:
    tenant_dir, truth, app = _tenant(work, users, messages)
    emu = EmulatorProcess.start(tenant_dir=tenant_dir, state_dir=work / "state-memory", timeout=180)
    try:
        home = work / "home-memory"
        mt = Mailtrawl(home, emu, app)
        mt.engine.dispose()
        sender, after, before, _ = _campaign_query(truth)
        args = [
            sys.executable,
            "-m",
            "mailtrawl",
            "investigate",
            "--config",
            "bench",
            "--from",
            sender,
            "--since",
            after.isoformat(),
            "--until",
            before.isoformat(),
        ]
        env = {**os.environ, "MAILTRAWL_HOME": str(home)}
        started = time.perf_counter()
        process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        with PeakMemory(process.pid, interval=0.05) as peak:
            output, _ = process.communicate(timeout=3600)
        seconds = time.perf_counter() - started
        match = re.search(r"(\d+) done, (\d+) failed", output)
        return {
            "tenant": {"users": users, "messages_per_mailbox": messages},
            "query": "from = campaign sender, 11-day window, attached emails on",
            "exit_code": process.returncode,
            "seconds": round(seconds, 1),
            "mailboxes_done": int(match.group(1)) if match else None,
            "peak_rss_mb": peak.peak_mb,
            "target_peak_rss_mb": 300,
        }
    finally:
        emu.stop()


def run(*, quick: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mailtrawl-bench-investigations-"))
    started = datetime.now(UTC)
    result = {
        "speed": speed(work, users=200 if quick else 1000),
        "memory": memory(work, users=1000 if quick else 10_000),
    }
    result["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return result
