"""Remediation: deleting 10,000 found messages in 1,000 mailboxes, against a sequential loop.

On the emulator with 50 ms latency per Graph request, in one run:

- mailtrawl: an investigation (run beforehand, without latency) found ten planted emails in
  each of 1,000 mailboxes; the bench times `delete` from the request to every journal row
  `verified`: the journal written, the approval, every message kept in the undo vault (its
  MIME and state read from Graph), deleted, then found again to verify it. The worker is the
  default in-process runner (`build_runner` with the product's default settings).
- the loop an administrator writes: for each message, `DELETE /users/{id}/messages/{id}`,
  one after the other (httpx, one connection). No vault, no verification. It runs over a
  sample of separately planted messages (so that mailtrawl's 10,000 stay untouched) and is
  extrapolated linearly to 10,000: each request waits for the one before, so its time is
  proportional to the number of messages.

Target: mailtrawl >= 25x faster than the loop. Graph requests are read from the emulator's
own counters (every request it answered, `$batch` items one by one, envelopes not counted),
the same way for both sides. Peak RSS is the benchmark process's (mailtrawl runs in it; the
emulator is a process of its own).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import PeakMemory
from bench.investigation_bench import Mailtrawl, _graph_requests
from mailtrawl.emulator.generator import generate
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.investigations import service as investigations
from mailtrawl.investigations.schemas import InvestigationCreate
from mailtrawl.remediation import service
from mailtrawl.remediation.engine import RemediationSettings
from mailtrawl.remediation.schemas import ActionCreate, Selection
from mailtrawl.storage.engine import write_session
from mailtrawl.tasks.worker import build_runner

LATENCY_MS = 50
EMAILS_PER_MAILBOX = 10
ATTACKER = "billing@invoice-portal.example"
LOOP_SENDER = "loop@invoice-portal.example"


def _email(sender: str, subject: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Billing Dept <{sender}>"
    message["To"] = "staff@contoso.com"
    message["Subject"] = subject
    message["Date"] = "Mon, 30 Nov 2026 09:15:00 +0000"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@invoice-portal.example>"
    message.set_content("Your invoice is overdue. Open the attached statement today.")
    message.add_alternative("<p>Your invoice is <b>overdue</b>.</p>", subtype="html")
    message.add_attachment(
        b"%PDF-1.4\n% statement\n" + bytes(range(256)) * 16,
        maintype="application",
        subtype="pdf",
        filename="statement.pdf",
    )
    return message.as_bytes()


def _tenant(work: Path, mailboxes: int) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    out = work / f"tenant-{mailboxes}"
    generate(
        out, users=mailboxes + mailboxes // 20 + 10, messages_per_mailbox=20, campaigns=0, seed=8
    )
    document = json.loads((out / "tenant.json").read_text())
    users = [
        u
        for u in document["users"]
        if u.get("accountEnabled", True) and u.get("hasMailbox", True) and u.get("mail")
    ]
    if len(users) < mailboxes:
        raise RuntimeError(f"the generated tenant has only {len(users)} usable mailboxes")
    return out, document["apps"][0], users[:mailboxes]


def sequential_loop(emu: EmulatorProcess, targets: list[tuple[str, str]]) -> dict[str, Any]:
    """DELETE each message, one request after the other: (user id, message id) pairs."""
    token = emu.token(emu.info["client_id"], emu.info["client_secret"])
    before = _graph_requests(emu)
    deleted = failed = 0
    started = time.perf_counter()
    with httpx.Client(
        verify=emu.verify,
        trust_env=False,
        timeout=60,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        for user_id, message_id in targets:
            response = client.delete(f"{emu.graph}/users/{user_id}/messages/{message_id}")
            if response.status_code == 204:
                deleted += 1
            else:
                failed += 1
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "messages": len(targets),
        "deleted": deleted,
        "failed": failed,
        "seconds_per_message": round(seconds / max(1, len(targets)), 4),
        "graph_requests": _graph_requests(emu) - before,
    }


def _in_dumpster(emu: EmulatorProcess, upns: list[str]) -> dict[str, int]:
    """Where the planted copies are, by folder, read from the emulator's control plane."""
    folders: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {emu.info['control_token']}"}
    with emu.client(headers=headers) as client:
        for upn in upns:
            snapshot = client.get(f"{emu.info['control_url']}/mailboxes/{upn}").json()
            for folder in snapshot["folders"]:
                for message in folder["messages"]:
                    if message["from"] == ATTACKER:
                        name = folder["wellKnownName"] or folder["displayName"]
                        folders[name] = folders.get(name, 0) + 1
    return folders


