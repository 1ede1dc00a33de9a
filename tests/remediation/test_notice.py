"""The warning notice: hostile values come out inert, templates are checked, and the notice
lands in the inbox as unread received mail."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from mailtrawl.core import EmailAddress, MailboxRef, ServerQuery
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.providers.graph.provider import GraphProvider
from mailtrawl.remediation.notice import (
    DEFAULT_NOTICE_BODY,
    DEFAULT_NOTICE_SUBJECT,
    MAX_LISTED,
    MAX_SUBJECT,
    NoticeItem,
    NoticeTemplateError,
    notice_message_id,
    render_notice,
    validate_template,
)
from tests.providers.conftest import m365_settings

ALICE = MailboxRef("u-alice", "alice@contoso.com", "Alice Archer", "alice@contoso.com")
WHEN = datetime(2026, 11, 4, 12, 30, tzinfo=UTC)
HOSTILE = NoticeItem(
    subject='Invoice <script>alert(1)</script> "><img src=x onerror=alert(2)>\r\nBcc: x@evil.example '
    "javascript:alert(3) https://evil.example/login",
    sender_address="billing@evil.example",
    sender_name='Payroll" onerror="alert(4) <b>\u202eexe.pdf',
    received=WHEN,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def m365(emulator: EmulatorProcess) -> AsyncIterator[GraphProvider]:
    provider = GraphProvider(m365_settings(emulator))
    yield provider
    await provider.aclose()


@pytest.fixture
async def graph_api(emulator: EmulatorProcess) -> AsyncIterator[httpx.AsyncClient]:
    """Graph v1.0 for the test app, to read and set what the provider does not expose."""
    async with httpx.AsyncClient(
        base_url=emulator.graph + "/",
        headers={"Authorization": f"Bearer {emulator.token()}"},
        verify=emulator.verify,
        trust_env=False,
        timeout=30.0,
    ) as client:
        yield client


def _notice(*items: NoticeItem, **options: str) -> tuple[str, str]:
    message = render_notice(
        mailbox=ALICE,
        items=items or (HOSTILE,),
        internet_message_id=notice_message_id("action-1/alice"),
        **options,
    )
    return message.subject, message.body


def test_hostile_values_are_escaped_in_the_body() -> None:
    _, body = _notice()
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<img" not in body
    assert '" onerror' not in body
    assert "&quot; onerror=&quot;alert(4)" in body
    assert "<b>" not in body
    assert "javascript:" not in body.lower()
    assert "https://" not in body
    assert "hxxps[:]//evil.example/login" in body
    assert "\u202e" not in body
    assert "billing@evil.example" in body
    assert "2026-11-04 12:30 UTC" in body


def test_hostile_values_are_stripped_from_the_subject_line() -> None:
    subject, _ = _notice(subject_template="Warning: $subject from $sender")
    assert "\r" not in subject
    assert "\n" not in subject
    assert not re.search(r"[\x00-\x1f\x7f]", subject)
    assert "javascript:" not in subject.lower()
    assert subject.startswith("Warning: Invoice <script>")  # plain text: not HTML, not escaped
    assert len(subject) <= MAX_SUBJECT
    long_subject, _ = _notice(
        NoticeItem("A" * 5_000, "a@evil.example"), subject_template="$subject $subject $subject"
    )
    assert len(long_subject) <= MAX_SUBJECT


def test_unknown_placeholders_are_rejected_by_name() -> None:
    with pytest.raises(NoticeTemplateError, match=r"\$name") as caught:
        validate_template("Hello $name", DEFAULT_NOTICE_BODY)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(NoticeTemplateError, match=r"\$link, \$url"):
        validate_template(DEFAULT_NOTICE_SUBJECT, "<p>$url ${link}</p>")
    with pytest.raises(NoticeTemplateError, match=r"\$\$ for a dollar sign"):
        validate_template("Pay $5 now", DEFAULT_NOTICE_BODY)
    with pytest.raises(NoticeTemplateError):
        _notice(body_template="<p>$nope</p>")
    validate_template(DEFAULT_NOTICE_SUBJECT, DEFAULT_NOTICE_BODY)


def test_every_placeholder_renders() -> None:
    item = NoticeItem("Quarterly report", "ceo@fabrikam.example", "The CEO", WHEN)
    subject, body = _notice(
        item,
        item,
        subject_template="[$organisation] $count emails like: $subject",
        body_template=(
            "$subject|$sender|$received|$mailbox|$count|$organisation|$$5|$messages|${count}x"
        ),
        organisation="Contoso & Co",
    )
    assert subject == "[Contoso & Co] 2 emails like: Quarterly report"
    *values, messages, last = body.split("|")
    assert values == [
        "Quarterly report",
        "The CEO &lt;ceo@fabrikam.example&gt;",
        "2026-11-04 12:30 UTC",
        "alice@contoso.com",
        "2",
        "Contoso &amp; Co",
        "$5",
    ]
    assert messages.count("<li>") == 2
    assert last == "2x"


def test_default_template_has_no_links_or_remote_content() -> None:
    for text in (DEFAULT_NOTICE_SUBJECT, DEFAULT_NOTICE_BODY):
        lowered = text.lower()
        for forbidden in ("http", "<a ", "<img", "src=", "url(", "<script", "<link", "@import"):
            assert forbidden not in lowered
    _, body = _notice()
    assert "your organisation" in body  # no organisation configured


def test_many_emails_are_listed_up_to_a_bound() -> None:
    items = [NoticeItem(f"Phish {i}", "x@evil.example") for i in range(MAX_LISTED + 5)]
    _, body = _notice(*items)
    assert body.count("<li><strong>Subject:") == MAX_LISTED
    assert "and 5 more" in body
    assert "(unknown time)" in body


def test_notice_message_ids_are_deterministic_and_checked() -> None:
    assert notice_message_id("a") == notice_message_id("a")
    assert notice_message_id("a") != notice_message_id("b")
    with pytest.raises(ValueError, match="Internet message id"):
        render_notice(mailbox=ALICE, items=[HOSTILE], internet_message_id="no-brackets")
    with pytest.raises(ValueError, match="at least one"):
        render_notice(mailbox=ALICE, items=[], internet_message_id=notice_message_id("a"))


@pytest.mark.anyio
async def test_the_notice_lands_in_the_inbox_as_unread_received_mail(
    emulator: EmulatorProcess, graph_api: httpx.AsyncClient, m365: GraphProvider
) -> None:
    alice = await m365.get_mailbox("alice@contoso.com")
    message_id = notice_message_id("action-7/" + alice.id)
    notice = render_notice(
        mailbox=alice,
        items=[HOSTILE],
        organisation="Contoso",
        internet_message_id=message_id,
        sender=EmailAddress("security@contoso.com", "Contoso Security"),
    )
    ref = await m365.create_message(alice, "inbox", notice, draft=False)

    snapshot = emulator.snapshot("alice@contoso.com")
    [stored] = [
        m
        for folder in snapshot["folders"]
        for m in folder["messages"]
        if m["immutableId"] == ref.message_id
    ]
    assert stored["folder"] == "inbox"
    assert stored["isDraft"] is False
    assert stored["isRead"] is False
    assert stored["subject"] == DEFAULT_NOTICE_SUBJECT
    assert stored["from"] == "security@contoso.com"
    assert stored["internetMessageId"] == message_id
    assert stored["attachments"] == []
    created = datetime.fromisoformat(stored["receivedDateTime"].replace("Z", "+00:00"))
    assert abs((created - datetime.now(UTC)).total_seconds()) < 300

    read = await graph_api.get(
        f"users/{alice.id}/messages/{ref.message_id}", params={"$select": "body"}
    )
    assert read.status_code == 200, read.text
    assert read.json()["body"]["contentType"] == "html"
    assert "&lt;script&gt;" in read.json()["body"]["content"]

    # A re-run finds the notice it already placed by its deterministic id.
    [found] = [m async for m in m365.search(alice, ServerQuery(internet_message_id=message_id))]
    assert found.ref.stable_id == ref.stable_id
