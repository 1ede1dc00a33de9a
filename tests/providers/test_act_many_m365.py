"""`GraphProvider.act_many`, `snapshot_many` and `locate_many` through `$batch`, on the emulator.

Outcomes are read back from the emulator's mailboxes (its control plane), never from calls.
"""

from __future__ import annotations

import base64
import email
import email.policy
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from mailtrawl.core import (
    Action,
    ActionResult,
    FetchedMessage,
    MailboxRef,
    MessageLocation,
    MessageRef,
    MessageSnapshot,
    ServerQuery,
)
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.errors import MailboxUnavailable, NotFound, ProviderError
from mailtrawl.providers.errors import (
    AccessPolicyBlocked,
    MailboxNotAuthorized,
    RequestRejected,
)
from mailtrawl.providers.graph.provider import GraphProvider
from tests.providers.conftest import MakeProvider, m365_settings

pytestmark = pytest.mark.anyio

EVIL = "billing@fabrikam-billing.example"
PDF = b"%PDF-1.4 not really a pdf\n" * 20
NO_FAULTS = {"rate_429": 0.0, "rate_503": 0.0, "rate_504": 0.0, "rate_reset": 0.0}


def _mail(subject: str, *, attachment: bool = False) -> bytes:
    msg = EmailMessage()
    msg["From"] = EVIL
    msg["To"] = "staff@contoso.com"
    msg["Subject"] = subject
    msg["Date"] = "Thu, 05 Nov 2026 07:59:00 +0000"
    msg.set_content("Please pay the invoice today.")
    if attachment:
        msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg.as_bytes()


def _deliver(
    emu: EmulatorProcess, subject: str, upns: list[str], *, copies: int = 1, **kw: Any
) -> list[str]:
    """Deliver a message to each of `upns` and answer the new immutable ids, in order."""
    answer = emu.control(
        "POST",
        "/deliver",
        {
            "mime": base64.b64encode(_mail(subject, **kw)).decode(),
            "recipients": upns,
            "folder": "inbox",
            "receivedDateTime": "2026-11-05T08:00:00Z",
            "copies": copies,
        },
    )
    return [str(d["immutableId"]) for d in answer["delivered"]]


async def _refs(provider: GraphProvider, upns: list[str], subject: str) -> dict[str, MessageRef]:
    """Immutable id → ref, as the provider lists the messages with `subject`."""
    boxes = [await provider.get_mailbox(u) for u in dict.fromkeys(upns)]
    return {
        item.meta.ref.message_id: item.meta.ref
        async for item in provider.scan(
            boxes, ServerQuery(folders=("inbox",), subject_equals=subject)
        )
        if isinstance(item, FetchedMessage)
    }


def _stored(emu: EmulatorProcess, upn: str) -> dict[str, dict[str, Any]]:
    """Immutable id → the emulator's summary of each message (Recoverable Items included)."""
    return {m["immutableId"]: m for f in emu.snapshot(upn)["folders"] for m in f["messages"]}


def _folder_ids(emu: EmulatorProcess, upn: str) -> dict[str, str]:
    return {f["wellKnownName"]: f["id"] for f in emu.snapshot(upn)["folders"] if f["wellKnownName"]}


def _purged(emu: EmulatorProcess, upn: str) -> set[str]:
    return {m["immutableId"] for m in emu.snapshot(upn)["purged"]}


def _missing(ref: MessageRef) -> MessageRef:
    ghost = "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A" + "x" * 20
    return replace(ref, message_id=ghost, immutable_id=ghost)


def _results(answers: list[ActionResult | ProviderError]) -> list[ActionResult]:
    assert all(isinstance(a, ActionResult) for a in answers), answers
    return [a for a in answers if isinstance(a, ActionResult)]


# act_many -------------------------------------------------------------------------------


