"""Dashboard pages: server time of every page with 100,000 hits stored, against 1,000.

One SQLite store per size holds one finished investigation with N hits (2,000 mailboxes,
50 campaigns, realistic subjects and senders; stored in batches through hits.store_hits,
as a scan stores them), a few remediation
actions (one awaiting approval) and audit entries. The real application (`create_app`,
no worker) answers through `fastapi.testclient.TestClient`, signed in as an administrator
through the sign-in form. Each page is requested `REPEAT` times after one warm-up request;
the time is the in-process request time (routing, SQL, templates; no network), reported
as median and p95.

Target (the issue): every page under 300 ms with 100,000 results stored. The baseline is
the same pages with 1,000 hits, measured in the same run.
"""

from __future__ import annotations

import os
import random
import re
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from mailtrawl.accounts.models import Role
from mailtrawl.accounts.service import create_user
from mailtrawl.audit import service as audit_service
from mailtrawl.config import load_settings
from mailtrawl.investigations.hits import store_hits
from mailtrawl.investigations.models import Investigation
from mailtrawl.remediation.models import RemediationAction
from mailtrawl.storage.engine import refresh_statistics
from mailtrawl.web.app import create_app

TARGET_MS = 300.0
REPEAT = 20
SIZES = (1_000, 100_000)
MAILBOXES = 2_000
CAMPAIGNS = 50
PASSWORD = "correct horse battery staple"
BASE_URL = "http://127.0.0.1"

_SUBJECTS = [
    "Invoice {n} overdue - action required",
    "Your mailbox is almost full ({n})",
    "Payroll update: confirm your details #{n}",
    "Shared document: Q{q} budget review",
    "DocuSign: please sign agreement {n}",
    "Password expires today - ref {n}",
    "Delivery failed for parcel {n}",
    "Urgent wire transfer request {n}",
    "Voicemail from +1 555 01{q}{q}",
    "Updated remittance advice {n}",
]
_DOMAINS = [
    "invoice-portal.example",
    "secure-docs.example",
    "payroll-hr.example",
    "dhl-track.example",
]
_FOLDERS = ["inbox", "inbox", "inbox", "junkemail", "deleteditems", "archive"]


def _campaigns(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(CAMPAIGNS):
        domain = rng.choice(_DOMAINS)
        local = rng.choice(["billing", "no-reply", "hr", "it-support", "accounts", "ceo.office"])
        out.append(
            {
                "imid": f"<{uuid.UUID(int=rng.getrandbits(128)).hex}@{domain}>",
                "subject": rng.choice(_SUBJECTS).format(n=rng.randint(1000, 99999), q=i % 4 + 1),
                "sender": f"{local}{i}@{domain}",
                "name": local.replace("-", " ").title(),
                "received": datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=i * 7),
            }
        )
    return out


