"""In-memory state of an emulated Microsoft 365 tenant.

Everything the emulator serves lives in these plain objects. The whole server runs on one
asyncio event loop, so handlers mutate state without locks as long as they do not await
between reading and writing.

Mailboxes are materialised lazily: a generated tenant describes each mailbox by a seed, and
its folders and messages are built on first access. A mailbox that was never changed
("pristine") can be dropped from memory and rebuilt identically, which is how a
10,000-mailbox tenant fits in a small memory budget.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

BodyType = Literal["html", "text"]

# Well-known folders every mailbox has: (well-known name, display name, visible under msgfolderroot).
WELL_KNOWN_FOLDERS: tuple[tuple[str, str, bool], ...] = (
    ("inbox", "Inbox", True),
    ("drafts", "Drafts", True),
    ("sentitems", "Sent Items", True),
    ("deleteditems", "Deleted Items", True),
    ("junkemail", "Junk Email", True),
    ("archive", "Archive", True),
    ("outbox", "Outbox", True),
    ("conversationhistory", "Conversation History", True),
    ("scheduled", "Scheduled", False),
    ("searchfolders", "Search Folders", False),
    ("clutter", "Clutter", False),
    ("conflicts", "Conflicts", False),
    ("syncissues", "Sync Issues", False),
    ("localfailures", "Local Failures", False),
    ("serverfailures", "Server Failures", False),
    ("recoverableitemsdeletions", "Deletions", False),
)
# The categories Outlook puts in every new mailbox's master list.
DEFAULT_CATEGORIES = (
    ("Red category", "preset0"),
    ("Orange category", "preset1"),
    ("Yellow category", "preset3"),
    ("Green category", "preset4"),
    ("Blue category", "preset7"),
    ("Purple category", "preset8"),
)
# Folders that live in the dumpster ("Recoverable Items"), outside msgfolderroot: /messages skips them.
DUMPSTER_FOLDERS = frozenset({"recoverableitemsdeletions", "recoverableitemspurges"})
SYNC_FOLDER_NAMES = frozenset({"conflicts", "syncissues", "localfailures", "serverfailures"})


def utcnow() -> datetime:
    return datetime.now(UTC)


def graph_id(*parts: object, prefix: bytes = b"AAMkAG") -> str:
    """A deterministic id shaped like an Exchange REST id (base64url of opaque bytes)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    raw = prefix + digest + digest[:14]
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") + "="


def rest_id_for(immutable_id: str, generation: int) -> str:
    """The REST id of an item after `generation` moves (Exchange re-issues it on each move)."""
    return graph_id(immutable_id, "rest", generation)