async def test_moves_deletes_and_purges_land_and_repeat_as_unchanged(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    upns = ["alice@contoso.com", "bob@contoso.com", "erin@contoso.com"]
    ids = _deliver(emulator, "Act on many", upns, copies=3)
    provider = make_m365()
    refs = await _refs(provider, upns, "Act on many")
    by_box: dict[str, list[MessageRef]] = {}
    for message_id in ids:
        by_box.setdefault(refs[message_id].mailbox.upn, []).append(refs[message_id])
    to_junk = [b[0] for b in by_box.values()]
    to_delete = [b[1] for b in by_box.values()]
    to_purge = [b[2] for b in by_box.values()]
    ghost = _missing(to_junk[0])

    moved = await provider.act_many([*to_junk[:2], ghost, to_junk[2]], Action.junk())
    assert isinstance(moved[2], NotFound)
    junked = _results([moved[0], moved[1], moved[3]])
    deleted = _results(await provider.act_many(to_delete, Action.delete()))
    purged = _results(await provider.act_many(to_purge, Action.purge()))

    assert all(r.changed for r in [*junked, *deleted, *purged])
    assert [r.before for r in junked] == to_junk
    for result in junked:
        assert result.after is not None
        assert result.after.message_id == result.before.message_id  # immutable ids
        assert result.after.folder_name == "junkemail"
        assert (
            result.after.folder_id == _folder_ids(emulator, result.before.mailbox.upn)["junkemail"]
        )
    assert all(
        r.after is not None and r.after.folder_name == "recoverableitemsdeletions" for r in deleted
    )
    assert all(r.after is None for r in purged)

    def state() -> dict[str, tuple[str | None, bool]]:
        out = {}
        for upn in upns:
            stored, gone = _stored(emulator, upn), _purged(emulator, upn)
            for message_id in ids:
                if refs[message_id].mailbox.upn == upn:
                    folder = stored[message_id]["folder"] if message_id in stored else None
                    out[message_id] = (folder, message_id in gone)
        return out

    expected = {
        **{r.message_id: ("junkemail", False) for r in to_junk},
        **{r.message_id: ("recoverableitemsdeletions", False) for r in to_delete},
        **{r.message_id: (None, True) for r in to_purge},
    }
    assert state() == expected

    # Repeated (as after a lost answer): nothing changes, and each says so.
    again = [
        *await provider.act_many([r.after for r in junked if r.after], Action.junk()),
        *await provider.act_many(to_delete, Action.delete()),
        *await provider.act_many(to_purge, Action.purge()),
    ]
    assert [r.changed for r in _results(again)] == [False] * 9
    assert state() == expected
    # A message already gone counts as deleted (Graph answers 404 to a repeated delete).
    [gone] = _results(await provider.act_many([ghost], Action.delete()))
    assert not gone.changed


async def test_categories_are_read_in_one_round_and_written_only_where_they_change(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    upns = ["alice@contoso.com", "bob@contoso.com"]
    ids = _deliver(emulator, "Tag many", upns, copies=2)
    provider = make_m365()
    refs = await _refs(provider, upns, "Tag many")
    targets = [refs[i] for i in ids]
    await provider.act(targets[0], Action.warn("Suspicious email"))

    before = provider.stats()["subrequests"]
    warned = _results(await provider.act_many(targets, Action.warn("suspicious EMAIL")))
    # Four reads, then three writes (the first message was already warned).
    assert provider.stats()["subrequests"] - before == 7
    assert [r.changed for r in warned] == [False, True, True, True]
    assert warned[0].categories == ("Suspicious email",)
    assert warned[1].categories == ("suspicious EMAIL",)
    for ref in targets:
        assert len(_stored(emulator, ref.mailbox.upn)[ref.message_id]["categories"]) == 1

    repeated = _results(await provider.act_many(targets, Action.warn("Suspicious email")))
    assert not any(r.changed for r in repeated)

    tagged = _results(await provider.act_many(targets[:2], Action.set_categories(["Red", "Blue"])))
    assert all(r.changed and r.categories == ("Red", "Blue") for r in tagged)
    assert _stored(emulator, "alice@contoso.com")[ids[0]]["categories"] == ["Red", "Blue"]
    unwarned = _results(await provider.act_many(targets, Action.unwarn("Suspicious email")))
    assert [r.changed for r in unwarned] == [False, False, True, True]
    for ref in targets:
        assert (
            "Suspicious email"
            not in _stored(emulator, ref.mailbox.upn)[ref.message_id]["categories"]
        )


async def test_one_bad_message_or_mailbox_fails_alone(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    upns = ["alice@contoso.com", "bob@contoso.com", "erin@contoso.com"]
    ids = _deliver(emulator, "Mixed bag", upns)
    provider = make_m365()
    refs = await _refs(provider, upns, "Mixed bag")
    alice, bob, erin = (refs[i] for i in ids)
    emulator.control(
        "PUT",
        "/access-policies",
        [{"appId": emulator.info["client_id"], "group": "Sales Team", "mode": "DenyAccess"}],
    )
    outsider = replace(
        alice, mailbox=MailboxRef("0e0e0e0e-0000-4000-8000-00000000beef", "eve@fabrikam.example")
    )
    ghost_box = replace(
        alice, mailbox=MailboxRef("0e0e0e0e-0000-4000-8000-00000000dead", "ghost@contoso.com")
    )

    answers = await provider.act_many(
        [alice, outsider, bob, ghost_box, _missing(erin), erin], Action.trash()
    )

    assert isinstance(answers[0], ActionResult)
    assert isinstance(answers[1], MailboxNotAuthorized)
    assert isinstance(answers[2], AccessPolicyBlocked)
    assert isinstance(answers[3], MailboxUnavailable)
    assert isinstance(answers[4], NotFound)
    assert isinstance(answers[5], ActionResult)
    assert _stored(emulator, "alice@contoso.com")[ids[0]]["folder"] == "deleteditems"
    assert _stored(emulator, "erin@contoso.com")[ids[2]]["folder"] == "deleteditems"
    emulator.control("PUT", "/access-policies", [])
    assert _stored(emulator, "bob@contoso.com")[ids[1]]["folder"] == "inbox"

    located = await provider.locate_many([alice, outsider, bob])
    assert isinstance(located[1], MailboxNotAuthorized)
    assert isinstance(located[0], MessageLocation)


async def test_purge_outside_the_global_cloud_is_refused_per_message(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    [message_id] = _deliver(emulator, "Keep me", ["grace@contoso.com"])
    provider = make_m365()
    refs = await _refs(provider, ["grace@contoso.com"], "Keep me")
    provider.capabilities = replace(provider.capabilities, purge=False)

    [answer] = await provider.act_many([refs[message_id]], Action.purge())

    assert isinstance(answer, RequestRejected)
    assert answer.code == "NotSupportedInCloud"
    assert _stored(emulator, "grace@contoso.com")[message_id]["folder"] == "inbox"


# snapshot_many ---------------------------------------------------------------------------


async def test_snapshots_hold_the_mime_and_the_state(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    upns = ["alice@contoso.com", "frank@contoso.com"]
    ids = _deliver(emulator, "Snapshot me", upns, attachment=True)
    provider = make_m365()
    refs = await _refs(provider, upns, "Snapshot me")
    alice, frank = (refs[i] for i in ids)
    await provider.act(alice, Action.set_categories(["Red"]))
    junked = await provider.act(frank, Action.junk())
    assert junked.after is not None
    stale_frank = frank  # still says inbox: the snapshot reports where it is now

    before = provider.stats()["subrequests"]
    snaps = await provider.snapshot_many([alice, _missing(alice), stale_frank])
    assert provider.stats()["subrequests"] - before == 6  # message and $value, each

    assert isinstance(snaps[1], NotFound)
    first, third = snaps[0], snaps[2]
    assert isinstance(first, MessageSnapshot)
    assert isinstance(third, MessageSnapshot)
    assert first.ref == alice
    assert first.categories == ("Red",)
    assert first.is_read is False
    assert first.flag_status == "notFlagged"
    assert first.importance == "normal"
    assert first.received is not None
    assert first.received.isoformat() == "2026-11-05T08:00:00+00:00"
    assert third.ref.folder_id == _folder_ids(emulator, "frank@contoso.com")["junkemail"]
    assert third.ref.folder_name is None  # moved away from the folder the ref named
    assert third.ref.message_id == frank.message_id
    for snap in (first, third):
        parsed = email.message_from_bytes(snap.mime, policy=email.policy.default)
        assert parsed["Subject"] == "Snapshot me"
        [attachment] = list(parsed.iter_attachments())
        assert attachment.get_filename() == "invoice.pdf"
        assert attachment.get_content() == PDF


# locate_many -----------------------------------------------------------------------------


async def test_locate_finds_moved_messages_and_not_deleted_ones(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    alice_ids = _deliver(emulator, "Find A", ["alice@contoso.com"], copies=2)
    [b_id] = _deliver(emulator, "Find B", ["alice@contoso.com"])
    [c_id] = _deliver(emulator, "Find C", ["bob@contoso.com"])
    [d_id] = _deliver(emulator, "Find D", ["bob@contoso.com"])
    e_ids = _deliver(emulator, "Find E", ["alice@contoso.com"], copies=2)
    provider = make_m365()
    refs: dict[str, MessageRef] = {}
    for subject, upn in [
        ("Find A", "alice@contoso.com"),
        ("Find B", "alice@contoso.com"),
        ("Find C", "bob@contoso.com"),
        ("Find D", "bob@contoso.com"),
        ("Find E", "alice@contoso.com"),
    ]:
        refs |= await _refs(provider, [upn], subject)
    a1, a2, b, c, d = refs[alice_ids[0]], refs[alice_ids[1]], refs[b_id], refs[c_id], refs[d_id]
    [moved] = _results(await provider.act_many([a1], Action.junk()))
    assert moved.after is not None
    _results(await provider.act_many([b], Action.delete()))
    _results(await provider.act_many([c], Action.purge()))
    # Without an Internet message id, messages are read by id.
    e1, e2 = (replace(refs[i], internet_message_id=None) for i in e_ids)
    [e1_moved] = _results(await provider.act_many([e1], Action.junk()))
    assert e1_moved.after is not None
    _results(await provider.act_many([e2], Action.delete()))

    before = provider.stats()["subrequests"]
    located = await provider.locate_many(
        [
            moved.after,
            a2,
            b,
            c,
            d,
            replace(e1_moved.after, internet_message_id=None),
            e2,
            _missing(e2),
        ]
    )
    # One `$filter` per mailbox; by id: the Deletions folder, then one read per message.
    assert provider.stats()["subrequests"] - before == 2 + 1 + 3

    assert all(isinstance(x, MessageLocation) for x in located), located
    found = [x for x in located if isinstance(x, MessageLocation)]
    junk = _folder_ids(emulator, "alice@contoso.com")["junkemail"]
    inbox = _folder_ids(emulator, "alice@contoso.com")["inbox"]
    a1_found, a2_found, b_found, c_found, d_found, e1_found, e2_found, ghost = found
    assert a1_found.found is not None
    assert a1_found.found.message_id == a1.message_id
    assert (a1_found.found.folder_id, a1_found.found.folder_name) == (junk, "junkemail")
    assert [(o.message_id, o.folder_id) for o in a1_found.others] == [(a2.message_id, inbox)]
    assert a2_found.found is not None
    assert a2_found.found.folder_id == inbox
    assert a2_found.found.folder_name == "inbox"
    assert [o.message_id for o in a2_found.others] == [a1.message_id]
    assert b_found.found is None
    assert b_found.others == ()
    assert c_found.found is None
    assert c_found.others == ()
    assert d_found.found is not None
    assert d_found.found.folder_name == "inbox"
    assert e1_found.found is not None
    assert (e1_found.found.folder_id, e1_found.found.folder_name) == (junk, "junkemail")
    assert e2_found.found is None  # in Recoverable Items
    assert ghost.found is None


async def test_locate_ors_up_to_ten_internet_message_ids_per_request(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    for n in range(12):
        _deliver(emulator, f"Batch find {n:02d}", ["grace@contoso.com"])
    provider = make_m365()
    grace = await provider.get_mailbox("grace@contoso.com")
    refs = [
        item.meta.ref
        async for item in provider.scan([grace], ServerQuery(subject_contains="Batch find"))
        if isinstance(item, FetchedMessage)
    ]
    assert len(refs) == 12
    _results(await provider.act_many(refs[:3], Action.junk()))

    before = provider.stats()["subrequests"]
    located = await provider.locate_many(refs)
    assert provider.stats()["subrequests"] - before == 2

    folders = _folder_ids(emulator, "grace@contoso.com")
    where = [
        x.found.folder_id if isinstance(x, MessageLocation) and x.found else None for x in located
    ]
    assert where == [folders["junkemail"]] * 3 + [folders["inbox"]] * 9


# Faults ----------------------------------------------------------------------------------


async def test_gateway_timeouts_on_changes_are_sent_again_and_end_done_once(
    faults: EmulatorProcess, make_m365: MakeProvider
) -> None:
    emulator = faults
    ids = _deliver(emulator, "Timeout", ["alice@contoso.com"], copies=6)
    provider = make_m365()
    refs = await _refs(provider, ["alice@contoso.com"], "Timeout")
    emulator.settings(faults={"rate_504": 0.5, "seed": 3})

    # A 504 does not say whether a move happened; moving by immutable id again is harmless.
    answers = _results(await provider.act_many([refs[i] for i in ids], Action.junk()))
    emulator.settings(faults=NO_FAULTS)
    assert emulator.stats()["injectedFaults"]["504"] > 0
    assert all(r.after is not None and r.after.folder_name == "junkemail" for r in answers)
    stored = _stored(emulator, "alice@contoso.com")
    assert len([m for m in stored.values() if m["subject"] == "Timeout"]) == 6
    assert {stored[i]["folder"] for i in ids} == {"junkemail"}


class LosesBatchAnswers(httpx.AsyncBaseTransport):
    """A real transport that drops the answer to some `$batch` envelopes after the server
    has served them: the connection breaks after the changes were made."""

    def __init__(self, inner: httpx.AsyncBaseTransport, drop: set[int]) -> None:
        self.inner = inner
        self.drop = drop
        self.envelopes = 0
        self.dropped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/$batch"):
            self.envelopes += 1
            if self.envelopes in self.drop:
                await response.aread()
                await response.aclose()
                self.dropped += 1
                raise httpx.ReadError("connection reset by peer", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def faults(emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    yield emulator
    emulator.settings(faults=NO_FAULTS)


@pytest.fixture
async def lossy_m365(
    emulator: EmulatorProcess,
) -> AsyncIterator[tuple[GraphProvider, LosesBatchAnswers]]:
    transport = LosesBatchAnswers(httpx.AsyncHTTPTransport(verify=emulator.verify), {2, 5, 6, 9})
    provider = GraphProvider(m365_settings(emulator), transport=transport)
    yield provider, transport
    await provider.aclose()


async def test_two_hundred_moves_under_faults_end_exactly_once_in_junk(
    faults: EmulatorProcess,
    lossy_m365: tuple[GraphProvider, LosesBatchAnswers],
) -> None:
    emulator = faults
    provider, transport = lossy_m365
    upns = [f"{n}@contoso.com" for n in ("alice", "bob", "erin", "frank", "grace", "phishing")]
    for n in range(20 - len(upns)):
        upn = f"staff{n:02d}@contoso.com"
        emulator.control("POST", "/users", {"userPrincipalName": upn, "mail": upn})
        upns.append(upn)
    ids = set(_deliver(emulator, "Mass phish", upns, copies=10))
    assert len(ids) == 200
    refs = await _refs(provider, upns, "Mass phish")
    assert set(refs) == ids
    emulator.settings(
        faults={"rate_429": 0.1, "rate_503": 0.05, "rate_reset": 0.05, "retry_after": 0, "seed": 7}
    )

    todo = list(refs.values())
    answers = await provider.act_many(todo, Action.junk())
    emulator.settings(faults=NO_FAULTS)

    # Moves by immutable id are safe to repeat: the envelopes whose answers were lost after
    # the moves were made are sent again, and every move ends known and done.
    results = {ref.message_id: answer for ref, answer in zip(todo, answers, strict=True)}
    assert all(isinstance(a, ActionResult) for a in results.values()), answers
    assert set(results) == ids
    assert transport.dropped == 4
    assert sum(emulator.stats()["injectedFaults"].values()) > 0
    assert provider.stats()["retries"] > 0
    places: Counter[str] = Counter()
    for upn in upns:
        stored = _stored(emulator, upn)
        mine = [m for m in stored.values() if m["subject"] == "Mass phish"]
        assert len(mine) == 10, upn  # no copies made, none lost
        places.update(m["folder"] for m in mine)
    assert places == {"junkemail": 200}
    assert all(r.after is not None and r.after.folder_name == "junkemail" for r in results.values())
