"""The reporting mailbox (delta polling, resync without duplicates) and reporter notifications
(templates, escaping, the inbox and SMTP ways of delivering them)."""

from __future__ import annotations

import asyncio
import email
import socket
from collections.abc import Iterator
from email import policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailtrawl.reports import notify, service
from mailtrawl.reports.mailbox import ReportingMailboxPoller
from mailtrawl.reports.models import CaseEvent
from mailtrawl.storage.engine import write_session
from mailtrawl.tasks.worker import provider_factory
from tests.investigations.conftest import FAST_RETRY
from tests.reports.conftest import (
    REPORTING_MAILBOX,
    Reports,
    inline_forward,
    phish,
    wrapped,
)


def _poller(reports: Reports) -> ReportingMailboxPoller:
    return ReportingMailboxPoller(
        reports.sessions,
        reports.box,
        provider_factory(reports.sessions, reports.box, retry=FAST_RETRY),
    )


def _poll(reports: Reports) -> Any:
    return asyncio.run(_poller(reports).poll(force=True))


def test_the_reporting_mailbox_turns_reports_into_cases_once(reports: Reports) -> None:
    reports.configure(
        reporting_mailbox={"configuration": "hunt", "mailbox": REPORTING_MAILBOX},
        auto_investigation={"enabled": False},
    )
    assert _poll(reports).taken == 0  # nothing there yet; the cursor is stored
    reports.emulator.deliver(
        wrapped(phish(subject="Mailbox quota exceeded"), reporter="Erin <erin@contoso.com>"),
        [REPORTING_MAILBOX],
    )
    reports.emulator.deliver(
        inline_forward("Password expires today", reporter="Frank <frank@contoso.com>"),
        [REPORTING_MAILBOX],
    )
    outcome = _poll(reports)
    assert (outcome.taken, outcome.failed, outcome.error) == (2, 0, None)
    cases = {reports.case(c).subject: reports.case(c) for c in outcome.case_ids}
    attached = cases["Mailbox quota exceeded"]
    assert attached.fidelity == "original"
    assert [(r.address, r.channel, r.claimed) for r in attached.reporters] == [
        ("erin@contoso.com", "mailbox", False)
    ]
    forwarded = cases["FW: Password expires today"]
    assert forwarded.fidelity == "forward"
    assert forwarded.reporters[0].address == "frank@contoso.com"
    # Nothing new: nothing taken. An expired cursor: a resync that adds no duplicate.
    assert _poll(reports).taken == 0
    reports.emulator.expire_delta([REPORTING_MAILBOX])
    resynced = _poll(reports)
    assert resynced.resynced
    assert resynced.taken == 0
    reports.emulator.deliver(
        wrapped(phish(subject="Shared document"), reporter="grace@contoso.com"),
        [REPORTING_MAILBOX],
    )
    assert _poll(reports).taken == 1
    with reports.sessions() as session:
        assert service.list_cases(session).total == 3
    # The analysis tells each reporter, in their own inbox.
    reports.run_jobs()
    told = [m for m in reports.inbox("erin@contoso.com") if m["subject"].startswith("Your report")]
    assert len(told) == 1
    assert "Mailbox quota exceeded" in told[0]["subject"]


def test_a_poll_is_skipped_until_due_and_the_cursor_is_kept(reports: Reports) -> None:
    reports.configure(
        reporting_mailbox={
            "configuration": "hunt",
            "mailbox": REPORTING_MAILBOX,
            "interval_seconds": 3600,
        }
    )
    poller = _poller(reports)
    assert asyncio.run(poller.poll(force=False)) is not None
    assert asyncio.run(poller.poll(force=False)) is None  # not due for an hour
    reports.configure(reporting_mailbox={"configuration": "nope"})
    outcome = asyncio.run(poller.poll(force=True))
    assert outcome is not None
    assert "configuration" in (outcome.error or "")