def deterministic_uuid(*parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass(slots=True)
class EmailAddress:
    name: str
    address: str

    def to_graph(self) -> dict[str, object]:
        return {"emailAddress": {"name": self.name, "address": self.address}}


@dataclass(slots=True)
class Attachment:
    """A file attachment, or an item attachment (an attached message, kept as its MIME)."""

    id: str
    name: str
    content_type: str
    content: bytes
    kind: Literal["file", "item"] = "file"
    is_inline: bool = False
    content_id: str | None = None
    last_modified: datetime = field(default_factory=utcnow)

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(slots=True)
class Message:
    """One item in a mailbox, holding the properties Graph exposes for a message."""

    immutable_id: str
    rest_id: str
    folder_id: str
    internet_message_id: str
    subject: str
    from_: EmailAddress | None
    sender: EmailAddress | None
    to: list[EmailAddress]
    cc: list[EmailAddress]
    bcc: list[EmailAddress]
    reply_to: list[EmailAddress]
    received: datetime
    sent: datetime | None
    body: str
    body_type: BodyType
    headers: list[tuple[str, str]]
    attachments: list[Attachment]
    categories: list[str] = field(default_factory=list)
    flag_status: str = "notFlagged"
    is_read: bool = False
    importance: str = "normal"
    is_draft: bool = False
    inference_classification: str = "focused"
    conversation_id: str = ""
    created: datetime | None = None
    last_modified: datetime | None = None
    # The exact bytes delivered, when the message came from RFC 822; None means synthesise.
    mime: bytes | None = None
    # Change tracking for delta queries: the mailbox sequence of the last change, and of
    # the moment the message entered its current folder.
    seq: int = 0
    folder_seq: int = 0
    change_count: int = 0
    moves: int = 0

    @property
    def has_attachments(self) -> bool:
        return any(not a.is_inline for a in self.attachments)

    @property
    def change_key(self) -> str:
        return base64.b64encode(
            hashlib.sha1(f"{self.immutable_id}:{self.change_count}".encode()).digest()[:20]  # noqa: S324 - an etag, not security
        ).decode()


@dataclass(slots=True)
class Folder:
    id: str
    display_name: str
    parent_id: str
    well_known_name: str | None = None
    hidden: bool = False


@dataclass(slots=True)
class Tombstone:
    """A message that left a folder (moved, deleted or purged), for delta `@removed` entries."""

    seq: int
    folder_id: str
    rest_id: str
    immutable_id: str
    reason: Literal["deleted", "changed"] = "deleted"


@dataclass(slots=True)
class MasterCategory:
    id: str
    display_name: str
    color: str


@dataclass(slots=True)
class Mailbox:
    """Folders, messages and settings of one user's mailbox."""

    user_id: str
    folders: dict[str, Folder] = field(default_factory=dict)
    well_known: dict[str, str] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)  # keyed by immutable id
    rest_index: dict[str, str] = field(default_factory=dict)  # rest id -> immutable id
    tombstones: list[Tombstone] = field(default_factory=list)
    master_categories: list[MasterCategory] = field(default_factory=list)
    message_rules: list[dict[str, object]] = field(default_factory=list)
    seq: int = 0
    # Bumped when the control plane expires delta tokens; older tokens then answer 410.
    sync_generation: int = 0
    id_counter: int = 0
    pristine: bool = True
    # Items removed by permanentDelete ("Purges" in the dumpster): unreachable through Graph.
    purged: list[Message] = field(default_factory=list)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def new_item_ids(self) -> tuple[str, str]:
        """A fresh (immutable id, REST id) pair, deterministic for a mailbox's build order."""
        self.id_counter += 1
        immutable = graph_id(self.user_id, "item", self.id_counter, prefix=b"AAkALgAA")
        return immutable, rest_id_for(immutable, 0)

    def folder(self, id_or_name: str) -> Folder | None:
        """A folder by id or by well-known name (case-insensitive)."""
        found = self.folders.get(id_or_name)
        if found is not None:
            return found
        fid = self.well_known.get(id_or_name.lower())
        return self.folders.get(fid) if fid else None

    def message(self, any_id: str) -> Message | None:
        """A message by its REST id or its immutable id."""
        msg = self.messages.get(any_id)
        if msg is not None:
            return msg
        imm = self.rest_index.get(any_id)
        return self.messages.get(imm) if imm else None

    def add_message(self, msg: Message) -> None:
        seq = self.next_seq()
        msg.seq = seq
        msg.folder_seq = seq
        self.messages[msg.immutable_id] = msg
        self.rest_index[msg.rest_id] = msg.immutable_id
        self.pristine = False

    def touch(self, msg: Message) -> None:
        """Record an in-place change (categories, flags, read state)."""
        msg.seq = self.next_seq()
        msg.change_count += 1
        msg.last_modified = utcnow()
        self.pristine = False

    def move(self, msg: Message, folder_id: str) -> None:
        """Move a message to another folder. Exchange gives the moved item a new REST id."""
        seq = self.next_seq()
        self.tombstones.append(Tombstone(seq, msg.folder_id, msg.rest_id, msg.immutable_id))
        del self.rest_index[msg.rest_id]
        msg.moves += 1
        new_rest_id = rest_id_for(msg.immutable_id, msg.moves)
        msg.rest_id = new_rest_id
        self.rest_index[new_rest_id] = msg.immutable_id
        msg.folder_id = folder_id
        msg.seq = self.next_seq()
        msg.folder_seq = msg.seq
        msg.change_count += 1
        msg.last_modified = utcnow()
        self.pristine = False

    def remove(self, msg: Message) -> None:
        """Remove a message for good (purge)."""
        seq = self.next_seq()
        self.tombstones.append(Tombstone(seq, msg.folder_id, msg.rest_id, msg.immutable_id))
        del self.messages[msg.immutable_id]
        self.rest_index.pop(msg.rest_id, None)
        self.purged.append(msg)
        self.pristine = False

    def in_folder(self, folder_id: str) -> Iterator[Message]:
        return (m for m in self.messages.values() if m.folder_id == folder_id)

    def is_dumpster(self, folder_id: str) -> bool:
        f = self.folders.get(folder_id)
        return f is not None and (f.well_known_name in DUMPSTER_FOLDERS)

    def visible_messages(self) -> Iterator[Message]:
        """Messages `/users/{id}/messages` returns: everything outside the dumpster."""
        hidden = {fid for fid, f in self.folders.items() if f.well_known_name in DUMPSTER_FOLDERS}
        return (m for m in self.messages.values() if m.folder_id not in hidden)


