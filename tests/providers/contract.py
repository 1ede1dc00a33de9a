"""The provider contract: what every mail provider must do, whatever the platform.

A test module runs this suite for one provider by importing the tests and defining three
fixtures:

- `make_provider(**options)`: a provider for the standard contract tenant; options are
  `authorized_domains`, `page_size` and `test_mailbox`;
- `provider`: `make_provider()` with defaults;
- `backend`: a `ContractBackend` that changes and inspects the platform behind the provider
  (the emulator for Microsoft 365).

The standard contract tenant (tests/fixtures/tenant): domain contoso.com; users alice
(Finance), bob (Sales), carol (Sales, disabled), dave (IT, no mailbox), erin (Executive),
frank (Engineering), grace (HR) and phishing (IT); groups "Finance Team" (alice), "Sales
Team" (bob, carol), "Leadership" (erin) and "All Staff" (the three teams nested, frank,
grace, dave). Tests assert outcomes read back from the platform, never calls.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol

import pytest

from mailtrawl.core import (
    Action,
    EmailAddress,
    MailboxRef,
    MessageMeta,
    MessageParts,
    NewMessage,
    Scope,
    SearchTerm,
    ServerQuery,
    SkipReason,
)
from mailtrawl.errors import NotFound
from mailtrawl.providers.base import CategoryChange, Provider
from mailtrawl.providers.errors import MailboxNotAuthorized

pytestmark = pytest.mark.anyio

ALL_USERS = {
    "alice@contoso.com",
    "bob@contoso.com",
    "carol@contoso.com",
    "dave@contoso.com",
    "erin@contoso.com",
    "frank@contoso.com",
    "grace@contoso.com",
    "phishing@contoso.com",
}
T0 = datetime(2026, 11, 10, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Delivered:
    mailbox: str
    message_id: str
    internet_message_id: str


@dataclass(frozen=True)
class StoredMessage:
    """A message as the platform holds it (read around the provider)."""

    message_id: str
    folder: str | None  # well-known name or display name
    subject: str
    categories: tuple[str, ...]
    is_read: bool
    is_draft: bool
    received: datetime
    attachment_sha256: tuple[str, ...]


class ContractBackend(Protocol):
    def deliver(
        self,
        raw: bytes,
        recipients: list[str],
        folder: str = "inbox",
        received: datetime | None = None,
    ) -> list[Delivered]: ...

    def messages(self, mailbox: str) -> dict[str, StoredMessage]:
        """Every message in the mailbox by its (immutable) id, Recoverable Items included."""
        ...

    def purged(self, mailbox: str) -> set[str]: ...

    def master_categories(self, mailbox: str) -> dict[str, str]:
        """Category name → the provider-neutral colour name the provider maps it from."""
        ...

    def add_user(
        self, upn: str, *, mail: str | None, has_mailbox: bool = True, enabled: bool = True
    ) -> None: ...

    def expire_changes(self, mailbox: str) -> None: ...

    def set_faults(self, **faults: float) -> None: ...

    def own_credentials(self) -> dict[str, Any]:
        """Provider options with credentials of their own: counted apart from other traffic."""
        ...

    def injected_faults(self, credentials: dict[str, Any] | None = None) -> int:
        """Faults injected so far: in all, or into requests made with `credentials`."""
        ...


MakeProvider = Callable[..., Provider]


def email(
    subject: str,
    *,
    sender: str = "Mallory <mallory@fabrikam.com>",
    to: str = "someone@contoso.com",
    body: str = "Hello.",
    date: datetime = T0,
    attachments: list[tuple[str, str, bytes]] | None = None,
    inner: bytes | None = None,
    message_id: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id or make_msgid(domain="fabrikam.com")
    msg.set_content(body)
    for name, ctype, data in attachments or ():
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    if inner is not None:
        msg.add_attachment(inner, maintype="message", subtype="rfc822", filename="forwarded.eml")
    return bytes(msg)


async def _mailbox(provider: Provider, upn: str) -> MailboxRef:
    return await provider.get_mailbox(upn)


async def _search(provider: Provider, mailbox: MailboxRef, query: ServerQuery) -> list[MessageMeta]:
    return [m async for m in provider.search(mailbox, query)]


# Users and scope --------------------------------------------------------------------------


async def test_list_all_users(provider: Provider) -> None:
    users = [u async for u in provider.list_users(Scope.all())]
    assert {u.upn for u in users} == ALL_USERS
    by_upn = {u.upn: u for u in users}
    assert not by_upn["carol@contoso.com"].enabled
    assert not by_upn["dave@contoso.com"].has_mailbox
    assert by_upn["alice@contoso.com"].department == "Finance"
    assert by_upn["alice@contoso.com"].display_name == "Alice Archer"


async def test_nested_groups_expand_and_unusable_users_are_skipped(provider: Provider) -> None:
    resolved = await provider.resolve_scope(Scope.groups("All Staff"))
    assert {m.upn for m in resolved.mailboxes} == {
        "alice@contoso.com",
        "bob@contoso.com",
        "erin@contoso.com",
        "frank@contoso.com",
        "grace@contoso.com",
    }
    assert {(s.name, s.reason) for s in resolved.skipped} == {
        ("carol@contoso.com", SkipReason.DISABLED),
        ("dave@contoso.com", SkipReason.NO_MAILBOX),
    }


async def test_groups_by_name_mail_and_unknown(provider: Provider) -> None:
    resolved = await provider.resolve_scope(
        Scope.groups("finance@contoso.com", "Leadership", "No Such Group")
    )
    assert {m.upn for m in resolved.mailboxes} == {"alice@contoso.com", "erin@contoso.com"}
    assert [(s.name, s.reason) for s in resolved.skipped] == [
        ("No Such Group", SkipReason.NOT_FOUND)
    ]


async def test_departments(provider: Provider) -> None:
    resolved = await provider.resolve_scope(Scope.departments("Sales", "IT"))
    assert {m.upn for m in resolved.mailboxes} == {"bob@contoso.com", "phishing@contoso.com"}
    assert {(s.name, s.reason) for s in resolved.skipped} == {
        ("carol@contoso.com", SkipReason.DISABLED),
        ("dave@contoso.com", SkipReason.NO_MAILBOX),
    }


async def test_listed_users_by_address_and_id(provider: Provider) -> None:
    alice = await _mailbox(provider, "alice@contoso.com")
    resolved = await provider.resolve_scope(
        Scope.users(alice.id, "bob@contoso.com", "nobody@contoso.com", "alice@contoso.com")
    )
    assert [m.upn for m in resolved.mailboxes] == ["alice@contoso.com", "bob@contoso.com"]
    assert [(s.name, s.reason) for s in resolved.skipped] == [
        ("nobody@contoso.com", SkipReason.NOT_FOUND)
    ]


async def test_mailboxes_outside_authorized_domains_are_skipped_and_never_touched(
    make_provider: MakeProvider, backend: ContractBackend
) -> None:
    backend.add_user("outsider@contoso.onmicrosoft.com", mail="outsider@contoso.onmicrosoft.com")
    provider = make_provider(authorized_domains=("contoso.com",))
    resolved = await provider.resolve_scope(Scope.all())
    skipped = {s.name: s.reason for s in resolved.skipped}
    assert skipped["outsider@contoso.onmicrosoft.com"] is SkipReason.OUTSIDE_AUTHORIZED_DOMAINS
    assert "outsider@contoso.onmicrosoft.com" not in {m.upn for m in resolved.mailboxes}
    outsider = next(
        s.mailbox for s in resolved.skipped if s.name == "outsider@contoso.onmicrosoft.com"
    )
    assert outsider is not None
    before = provider.stats()["graph_requests"]
    with pytest.raises(MailboxNotAuthorized):
        await _search(provider, outsider, ServerQuery())
    with pytest.raises(MailboxNotAuthorized):
        await provider.changes(outsider, "inbox")
    assert provider.stats()["graph_requests"] == before
    # Without a restriction the same user is in scope.
    everything = await make_provider(authorized_domains=None).resolve_scope(Scope.all())
    assert "outsider@contoso.onmicrosoft.com" in {m.upn for m in everything.mailboxes}


async def test_verifying_mailboxes_skips_users_whose_mailbox_is_gone(
    provider: Provider, backend: ContractBackend
) -> None:
    # The directory still lists an address, but the mailbox was removed (licence dropped).
    backend.add_user("leaver@contoso.com", mail="leaver@contoso.com", has_mailbox=False)
    quick = await provider.resolve_scope(Scope.users("leaver@contoso.com", "bob@contoso.com"))
    assert {m.upn for m in quick.mailboxes} == {"leaver@contoso.com", "bob@contoso.com"}
    verified = await provider.resolve_scope(
        Scope.users("leaver@contoso.com", "bob@contoso.com"), verify_mailboxes=True
    )
    assert [m.upn for m in verified.mailboxes] == ["bob@contoso.com"]
    assert [(s.name, s.reason) for s in verified.skipped] == [
        ("leaver@contoso.com", SkipReason.NO_MAILBOX)
    ]


# Search -----------------------------------------------------------------------------------


async def test_search_pages_and_filters_exactly(
    make_provider: MakeProvider, backend: ContractBackend
) -> None:
    senders = ["ann@fabrikam.com", "ben@fabrikam.com", "cy@northwind.com"]
    planted: dict[str, dict[str, Any]] = {}
    for i in range(23):
        sender = senders[i % 3]
        subject = f"Batch {i:02d} {'pineapple offer' if i % 5 == 0 else 'weekly notes'}"
        body = "Fresh pineapple for everyone." if i % 4 == 0 else "Nothing to see."
        attachments = [("notes.txt", "text/plain", f"n{i}".encode())] if i % 6 == 0 else None
        received = T0 + timedelta(hours=i)
        folder = "junkemail" if i % 7 == 3 else "inbox"
        raw = email(subject, sender=sender, body=body, date=received, attachments=attachments)
        [copy] = backend.deliver(raw, ["frank@contoso.com"], folder, received)
        planted[copy.message_id] = {
            "sender": sender,
            "subject": subject,
            "body": body,
            "received": received,
            "attachments": bool(attachments),
            "folder": folder,
            "imid": copy.internet_message_id,
        }
    provider = make_provider(page_size=4)
    frank = await _mailbox(provider, "frank@contoso.com")

    async def ids(query: ServerQuery) -> list[str]:
        found = [m.ref.message_id for m in await _search(provider, frank, query)]
        assert len(found) == len(set(found)), "a message came back twice"
        return found

    assert set(await ids(ServerQuery())) == set(planted)
    assert set(await ids(ServerQuery(from_addresses=("BEN@fabrikam.com",)))) == {
        k for k, v in planted.items() if v["sender"] == "ben@fabrikam.com"
    }
    start, end = T0 + timedelta(hours=5), T0 + timedelta(hours=9)
    assert set(await ids(ServerQuery(received_from=start, received_until=end))) == {
        k for k, v in planted.items() if start <= v["received"] < end
    }
    assert set(await ids(ServerQuery(subject_contains="PINEAPPLE OFFER"))) == {
        k for k, v in planted.items() if "pineapple offer" in v["subject"]
    }
    assert set(await ids(ServerQuery(has_attachments=True))) == {
        k for k, v in planted.items() if v["attachments"]
    }
    some = next(iter(planted))
    assert await ids(ServerQuery(internet_message_id=planted[some]["imid"])) == [some]
    assert set(await ids(ServerQuery(folders=("junkemail",)))) == {
        k for k, v in planted.items() if v["folder"] == "junkemail"
    }
    # Full text: the server narrows, the exact criteria are applied to what comes back.
    assert set(
        await ids(
            ServerQuery(
                search=(SearchTerm("pineapple", "body"),), from_addresses=("ann@fabrikam.com",)
            )
        )
    ) == {
        k
        for k, v in planted.items()
        if "pineapple" in v["body"].lower() and v["sender"] == "ann@fabrikam.com"
    }
    many = (*(f"nobody{i}@example.com" for i in range(20)), "cy@northwind.com")
    assert set(await ids(ServerQuery(from_addresses=many))) == {
        k for k, v in planted.items() if v["sender"] == "cy@northwind.com"
    }


async def test_search_returns_complete_metadata(
    provider: Provider, backend: ContractBackend
) -> None:
    raw = email(
        "Metadata check",
        sender="Eve Example <eve@fabrikam.com>",
        to="Grace Green <grace@contoso.com>",
        message_id="<meta-check@fabrikam.com>",
    )
    [copy] = backend.deliver(raw, ["grace@contoso.com"], "inbox", T0)
    grace = await _mailbox(provider, "grace@contoso.com")
    [meta] = await _search(
        provider, grace, ServerQuery(internet_message_id="<meta-check@fabrikam.com>")
    )
    assert meta.ref.message_id == copy.message_id
    assert meta.ref.mailbox.upn == "grace@contoso.com"
    assert meta.ref.folder_id
    assert meta.subject == "Metadata check"
    assert meta.from_ == EmailAddress("eve@fabrikam.com", "Eve Example")
    assert meta.to == (EmailAddress("grace@contoso.com", "Grace Green"),)
    assert meta.received == T0
    assert meta.internet_message_id == "<meta-check@fabrikam.com>"
    assert meta.is_read is False
    assert meta.has_attachments is False


# Fetch ------------------------------------------------------------------------------------


async def test_fetch_parts_give_back_the_delivered_bytes(
    provider: Provider, backend: ContractBackend
) -> None:
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 8
    inner = email("Original phish", sender="Bad <bad@evil.example>", body="Click here.")
    raw = email(
        "FW: Original phish",
        sender="Erin Evans <erin@contoso.com>",
        body="Is this real?",
        attachments=[("invoice.pdf", "application/pdf", pdf)],
        inner=inner,
    )
    [copy] = backend.deliver(raw, ["erin@contoso.com"])
    erin = await _mailbox(provider, "erin@contoso.com")
    [meta] = await _search(
        provider, erin, ServerQuery(internet_message_id=copy.internet_message_id)
    )
    fetched = await provider.fetch(meta.ref, MessageParts.ALL)
    assert fetched.mime == raw
    assert fetched.meta.subject == "FW: Original phish"
    assert fetched.header_values("Subject") == ["FW: Original phish"]
    assert fetched.header_values("message-id") == [copy.internet_message_id]
    assert fetched.body is not None
    assert "Is this real?" in fetched.body.content
    assert fetched.attachments is not None
    by_name = {a.name: a for a in fetched.attachments}
    assert by_name["invoice.pdf"].content == pdf
    assert by_name["invoice.pdf"].kind == "file"
    assert by_name["invoice.pdf"].content_type == "application/pdf"
    [item] = [a for a in fetched.attachments if a.kind == "item"]
    assert item.content is not None
    assert b"Subject: Original phish" in item.content
    assert b"Click here." in item.content
    stored = backend.messages("erin@contoso.com")[copy.message_id]
    assert hashlib.sha256(pdf).hexdigest() in stored.attachment_sha256

    only_meta = await provider.fetch(meta.ref, MessageParts.NONE)
    assert only_meta.mime is None
    assert only_meta.body is None
    assert only_meta.attachments is None
    assert only_meta.headers is None
    assert only_meta.meta.subject == "FW: Original phish"
    text = await provider.fetch(meta.ref, MessageParts.BODY, body_format="text")
    assert text.body is not None
    assert text.body.content_type == "text"


async def test_fetch_a_missing_message_is_not_found(
    provider: Provider, backend: ContractBackend
) -> None:
    [copy] = backend.deliver(email("Short-lived"), ["bob@contoso.com"])
    bob = await _mailbox(provider, "bob@contoso.com")
    [meta] = await _search(provider, bob, ServerQuery(internet_message_id=copy.internet_message_id))
    await provider.act(meta.ref, Action.purge())
    with pytest.raises(NotFound):
        await provider.fetch(meta.ref, MessageParts.ALL)


# Actions ----------------------------------------------------------------------------------


async def test_actions_change_the_mailbox_and_can_be_repeated(
    provider: Provider, backend: ContractBackend
) -> None:
    [copy] = backend.deliver(email("Act on me"), ["bob@contoso.com"])
    bob = await _mailbox(provider, "bob@contoso.com")
    [meta] = await _search(provider, bob, ServerQuery(internet_message_id=copy.internet_message_id))
    ref = meta.ref

    def stored() -> StoredMessage:
        return backend.messages("bob@contoso.com")[copy.message_id]

    warned = await provider.act(ref, Action.warn("Suspicious email"))
    assert warned.changed
    assert stored().categories == ("Suspicious email",)
    again = await provider.act(ref, Action.warn("suspicious EMAIL"))
    assert not again.changed
    assert stored().categories == ("Suspicious email",)

    junk = await provider.act(ref, Action.junk())
    assert stored().folder == "junkemail"
    assert junk.after is not None
    assert junk.after.message_id == ref.message_id  # immutable ids survive the move
    assert junk.after.folder_name == "junkemail"

    restored = await provider.act(junk.after, Action.restore("inbox"))
    assert stored().folder == "inbox"
    assert restored.after is not None

    trash = await provider.act(restored.after, Action.trash())
    assert stored().folder == "deleteditems"
    assert trash.after is not None

    deleted = await provider.act(trash.after, Action.delete())
    assert deleted.changed
    assert stored().folder == "recoverableitemsdeletions"
    repeated = await provider.act(trash.after, Action.delete())
    assert not repeated.changed
    assert stored().folder == "recoverableitemsdeletions"

    back = await provider.act(ref, Action.restore("inbox"))
    assert stored().folder == "inbox"
    assert back.after is not None
    unwarned = await provider.act(back.after, Action.unwarn("Suspicious email"))
    assert unwarned.changed
    assert stored().categories == ()
    tagged = await provider.act(back.after, Action.set_categories(["Red", "Blue", "Red"]))
    assert tagged.categories == ("Red", "Blue")
    assert stored().categories == ("Red", "Blue")

    purged = await provider.act(back.after, Action.purge())
    assert purged.after is None
    assert copy.message_id not in backend.messages("bob@contoso.com")
    assert copy.message_id in backend.purged("bob@contoso.com")


async def test_ensure_category(provider: Provider, backend: ContractBackend) -> None:
    grace = await _mailbox(provider, "grace@contoso.com")
    assert await provider.ensure_category(grace, "Phish alert", "red") is CategoryChange.CREATED
    assert backend.master_categories("grace@contoso.com")["Phish alert"] == "red"
    assert await provider.ensure_category(grace, "phish ALERT", "red") is CategoryChange.UNCHANGED
    assert await provider.ensure_category(grace, "Phish alert", "blue") is CategoryChange.UPDATED
    assert backend.master_categories("grace@contoso.com")["Phish alert"] == "blue"
    assert list(backend.master_categories("grace@contoso.com")).count("Phish alert") == 1


async def test_create_message_as_received_mail(
    provider: Provider, backend: ContractBackend
) -> None:
    grace = await _mailbox(provider, "grace@contoso.com")
    received = datetime(2026, 11, 4, 12, 30, tzinfo=UTC)
    ref = await provider.create_message(
        grace,
        "inbox",
        NewMessage(
            subject="Warning: a suspicious email was found",
            body="<p>An email you received was suspicious.</p>",
            from_=EmailAddress("security@contoso.com", "Security team"),
            to=(EmailAddress("grace@contoso.com", "Grace Green"),),
            received=received,
        ),
    )
    notice = backend.messages("grace@contoso.com")[ref.message_id]
    assert notice.folder == "inbox"
    assert not notice.is_draft
    assert not notice.is_read
    assert notice.subject == "Warning: a suspicious email was found"
    assert notice.received == received
    draft = await provider.create_message(
        grace, "drafts", NewMessage(subject="Draft", body="x", body_type="text"), draft=True
    )
    assert backend.messages("grace@contoso.com")[draft.message_id].is_draft


# Changes ----------------------------------------------------------------------------------


async def test_changes_report_created_updated_removed_and_resync(
    provider: Provider, backend: ContractBackend
) -> None:
    first = [backend.deliver(email(f"Delta {i}"), ["grace@contoso.com"])[0] for i in range(3)]
    grace = await _mailbox(provider, "grace@contoso.com")
    initial = await provider.changes(grace, "inbox")
    assert initial.initial
    assert not initial.resync_required
    assert {m.ref.message_id for m in initial.changed} == {c.message_id for c in first}
    assert initial.cursor

    quiet = await provider.changes(grace, "inbox", initial.cursor)
    assert quiet.changed == ()
    assert quiet.removed == ()
    assert quiet.cursor

    [late] = backend.deliver(email("Delta late"), ["grace@contoso.com"])
    by_id = {m.ref.message_id: m for m in initial.changed}
    await provider.act(by_id[first[0].message_id].ref, Action.junk())
    await provider.act(by_id[first[1].message_id].ref, Action.warn("Suspicious email"))
    delta = await provider.changes(grace, "inbox", quiet.cursor)
    assert {m.ref.message_id for m in delta.changed} == {late.message_id, first[1].message_id}
    assert set(delta.removed) == {first[0].message_id}
    warned = next(m for m in delta.changed if m.ref.message_id == first[1].message_id)
    assert warned.categories == ("Suspicious email",)

    backend.expire_changes("grace@contoso.com")
    expired = await provider.changes(grace, "inbox", delta.cursor)
    assert expired.resync_required
    assert expired.cursor is None
    again = await provider.changes(grace, "inbox")
    assert {m.ref.message_id for m in again.changed} == {
        late.message_id,
        first[1].message_id,
        first[2].message_id,
    }


# Faults -----------------------------------------------------------------------------------


async def _listing(provider: Provider) -> dict[str, set[str]]:
    users = [u async for u in provider.list_users(Scope.all())]
    boxes = [u for u in users if u.has_mailbox and u.enabled]

    async def one(box: MailboxRef) -> tuple[str, set[str]]:
        found = [m.ref.message_id async for m in provider.search(box, ServerQuery())]
        assert len(found) == len(set(found))
        return box.upn, set(found)

    return dict(await asyncio.gather(*(one(b) for b in boxes)))


async def test_listing_is_exact_under_injected_faults(
    make_provider: MakeProvider, backend: ContractBackend
) -> None:
    recipients = [
        "alice@contoso.com",
        "bob@contoso.com",
        "erin@contoso.com",
        "frank@contoso.com",
        "grace@contoso.com",
        "phishing@contoso.com",
    ]
    for i in range(12):
        backend.deliver(
            email(f"Fault drill {i}"), recipients[: 2 + i % 5], "inbox", T0 + timedelta(minutes=i)
        )
    expected = await _listing(make_provider(page_size=2))
    assert sum(len(v) for v in expected.values()) >= 40
    backend.set_faults(rate_429=0.04, rate_503=0.03, rate_reset=0.03, retry_after=0.05, seed=11)
    own = backend.own_credentials()
    faulty = make_provider(page_size=2, **own)
    assert await _listing(faulty) == expected
    injected = backend.injected_faults(own)
    assert injected > 0
    assert faulty.stats()["retries"] >= injected