def _hit_rows(investigation_id: uuid.UUID, count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` hits spread over MAILBOXES mailboxes and CAMPAIGNS emails (skewed sizes)."""
    rng = random.Random(seed)
    campaigns = _campaigns(rng)
    weights = [1 / (i + 1) for i in range(CAMPAIGNS)]  # a few big campaigns, a long tail
    now = datetime.now(UTC)
    rows = []
    for n in range(count):
        campaign = rng.choices(campaigns, weights)[0]
        box = n % MAILBOXES
        folder = rng.choice(_FOLDERS)
        rows.append(
            {
                "id": uuid.UUID(int=rng.getrandbits(128)),
                "investigation_id": investigation_id,
                "mailbox_id": f"{box:08x}-0000-4000-8000-{box:012x}",
                "mailbox_upn": f"user{box:04d}@contoso.com",
                "message_id": f"AAMkAG{n:012d}{rng.getrandbits(64):016x}",
                "folder_id": f"AQMkAD{folder}{box}",
                "folder": folder,
                "internet_message_id": campaign["imid"],
                "subject": campaign["subject"],
                "sender_address": campaign["sender"],
                "sender_name": campaign["name"],
                "recipients": f"user{box:04d}@contoso.com",
                "received": campaign["received"] + timedelta(seconds=rng.randint(0, 3600)),
                "has_attachments": n % 3 == 0,
                "attachment_names": "statement.pdf" if n % 3 == 0 else "",
                "matched": ["sender", "subject"],
                "via_attached_email": False,
                "found_at": now,
                "remediation": "junk" if n % 50 == 0 else None,
            }
        )
    return rows


def _seed(client: TestClient, hits: int) -> uuid.UUID:
    sessions = client.app.state.ctx.sessions  # type: ignore[attr-defined]
    investigation_id = uuid.uuid4()
    now = datetime.now(UTC)
    with sessions.begin() as db:
        create_user(db, username="ada", password=PASSWORD, role=Role.ADMIN)
        db.add(
            Investigation(
                id=investigation_id,
                name="Invoice phishing wave",
                configuration_name="contoso",
                query={"match": {"from": {"equals": "billing@invoice-portal.example"}}},
                scope={"all": True},
                status="completed",
                created_by="ada",
                started_at=now - timedelta(minutes=30),
                finished_at=now - timedelta(minutes=5),
                mailboxes_total=MAILBOXES,
                mailboxes_done=MAILBOXES,
                messages_examined=hits * 40,
                hits=hits,
                requests=MAILBOXES * 3,
            )
        )
        for i in range(10):
            db.add(
                RemediationAction(
                    investigation_id=investigation_id,
                    kind="junk" if i else "purge",
                    selection={"all": True},
                    options={},
                    preview={
                        "action": "junk" if i else "purge",
                        "messages": hits,
                        "mailboxes": MAILBOXES,
                        "will_change": hits,
                        "already_done": 0,
                        "excluded": {},
                        "by_folder": {"inbox": hits},
                        "by_mailbox": [],
                        "by_mailbox_truncated": True,
                        "requires_approval": i == 0,
                        "approval_reason": "more than 500 messages" if i == 0 else None,
                    },
                    status="awaiting_approval" if i == 0 else "completed",
                    requires_approval=i == 0,
                    requested_by="ada",
                    requested_role="admin",
                    total=hits,
                    applied=0 if i == 0 else hits,
                    verified=0 if i == 0 else hits,
                )
            )
        for i in range(200):
            audit_service.record(
                db,
                actor="ada",
                role="admin",
                operation="investigation.create" if i % 2 else "remediation.request",
                entity_type="investigation",
                entity_id=str(investigation_id),
                after={"n": i},
            )
        db.flush()
        rows = _hit_rows(investigation_id, hits)
        for start in range(0, len(rows), 10_000):
            store_hits(db, rows[start : start + 10_000])
    refresh_statistics(sessions)  # as the engine does when an investigation completes
    return investigation_id


def _sign_in(client: TestClient) -> None:
    form = client.get("/login")
    nonce = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert nonce, "the sign-in form has no CSRF field"
    answer = client.post(
        "/login",
        data={"username": "ada", "password": PASSWORD, "csrf_token": nonce.group(1), "next": "/"},
    )
    assert answer.status_code == 303, answer.text


def _pages(investigation_id: uuid.UUID, hits: int) -> dict[str, str]:
    base = f"/investigations/{investigation_id}"
    deep = (hits // 2 // 50) * 50
    return {
        "dashboard": "/",
        "investigations": "/investigations",
        "investigation_details": base,
        "hits_default": f"{base}/hits",
        "hits_sort_subject": f"{base}/hits?sort=subject",
        "hits_sort_sender_desc": f"{base}/hits?sort=-sender",
        "hits_sort_mailbox": f"{base}/hits?sort=mailbox",
        "hits_sort_folder": f"{base}/hits?sort=folder",
        "hits_filter_mailbox": f"{base}/hits?mailbox=user0042@contoso.com",
        "hits_filter_sender_sort_subject": (
            f"{base}/hits?sender=billing0@invoice-portal.example&sort=subject"
        ),
        "hits_filter_subject": f"{base}/hits?subject=invoice",
        "hits_filter_folder_dates": (
            f"{base}/hits?folder=junkemail&received_after=2026-11-02&received_before=2026-11-10"
        ),
        "hits_deep_page": f"{base}/hits?offset={deep}",
        "hits_deep_page_sort_subject": f"{base}/hits?sort=subject&offset={deep}",
        "campaigns_fragment": f"{base}/campaigns",
        "investigation_details_sort_sender_deep": f"{base}?sort=sender&offset={deep}",
        "approvals": "/approvals",
        "audit": "/audit",
        "configurations": "/configurations",
        "settings": "/settings",
    }


def _time(client: TestClient, path: str) -> dict[str, Any]:
    # The hits and campaigns tables are htmx fragments (a plain GET redirects to the page).
    fragment = path.split("?")[0].endswith(("/hits", "/campaigns"))
    headers = {"HX-Request": "true"} if fragment else {}
    first = client.get(path, headers=headers)
    assert first.status_code == 200, f"{path}: {first.status_code} {first.text[:300]}"
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        answer = client.get(path, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, path
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 1),
        "max_ms": round(times[-1], 1),
        "bytes": len(first.content),
    }


def _measure(work: Path, hits: int) -> dict[str, Any]:
    home = work / f"home-{hits}"
    settings = load_settings(home=home, database_url=f"sqlite:///{work / f'pages-{hits}.db'}")
    app = create_app(settings, worker=False)
    try:
        with TestClient(app, base_url=BASE_URL, follow_redirects=False) as client:
            start = time.perf_counter()
            investigation_id = _seed(client, hits)
            seeded = time.perf_counter() - start
            _sign_in(client)
            pages = {
                name: _time(client, path) for name, path in _pages(investigation_id, hits).items()
            }
    finally:
        app.state.ctx.sessions.kw["bind"].dispose()
    slowest = max(pages, key=lambda name: pages[name]["p95_ms"])
    return {
        "hits": hits,
        "mailboxes": MAILBOXES,
        "campaigns": CAMPAIGNS,
        "seed_seconds": round(seeded, 1),
        "pages": pages,
        "slowest": {"page": slowest, **pages[slowest]},
    }


def run(quick: bool = False) -> dict[str, Any]:
    for name in list(os.environ):
        if name.startswith("MAILTRAWL_"):
            del os.environ[name]
    sizes = (SIZES[0], 20_000) if quick else SIZES
    with tempfile.TemporaryDirectory(prefix="mailtrawl-pages-") as tmp:
        os.environ["MAILTRAWL_HOME"] = str(Path(tmp) / "home")
        baseline = _measure(Path(tmp), sizes[0])
        measured = _measure(Path(tmp), sizes[-1])
    worst = max(p["p95_ms"] for p in measured["pages"].values())
    return {
        "database": "sqlite",
        "requests_per_page": REPEAT,
        "timing": "in-process request time through TestClient (server side, no network)",
        "target_ms": TARGET_MS,
        "target_met": worst < TARGET_MS,
        "worst_p95_ms": worst,
        "baseline": baseline,
        "measured": measured,
        "slowdown_vs_baseline": {
            name: round(page["median_ms"] / max(0.1, baseline["pages"][name]["median_ms"]), 2)
            for name, page in measured["pages"].items()
        },
    }
