"""Emulator scale: a 10,000-mailbox x 100-message tenant's start time, memory and throughput.

Targets (issue: foundation and emulator): starts in under 30 s, serves within 2 GB, small list
requests sustain >= 1,000 per second. Throughput is compared, in the same run, with a bare
ASGI app on the same server stack (the floor any Python emulator can reach here).

Also measured: `$search` over message bodies (KQL, cold cache) against a plain substring scan
of the same bodies, and building one 100-message mailbox from the generated tenant.
"""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.common import PeakMemory, ensure_wrk, run_wrk, write_result
from mailtrawl.emulator.bodies import html_to_text
from mailtrawl.emulator.fixtures import load_tenant
from mailtrawl.emulator.generator import generate
from mailtrawl.emulator.query import kql
from mailtrawl.emulator.state import EmailAddress, Message
from mailtrawl.emulator.testing import EmulatorProcess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _touch_all(
    emu: EmulatorProcess, token: str, user_ids: list[str], concurrency: int = 48
) -> tuple[float, set[str]]:
    """List each mailbox's inbox once: (mailboxes per second for this client, ids that answered)."""
    answered: set[str] = set()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for uid in user_ids:
        queue.put_nowait(uid)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    started = time.perf_counter()
    async with httpx.AsyncClient(
        verify=emu.verify,
        trust_env=False,
        limits=limits,
        timeout=60,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                uid = queue.get_nowait()
                for _ in range(10):
                    r = await client.get(
                        f"{emu.graph}/users/{uid}/mailFolders/inbox/messages",
                        params={"$top": "5", "$select": "subject"},
                    )
                    if r.status_code == 200:
                        answered.add(uid)
                    if r.status_code in (200, 404):
                        break
                    await asyncio.sleep(float(r.headers.get("Retry-After", "0.2")))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(user_ids) / (time.perf_counter() - started), answered


def _user_ids(emu: EmulatorProcess, token: str) -> list[tuple[str, str]]:
    ids: list[tuple[str, str]] = []
    url: str | None = f"{emu.graph}/users?$top=999&$select=id,userPrincipalName"
    with emu.client(headers={"Authorization": f"Bearer {token}"}) as client:
        while url:
            body = client.get(url).json()
            ids += [(u["id"], u["userPrincipalName"]) for u in body["value"]]
            url = body.get("@odata.nextLink")
    return ids


def _wrk_script(path: Path, token: str, paths: list[str]) -> Path:
    quoted = ",\n".join(f'  "{p}"' for p in paths)
    path.write_text(
        f"local paths = {{\n{quoted}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n"
        f'  return wrk.format("GET", paths[(i % #paths) + 1], {{["Authorization"] = "Bearer {token}"}})\n'
        "end\n"
    )
    return path


def _html_body(rng: random.Random, words: list[str]) -> str:
    """About 2 KB of HTML, the size of a typical business email body."""
    paragraphs = []
    size = 0
    while size < 2000:
        text = " ".join(rng.choice(words) for _ in range(12))
        para = (
            f"<p style='margin:0'>{text} <b>{rng.choice(words)}</b> &amp; "
            f"<a href='https://x.example/{size}'>link</a></p>"
        )
        paragraphs.append(para)
        size += len(para)
    return "<html><body>" + "".join(paragraphs) + "</body></html>"


def _kql_body_search(count: int = 1000, rounds: int = 5) -> dict[str, Any]:
    """`$search="body:… OR body:\"wire transfer\""` over `count` cold HTML bodies.

    Baseline, in the same run: the emulator's HTML-to-text conversion (used for rendering
    bodies) of each body followed by a plain `in` test for the two phrases.
    """
    rng = random.Random(7)
    words = [f"word{i}" for i in range(500)] + ["payment", "invoice", "urgent", "wire", "transfer"]
    received = datetime.now(UTC)
    messages = [
        Message(
            immutable_id=f"m{i}",
            rest_id=f"r{i}",
            folder_id="folder-inbox",
            internet_message_id=f"<m{i}@bench.example>",
            subject="Bench",
            from_=EmailAddress("Sender", "sender@bench.example"),
            sender=None,
            to=[EmailAddress("Reader", "reader@bench.example")],
            cc=[],
            bcc=[],
            reply_to=[],
            received=received,
            sent=received,
            body=_html_body(rng, words),
            body_type="html",
            headers=[],
            attachments=[],
        )
        for i in range(count)
    ]
    ours: list[float] = []
    base: list[float] = []
    hits = baseline_hits = 0
    for _ in range(rounds):
        kql._body_text.cache_clear()  # cold: every body tokenized again
        predicate = kql.compile_search(kql.parse_search('"body:zebra OR body:\\"wire transfer\\""'))
        t0 = time.perf_counter()
        hits = sum(1 for m in messages if predicate(m))
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        baseline_hits = 0
        for m in messages:
            text = html_to_text(m.body).lower()
            baseline_hits += "zebra" in text or "wire transfer" in text
        base.append(time.perf_counter() - t0)
    return {
        "bodies": count,
        "hits": hits,
        "baseline_hits": baseline_hits,
        "median_ms": round(statistics.median(ours) * 1000, 1),
        "baseline_substring_median_ms": round(statistics.median(base) * 1000, 1),
        "ratio_to_baseline": round(statistics.median(ours) / statistics.median(base), 2),
    }


def _mailbox_build(work: Path, mailboxes: int = 100) -> dict[str, Any]:
    """Materialising a 100-message mailbox from the generated tenant (the emulator's LRU miss)."""
    tenant_dir = work / "build-tenant"
    generate(tenant_dir, users=200, messages_per_mailbox=100, campaigns=0, seed=4)
    loaded = load_tenant(tenant_dir)
    users = [u for u in loaded.tenant.users.values() if u.has_mailbox][:mailboxes]
    t0 = time.perf_counter()
    built = sum(len(loaded.build_mailbox(user).messages) for user in users)
    elapsed = time.perf_counter() - t0
    return {
        "mailboxes": len(users),
        "messages": built,
        "ms_per_mailbox": round(elapsed / len(users) * 1000, 2),
    }


def run(*, users: int = 10_000, messages: int = 100, seconds: int = 10) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="mailtrawl-bench-"))
    tenant_dir = work / "tenant"
    t0 = time.perf_counter()
    generate(tenant_dir, users=users, messages_per_mailbox=messages, campaigns=20, seed=42)
    generate_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    emu = EmulatorProcess.start(
        tenant_dir=tenant_dir, state_dir=work / "state", http=True, timeout=120
    )
    start_s = time.perf_counter() - t0
    result: dict[str, Any] = {"tenant": {"users": users, "messages_per_mailbox": messages}}
    try:
        pid = emu.process.pid
        rss_after_start = psutil.Process(pid).memory_info().rss / 2**20
        token = emu.token()
        ids = _user_ids(emu, token)
        with PeakMemory(pid) as lru_mem:
            lru_rate, with_mailbox = asyncio.run(_touch_all(emu, token, [i for i, _ in ids]))
        # Worst case: every mailbox kept in memory at once (no LRU eviction).
        emu.settings(mailbox_cache_size=users + 10)
        with PeakMemory(pid) as full_mem:
            asyncio.run(_touch_all(emu, token, [i for i, _ in ids]))
        materialised = emu.control("GET", "/info")["materialisedMailboxes"]

        throughput: dict[str, Any] = {}
        wrk = ensure_wrk()
        if wrk:
            script = _wrk_script(
                work / "list.lua",
                token,
                [
                    f"/v1.0/users/{upn}/messages?$top=5&$select=subject,from"
                    for uid, upn in ids
                    if uid in with_mailbox
                ][:1000],
            )
            base = emu.info["authority_host"]
            emulator_run = run_wrk(
                wrk, base + "/", seconds=seconds, connections=32, threads=1, script=script
            )
            port = _free_port()
            baseline = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.baseline_app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--http",
                    "httptools",
                    "--loop",
                    "uvloop",
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                cwd=Path(__file__).parent.parent,
            )
            try:
                for _ in range(100):
                    try:
                        httpx.get(f"http://127.0.0.1:{port}/", trust_env=False)
                        break
                    except httpx.TransportError:
                        time.sleep(0.1)
                baseline_run = run_wrk(
                    wrk, f"http://127.0.0.1:{port}/", seconds=seconds, connections=32, threads=1
                )
            finally:
                baseline.terminate()
                baseline.wait(10)
            throughput = {
                "endpoint": "GET /v1.0/users/{upn}/messages?$top=5&$select=subject,from over 1,000 mailboxes",
                "emulator": emulator_run,
                "baseline_bare_asgi": baseline_run,
                "ratio_to_baseline": round(
                    emulator_run["requests_per_second"] / baseline_run["requests_per_second"], 3
                )
                if baseline_run["requests_per_second"]
                else None,
                "target_requests_per_second": 1000,
                "meets_target": emulator_run["requests_per_second"] >= 1000,
            }
        else:
            throughput = {"skipped": "wrk is not available (apt-get install wrk failed)"}
        result.update(
            {
                "generate_seconds": round(generate_s, 2),
                "start_seconds": round(start_s, 2),
                "start_target_seconds": 30,
                "rss_after_start_mb": round(rss_after_start, 1),
                "touch_all_mailboxes": {
                    "python_client_mailboxes_per_second": round(lru_rate, 1),
                    "peak_rss_mb_with_default_cache": lru_mem.peak_mb,
                    "peak_rss_mb_all_materialised": full_mem.peak_mb,
                    "materialised_mailboxes": materialised,
                    "memory_target_mb": 2048,
                    "meets_target": full_mem.peak_mb <= 2048,
                },
                "throughput": throughput,
                "kql_body_search": _kql_body_search(),
                "mailbox_build": _mailbox_build(work),
            }
        )
    finally:
        emu.stop()
    return result


def main() -> None:
    result = run()
    path = write_result("emulator", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
