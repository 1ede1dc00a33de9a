"""An online engine switched on in the report settings takes part in a case's analysis.

The service is VirusTotal's documented API v3 answered by httpx's mock transport: nothing
leaves the machine.
"""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from mailtrawl.reports import service
from mailtrawl.reports.engine import ReportEngine
from mailtrawl.tasks.worker import provider_factory
from tests.analysis.online.helpers import Recorder
from tests.investigations.conftest import FAST_RETRY
from tests.reports.conftest import PE_HEAD, Reports, phish, wrapped

DROPPER = PE_HEAD + b"online engine wiring"
DROPPER_SHA256 = hashlib.sha256(DROPPER).hexdigest()


def _virustotal(request: httpx.Request) -> httpx.Response:
    if request.url.path == f"/api/v3/files/{DROPPER_SHA256}":
        stats = {"malicious": 52, "suspicious": 1, "harmless": 0, "undetected": 12, "timeout": 0}
        return httpx.Response(
            200,
            json={
                "data": {
                    "type": "file",
                    "id": DROPPER_SHA256,
                    "attributes": {"last_analysis_stats": stats},
                }
            },
        )
    return httpx.Response(
        404, json={"error": {"code": "NotFoundError", "message": "Resource not found."}}
    )


def _engine(reports: Reports, recorder: Recorder) -> ReportEngine:
    return ReportEngine(
        reports.sessions,
        reports.box,
        provider_factory(reports.sessions, reports.box, retry=FAST_RETRY),
        app_settings=reports.store.settings,
        http_client=recorder.client,
    )


def test_virustotal_switched_on_in_settings_is_asked_and_its_evidence_kept(
    reports: Reports,
) -> None:
    reports.configure(auto_investigation={"enabled": False}, notifications={"enabled": False})
    recorder = Recorder(_virustotal)
    first = reports.submit(wrapped(phish(attachment=DROPPER), reporter="alice@contoso.com"))
    asyncio.run(_engine(reports, recorder).analyse_case(first.case.id))
    assert recorder.requests == []  # off by default: nothing is sent anywhere

    # The public API's 4 requests a minute would make the lookups wait: the test key is faster.
    reports.configure(
        online={"virustotal": {"enabled": True, "api_key": "vt-key-1", "rate_per_minute": 600}}
    )
    second = reports.submit(
        wrapped(phish(subject="Statement", attachment=DROPPER), reporter="bob@contoso.com")
    )
    result = asyncio.run(_engine(reports, recorder).analyse_case(second.case.id))
    assert result is not None
    asked = [r for r in recorder.requests if r.url.path.endswith(DROPPER_SHA256)]
    assert asked
    assert all(r.headers["x-apikey"] == "vt-key-1" for r in recorder.requests)
    assert all(r.url.host == "www.virustotal.com" for r in recorder.requests)
    with reports.sessions() as session:
        view = service.case_view(session, service.get_case(session, ref=second.case.id))
    assert view.verdict == "malicious"
    evidence = " ".join(str(e) for e in (view.analysis or {}).get("evidence") or [])
    assert "VirusTotal" in evidence