def test_templates_escape_hostile_values_and_refuse_bad_syntax() -> None:
    values = notify.variables_for(
        subject="<script>alert(1)</script> Pay at https://evil.example/x\u202e",
        verdict="phishing",
        analyst_message="Blocked <b>now</b>",
        reporter_name="Alice",
        reporter_address="alice@contoso.com",
        organisation="",
        reported_at=None,
        case_id="c1",
    )
    subject, html = notify.render(notify.DEFAULT_SUBJECT, notify.DEFAULT_BODY, values)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "https://evil" not in html
    assert "hxxps[:]//evil.example" in html
    assert "\u202e" not in subject
    assert "\n" not in subject
    assert "&lt;b&gt;now" in html
    assert "your organisation" in html
    with pytest.raises(notify.TemplateRejected, match="does not render"):
        notify.validate_template("{{ subject", "<p>x</p>")
    with pytest.raises(notify.TemplateRejected):
        notify.validate_template("{{ unknown_variable }}", "<p>x</p>")
    with pytest.raises(notify.TemplateRejected, match="not allowed"):
        notify.validate_template("x", "{{ subject.__class__.__mro__ }}")


class _Sink:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Sink, int]]:
    sink = _Sink()
    with socket.socket() as probe:  # a free port (the controller checks it can connect)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def test_notifications_by_smtp_with_a_custom_template(
    reports: Reports, smtp_server: tuple[_Sink, int]
) -> None:
    sink, port = smtp_server
    reports.configure(
        auto_investigation={"enabled": False},
        notifications={"via": "smtp", "sender_name": "Contoso Security"},
        smtp={
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from_address": "sec@contoso.com",
        },
    )
    with write_session(reports.sessions) as session:
        service.save_template(
            session,
            verdict="phishing",
            subject="[{{ verdict_label }}] {{ subject }}",
            body="<p>Hi {{ reporter_name }}, {{ subject }} is {{ verdict }}.</p>"
            "{% if analyst_message %}<p>{{ analyst_message }}</p>{% endif %}",
            actor="tests",
        )
    result = reports.submit(wrapped(phish(), reporter="Bob Example <bob@contoso.com>"))
    reports.run_jobs()
    view = reports.case(result.case.id)
    assert view.verdict == "phishing"
    assert len(sink.messages) == 1
    sent = sink.messages[0]
    assert sink.envelopes[0] == ("sec@contoso.com", ["bob@contoso.com"])
    assert sent["Subject"] == "[Phishing] Invoice 4471 overdue"
    assert sent["Auto-Submitted"] == "auto-generated"
    html = sent.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hi Bob Example, Invoice 4471 overdue is phishing." in html
    notified = [e for e in view.timeline if e.kind == "notified"]
    assert notified[0].detail["via"] == "smtp"
    assert notified[0].detail["to"] == "bob@contoso.com"
    # Nothing was placed in the mailbox: SMTP was the way.
    assert not [m for m in reports.inbox("bob@contoso.com") if "Phishing" in m["subject"]]


def test_a_failed_delivery_is_on_the_timeline(reports: Reports) -> None:
    reports.configure(
        auto_investigation={"enabled": False},
        notifications={"via": "smtp"},
        smtp={"host": "127.0.0.1", "port": 9, "security": "none", "from_address": "s@contoso.com"},
    )
    result = reports.submit(wrapped(phish(), reporter="carol@contoso.com"))
    reports.run_jobs()
    failed = [e for e in reports.case(result.case.id).timeline if e.kind == "notification_failed"]
    assert len(failed) == 1
    assert "127.0.0.1:9" in failed[0].message


def test_a_notification_placed_before_a_crash_is_not_placed_again(reports: Reports) -> None:
    reports.configure(auto_investigation={"enabled": False})
    result = reports.submit(wrapped(phish(), reporter="Alice <alice@contoso.com>"))
    reports.run_jobs()

    def told() -> list[dict[str, Any]]:
        return [m for m in reports.inbox("alice@contoso.com") if "Your report" in m["subject"]]

    assert len(told()) == 1
    # The process died after placing the message and before recording it: the record is gone.
    with write_session(reports.sessions) as session:
        events = session.query(CaseEvent).filter(
            CaseEvent.case_id == result.case.id, CaseEvent.kind == "notified"
        )
        [event] = list(events)
        key = str(event.detail["key"])
        events.delete()
    outcome = asyncio.run(reports.report_engine().notify_case(result.case.id, key=key))
    assert outcome == {"alice@contoso.com": "sent"}
    assert len(told()) == 1  # found by its Internet message id, not placed twice
    assert [e.kind for e in reports.case(result.case.id).timeline].count("notified") == 1
