"""Active investigations: how soon new mail is found and remediated, and at what request cost.

2,000 watched mailboxes on the emulator (20 ms latency per request). One investigation is
active over all of them with the action `junk`; phishing messages are delivered through the
emulator's control plane at random times (each to one random mailbox, a fifth of them into
Junk Email). For each message the bench records

- delivery → detected: the hit's `found_at` minus the moment the delivery returned;
- delivery → remediated: the journal item's `applied_at` minus the same moment;
- the Graph requests the emulator answered during the measurement ($batch sub-requests
  counted one by one), as a share of each mailbox's budget (10,000 requests / 10 minutes).

Two modes, each in a fresh store:
- polling: the watcher reads every mailbox every 5 s. Target: p95 detection ≤ 2 × 5 s at
  ≤ 5 % of the budget;
- notifications: the application serves the webhook on 127.0.0.1 and the watcher keeps a
  subscription on each watched folder; the emulator notifies on delivery. Polling stays on
  as a 15-minute backstop. Target: p95 detection ≤ 3 s.

Baseline, in the same run: re-running the one-shot search over all 2,000 mailboxes (what an
analyst without active investigations does): its duration bounds how fresh its results can
be, and its requests per run, repeated every 5 s, give its share of the budget.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import AnyHttpUrl
from sqlalchemy import func, select

from bench.investigation_bench import Mailtrawl, _graph_requests, _tenant
from mailtrawl.config import Settings
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.investigations import service
from mailtrawl.investigations.models import InvestigationHit
from mailtrawl.investigations.schemas import InvestigationCreate
from mailtrawl.monitor.models import DeltaCursor, NotificationSubscription
from mailtrawl.remediation.models import RemediationItem
from mailtrawl.storage.engine import write_session
from mailtrawl.tasks.queue import DatabaseJobRunner
from mailtrawl.tasks.worker import build_runner
from mailtrawl.web.app import create_app

MAILBOXES = 2_000
# The generated tenant (seed 25) with this many users has exactly 2,000 enabled mailboxes.
TENANT_USERS = 2_058
POLL_S = 5.0
LATENCY_MS = 20
ATTACKER = "payroll@hr-update.example"
BUDGET = 10_000  # requests per mailbox per 10 minutes


def _phishing(n: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"HR Payroll <{ATTACKER}>"
    message["To"] = "staff@contoso.com"
    message["Subject"] = f"Payroll update {n}: confirm your details"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@hr-update.example>"
    message.set_content("Confirm your bank details today or your salary is delayed.")
    return message.as_bytes()


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))], 2)


class _Thread:
    """An event loop in a thread, running the job runner (jobs and the watcher)."""

    def __init__(self, runner: DatabaseJobRunner) -> None:
        self.runner = runner
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(runner.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


class _Served:
    """The application (webhook + watcher) under uvicorn on 127.0.0.1."""

    def __init__(self, settings: Settings, port: int) -> None:
        app = create_app(settings, worker=True)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the application did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _count(mt: Mailtrawl, model: Any, *where: Any) -> int:
    with mt.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _measure(
    mt: Mailtrawl,
    emu: EmulatorProcess,
    users: list[str],
    investigation_id: uuid.UUID,
    *,
    messages: int,
    seconds: float,
    seed: int,
) -> dict[str, Any]:
    rng = random.Random(seed)
    times = sorted(rng.uniform(0, seconds) for _ in range(messages))
    delivered: dict[str, float] = {}  # subject -> wall time the delivery returned
    before = _graph_requests(emu)
    by_mailbox_before = dict(emu.stats()["byMailbox"])
    started = time.monotonic()
    for n, at in enumerate(times):
        pause = at - (time.monotonic() - started)
        if pause > 0:
            time.sleep(pause)
        folder = "junkemail" if rng.random() < 0.2 else "inbox"
        emu.deliver(_phishing(n), [rng.choice(users)], folder=folder)
        delivered[f"Payroll update {n}: confirm your details"] = time.time()
    _wait(
        lambda: (
            _count(mt, InvestigationHit, InvestigationHit.investigation_id == investigation_id)
            >= messages
        ),
        120,
        "every delivered message to be found",
    )
    _wait(
        lambda: _count(mt, RemediationItem, RemediationItem.applied_at.is_not(None)) >= messages,
        120,
        "every new copy to be moved to Junk Email",
    )
    window = time.monotonic() - started
    requests = _graph_requests(emu) - before
    by_mailbox = {
        mailbox: count - by_mailbox_before.get(mailbox, 0)
        for mailbox, count in emu.stats()["byMailbox"].items()
    }
    busiest = max(by_mailbox.values(), default=0) / window * 600.0
    with mt.sessions() as session:
        found = dict(
            session.execute(
                select(InvestigationHit.subject, InvestigationHit.found_at).where(
                    InvestigationHit.investigation_id == investigation_id
                )
            ).all()
        )
        applied = dict(
            session.execute(
                select(RemediationItem.subject, RemediationItem.applied_at).where(
                    RemediationItem.applied_at.is_not(None)
                )
            ).all()
        )
    detect = [_seconds(found[s]) - t for s, t in delivered.items() if s in found]
    remediate = [_seconds(applied[s]) - t for s, t in delivered.items() if s in applied]
    per_mailbox_window = requests / len(users) / window * 600.0
    return {
        "messages": messages,
        "over_seconds": round(seconds),
        "found": len(detect),
        "remediated": len(remediate),
        "detect_p50_s": _percentile(detect, 0.5),
        "detect_p95_s": _percentile(detect, 0.95),
        "detect_max_s": round(max(detect), 2),
        "remediate_p50_s": _percentile(remediate, 0.5),
        "remediate_p95_s": _percentile(remediate, 0.95),
        "graph_requests": requests,
        "requests_per_mailbox_per_10_min": round(per_mailbox_window, 1),
        "budget_share": round(per_mailbox_window / BUDGET, 4),
        "busiest_mailbox_requests_per_10_min": round(busiest, 1),
        "busiest_mailbox_budget_share": round(busiest / BUDGET, 4),
    }


def _seconds(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _investigation(mt: Mailtrawl) -> uuid.UUID:
    with write_session(mt.sessions) as session:
        record = service.create_investigation(
            session,
            data=InvestigationCreate(
                name="payroll phish, active",
                configuration="bench",
                query={"match": {"from": ATTACKER}, "attached_emails": False},
                duration="24h",
                action="junk",
            ),
            actor="bench",
        )
        return record.id


def _ready(mt: Mailtrawl, investigation_id: uuid.UUID, mailboxes: int, folders: int = 2) -> None:
    _wait(
        lambda: service.to_view(_get(mt, investigation_id)).status == "completed",
        600,
        "the first search",
    )
    _wait(
        lambda: _count(mt, DeltaCursor, DeltaCursor.cursor != "") >= mailboxes * folders,
        600,
        "a delta cursor on every watched folder",
    )


def _get(mt: Mailtrawl, investigation_id: uuid.UUID) -> Any:
    with mt.sessions() as session:
        record = service.get_investigation(session, ref=investigation_id)
        session.expunge(record)
        return record


def _settings(mt: Mailtrawl, **changes: Any) -> Settings:
    return mt.settings.model_copy(
        update={
            "monitor_poll_seconds": POLL_S,
            "approval_required": False,
            **changes,
        }
    )


def run(*, quick: bool = False, notifications_mode: bool = True) -> dict[str, Any]:
    messages, seconds = (20, 30.0) if quick else (60, 90.0)
    with tempfile.TemporaryDirectory(prefix="mailtrawl-watch-") as tmp:
        work = Path(tmp)
        tenant_dir, _, app = _tenant(work, TENANT_USERS, 3)
        emu = EmulatorProcess.start(
            tenant_dir=tenant_dir,
            state_dir=work / "state",
            extra_args=["--latency-ms", str(LATENCY_MS)],
            timeout=180,
        )
        try:
            tenant = json.loads((tenant_dir / "tenant.json").read_text())
            users = [
                u["userPrincipalName"]
                for u in tenant["users"]
                if u.get("hasMailbox", True) and u.get("accountEnabled", True)
            ]
            if len(users) != MAILBOXES:
                raise RuntimeError(
                    f"the tenant has {len(users)} mailboxes, not {MAILBOXES}: adjust TENANT_USERS"
                )
            # Baseline: the one-shot search, run again.
            base = Mailtrawl(work / "home-baseline", emu, app)
            one_shot = base.investigate(
                emu, {"match": {"from": ATTACKER}, "attached_emails": False}
            )
            rounds_per_window = 600.0 / max(POLL_S, one_shot["seconds"])
            baseline = {
                **one_shot,
                "freshness_bound_s": one_shot["seconds"],
                "budget_share_if_repeated": round(
                    one_shot["requests_per_mailbox"] * rounds_per_window / BUDGET, 4
                ),
            }
            polling = _polling(work, emu, app, users, messages, seconds)
            notifications = (
                _notifications(work, emu, app, users, messages, seconds)
                if notifications_mode
                else None
            )
        finally:
            emu.stop()
    return {
        "mailboxes": len(users),
        "latency_ms": LATENCY_MS,
        "poll_interval_s": POLL_S,
        "baseline_one_shot_search": baseline,
        "polling": {
            **polling,
            "target": "detect p95 <= 10 s at <= 5 % of the budget",
            "target_met": polling["detect_p95_s"] <= 2 * POLL_S
            and polling["busiest_mailbox_budget_share"] <= 0.05,
        },
        "notifications": None
        if notifications is None
        else {
            **notifications,
            "target": "detect p95 <= 3 s",
            "target_met": notifications["detect_p95_s"] <= 3.0,
        },
    }


def _polling(
    work: Path,
    emu: EmulatorProcess,
    app: dict[str, Any],
    users: list[str],
    messages: int,
    seconds: float,
) -> dict[str, Any]:
    mt = Mailtrawl(work / "home-polling", emu, app)
    investigation_id = _investigation(mt)
    worker = _Thread(build_runner(mt.sessions, mt.box, poll_interval=0.05, settings=_settings(mt)))
    try:
        started = time.monotonic()
        _ready(mt, investigation_id, len(users))
        ready = time.monotonic() - started
        result = _measure(
            mt, emu, users, investigation_id, messages=messages, seconds=seconds, seed=5
        )
    finally:
        worker.stop()
        mt.engine.dispose()
    return {"seconds_to_first_cursors": round(ready, 1), **result}


def _notifications(
    work: Path,
    emu: EmulatorProcess,
    app: dict[str, Any],
    users: list[str],
    messages: int,
    seconds: float,
) -> dict[str, Any]:
    mt = Mailtrawl(work / "home-notifications", emu, app)
    investigation_id = _investigation(mt)
    port = _free_port()
    settings = _settings(
        mt,
        public_url=AnyHttpUrl(f"http://127.0.0.1:{port}"),
        monitor_backstop_seconds=900.0,
    )
    served = _Served(settings, port)
    try:
        started = time.monotonic()
        _ready(mt, investigation_id, len(users))
        _wait(
            lambda: _count(mt, NotificationSubscription) >= len(users) * 2,
            900,
            "a subscription on every watched folder",
        )
        ready = time.monotonic() - started
        result = _measure(
            mt, emu, users, investigation_id, messages=messages, seconds=seconds, seed=6
        )
    finally:
        served.stop()
        mt.engine.dispose()
    return {"seconds_to_subscriptions": round(ready, 1), **result}


if __name__ == "__main__":  # pragma: no cover - manual runs
    os.environ.setdefault("MAILTRAWL_LOG_LEVEL", "WARNING")
    print(json.dumps(run(quick=True), indent=2))
