"""`GraphProvider.scan`: many mailboxes listed through `$batch`, against the emulator."""

from __future__ import annotations

import base64
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from mailtrawl.core import (
    FetchedMessage,
    ListingParts,
    MailboxFailed,
    MailboxRef,
    MailboxScanned,
    ScanItem,
    SearchTerm,
    ServerQuery,
)
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.errors import MailboxUnavailable
from mailtrawl.providers.errors import AccessPolicyBlocked, MailboxNotAuthorized
from mailtrawl.providers.graph import provider as graph_provider
from mailtrawl.providers.graph.client import BatchRequest, BatchResponse
from mailtrawl.providers.graph.provider import GraphProvider
from tests.providers.conftest import MakeProvider

pytestmark = pytest.mark.anyio

EVIL = "billing@fabrikam-billing.example"
NEWS = "news@fabrikam.example"
PEOPLE = ["alice", "bob", "erin", "frank", "grace"]
CSV = b"a,b\n1,2\n"


def _mail(
    subject: str,
    sender: str = EVIL,
    *,
    attachment: bool = False,
    forwarded: bool = False,
    html: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "staff@contoso.com"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 05 Nov 2026 07:59:00 +0000"
    msg["X-Campaign"] = "scan-test"
    msg.set_content("Please pay the invoice today.")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    if attachment:
        msg.add_attachment(CSV, maintype="text", subtype="csv", filename="data.csv")
    if forwarded:
        inner = EmailMessage()
        inner["From"] = EVIL
        inner["Subject"] = "the original"
        inner.set_content("inner")
        msg.add_attachment(inner.as_bytes(), maintype="message", subtype="rfc822")
    return msg.as_bytes()


def _deliver(
    emu: EmulatorProcess,
    raw: bytes,
    recipients: list[str],
    *,
    folder: str = "inbox",
    received: str = "2026-11-05T08:00:00Z",
    copies: int = 1,
) -> dict[str, set[str]]:
    """Deliver and answer the new immutable ids per recipient."""
    answer = emu.control(
        "POST",
        "/deliver",
        {
            "mime": base64.b64encode(raw).decode(),
            "recipients": recipients,
            "folder": folder,
            "receivedDateTime": received,
            "copies": copies,
        },
    )
    out: dict[str, set[str]] = defaultdict(set)
    for item in answer["delivered"]:
        out[item["mailbox"]].add(item["immutableId"])
    return out


async def _mailboxes(provider: GraphProvider, names: list[str]) -> list[MailboxRef]:
    return [await provider.get_mailbox(f"{n}@contoso.com") for n in names]


async def _scan(provider: GraphProvider, *args: Any, **kwargs: Any) -> list[ScanItem]:
    return [item async for item in provider.scan(*args, **kwargs)]


def _by_mailbox(items: list[ScanItem]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if isinstance(item, FetchedMessage):
            out[item.meta.ref.mailbox.upn].add(item.meta.ref.message_id)
    return out


def _ends(items: list[ScanItem]) -> dict[str, MailboxScanned | MailboxFailed]:
    ends: dict[str, MailboxScanned | MailboxFailed] = {}
    for item in items:
        if isinstance(item, MailboxScanned | MailboxFailed):
            assert item.mailbox.upn not in ends, "one end item per mailbox"
            ends[item.mailbox.upn] = item
        else:
            assert item.meta.ref.mailbox.upn not in ends, "messages come before the end item"
    return ends


async def test_filter_scan_yields_exactly_the_matching_messages_per_mailbox(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    upns = [f"{n}@contoso.com" for n in PEOPLE]
    expected = _deliver(emulator, _mail("Invoice overdue"), upns[:4])
    for upn, ids in _deliver(
        emulator, _mail("Second notice"), upns[1:2], folder="junkemail"
    ).items():
        expected[upn] |= ids
    _deliver(emulator, _mail("Weekly news", NEWS), upns)
    provider = make_m365()
    boxes = await _mailboxes(provider, PEOPLE)

    items = await _scan(provider, boxes, ServerQuery(from_addresses=(EVIL.upper(),)))

    assert _by_mailbox(items) == expected
    ends = _ends(items)
    assert set(ends) == set(upns)
    for upn, end in ends.items():
        assert isinstance(end, MailboxScanned)
        assert end.listed == len(expected.get(upn, ()))
        assert not end.search_cap_fallback
    # Whole-mailbox listings cannot name the folder; the engine maps folder ids itself.
    messages = [i for i in items if isinstance(i, FetchedMessage)]
    assert {m.meta.ref.folder_name for m in messages} == {None}
    assert all(m.headers is None and m.body is None and m.attachments is None for m in messages)


async def test_folder_listings_name_well_known_folders(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    inbox = _deliver(emulator, _mail("Invoice"), ["bob@contoso.com"])["bob@contoso.com"]
    junk = _deliver(emulator, _mail("Invoice"), ["bob@contoso.com"], folder="junkemail")
    provider = make_m365()
    [bob] = await _mailboxes(provider, ["bob"])
    query = ServerQuery(folders=("inbox", "junkemail"), from_addresses=(EVIL,))

    items = await _scan(provider, [bob], query)

    names = {
        m.meta.ref.message_id: m.meta.ref.folder_name
        for m in items
        if isinstance(m, FetchedMessage)
    }
    assert names == {
        **dict.fromkeys(inbox, "inbox"),
        **dict.fromkeys(junk["bob@contoso.com"], "junkemail"),
    }
    folders = (await provider.folder_names([bob]))[bob.id]
    only_inbox = await provider.folder_names([bob], names=("inbox",))
    assert list(only_inbox[bob.id].values()) == ["inbox"]
    snapshot = {
        f["wellKnownName"]: f["id"]
        for f in emulator.snapshot("bob@contoso.com")["folders"]
        if f.get("wellKnownName")
    }
    assert folders == {snapshot[name]: name for name in folders.values()}
    assert {"inbox", "junkemail", "deleteditems", "recoverableitemsdeletions"} <= set(
        folders.values()
    )
    for message in items:
        if isinstance(message, FetchedMessage):
            assert folders[str(message.meta.ref.folder_id)] == message.meta.ref.folder_name


async def test_small_mailboxes_cost_one_request_each_and_one_round_trip_per_twenty(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    names = [f"user{i:02}" for i in range(25)]
    for name in names:
        emulator.control("POST", "/users", {"userPrincipalName": f"{name}@contoso.com"})
    _deliver(emulator, _mail("Invoice"), [f"{n}@contoso.com" for n in names[::3]])
    provider = make_m365()
    boxes = await _mailboxes(provider, names)
    emulator.control("DELETE", "/stats")
    before = provider.stats()

    items = await _scan(provider, boxes, ServerQuery(from_addresses=(EVIL,)))

    assert sum(isinstance(i, MailboxScanned) for i in items) == 25
    assert sum(isinstance(i, FetchedMessage) for i in items) == len(names[::3])
    after = provider.stats()
    assert after["subrequests"] - before["subrequests"] == 25
    assert after["graph_requests"] - before["graph_requests"] == 25
    assert after["batches"] - before["batches"] == math.ceil(25 / 20)
    stats = emulator.stats()
    assert stats["batches"] == math.ceil(25 / 20)
    assert stats["batchSubrequests"] == 25


async def test_parts_come_only_when_asked_for(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    _deliver(
        emulator,
        _mail("With files", attachment=True, forwarded=True, html="<p>Pay <b>now</b></p>"),
        ["grace@contoso.com"],
    )
    provider = make_m365()
    [grace] = await _mailboxes(provider, ["grace"])
    query = ServerQuery(from_addresses=(EVIL,))

    async def one(parts: ListingParts) -> FetchedMessage:
        [message] = [
            i for i in await _scan(provider, [grace], query, parts) if isinstance(i, FetchedMessage)
        ]
        return message

    bare = await one(ListingParts())
    assert (bare.headers, bare.body, bare.attachments) == (None, None, None)
    assert bare.meta.has_attachments is True

    headers = await one(ListingParts(headers=True))
    assert headers.header_values("X-Campaign") == ["scan-test"]
    assert headers.body is None
    assert headers.attachments is None

    html = await one(ListingParts(body=True))
    assert html.body is not None
    assert html.body.content_type == "html"
    assert "<b>now</b>" in html.body.content
    text = await one(ListingParts(body=True, body_format="text"))
    assert text.body is not None
    assert text.body.content_type == "text"
    assert "Pay now" in text.body.content
    assert "<b>" not in text.body.content
    assert text.headers is None
    assert text.attachments is None

    listed = await one(ListingParts(attachment_list=True))
    assert listed.headers is None
    assert listed.body is None
    assert listed.attachments is not None
    by_kind = {a.kind: a for a in listed.attachments}
    assert set(by_kind) == {"file", "item"}
    assert by_kind["file"].name == "data.csv"
    assert by_kind["file"].size == len(CSV)
    assert by_kind["file"].content_type == "text/csv"
    assert by_kind["item"].content_type == "message/rfc822"
    assert all(a.content is None and a.id for a in listed.attachments)

    everything = await one(ListingParts(headers=True, body=True, attachment_list=True))
    assert everything.headers
    assert everything.body
    assert everything.attachments


@pytest.mark.parametrize("search", [(), (SearchTerm("invoice"),)], ids=["filter", "search"])
async def test_or_has_attachments_also_lists_every_message_with_attachments(
    emulator: EmulatorProcess, make_m365: MakeProvider, search: tuple[SearchTerm, ...]
) -> None:
    upns = ["alice@contoso.com", "erin@contoso.com"]
    wanted = _deliver(emulator, _mail("Invoice overdue"), upns)
    for upn, ids in _deliver(emulator, _mail("Photos", NEWS, attachment=True), upns).items():
        wanted[upn] |= ids
    _deliver(emulator, _mail("Invoice news", NEWS), upns)
    # Outside the date range: not listed, attachment or not.
    _deliver(emulator, _mail("Old", NEWS, attachment=True), upns, received="2026-01-05T08:00:00Z")
    provider = make_m365()
    boxes = await _mailboxes(provider, ["alice", "erin"])
    query = ServerQuery(
        from_addresses=(EVIL,),
        search=search,
        received_from=datetime(2026, 10, 1, tzinfo=UTC),
        received_until=datetime(2026, 12, 1, tzinfo=UTC),
        or_has_attachments=True,
    )
    # The fixture's own messages with attachments in the range come back too.
    for upn in upns:
        for folder in emulator.snapshot(upn)["folders"]:
            for m in folder["messages"]:
                if m["hasAttachments"] and "2026-10-01" <= m["receivedDateTime"] < "2026-12-01":
                    wanted[upn].add(m["immutableId"])
    assert len(wanted["alice@contoso.com"]) > 2

    items = await _scan(provider, boxes, query)

    assert _by_mailbox(items) == wanted
    assert all(isinstance(e, MailboxScanned) for e in _ends(items).values())


async def test_search_cap_falls_back_to_a_date_listing_and_yields_each_message_once(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    many = _deliver(emulator, _mail("Invoice 8842"), ["frank@contoso.com"], copies=1005)
    few = _deliver(emulator, _mail("Invoice 8842"), ["grace@contoso.com"], copies=3)
    # Matches the KQL but not the sender: the fallback's local check drops it.
    _deliver(emulator, _mail("Invoice 8842", NEWS), ["frank@contoso.com"])
    provider = make_m365()
    boxes = await _mailboxes(provider, ["frank", "grace"])
    query = ServerQuery(search=(SearchTerm("invoice"),), from_addresses=(EVIL,))

    items = await _scan(provider, boxes, query)

    frank = [
        i.meta.ref.message_id
        for i in items
        if isinstance(i, FetchedMessage) and i.meta.ref.mailbox.upn == "frank@contoso.com"
    ]
    assert len(frank) == len(set(frank)) == 1005
    assert _by_mailbox(items) == {**many, **few}
    ends = _ends(items)
    assert ends["frank@contoso.com"] == MailboxScanned(boxes[0], 1005, search_cap_fallback=True)
    assert ends["grace@contoso.com"] == MailboxScanned(boxes[1], 3, search_cap_fallback=False)


async def test_unreachable_mailboxes_fail_alone(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    delivered = _deliver(emulator, _mail("Invoice"), ["alice@contoso.com", "erin@contoso.com"])
    emulator.control(
        "PUT",
        "/access-policies",
        [{"appId": emulator.info["client_id"], "group": "Sales Team", "mode": "DenyAccess"}],
    )
    provider = make_m365()
    alice, bob, erin = await _mailboxes(provider, ["alice", "bob", "erin"])
    dave = await provider.get_mailbox("dave@contoso.com")  # no mailbox licence
    ghost = MailboxRef("0e0e0e0e-0000-4000-8000-00000000dead", "ghost@contoso.com")
    outsider = MailboxRef("0e0e0e0e-0000-4000-8000-00000000beef", "eve@fabrikam.example")
    emulator.control("DELETE", "/stats")

    items = await _scan(
        provider, [alice, outsider, bob, dave, ghost, erin], ServerQuery(from_addresses=(EVIL,))
    )

    assert _by_mailbox(items) == delivered
    ends = _ends(items)
    assert isinstance(ends["alice@contoso.com"], MailboxScanned)
    assert isinstance(ends["erin@contoso.com"], MailboxScanned)
    failures = {upn: e.error for upn, e in ends.items() if isinstance(e, MailboxFailed)}
    assert isinstance(failures["eve@fabrikam.example"], MailboxNotAuthorized)
    assert isinstance(failures["bob@contoso.com"], AccessPolicyBlocked)
    assert isinstance(failures["dave@contoso.com"], MailboxUnavailable)
    assert isinstance(failures["ghost@contoso.com"], MailboxUnavailable)
    # Nothing was ever sent for the mailbox outside the authorized domains.
    assert emulator.stats()["batchSubrequests"] == 5


async def test_one_mailbox_never_has_more_than_four_requests_in_flight(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    folders = ("inbox", "junkemail", "deleteditems", "sentitems", "drafts", "archive", "outbox")
    for folder in folders:
        _deliver(emulator, _mail(f"In {folder}"), ["bob@contoso.com"], folder=folder, copies=3)
    provider = make_m365(page_size=1)
    [bob] = await _mailboxes(provider, ["bob"])
    emulator.control("DELETE", "/stats")
    in_flight: Counter[str] = Counter()
    peak = 0
    send = provider.client.batch

    async def counting(requests: Sequence[BatchRequest], **kwargs: Any) -> list[BatchResponse]:
        nonlocal peak
        mailboxes = Counter(str(r.mailbox) for r in requests)
        in_flight.update(mailboxes)
        peak = max(peak, *in_flight.values())
        try:
            return await send(requests, **kwargs)
        finally:
            in_flight.subtract(mailboxes)

    provider.client.batch = counting  # type: ignore[method-assign]
    items = await _scan(provider, [bob], ServerQuery(folders=folders, from_addresses=(EVIL,)))

    assert sum(isinstance(i, FetchedMessage) for i in items) == 3 * len(folders)
    assert peak == 4  # seven folder listings, four at a time
    stats = emulator.stats()
    assert stats["peakMailboxInFlight"] <= 4
    assert stats["throttled"] == 0
    assert provider.stats()["throttled"] == 0


def _summary(items: list[ScanItem]) -> set[tuple[Any, ...]]:
    out: set[tuple[Any, ...]] = set()
    for item in items:
        if isinstance(item, FetchedMessage):
            attachments = tuple((a.name, a.size, a.kind) for a in item.attachments or ())
            out.add(
                (
                    item.meta.ref.mailbox.upn,
                    item.meta.ref.message_id,
                    item.meta.subject,
                    item.headers,
                    item.body,
                    attachments,
                )
            )
        elif isinstance(item, MailboxScanned):
            out.add((item.mailbox.upn, "scanned", item.listed, item.search_cap_fallback))
        else:
            out.add((item.mailbox.upn, "failed", type(item.error).__name__))
    return out


async def test_injected_faults_do_not_change_the_results(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    upns = [f"{n}@contoso.com" for n in PEOPLE]
    _deliver(emulator, _mail("Invoice overdue", attachment=True), upns, copies=4)
    _deliver(emulator, _mail("Photos", NEWS, attachment=True), upns[:2])
    _deliver(emulator, _mail("Weekly news", NEWS), upns)
    names = [*PEOPLE, "dave"]
    query = ServerQuery(from_addresses=(EVIL,), or_has_attachments=True)
    parts = ListingParts(headers=True, body=True, attachment_list=True)

    clean_provider = make_m365(page_size=2)
    clean = await _scan(clean_provider, await _mailboxes(clean_provider, names), query, parts)

    emulator.settings(
        faults={
            "rate_429": 0.15,
            "rate_503": 0.1,
            "rate_504": 0.05,
            "rate_reset": 0.05,
            "retry_after": 0.01,
            "seed": 11,
        }
    )
    provider = make_m365(page_size=2)
    faulty = await _scan(provider, await _mailboxes(provider, names), query, parts)

    assert _summary(faulty) == _summary(clean)
    assert sum(emulator.stats()["injectedFaults"].values()) > 0
    assert provider.stats()["retries"] > 0


async def test_mailboxes_beyond_the_active_window_wait_their_turn(
    emulator: EmulatorProcess, make_m365: MakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(graph_provider, "SCAN_ACTIVE_MAILBOXES", 2)
    upns = [f"{n}@contoso.com" for n in PEOPLE]
    expected = _deliver(emulator, _mail("Invoice"), upns, copies=3)
    provider = make_m365(page_size=2)
    boxes = await _mailboxes(provider, PEOPLE)

    items = await _scan(provider, boxes, ServerQuery(from_addresses=(EVIL,)))

    assert _by_mailbox(items) == expected
    assert all(e == MailboxScanned(e.mailbox, 3) for e in _ends(items).values())


async def test_stopping_early_cancels_what_is_in_flight(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    upns = [f"{n}@contoso.com" for n in PEOPLE]
    _deliver(emulator, _mail("Invoice"), upns, copies=5)
    provider = make_m365(page_size=1)
    boxes = await _mailboxes(provider, PEOPLE)
    scan = provider.scan(boxes, ServerQuery(from_addresses=(EVIL,)))
    first = await anext(scan)
    assert isinstance(first, FetchedMessage)
    await scan.aclose()
    # The provider stays usable.
    assert len(await _scan(provider, boxes[:1], ServerQuery(from_addresses=(EVIL,)))) == 6