def remediate(mt: Mailtrawl, emu: EmulatorProcess, investigation_id: uuid.UUID) -> dict[str, Any]:
    """Request (and approve) `delete` of every hit; run until every message is final."""
    settings = mt.settings
    before = _graph_requests(emu)
    process = psutil.Process()
    emulator = psutil.Process(emu.process.pid)
    rss_before = process.memory_info().rss
    cpu_before = (sum(process.cpu_times()[:2]), sum(emulator.cpu_times()[:2]))
    with PeakMemory(process.pid, interval=0.05) as peak:
        started = time.perf_counter()
        with write_session(mt.sessions) as session:
            preview, record = service.request_action(
                session,
                investigation=investigation_id,
                data=ActionCreate(action="delete", selection=Selection()),
                actor=service.Actor("alice", role="admin"),
                settings=settings,
            )
            assert record is not None
            action_id = record.id
        if preview.requires_approval:
            with write_session(mt.sessions) as session:
                service.approve_action(
                    session, ref=action_id, actor=service.Actor("bob", role="admin")
                )
        runner = build_runner(
            mt.sessions,
            mt.box,
            poll_interval=0.02,
            lease_seconds=settings.job_lease_seconds,
            remediation_settings=RemediationSettings.from_settings(settings),
        )

        async def go() -> None:
            try:
                await runner.run_until_idle(3600)
            finally:
                await runner.stop()

        asyncio.run(go())
        seconds = time.perf_counter() - started
    cpu_mailtrawl = sum(process.cpu_times()[:2]) - cpu_before[0]
    cpu_emulator = sum(emulator.cpu_times()[:2]) - cpu_before[1]
    requests = _graph_requests(emu) - before
    with mt.sessions() as session:
        view = service.action_view(service.get_action(session, ref=action_id))
    counts = view.counts
    return {
        "status": view.status,
        "seconds": round(seconds, 2),
        "messages": counts.total,
        "mailboxes": preview.mailboxes,
        "verified": counts.verified,
        "failed": counts.failed,
        "unchanged": counts.unchanged,
        "approval_required": preview.requires_approval,
        "graph_requests": requests,
        "graph_requests_per_message": round(requests / max(1, counts.total), 3),
        "graph_requests_by_mailtrawl": view.requests,
        # CPU seconds (user + system) spent during the run: where the wall time goes on a
        # small machine, where mailtrawl and the emulator share the cores.
        "cpu_seconds": {
            "mailtrawl": round(cpu_mailtrawl, 1),
            "emulator": round(cpu_emulator, 1),
            "cores": psutil.cpu_count(),
        },
        "peak_rss_mb": peak.peak_mb,
        "rss_before_mb": round(rss_before / 2**20, 1),
    }


def speed(work: Path, *, mailboxes: int, loop_sample: int) -> dict[str, Any]:
    tenant_dir, app, users = _tenant(work, mailboxes)
    upns = [u["userPrincipalName"] for u in users]
    emu = EmulatorProcess.start(
        tenant_dir=tenant_dir, state_dir=work / f"state-{mailboxes}", timeout=120
    )
    try:
        for n in range(EMAILS_PER_MAILBOX):
            emu.deliver(_email(ATTACKER, f"Invoice {4471 + n} overdue"), upns)
        # The loop's own messages, in other copies: mailtrawl's 10,000 stay as they are.
        loop_targets: list[tuple[str, str]] = []
        by_upn = {u["userPrincipalName"]: u["id"] for u in users}
        rounds = -(-loop_sample // mailboxes)
        for n in range(rounds):
            recipients = upns[: min(mailboxes, loop_sample - n * mailboxes)]
            for copy in emu.deliver(_email(LOOP_SENDER, f"Loop {n}"), recipients):
                loop_targets.append((by_upn[copy["mailbox"]], copy["id"]))

        mt = Mailtrawl(work / f"home-{mailboxes}", emu, app)
        with write_session(mt.sessions) as session:
            record = investigations.create_investigation(
                session,
                data=InvestigationCreate(
                    name="bench", configuration="bench", query={"match": {"from": ATTACKER}}
                ),
                actor="bench",
            )
            investigation_id = record.id
        found_started = time.perf_counter()
        runner = build_runner(mt.sessions, mt.box, poll_interval=0.02)

        async def investigate() -> None:
            try:
                await runner.run_until_idle(3600)
            finally:
                await runner.stop()

        asyncio.run(investigate())
        with mt.sessions() as session:
            view = investigations.to_view(
                investigations.get_investigation(session, ref=investigation_id)
            )
        found = {
            "status": view.status,
            "hits": view.progress.hits,
            "seconds_without_latency": round(time.perf_counter() - found_started, 2),
        }
        planted = mailboxes * EMAILS_PER_MAILBOX
        if view.progress.hits != planted:
            raise RuntimeError(f"the investigation found {view.progress.hits}, not {planted}")

        emu.settings(faults={"latency_ms": LATENCY_MS})
        loop = sequential_loop(emu, loop_targets)
        mailtrawl = remediate(mt, emu, investigation_id)
        emu.settings(faults={"latency_ms": 0})
        where = _in_dumpster(emu, upns)
        mt.engine.dispose()

        loop_full = loop["seconds_per_message"] * planted
        speedup = round(loop_full / mailtrawl["seconds"], 1)
        return {
            "tenant": {
                "mailboxes": mailboxes,
                "background_messages_per_mailbox": 20,
                "planted_messages": planted,
                "latency_ms": LATENCY_MS,
            },
            "investigation": found,
            "mailtrawl": mailtrawl,
            "emulator_state_after": {"planted_copies_by_folder": where},
            "sequential_loop": {
                **loop,
                "extrapolated_to": planted,
                "extrapolated_seconds": round(loop_full, 1),
                "note": (
                    f"run over {loop['messages']} separately planted messages and extrapolated "
                    f"linearly to {planted} (one request after the other: time is proportional "
                    "to the number of messages); the loop keeps no vault copy and verifies "
                    "nothing"
                ),
            },
            "speedup": speedup,
            "targets": {"speedup": ">= 25"},
            "target_met": speedup >= 25,
        }
    finally:
        emu.stop()


def run(*, quick: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mailtrawl-bench-remediation-"))
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "quick": quick,
        "delete": speed(work, mailboxes=200 if quick else 1000, loop_sample=200 if quick else 500),
    }
    result["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    return result
