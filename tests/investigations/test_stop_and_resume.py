"""Stopping at once, and a process killed mid-run resuming without rescanning finished mailboxes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from sqlalchemy import select

from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.investigations.models import InvestigationMailbox, MailboxStatus
from mailtrawl.storage.engine import write_session
from tests.investigations.conftest import HuntTenant, Store


def _mailbox_rows(store: Store) -> dict[str, str]:
    with store.sessions() as session:
        rows = session.execute(select(InvestigationMailbox.upn, InvestigationMailbox.status)).all()
    return {upn.lower(): status for upn, status in rows}


def _campaign(tenant: HuntTenant) -> dict[str, object]:
    return max(tenant.truth["campaigns"], key=lambda c: c["counts"]["mailboxes"])


def test_killed_process_resumes_without_rescanning_done_mailboxes(
    hunt_store: Store, hunt_tenant: HuntTenant, hunt_emulator: EmulatorProcess
) -> None:
    campaign = _campaign(hunt_tenant)
    sender = campaign["indicators"]["senderAddresses"][0]  # type: ignore[index]
    env = {
        **os.environ,
        "MAILTRAWL_HOME": str(hunt_store.settings.home),
        "MAILTRAWL_DATABASE_URL": hunt_store.settings.database_url,
        "MAILTRAWL_JOB_LEASE_SECONDS": "1",
        "MAILTRAWL_SCAN_MAILBOXES_IN_FLIGHT": "4",
    }
    # Slow Graph down so the run is still going when it is killed.
    hunt_emulator.settings(faults={"latency_ms": 150})
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailtrawl",
                "investigate",
                "--config",
                "hunt",
                "--from",
                sender,
                "--body",
                "the",
                "--any",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        done: set[str] = set()
        while time.monotonic() < deadline:
            rows = _mailbox_rows(hunt_store) if hunt_store.settings.database_url else {}
            done = {upn for upn, status in rows.items() if status == MailboxStatus.DONE}
            if len(done) >= 5:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        hunt_emulator.settings(faults={"latency_ms": 0})
    assert 5 <= len(done) < len(_mailbox_rows(hunt_store)), "killed too late to test resuming"
    # The killed worker's lease expires, and requests it left in flight are answered.
    time.sleep(1.1)
    before = hunt_emulator.stats()["byMailbox"]
    hunt_store.run_all(lease_seconds=1)
    after = hunt_emulator.stats()["byMailbox"]
    rows = _mailbox_rows(hunt_store)
    assert set(rows.values()) <= {MailboxStatus.DONE, MailboxStatus.SKIPPED}
    reread = {key for key in after if after[key] != before.get(key, 0) and key.lower() in done}
    assert not reread, f"finished mailboxes were read again: {sorted(reread)}"
    with hunt_store.sessions() as session:
        from mailtrawl.investigations.models import Investigation

        record = session.scalars(select(Investigation)).one()
        assert record.status == "completed"
        assert record.mailboxes_done == sum(1 for s in rows.values() if s == MailboxStatus.DONE)


def test_stop_is_immediate(hunt_store: Store, hunt_emulator: EmulatorProcess) -> None:
    from mailtrawl.investigations import service

    investigation_id = hunt_store.create({"match": {"body": "the"}})
    hunt_emulator.settings(faults={"latency_ms": 100})
    try:
        import asyncio

        from mailtrawl.investigations.engine import EngineSettings
        from mailtrawl.tasks.worker import build_runner, provider_factory
        from tests.investigations.conftest import FAST_RETRY

        runner = build_runner(
            hunt_store.sessions,
            hunt_store.box,
            poll_interval=0.05,
            engine_settings=EngineSettings(batch_size=16, chunk_size=4, chunks_in_flight=2),
            factory=provider_factory(hunt_store.sessions, hunt_store.box, retry=FAST_RETRY),
        )

        async def go() -> float:
            await runner.start()
            while hunt_store.view(investigation_id).progress.mailboxes_done < 2:  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.05)
            with write_session(hunt_store.sessions) as session:
                service.stop_investigation(session, ref=investigation_id)
            asked = time.monotonic()
            while hunt_store.view(investigation_id).status != "stopped":  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            took = time.monotonic() - asked
            await runner.run_until_idle(30)
            await runner.stop()
            return took

        took = asyncio.run(go())
    finally:
        hunt_emulator.settings(faults={"latency_ms": 0})
    view = hunt_store.view(investigation_id)
    assert view.status == "stopped"
    assert took < 5
    assert view.progress.mailboxes_done < view.progress.mailboxes_total
    rows = _mailbox_rows(hunt_store)
    assert MailboxStatus.SCANNING not in rows.values()


def test_a_scan_job_that_gives_up_fails_its_mailboxes_and_the_investigation_ends(
    hunt_store: Store,
) -> None:
    import asyncio

    from mailtrawl.errors import ConfigError
    from mailtrawl.investigations.engine import EngineSettings
    from mailtrawl.tasks.worker import build_runner, provider_factory
    from tests.investigations.conftest import FAST_RETRY

    real = provider_factory(hunt_store.sessions, hunt_store.box, retry=FAST_RETRY)
    calls = {"n": 0}

    def flaky(configuration_id):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            return real(configuration_id)  # the plan job
        if calls["n"] == 2:
            raise ConfigError("The investigation's mail configuration was removed.")
        raise RuntimeError("a bug in a scan job")

    investigation_id = hunt_store.create({"match": {"subject": "anything"}})
    runner = build_runner(
        hunt_store.sessions,
        hunt_store.box,
        poll_interval=0.05,
        engine_settings=EngineSettings(batch_size=30, job_attempts=1),
        factory=flaky,
    )

    async def go() -> None:
        try:
            await runner.run_until_idle(30)
        finally:
            await runner.stop()

    asyncio.run(go())
    view = hunt_store.view(investigation_id)
    assert view.status == "completed"
    assert view.progress.mailboxes_failed == view.progress.mailboxes_total
    with hunt_store.sessions() as session:
        reasons = {
            r.split(":")[0]
            for (r,) in session.execute(
                select(InvestigationMailbox.reason).where(InvestigationMailbox.status == "failed")
            )
        }
    assert reasons == {"The investigation's mail configuration was removed.", "error"}