def new_mailbox(user_id: str) -> Mailbox:
    """An empty mailbox with the well-known folder tree Exchange creates."""
    box = Mailbox(user_id=user_id)
    root_id = graph_id(user_id, "folder", "msgfolderroot", prefix=b"AAMkAGFR")
    box.folders[root_id] = Folder(root_id, "Top of Information Store", "", "msgfolderroot", True)
    box.well_known["msgfolderroot"] = root_id
    dumpster_id = graph_id(user_id, "folder", "recoverableitemsroot", prefix=b"AAMkAGFR")
    box.folders[dumpster_id] = Folder(
        dumpster_id, "Recoverable Items", "", "recoverableitemsroot", True
    )
    box.well_known["recoverableitemsroot"] = dumpster_id
    for name, display, visible in WELL_KNOWN_FOLDERS:
        fid = graph_id(user_id, "folder", name, prefix=b"AAMkAGFR")
        parent = dumpster_id if name in DUMPSTER_FOLDERS else root_id
        box.folders[fid] = Folder(fid, display, parent, name, hidden=not visible)
        box.well_known[name] = fid
    for name, color in DEFAULT_CATEGORIES:
        box.master_categories.append(
            MasterCategory(deterministic_uuid(user_id, "category", name), name, color)
        )
    purges = graph_id(user_id, "folder", "recoverableitemspurges", prefix=b"AAMkAGFR")
    box.folders[purges] = Folder(purges, "Purges", dumpster_id, "recoverableitemspurges", True)
    box.well_known["recoverableitemspurges"] = purges
    return box


@dataclass(slots=True)
class Secret:
    id: str
    value: str
    hint: str
    expires: datetime
    display_name: str = ""


@dataclass(slots=True)
class Certificate:
    id: str
    pem: str  # public certificate, PEM
    thumbprint_sha1: str  # base64url, no padding
    thumbprint_sha256: str  # base64url, no padding
    expires: datetime


@dataclass(slots=True)
class App:
    """An app registration and its service principal in the tenant."""

    client_id: str
    display_name: str
    secrets: list[Secret] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    # Application permission name -> whether an administrator granted consent.
    permissions: dict[str, bool] = field(default_factory=dict)
    object_id: str = ""

    def granted_roles(self) -> list[str]:
        return sorted(p for p, consented in self.permissions.items() if consented)


@dataclass(slots=True)
class User:
    id: str
    user_principal_name: str
    display_name: str
    mail: str | None
    given_name: str | None = None
    surname: str | None = None
    department: str | None = None
    job_title: str | None = None
    office_location: str | None = None
    account_enabled: bool = True
    has_mailbox: bool = True
    # Seed and index for lazily generated content; None for fixture-defined mailboxes.
    mailbox_seed: int | None = None
    created: datetime = field(default_factory=utcnow)


@dataclass(slots=True)
class Group:
    id: str
    display_name: str
    mail: str | None = None
    description: str | None = None
    security_enabled: bool = True
    mail_enabled: bool = False
    group_types: list[str] = field(default_factory=list)
    member_ids: list[str] = field(default_factory=list)  # users and groups


@dataclass(slots=True)
class AccessPolicy:
    """An Exchange application access policy: limits an app to (or away from) a group's mailboxes."""

    app_id: str
    group_id: str
    mode: Literal["RestrictAccess", "DenyAccess"] = "RestrictAccess"


MailboxBuilder = Callable[["User"], Mailbox]


@dataclass
class Tenant:
    id: str
    display_name: str
    domains: list[str]  # verified domains; the first is the default
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    access_policies: list[AccessPolicy] = field(default_factory=list)
    # Mailboxes changed since load, or defined by fixtures: always kept.
    mailboxes: dict[str, Mailbox] = field(default_factory=dict)
    _upn_index: dict[str, str] = field(default_factory=dict)

    def add_user(self, user: User) -> None:
        self.users[user.id] = user
        self._upn_index[user.user_principal_name.lower()] = user.id
        if user.mail:
            self._upn_index.setdefault(user.mail.lower(), user.id)

    def user(self, id_or_upn: str) -> User | None:
        found = self.users.get(id_or_upn)
        if found is not None:
            return found
        uid = self._upn_index.get(id_or_upn.lower())
        return self.users.get(uid) if uid else None

    def matches_domain(self, name: str) -> bool:
        return name.lower() in (d.lower() for d in self.domains)

    def sorted_users(self) -> list[User]:
        return list(self.users.values())
