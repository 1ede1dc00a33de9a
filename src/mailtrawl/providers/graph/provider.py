"""The Microsoft 365 provider: the `Provider` interface over Microsoft Graph."""

from __future__ import annotations

import asyncio
import base64
import random
import re
import uuid
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx

from mailtrawl.core import (
    Action,
    ActionKind,
    ActionResult,
    AttachmentContent,
    Body,
    ChangeBatch,
    ChangeRequest,
    EmailAddress,
    FetchedMessage,
    Header,
    ListingParts,
    MailboxFailed,
    MailboxRef,
    MailboxScanned,
    MessageLocation,
    MessageMeta,
    MessageParts,
    MessageRef,
    MessageSnapshot,
    NewMessage,
    ScanItem,
    Scope,
    ScopeKind,
    ScopeResolution,
    ServerQuery,
    SkippedMailbox,
    SkipReason,
    domain_authorized,
)
from mailtrawl.errors import MailboxUnavailable, NotFound, ProviderError
from mailtrawl.providers.base import (
    MAX_SEARCH_PREFIX,
    Capabilities,
    CategoryChange,
    CheckReport,
    DirectoryGroup,
)
from mailtrawl.providers.errors import (
    AccessPolicyBlocked,
    CursorExpired,
    MailboxNotAuthorized,
    OutcomeUnknown,
    RequestRejected,
)
from mailtrawl.providers.graph.auth import CLOUDS, CloudEndpoints, Credential, TokenSource
from mailtrawl.providers.graph.client import (
    BATCH_LIMIT,
    IMMUTABLE_IDS,
    JSON,
    WELL_KNOWN_FOLDERS,
    BatchRequest,
    BatchResponse,
    GraphClient,
    graph_error_parts,
    segment,
)
from mailtrawl.providers.graph.query import (
    DEFAULT_PAGE_SIZE,
    META_FIELDS,
    SEARCH_RESULT_CAP,
    GraphListing,
    build_filter,
    odata_datetime,
    odata_string,
    select_clause,
    translate,
)
from mailtrawl.providers.graph.subscriptions import (
    GraphSubscription,
    create_subscription,
    delete_subscription,
    list_subscriptions,
    reauthorize_subscription,
    renew_subscription,
)
from mailtrawl.providers.retry import RetryPolicy

# The four application permissions mailtrawl asks for, and what each endpoint needs of them.
USERS_ROLE = "User.Read.All"
DIRECTORY_ROLE = "Directory.Read.All"
MAIL_ROLE = "Mail.ReadWrite"
SETTINGS_ROLE = "MailboxSettings.ReadWrite"
REQUIRED_ROLES = (DIRECTORY_ROLE, USERS_ROLE, MAIL_ROLE, SETTINGS_ROLE)

USER_SELECT = "id,userPrincipalName,mail,displayName,department,accountEnabled"
# Outlook's category colours: neutral names → presets (presetN or "none" pass through).
CATEGORY_COLORS = {
    "red": "preset0",
    "orange": "preset1",
    "brown": "preset2",
    "yellow": "preset3",
    "green": "preset4",
    "teal": "preset5",
    "olive": "preset6",
    "blue": "preset7",
    "purple": "preset8",
    "cranberry": "preset9",
    "steel": "preset10",
    "darksteel": "preset11",
    "gray": "preset12",
    "darkgray": "preset13",
    "black": "preset14",
    "darkred": "preset15",
    "none": "none",
}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_PURGE_CLOUDS = frozenset({"global", "custom"})
DEFAULT_WARNING_CATEGORY = "Suspicious email"
# Tries to create a message when connections break after sending (each checked first).
CREATE_ATTEMPTS = 4
# Scanning many mailboxes: `$batch` envelopes in flight at once, and mailboxes being listed
# at once (the others wait their turn, so memory does not grow with the mailbox count).
SCAN_BATCHES_IN_FLIGHT = 4
SCAN_ACTIVE_MAILBOXES = 40
ATTACHMENT_LIST_EXPAND = "attachments($select=id,name,contentType,size,isInline)"
# The well-known folders `folder_names` resolves (folder id → name).
NAMED_FOLDERS = (
    "inbox",
    "junkemail",
    "deleteditems",
    "sentitems",
    "drafts",
    "archive",
    "outbox",
    "recoverableitemsdeletions",
)
# Acting on, snapshotting and finding many messages again (`act_many`, `snapshot_many`,
# `locate_many`): what is read of each message, and how many Internet message ids one
# `$filter` ORs together (each sub-request then answers for up to that many messages).
CATEGORY_SELECT = "id,categories,parentFolderId"
SNAPSHOT_SELECT = (
    "id,parentFolderId,categories,isRead,flag,importance,receivedDateTime,internetMessageId"
)
LOCATE_SELECT = "id,parentFolderId,categories,internetMessageId"
LOCATE_GROUP = 10
LOCATE_PAGE_SIZE = 100
_CATEGORY_KINDS = frozenset({ActionKind.WARN, ActionKind.UNWARN, ActionKind.SET_CATEGORIES})
_K = TypeVar("_K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class GraphSettings:
    """Everything a Microsoft 365 provider needs; built by the configuration layer."""

    tenant: str
    client_id: str
    credential: Credential
    cloud: CloudEndpoints = field(default_factory=lambda: CLOUDS["global"])
    test_mailbox: str | None = None
    # None: no restriction (tests, tools); the configuration always sets its domains.
    authorized_domains: tuple[str, ...] | None = None
    warning_category: str = DEFAULT_WARNING_CATEGORY
    warning_color: str = "red"
    # Requests in flight (and pooled connections) per provider. With $batch, 16 keep Graph
    # busy; a bigger pool costs CPU in httpcore, which checks every pooled connection for
    # each request (measured in bench/: 32 connections were 30 % slower).
    max_concurrency: int = 16
    mailbox_concurrency: int = 4
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 60.0
    page_size: int = DEFAULT_PAGE_SIZE
    # How many mailboxes the connection test probes to detect an access policy.
    reach_sample: int = 20


def category_color(color: str) -> str:
    """A Graph category colour from a neutral name ("red") or a preset ("preset0")."""
    value = color.strip().lower()
    if value in CATEGORY_COLORS:
        return CATEGORY_COLORS[value]
    if re.fullmatch(r"preset([0-9]|1[0-9]|2[0-4])", value):
        return value
    raise ValueError(f"unknown category colour '{color}'")


# JSON → core values --------------------------------------------------------------------


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _address(value: Any) -> EmailAddress | None:
    if not isinstance(value, dict):
        return None
    inner = value.get("emailAddress")
    if not isinstance(inner, dict):
        return None
    return EmailAddress(str(inner.get("address") or ""), str(inner.get("name") or ""))


def _addresses(value: Any) -> tuple[EmailAddress, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(a for a in (_address(v) for v in value) if a is not None)


def mailbox_ref(item: JSON) -> MailboxRef:
    """A directory user as a `MailboxRef` (no `mail` means no mailbox)."""
    mail = item.get("mail") or None
    return MailboxRef(
        id=str(item["id"]),
        upn=str(item.get("userPrincipalName") or mail or item["id"]),
        display_name=str(item.get("displayName") or ""),
        mail=str(mail) if mail else None,
        department=item.get("department"),
        enabled=item.get("accountEnabled") is not False,
        has_mailbox=bool(mail),
    )


def message_ref(mailbox: MailboxRef, item: JSON, folder_name: str | None = None) -> MessageRef:
    message_id = str(item["id"])
    return MessageRef(
        mailbox=mailbox,
        message_id=message_id,
        immutable_id=message_id,  # every request asks for immutable ids
        folder_id=item.get("parentFolderId"),
        folder_name=folder_name,
        internet_message_id=item.get("internetMessageId"),
    )


def message_meta(mailbox: MailboxRef, item: JSON, folder_name: str | None = None) -> MessageMeta:
    categories = item.get("categories")
    return MessageMeta(
        ref=message_ref(mailbox, item, folder_name),
        subject=item.get("subject"),
        from_=_address(item.get("from")),
        sender=_address(item.get("sender")),
        to=_addresses(item.get("toRecipients")),
        cc=_addresses(item.get("ccRecipients")),
        bcc=_addresses(item.get("bccRecipients")),
        reply_to=_addresses(item.get("replyTo")),
        received=_datetime(item.get("receivedDateTime")),
        sent=_datetime(item.get("sentDateTime")),
        has_attachments=item.get("hasAttachments"),
        internet_message_id=item.get("internetMessageId"),
        categories=tuple(str(c) for c in categories) if isinstance(categories, list) else (),
        is_read=item.get("isRead"),
        is_draft=item.get("isDraft"),
    )


def _version_relative(url: str) -> tuple[str, dict[str, str]]:
    """A nextLink or deltaLink as a path below the version root and its query parameters.

    `$batch` takes relative URLs; the token's own encoding is kept by decoding it here and
    encoding it again with the request.
    """
    parsed = urlsplit(url)
    path = parsed.path
    for root in ("/v1.0/", "/beta/"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return path.lstrip("/"), dict(parse_qsl(parsed.query, keep_blank_values=True))


def _known_folder(name: str | None) -> str | None:
    return name.lower() if name and name.lower() in WELL_KNOWN_FOLDERS else None


def _headers_of(item: JSON) -> tuple[Header, ...]:
    return tuple(
        Header(str(h.get("name", "")), str(h.get("value", "")))
        for h in item.get("internetMessageHeaders") or ()
        if isinstance(h, dict)
    )


def _body_of(item: JSON) -> Body | None:
    raw = item.get("body")
    if not isinstance(raw, dict):
        return None
    return Body(
        "text" if str(raw.get("contentType", "")).lower() == "text" else "html",
        str(raw.get("content") or ""),
    )


def _attachment_kind(item: JSON) -> Literal["file", "item", "reference"]:
    name = str(item.get("@odata.type", "")).lower()
    if name.endswith("fileattachment"):
        return "file"
    return "item" if name.endswith("itemattachment") else "reference"


def _attachment(item: JSON, content: bytes | None) -> AttachmentContent:
    kind = _attachment_kind(item)
    return AttachmentContent(
        id=str(item.get("id")),
        name=str(item.get("name") or ""),
        content_type=item.get("contentType") or ("message/rfc822" if kind == "item" else None),
        size=int(item.get("size") or (len(content) if content is not None else 0)),
        content=content,
        is_inline=bool(item.get("isInline")),
        kind=kind,
        content_id=item.get("contentId"),
    )


def _recipient(address: EmailAddress) -> JSON:
    return {"emailAddress": {"address": address.address, "name": address.name or address.address}}


@dataclass(frozen=True, slots=True)
class _ListingShape:
    """What `ListingParts` adds to every listing request of a scan."""

    extra_select: str
    expand: str | None
    prefer: str

    @classmethod
    def of(cls, parts: ListingParts) -> _ListingShape:
        if parts.body_format not in (None, "text", "html"):
            raise ValueError("body_format must be 'text', 'html' or None")
        extra = [
            *(["internetMessageHeaders"] if parts.headers else []),
            *(["body"] if parts.body else []),
        ]
        prefer = IMMUTABLE_IDS
        if parts.body and parts.body_format:
            prefer += f', outlook.body-content-type="{parts.body_format}"'
        return cls(
            "".join(f",{e}" for e in extra),
            ATTACHMENT_LIST_EXPAND if parts.attachment_list else None,
            prefer,
        )

    def apply(self, listing: GraphListing) -> GraphListing:
        params = {**listing.params, "$select": listing.params["$select"] + self.extra_select}
        if self.expand:
            params["$expand"] = self.expand
        return replace(listing, params=params, headers={**listing.headers, "Prefer": self.prefer})


@dataclass(eq=False)
class _ScanMailbox:
    mailbox: MailboxRef
    query: ServerQuery
    residual: ServerQuery
    open_listings: int  # listings not finished yet
    in_flight: int = 0  # page requests sent and not answered
    listed: int = 0
    fallback: bool = False
    failed: bool = False

    @property
    def check_residual(self) -> bool:
        return self.residual.has_criteria


@dataclass(eq=False)
class _ScanListing:
    box: _ScanMailbox
    listing: GraphListing
    cap: int | None  # a `$search` listing that returns this many is done again by date
    next_link: str | None = None  # relative to the version root
    received: int = 0
    yielded: set[str] | None = None  # ids yielded, kept while a cap fallback may follow
    skip: frozenset[str] = frozenset()


def _take_ready(ready: deque[_ScanListing], limit: int) -> list[_ScanListing]:
    """Up to one batch of page requests, at most `limit` in flight per mailbox."""
    chosen: list[_ScanListing] = []
    held: list[_ScanListing] = []
    while ready and len(chosen) < BATCH_LIMIT:
        listing = ready.popleft()
        if listing.box.failed:
            continue
        if listing.box.in_flight >= limit:
            held.append(listing)
            continue
        listing.box.in_flight += 1
        chosen.append(listing)
    ready.extendleft(reversed(held))
    return chosen


class GraphProvider:
    """Microsoft 365 mailboxes through Microsoft Graph (app-only, client credentials)."""

    name = "m365"

    def __init__(
        self,
        settings: GraphSettings,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = TokenSource(
            tenant=settings.tenant,
            client_id=settings.client_id,
            credential=settings.credential,
            cloud=settings.cloud,
            timeout=min(settings.timeout, 30.0),
        )
        self.client = GraphClient(
            base_url=settings.cloud.graph_base,
            tokens=self.tokens,
            verify=settings.cloud.ssl_context(),
            policy=settings.retry,
            max_concurrency=settings.max_concurrency,
            mailbox_concurrency=settings.mailbox_concurrency,
            timeout=settings.timeout,
            sleep=sleep,
            rng=rng,
            transport=transport,
        )
        self.capabilities = Capabilities(
            server_side_search=True,
            server_side_filter=True,
            search_result_cap=SEARCH_RESULT_CAP,
            delta=True,
            batch=True,
            immutable_ids=True,
            purge=settings.cloud.name in _PURGE_CLOUDS,
            soft_delete=True,
            categories=True,
            create_message=True,
            mime=True,
            max_concurrency_per_mailbox=settings.mailbox_concurrency,
            max_page_size=1000,
            notifications=True,
        )

    def __repr__(self) -> str:
        return f"GraphProvider(tenant={self.settings.tenant!r}, cloud={self.settings.cloud.name!r})"

    async def __aenter__(self) -> GraphProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.client.aclose()
        await asyncio.to_thread(self.tokens.close)

    def stats(self) -> dict[str, Any]:
        return {**self.client.stats.as_dict(), "token_requests": self.tokens.requests_made}

    # The connection test -------------------------------------------------------------

    async def check(
        self, *, new_configuration: bool = False, test_mailbox: str | None = None
    ) -> CheckReport:
        from mailtrawl.providers.graph.checks import run_checks

        return await run_checks(
            self,
            new_configuration=new_configuration,
            test_mailbox=test_mailbox or self.settings.test_mailbox,
        )

    # Users and scope -------------------------------------------------------------------

    async def get_mailbox(self, name: str) -> MailboxRef:
        try:
            item = await self.client.get(
                f"users/{segment(name)}",
                params={"$select": USER_SELECT},
                role=USERS_ROLE,
                what=f"The user {name}",
            )
        except NotFound:
            raise MailboxUnavailable(
                f"There is no user {name} in the tenant; check the address.", mailbox=name
            ) from None
        return mailbox_ref(item)

    # Directory search: one `startswith` request each (Graph compares case-insensitively and
    # needs no advanced query for it); sorted here, since `$orderby` with `$filter` would.

    async def _directory_page(
        self, path: str, clause: str, select: str, limit: int, role: str
    ) -> list[JSON]:
        page = await self.client.get(
            path,
            params={"$filter": clause, "$select": select, "$top": str(max(1, min(999, limit)))},
            role=role,
            what="The directory search",
        )
        return [item for item in page.get("value") or () if isinstance(item, dict)]

    async def search_users(self, prefix: str, limit: int = 20) -> list[MailboxRef]:
        wanted = _search_prefix(prefix)
        if not wanted or limit < 1:
            return []
        literal = odata_string(wanted)
        clause = " or ".join(
            f"startswith({prop},{literal})" for prop in ("displayName", "userPrincipalName", "mail")
        )
        # Some answers may be outside the authorized domains: ask for a few more.
        items = await self._directory_page("users", clause, USER_SELECT, limit * 2, USERS_ROLE)
        users = [
            user
            for user in map(mailbox_ref, items)
            if domain_authorized(user.address, self.settings.authorized_domains)
        ]
        users.sort(key=lambda u: ((u.display_name or u.upn).casefold(), u.upn.casefold()))
        return users[:limit]

    async def search_groups(self, prefix: str, limit: int = 20) -> list[DirectoryGroup]:
        wanted = _search_prefix(prefix)
        if not wanted or limit < 1:
            return []
        clause = f"startswith(displayName,{odata_string(wanted)})"
        items = await self._directory_page(
            "groups", clause, "id,displayName,mail", limit, DIRECTORY_ROLE
        )
        groups = [
            DirectoryGroup(
                id=str(item["id"]),
                display_name=str(item.get("displayName") or ""),
                mail=item.get("mail") or None,
            )
            for item in items
            if item.get("id")
        ]
        groups.sort(key=lambda g: (g.display_name.casefold(), g.id))
        return groups[:limit]

    async def search_departments(self, prefix: str, limit: int = 20) -> list[str]:
        wanted = _search_prefix(prefix)
        if not wanted or limit < 1:
            return []
        clause = f"startswith(department,{odata_string(wanted)})"
        items = await self._directory_page("users", clause, "id,department", 999, USERS_ROLE)
        found: dict[str, str] = {}
        for item in items:
            name = item.get("department")
            if isinstance(name, str) and name.strip():
                found.setdefault(name.strip().casefold(), name.strip())
        return sorted(found.values(), key=str.casefold)[:limit]

    async def list_users(self, scope: Scope) -> AsyncIterator[MailboxRef]:
        async for found in self._scope_members(scope):
            if isinstance(found, MailboxRef):
                yield found

    async def _scope_members(self, scope: Scope) -> AsyncIterator[MailboxRef | SkippedMailbox]:
        seen: set[str] = set()

        async def users(path: str, params: dict[str, str], role: str) -> AsyncIterator[MailboxRef]:
            async for item in self.client.paginate(path, params, role=role):
                kind = item.get("@odata.type")
                if kind is not None and kind != "#microsoft.graph.user":
                    continue  # nested groups (already expanded), devices, contacts
                if item.get("id") and item["id"] not in seen:
                    seen.add(item["id"])
                    yield mailbox_ref(item)

        listing = {"$select": USER_SELECT, "$top": "999"}
        if scope.kind is ScopeKind.ALL:
            async for user in users("users", listing, USERS_ROLE):
                yield user
        elif scope.kind is ScopeKind.DEPARTMENTS:
            for department in dict.fromkeys(scope.values):
                params = {**listing, "$filter": f"department eq {odata_string(department)}"}
                async for user in users("users", params, USERS_ROLE):
                    yield user
        elif scope.kind is ScopeKind.GROUPS:
            for name in dict.fromkeys(scope.values):
                group_ids = await self._group_ids(name)
                if not group_ids:
                    yield SkippedMailbox(name, SkipReason.NOT_FOUND)
                for group_id in group_ids:
                    path = f"groups/{segment(group_id)}/transitiveMembers"
                    async for user in users(path, listing, DIRECTORY_ROLE):
                        yield user
        else:
            names = list(dict.fromkeys(scope.values))
            answers = await self.client.batch(
                [
                    BatchRequest(
                        "GET", f"users/{segment(n)}", {"$select": USER_SELECT}, role=USERS_ROLE
                    )
                    for n in names
                ]
            )
            for name, answer in zip(names, answers, strict=True):
                if isinstance(answer.error, NotFound):
                    yield SkippedMailbox(name, SkipReason.NOT_FOUND)
                elif answer.error is not None:
                    raise answer.error
                elif answer.json().get("id") not in seen:
                    seen.add(answer.json()["id"])
                    yield mailbox_ref(answer.json())

    async def _group_ids(self, name: str) -> list[str]:
        """Group ids for an id, a display name or a mail address."""
        if _GUID.match(name):
            try:
                item = await self.client.get(
                    f"groups/{segment(name)}", params={"$select": "id"}, role=DIRECTORY_ROLE
                )
            except NotFound:
                return []
            return [str(item["id"])]
        prop = "mail" if "@" in name else "displayName"
        params = {"$filter": f"{prop} eq {odata_string(name)}", "$select": "id"}
        return [
            str(item["id"])
            async for item in self.client.paginate("groups", params, role=DIRECTORY_ROLE)
        ]

    async def resolve_scope(
        self, scope: Scope, *, verify_mailboxes: bool = False
    ) -> ScopeResolution:
        mailboxes: list[MailboxRef] = []
        skipped: list[SkippedMailbox] = []
        authorized = self.settings.authorized_domains
        async for found in self._scope_members(scope):
            if isinstance(found, SkippedMailbox):
                skipped.append(found)
            elif not domain_authorized(found.address, authorized):
                skipped.append(
                    SkippedMailbox(found.upn, SkipReason.OUTSIDE_AUTHORIZED_DOMAINS, found)
                )
            elif not found.enabled:
                skipped.append(SkippedMailbox(found.upn, SkipReason.DISABLED, found))
            elif not found.has_mailbox:
                skipped.append(SkippedMailbox(found.upn, SkipReason.NO_MAILBOX, found))
            else:
                mailboxes.append(found)
        if verify_mailboxes and mailboxes:
            reachable = await self.probe_mailboxes(mailboxes)
            kept = []
            for mailbox, problem in zip(mailboxes, reachable, strict=True):
                if problem is None:
                    kept.append(mailbox)
                elif isinstance(problem, AccessPolicyBlocked):
                    skipped.append(SkippedMailbox(mailbox.upn, SkipReason.ACCESS_POLICY, mailbox))
                elif isinstance(problem, MailboxUnavailable):
                    skipped.append(SkippedMailbox(mailbox.upn, SkipReason.NO_MAILBOX, mailbox))
                else:
                    raise problem
            mailboxes = kept
        return ScopeResolution(tuple(mailboxes), tuple(skipped))

    async def list_users_sample(self, count: int) -> AsyncIterator[MailboxRef]:
        """Up to `count` enabled users with a mailbox in the authorized domains (one page)."""
        page = await self.client.get(
            "users",
            params={"$select": USER_SELECT, "$top": str(min(999, count * 3))},
            role=USERS_ROLE,
        )
        found = 0
        for item in page.get("value") or ():
            user = mailbox_ref(item)
            if found >= count:
                return
            if (
                user.enabled
                and user.has_mailbox
                and domain_authorized(user.address, self.settings.authorized_domains)
            ):
                found += 1
                yield user

    async def probe_mailboxes(self, mailboxes: Iterable[MailboxRef]) -> list[ProviderError | None]:
        """For each mailbox, None if the app can read it, else the error it gets (batched)."""
        targets = list(mailboxes)
        answers = await self.client.batch(
            [
                BatchRequest(
                    "GET",
                    f"users/{segment(m.id)}/mailFolders/inbox",
                    {"$select": "id"},
                    mailbox=m.id,
                    role=MAIL_ROLE,
                )
                for m in targets
            ]
        )
        return [a.error for a in answers]

    def _authorize(self, mailbox: MailboxRef) -> str:
        """The mailbox's URL segment, after checking it is inside the authorized domains."""
        if not domain_authorized(mailbox.address, self.settings.authorized_domains):
            raise MailboxNotAuthorized(mailbox=mailbox.address)
        return segment(mailbox.id)

    # Reading ---------------------------------------------------------------------------

    async def search(
        self,
        mailbox: MailboxRef,
        query: ServerQuery,
        select: Iterable[str] | None = None,
    ) -> AsyncIterator[MessageMeta]:
        self._authorize(mailbox)
        translated = translate(mailbox.id, query, select=select, page_size=self.settings.page_size)
        check_residual = translated.residual.has_criteria
        for listing in translated.listings:
            folder_name = _known_folder(listing.folder)
            async for item in self.client.paginate(
                listing.path,
                listing.params,
                headers=listing.headers,
                mailbox=mailbox.id,
                role=MAIL_ROLE,
                what=f"The folder {listing.folder}" if listing.folder else None,
            ):
                meta = message_meta(mailbox, item, folder_name)
                if check_residual and not translated.residual.matches(meta):
                    continue
                yield meta

    async def scan(
        self,
        mailboxes: Sequence[MailboxRef],
        query: ServerQuery,
        parts: ListingParts = ListingParts(),  # noqa: B008 - frozen, immutable
        *,
        select: Iterable[str] | None = None,
    ) -> AsyncIterator[ScanItem]:
        """List many mailboxes at once: every page request goes through `$batch`.

        Each (mailbox, folder) listing has at most one page request outstanding; pages of
        different mailboxes share envelopes (20 sub-requests each, at most
        `mailbox_concurrency` of one mailbox in flight), and messages are yielded page by page.
        """
        fields = None if select is None else tuple(select)
        shape = _ListingShape.of(parts)
        limit = self.settings.mailbox_concurrency
        waiting = deque(mailboxes)
        ready: deque[_ScanListing] = deque()  # listings whose next page can be asked for
        batches: dict[asyncio.Future[list[BatchResponse]], list[_ScanListing]] = {}
        done: set[asyncio.Future[list[BatchResponse]]] = set()
        active = 0
        try:
            while True:
                out: list[ScanItem] = []
                for task in done:
                    chosen = batches.pop(task)
                    try:
                        answers: list[BatchResponse | ProviderError] = list(task.result())
                    except ProviderError as exc:  # the envelope itself failed
                        answers = [exc] * len(chosen)
                    for listing, answer in zip(chosen, answers, strict=True):
                        box = listing.box
                        box.in_flight -= 1
                        if box.failed:
                            if box.in_flight == 0:
                                active -= 1  # its last answer: the mailbox leaves the scan
                            continue
                        error = answer if isinstance(answer, ProviderError) else answer.error
                        if error is None:
                            assert isinstance(answer, BatchResponse)
                            try:
                                out.extend(self._scan_page(listing, answer.json(), parts, ready))
                            except ProviderError as exc:
                                error = exc
                        if error is not None:
                            box.failed = True
                            out.append(MailboxFailed(box.mailbox, error))
                            if box.in_flight == 0:
                                active -= 1
                        elif box.open_listings == 0:
                            out.append(MailboxScanned(box.mailbox, box.listed, box.fallback))
                            active -= 1
                while waiting and active < SCAN_ACTIVE_MAILBOXES:
                    mailbox = waiting.popleft()
                    try:
                        ready.extend(self._scan_listings(mailbox, query, shape, fields))
                    except ProviderError as exc:  # outside the authorized domains
                        out.append(MailboxFailed(mailbox, exc))
                        continue
                    active += 1
                while len(batches) < SCAN_BATCHES_IN_FLIGHT:
                    chosen = _take_ready(ready, limit)
                    if not chosen:
                        break
                    requests = [self._scan_request(listing) for listing in chosen]
                    batches[asyncio.ensure_future(self.client.batch(requests))] = chosen
                for item in out:
                    yield item
                if not batches:
                    return
                done, _ = await asyncio.wait(batches, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in batches:
                task.cancel()
            await asyncio.gather(*batches, return_exceptions=True)

    def _scan_listings(
        self,
        mailbox: MailboxRef,
        query: ServerQuery,
        shape: _ListingShape,
        fields: tuple[str, ...] | None,
    ) -> list[_ScanListing]:
        self._authorize(mailbox)
        translated = translate(mailbox.id, query, select=fields, page_size=self.settings.page_size)
        box = _ScanMailbox(mailbox, query, translated.residual, len(translated.listings))
        cap = translated.result_cap
        return [
            _ScanListing(box, shape.apply(listing), cap, yielded=set() if cap else None)
            for listing in translated.listings
        ]

    def _scan_request(self, listing: _ScanListing) -> BatchRequest:
        graph = listing.listing
        what = f"The folder {graph.folder}" if graph.folder else None
        common: dict[str, Any] = {
            "headers": graph.headers,
            "mailbox": listing.box.mailbox.id,
            "role": MAIL_ROLE,
            "what": what,
        }
        if listing.next_link is None:
            return BatchRequest("GET", graph.path, graph.params, **common)
        return BatchRequest("GET", listing.next_link, **common)

    def _scan_page(
        self, listing: _ScanListing, page: JSON, parts: ListingParts, ready: deque[_ScanListing]
    ) -> list[FetchedMessage]:
        """The page's messages that pass the residual; queues what comes next for the listing."""
        box = listing.box
        next_link = page.get("@odata.nextLink")
        if next_link:
            listing.next_link = self._batch_path(str(next_link))
        folder_name = _known_folder(listing.listing.folder)
        out = []
        for item in page.get("value") or ():
            if not isinstance(item, dict) or "id" not in item:
                continue
            listing.received += 1
            if item["id"] in listing.skip:
                continue
            meta = message_meta(box.mailbox, item, folder_name)
            if box.check_residual and not box.residual.matches(meta):
                continue
            if listing.yielded is not None:
                listing.yielded.add(meta.ref.message_id)
            out.append(
                FetchedMessage(
                    meta=meta,
                    headers=_headers_of(item) if parts.headers else None,
                    body=_body_of(item) if parts.body else None,
                    attachments=tuple(
                        _attachment(a, None)
                        for a in item.get("attachments") or ()
                        if isinstance(a, dict)
                    )
                    if parts.attachment_list
                    else None,
                )
            )
        box.listed += len(out)
        if next_link:
            ready.append(listing)
        elif listing.cap is not None and listing.received >= listing.cap:
            # `$search` stopped at its cap: list the folder again by date only (exact, since
            # the caller checks every criterion), skipping what was already yielded.
            box.fallback = True
            params = {k: v for k, v in listing.listing.params.items() if k != "$search"}
            dates, _ = build_filter(
                ServerQuery(
                    received_from=box.query.received_from, received_until=box.query.received_until
                )
            )
            if dates:
                params["$filter"] = dates
            skip = frozenset(listing.yielded or ())
            ready.append(
                _ScanListing(box, replace(listing.listing, params=params), None, skip=skip)
            )
        else:
            box.open_listings -= 1
        return out

    def _batch_path(self, link: str) -> str:
        """A nextLink relative to the version root, as a `$batch` sub-request needs it."""
        if "://" not in link:
            return link.lstrip("/")
        root = self.client.base_url + "/"
        if link[: len(root)].lower() != root.lower():
            raise RequestRejected(
                "Microsoft Graph answered with a next page outside its endpoint; refusing to "
                "follow it.",
                code="ForeignHost",
            )
        return link[len(root) :]

    async def folder_names(
        self, mailboxes: Sequence[MailboxRef], names: Sequence[str] = NAMED_FOLDERS
    ) -> dict[str, dict[str, str]]:
        """Mailbox id → (folder id → well-known name), for `names` the mailboxes have.

        One `$batch` sub-request per mailbox and name, mailboxes sharing envelopes.
        """
        pairs = [(m, n) for m in mailboxes for n in names]
        answers = await self.client.batch(
            [
                BatchRequest(
                    "GET",
                    f"users/{self._authorize(mailbox)}/mailFolders/{name}",
                    {"$select": "id"},
                    mailbox=mailbox.id,
                    role=MAIL_ROLE,
                    what=f"The folder {name}",
                )
                for mailbox, name in pairs
            ]
        )
        found: dict[str, dict[str, str]] = {m.id: {} for m in mailboxes}
        for (mailbox, name), answer in zip(pairs, answers, strict=True):
            if isinstance(answer.error, NotFound):
                continue
            if answer.error is not None:
                raise answer.error
            found[mailbox.id][str(answer.json()["id"])] = name
        return found

    def _message_path(self, ref: MessageRef) -> str:
        return f"users/{self._authorize(ref.mailbox)}/messages/{segment(ref.stable_id)}"

    async def fetch(
        self,
        ref: MessageRef,
        parts: MessageParts = MessageParts.ALL,
        *,
        body_format: Literal["html", "text"] | None = None,
    ) -> FetchedMessage:
        path = self._message_path(ref)
        common: dict[str, Any] = {
            "mailbox": ref.mailbox.id,
            "role": MAIL_ROLE,
            "what": "The message",
        }
        prefer = IMMUTABLE_IDS
        if body_format is not None and MessageParts.BODY in parts:
            prefer += f', outlook.body-content-type="{body_format}"'
        extra = [
            *(["internetMessageHeaders"] if MessageParts.HEADERS in parts else []),
            *(["body"] if MessageParts.BODY in parts else []),
        ]
        select = select_clause(META_FIELDS) + "".join(f",{e}" for e in extra)

        async def nothing() -> Any:
            return None

        meta_json, attachments, mime = await asyncio.gather(
            self.client.get(path, params={"$select": select}, headers={"Prefer": prefer}, **common),
            self._attachments(path, common) if MessageParts.ATTACHMENTS in parts else nothing(),
            self.client.get_bytes(f"{path}/$value", **common)
            if MessageParts.MIME in parts
            else nothing(),
        )
        return FetchedMessage(
            meta=message_meta(ref.mailbox, meta_json, ref.folder_name),
            headers=_headers_of(meta_json) if MessageParts.HEADERS in parts else None,
            body=_body_of(meta_json) if MessageParts.BODY in parts else None,
            attachments=attachments,
            mime=mime,
        )

    async def _attachments(
        self, path: str, common: dict[str, Any]
    ) -> tuple[AttachmentContent, ...]:
        items = [a async for a in self.client.paginate(f"{path}/attachments", **common)]

        async def content(item: JSON) -> bytes | None:
            kind = _attachment_kind(item)
            if kind == "file" and item.get("contentBytes") is not None:
                return base64.b64decode(str(item["contentBytes"]))
            if kind == "reference":
                return None  # reference attachments live elsewhere (OneDrive, SharePoint)
            return await self.client.get_bytes(
                f"{path}/attachments/{segment(str(item['id']))}/$value", **common
            )

        contents = await asyncio.gather(*(content(i) for i in items))
        return tuple(_attachment(i, data) for i, data in zip(items, contents, strict=True))

    # Acting ------------------------------------------------------------------------------

    async def act(self, ref: MessageRef, action: Action) -> ActionResult:
        path = self._message_path(ref)
        common: dict[str, Any] = {
            "mailbox": ref.mailbox.id,
            "role": MAIL_ROLE,
            "what": "The message",
            "headers": {"Prefer": IMMUTABLE_IDS},
        }
        kind = action.kind
        if kind in (ActionKind.MOVE, ActionKind.RESTORE):
            assert action.folder is not None
            moved = await self.client.post(
                f"{path}/move", {"destinationId": action.folder}, idempotent=True, **common
            )
            after = message_ref(ref.mailbox, moved, _known_folder(action.folder))
            changed = ref.folder_id is None or ref.folder_id != after.folder_id
            return ActionResult(action, ref, after, changed=changed)
        if kind is ActionKind.DELETE:
            try:
                reply = await self.client.delete(
                    path,
                    tolerate=frozenset({"ErrorCannotDeleteObject", "ErrorItemNotFound"}),
                    **common,
                )
            except RequestRejected as exc:
                if exc.code != "ErrorCannotDeleteObject":
                    raise
                # Already in Recoverable Items: the soft delete has happened before.
                return ActionResult(action, ref, self._deleted_ref(ref), changed=False)
            return ActionResult(action, ref, self._deleted_ref(ref), changed=not reply.assumed)
        if kind is ActionKind.PURGE:
            if not self.capabilities.purge:
                raise _purge_unsupported()
            reply = await self.client.request(
                "POST",
                f"{path}/permanentDelete",
                idempotent=True,
                tolerate=frozenset({"ErrorItemNotFound"}),
                **common,
            )
            return ActionResult(action, ref, None, changed=not reply.assumed)
        # Categories: read the current ones, then write the new list.
        current = await self.client.get(path, params={"$select": CATEGORY_SELECT}, **common)
        categories = [str(c) for c in current.get("categories") or ()]
        wanted = _wanted_categories(categories, action)
        after = message_ref(
            ref.mailbox, {**current, "internetMessageId": ref.internet_message_id}, ref.folder_name
        )
        if wanted == categories:
            return ActionResult(action, ref, after, changed=False, categories=tuple(categories))
        await self.client.patch(path, {"categories": wanted}, **common)
        return ActionResult(action, ref, after, changed=True, categories=tuple(wanted))

    @staticmethod
    def _deleted_ref(ref: MessageRef) -> MessageRef:
        return MessageRef(
            mailbox=ref.mailbox,
            message_id=ref.message_id,
            immutable_id=ref.immutable_id,
            folder_id=None,
            folder_name="recoverableitemsdeletions",
            internet_message_id=ref.internet_message_id,
        )

    # Acting on many messages ---------------------------------------------------------------

    async def _batch_by_mailbox(
        self, requests: Mapping[_K, BatchRequest], *, idempotent: bool | None = None
    ) -> dict[_K, BatchResponse]:
        """Answers to `requests` through `$batch`, sub-requests of one mailbox side by side.

        Outlook runs at most four sub-requests of a mailbox at once, so envelopes that touch
        few mailboxes go faster; an envelope that fails gives its error to each of its items.
        """
        keys = sorted(requests, key=lambda k: (requests[k].mailbox or "").lower())
        answers = await self.client.batch(
            [requests[k] for k in keys], idempotent=idempotent, item_errors=True
        )
        return dict(zip(keys, answers, strict=True))

    @staticmethod
    def _message_request(
        method: str,
        ref: MessageRef,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> BatchRequest:
        return BatchRequest(
            method,
            path,
            params,
            body,
            headers={"Prefer": IMMUTABLE_IDS},
            mailbox=ref.mailbox.id,
            role=MAIL_ROLE,
            what="The message",
        )

    async def act_many(
        self, refs: Sequence[MessageRef], action: Action
    ) -> list[ActionResult | ProviderError]:
        """`act` for many messages through `$batch`: one sub-request per message (two rounds,
        a read then a write where needed, for categories); errors come back per message."""
        if action.kind in _CATEGORY_KINDS:
            return await self._categorize_many(refs, action)
        out: dict[int, ActionResult | ProviderError] = {}
        requests: dict[int, BatchRequest] = {}
        for index, ref in enumerate(refs):
            try:
                requests[index] = self._action_request(ref, action)
            except ProviderError as exc:  # outside the authorized domains, or no purge here
                out[index] = exc
        # Every action here is safe to repeat (the message is addressed by its immutable id,
        # "already gone" counts as done), so lost answers are sent again, as `act` does.
        answers = await self._batch_by_mailbox(requests, idempotent=True)
        for index, answer in answers.items():
            out[index] = self._action_outcome(refs[index], action, answer)
        return [out[index] for index in range(len(refs))]

    def _action_request(self, ref: MessageRef, action: Action) -> BatchRequest:
        path = self._message_path(ref)
        kind = action.kind
        if kind in (ActionKind.MOVE, ActionKind.RESTORE):
            assert action.folder is not None
            return self._message_request(
                "POST", ref, f"{path}/move", body={"destinationId": action.folder}
            )
        if kind is ActionKind.DELETE:
            return self._message_request("DELETE", ref, path)
        if kind is ActionKind.PURGE:
            if not self.capabilities.purge:
                raise _purge_unsupported()
            return self._message_request("POST", ref, f"{path}/permanentDelete")
        raise ValueError(f"no single-request form for a {kind} action")

    def _action_outcome(
        self, ref: MessageRef, action: Action, answer: BatchResponse
    ) -> ActionResult | ProviderError:
        kind = action.kind
        error = answer.error
        if kind in (ActionKind.MOVE, ActionKind.RESTORE):
            if error is not None:
                return error
            after = message_ref(ref.mailbox, answer.json(), _known_folder(action.folder))
            changed = ref.folder_id is None or ref.folder_id != after.folder_id
            return ActionResult(action, ref, after, changed=changed)
        code = _error_code(answer)
        if kind is ActionKind.DELETE:
            # Gone already, or already in Recoverable Items: the soft delete happened before.
            done_before = (answer.status, code) in (
                (404, "ErrorItemNotFound"),
                (400, "ErrorCannotDeleteObject"),
            )
            if error is not None and not done_before:
                return error
            return ActionResult(action, ref, self._deleted_ref(ref), changed=error is None)
        if error is not None and (answer.status, code) != (404, "ErrorItemNotFound"):
            return error
        return ActionResult(action, ref, None, changed=error is None)  # purged

    async def _categorize_many(
        self, refs: Sequence[MessageRef], action: Action
    ) -> list[ActionResult | ProviderError]:
        """Read every message's categories in one round, then write only those that change."""
        out: dict[int, ActionResult | ProviderError] = {}
        reads: dict[int, BatchRequest] = {}
        for index, ref in enumerate(refs):
            try:
                path = self._message_path(ref)
            except ProviderError as exc:
                out[index] = exc
                continue
            reads[index] = self._message_request("GET", ref, path, {"$select": CATEGORY_SELECT})
        writes: dict[int, BatchRequest] = {}
        planned: dict[int, tuple[MessageRef, tuple[str, ...]]] = {}
        for index, answer in (await self._batch_by_mailbox(reads)).items():
            if answer.error is not None:
                out[index] = answer.error
                continue
            ref, current = refs[index], answer.json()
            categories = list(_categories_of(current))
            wanted = _wanted_categories(categories, action)
            after = message_ref(
                ref.mailbox,
                {**current, "internetMessageId": ref.internet_message_id},
                ref.folder_name,
            )
            if wanted == categories:
                out[index] = ActionResult(
                    action, ref, after, changed=False, categories=tuple(categories)
                )
                continue
            planned[index] = (after, tuple(wanted))
            writes[index] = replace(
                reads[index], method="PATCH", params=None, body={"categories": wanted}
            )
        # Writing the whole category list again is harmless: lost answers are sent again.
        for index, answer in (await self._batch_by_mailbox(writes, idempotent=True)).items():
            after, wanted_now = planned[index]
            out[index] = answer.error or ActionResult(
                action, refs[index], after, changed=True, categories=wanted_now
            )
        return [out[index] for index in range(len(refs))]

    # Snapshots and finding messages again --------------------------------------------------

    async def snapshot_many(
        self, refs: Sequence[MessageRef]
    ) -> list[MessageSnapshot | ProviderError]:
        """The state and raw MIME of each message.

        One `$value` sub-request per message; the state of up to `LOCATE_GROUP` messages of a
        mailbox comes from one `$filter` on their Internet message ids, sent in the same
        batch. A message that filter does not list (no Internet message id, or in
        Recoverable Items, which `/messages` leaves out) is then read by id.
        """
        out: dict[int, MessageSnapshot | ProviderError] = {}
        users: dict[str, str] = {}
        by_imid: dict[str, list[int]] = {}
        requests: dict[tuple[str, int], BatchRequest] = {}
        for index, ref in enumerate(refs):
            try:
                users[ref.mailbox.id] = self._authorize(ref.mailbox)
                path = self._message_path(ref)
            except ProviderError as exc:
                out[index] = exc
                continue
            requests["mime", index] = self._message_request("GET", ref, f"{path}/$value")
            if ref.internet_message_id:
                by_imid.setdefault(ref.mailbox.id, []).append(index)
        groups: list[tuple[str, list[str]]] = []
        for mailbox_id, indexes in by_imid.items():
            ids = list(dict.fromkeys(str(refs[i].internet_message_id) for i in indexes))
            groups.extend(
                (mailbox_id, ids[start : start + LOCATE_GROUP])
                for start in range(0, len(ids), LOCATE_GROUP)
            )
        for n, (mailbox_id, ids) in enumerate(groups):
            requests["filter", n] = self._locate_request(
                users[mailbox_id], mailbox_id, ids, select=SNAPSHOT_SELECT
            )
        answers = await self._batch_by_mailbox(requests)
        copies: dict[tuple[str, str], list[JSON] | ProviderError] = {}
        for n, (mailbox_id, ids) in enumerate(groups):
            await self._collect_copies(mailbox_id, ids, answers["filter", n], copies)
        states: dict[int, JSON | ProviderError] = {}
        for index, ref in enumerate(refs):
            if index in out or not ref.internet_message_id:
                continue
            listed = copies.get((ref.mailbox.id, ref.internet_message_id.casefold()))
            if isinstance(listed, list):
                mine = next((i for i in listed if i.get("id") == ref.stable_id), None)
                if mine is not None:
                    states[index] = mine
        unlisted = {
            index: self._message_request(
                "GET", refs[index], self._message_path(refs[index]), {"$select": SNAPSHOT_SELECT}
            )
            for index in range(len(refs))
            if index not in out and index not in states
        }
        if unlisted:
            read = await self._batch_by_mailbox(unlisted)
            for index, answer in read.items():
                states[index] = answer.error if answer.error is not None else answer.json()
        for index, ref in enumerate(refs):
            if index in out:
                continue
            state, mime = states[index], answers["mime", index]
            if isinstance(state, ProviderError):
                out[index] = state
                continue
            if mime.error is not None:
                out[index] = mime.error
                continue
            flag = state.get("flag")
            out[index] = MessageSnapshot(
                ref=_seen_in(ref, state),
                mime=mime.content(),
                received=_datetime(state.get("receivedDateTime")),
                categories=_categories_of(state),
                is_read=state.get("isRead"),
                flag_status=flag.get("flagStatus") if isinstance(flag, dict) else None,
                importance=state.get("importance"),
            )
        return [out[index] for index in range(len(refs))]

    async def locate_many(
        self, refs: Sequence[MessageRef]
    ) -> list[MessageLocation | ProviderError]:
        """Find each message again by Internet message id, in its mailbox's folders.

        Ids of one mailbox are ORed into one `$filter` (up to `LOCATE_GROUP` per sub-request;
        one each if Graph refuses the OR). `/users/{id}/messages` leaves out Recoverable
        Items, so a deleted or purged message is `found=None`. A ref without an Internet
        message id is read by id instead, next to its mailbox's Recoverable Items folder id.
        """
        out: dict[int, MessageLocation | ProviderError] = {}
        by_imid: dict[str, list[int]] = {}  # mailbox id → refs to find by Internet message id
        by_id: dict[str, list[int]] = {}  # mailbox id → refs without an Internet message id
        users: dict[str, str] = {}  # mailbox id → URL segment
        for index, ref in enumerate(refs):
            try:
                users[ref.mailbox.id] = self._authorize(ref.mailbox)
            except ProviderError as exc:
                out[index] = exc
                continue
            target = by_imid if ref.internet_message_id else by_id
            target.setdefault(ref.mailbox.id, []).append(index)

        groups: list[tuple[str, list[str]]] = []  # (mailbox id, Internet message ids)
        for mailbox_id, indexes in by_imid.items():
            wanted = list(
                dict.fromkeys(str(refs[i].internet_message_id).casefold() for i in indexes)
            )
            originals = {str(refs[i].internet_message_id).casefold(): i for i in indexes}
            ids = [str(refs[originals[w]].internet_message_id) for w in wanted]
            groups.extend(
                (mailbox_id, ids[start : start + LOCATE_GROUP])
                for start in range(0, len(ids), LOCATE_GROUP)
            )
        requests: dict[tuple[str, int], BatchRequest] = {}
        for n, (mailbox_id, ids) in enumerate(groups):
            requests["filter", n] = self._locate_request(users[mailbox_id], mailbox_id, ids)
        id_mailboxes = list(by_id)
        for n, (mailbox_id, indexes) in enumerate(by_id.items()):
            # Reading by id also reaches Recoverable Items: its folder id tells deleted ones.
            requests["dumpster", n] = BatchRequest(
                "GET",
                f"users/{users[mailbox_id]}/mailFolders/recoverableitemsdeletions",
                {"$select": "id"},
                mailbox=mailbox_id,
                role=MAIL_ROLE,
            )
            for index in indexes:
                ref = refs[index]
                requests["message", index] = self._message_request(
                    "GET", ref, self._message_path(ref), {"$select": LOCATE_SELECT}
                )
        answers = await self._batch_by_mailbox(requests)

        # Copies per (mailbox id, casefolded Internet message id), or the error for them.
        copies: dict[tuple[str, str], list[JSON] | ProviderError] = {}
        refused: list[tuple[str, list[str]]] = []
        for n, (mailbox_id, ids) in enumerate(groups):
            answer = answers["filter", n]
            if isinstance(answer.error, RequestRejected) and len(ids) > 1:
                refused.extend((mailbox_id, [one]) for one in ids)  # again, one id each
                continue
            await self._collect_copies(mailbox_id, ids, answer, copies)
        if refused:
            again = await self._batch_by_mailbox(
                {
                    n: self._locate_request(users[mailbox_id], mailbox_id, ids)
                    for n, (mailbox_id, ids) in enumerate(refused)
                }
            )
            for n, (mailbox_id, ids) in enumerate(refused):
                await self._collect_copies(mailbox_id, ids, again[n], copies)

        for indexes in by_imid.values():
            for index in indexes:
                ref = refs[index]
                key = (ref.mailbox.id, str(ref.internet_message_id).casefold())
                found_items = copies.get(key, [])
                if isinstance(found_items, ProviderError):
                    out[index] = found_items
                    continue
                out[index] = self._location(ref, found_items)

        for n, mailbox_id in enumerate(id_mailboxes):
            dumpster = answers["dumpster", n]
            deleted = dumpster.json().get("id") if dumpster.error is None else None
            for index in by_id[mailbox_id]:
                ref, answer = refs[index], answers["message", index]
                if answer.error is not None:
                    missing = (answer.status, _error_code(answer)) == (404, "ErrorItemNotFound")
                    out[index] = MessageLocation(ref, None) if missing else answer.error
                    continue
                item = answer.json()
                if deleted is not None and item.get("parentFolderId") == deleted:
                    out[index] = MessageLocation(ref, None)
                else:
                    out[index] = self._location(ref, [item])
        return [out[index] for index in range(len(refs))]

    @staticmethod
    def _locate_request(
        user: str, mailbox_id: str, internet_ids: list[str], *, select: str = LOCATE_SELECT
    ) -> BatchRequest:
        clause = " or ".join(f"internetMessageId eq {odata_string(i)}" for i in internet_ids)
        return BatchRequest(
            "GET",
            f"users/{user}/messages",
            {"$filter": clause, "$select": select, "$top": str(LOCATE_PAGE_SIZE)},
            headers={"Prefer": IMMUTABLE_IDS},
            mailbox=mailbox_id,
            role=MAIL_ROLE,
        )

    async def _collect_copies(
        self,
        mailbox_id: str,
        internet_ids: list[str],
        answer: BatchResponse,
        copies: dict[tuple[str, str], list[JSON] | ProviderError],
    ) -> None:
        """Sort one `$filter` answer's messages by Internet message id (more pages read)."""
        keys = [(mailbox_id, i.casefold()) for i in internet_ids]
        if answer.error is not None:
            for key in keys:
                copies[key] = answer.error
            return
        for key in keys:
            copies[key] = []
        page = answer.json()
        items = [i for i in page.get("value") or () if isinstance(i, dict)]
        next_link = page.get("@odata.nextLink")
        if next_link:
            try:
                async for item in self.client.paginate(
                    str(next_link),
                    headers={"Prefer": IMMUTABLE_IDS},
                    mailbox=mailbox_id,
                    role=MAIL_ROLE,
                ):
                    items.append(item)
            except ProviderError as exc:
                for key in keys:
                    copies[key] = exc
                return
        for item in items:
            found = copies.get((mailbox_id, str(item.get("internetMessageId") or "").casefold()))
            if isinstance(found, list):
                found.append(item)

    @staticmethod
    def _location(ref: MessageRef, items: list[JSON]) -> MessageLocation:
        found: MessageRef | None = None
        categories: tuple[str, ...] = ()
        others: list[MessageRef] = []
        for item in items:
            if found is None and str(item.get("id")) == ref.stable_id:
                found, categories = _seen_in(ref, item), _categories_of(item)
            else:
                others.append(
                    _seen_in(
                        replace(ref, message_id=str(item["id"]), immutable_id=str(item["id"])),
                        item,
                    )
                )
        return MessageLocation(ref, found, categories, tuple(others))

    # Changes -----------------------------------------------------------------------------

    async def changes(
        self,
        mailbox: MailboxRef,
        folder: str,
        cursor: str | None = None,
        *,
        since: datetime | None = None,
    ) -> ChangeBatch:
        (batch,) = await self.changes_many([ChangeRequest(mailbox, folder, cursor, since)])
        if batch.error is not None:
            raise batch.error
        return batch

    async def changes_many(self, requests: Sequence[ChangeRequest]) -> list[ChangeBatch]:
        """`changes` for many folders: first pages through `$batch`, further pages one by one.

        A folder whose read failed comes back with its error (`ChangeBatch.error`), so one
        unreachable mailbox does not hide the others' changes.
        """
        batch_requests: dict[int, BatchRequest] = {}
        refused: dict[int, ProviderError] = {}
        for index, request in enumerate(requests):
            try:
                batch_requests[index] = self._delta_request(request)
            except ProviderError as exc:  # a stored cursor for another host, say
                refused[index] = exc
        answers = await self._batch_by_mailbox(batch_requests, idempotent=True)
        results: list[ChangeBatch] = []
        for index, request in enumerate(requests):
            initial = request.cursor is None
            if index in refused:
                results.append(ChangeBatch(initial=initial, error=refused[index]))
                continue
            answer = answers[index]
            if isinstance(answer.error, CursorExpired):
                results.append(ChangeBatch(resync_required=True, initial=initial))
                continue
            if answer.error is not None:
                results.append(ChangeBatch(initial=initial, error=answer.error))
                continue
            try:
                results.append(await self._delta_pages(request, answer.json()))
            except CursorExpired:
                results.append(ChangeBatch(resync_required=True, initial=initial))
            except ProviderError as exc:
                results.append(ChangeBatch(initial=initial, error=exc))
        return results

    def _delta_request(self, request: ChangeRequest) -> BatchRequest:
        user = self._authorize(request.mailbox)
        headers = {"Prefer": f"{IMMUTABLE_IDS}, odata.maxpagesize={self.settings.page_size}"}
        common: dict[str, Any] = {
            "headers": headers,
            "mailbox": request.mailbox.id,
            "role": MAIL_ROLE,
            "what": f"The folder {request.folder}",
        }
        if request.cursor is not None:
            self.client.url(request.cursor)  # refuses a link to another host than Graph's
            path, params = _version_relative(request.cursor)
            return BatchRequest("GET", path, params, **common)
        params = {"$select": select_clause(META_FIELDS)}
        if request.since is not None:
            # Delta accepts only this filter; it bounds a first round (or a resync).
            params["$filter"] = f"receivedDateTime ge {odata_datetime(request.since)}"
        return BatchRequest(
            "GET",
            f"users/{user}/mailFolders/{segment(request.folder)}/messages/delta",
            params,
            **common,
        )

    async def _delta_pages(self, request: ChangeRequest, first: JSON) -> ChangeBatch:
        folder_name = _known_folder(request.folder)
        changed: dict[str, MessageMeta] = {}
        removed: dict[str, None] = {}
        next_cursor: str | None = None
        page = first
        while True:
            for item in page.get("value") or ():
                if not isinstance(item, dict) or "id" not in item:
                    continue
                item_id = str(item["id"])
                if "@removed" in item:
                    changed.pop(item_id, None)
                    removed[item_id] = None
                else:
                    removed.pop(item_id, None)
                    changed[item_id] = message_meta(request.mailbox, item, folder_name)
            if page.get("@odata.deltaLink"):
                next_cursor = str(page["@odata.deltaLink"])
            next_link = page.get("@odata.nextLink")
            if not next_link:
                break
            page = await self.client.get(
                str(next_link),
                headers={"Prefer": f"{IMMUTABLE_IDS}, odata.maxpagesize={self.settings.page_size}"},
                mailbox=request.mailbox.id,
                role=MAIL_ROLE,
                what=f"The folder {request.folder}",
            )
        return ChangeBatch(
            changed=tuple(changed.values()),
            removed=tuple(removed),
            cursor=next_cursor,
            initial=request.cursor is None,
        )

    # Change notifications (Graph subscriptions) -----------------------------------------

    async def subscribe(
        self,
        mailbox: MailboxRef,
        folder: str | None,
        notification_url: str,
        lifecycle_url: str | None,
        client_state: str,
        expires_at: datetime,
    ) -> GraphSubscription:
        """Ask Graph to notify `notification_url` of changes to the messages in `folder`."""
        self._authorize(mailbox)
        return await create_subscription(
            self.client,
            mailbox_id=mailbox.id,
            folder=folder,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires_at=expires_at,
        )

    async def renew_subscription(
        self, subscription: GraphSubscription, expires_at: datetime
    ) -> GraphSubscription:
        """Extend (and reauthorize) a subscription; `NotFound` when Graph removed it."""
        return await renew_subscription(self.client, subscription, expires_at)

    async def reauthorize_subscription(self, subscription: GraphSubscription) -> None:
        await reauthorize_subscription(self.client, subscription)

    async def delete_subscription(self, subscription_id: str) -> bool:
        """Delete a subscription; False when Graph had already dropped it."""
        return await delete_subscription(self.client, subscription_id)

    async def list_subscriptions(
        self, mailbox: MailboxRef | None = None
    ) -> list[GraphSubscription]:
        return await list_subscriptions(
            self.client, mailbox_id=mailbox.id if mailbox is not None else None
        )

    # Categories and messages -------------------------------------------------------------

    async def ensure_category(
        self, mailbox: MailboxRef, name: str, color: str = "red"
    ) -> CategoryChange:
        path = f"users/{self._authorize(mailbox)}/outlook/masterCategories"
        preset = category_color(color)
        common: dict[str, Any] = {"mailbox": mailbox.id, "role": SETTINGS_ROLE}
        for _ in range(2):
            existing = [c async for c in self.client.paginate(path, **common)]
            match = next(
                (
                    c
                    for c in existing
                    if str(c.get("displayName", "")).casefold() == name.casefold()
                ),
                None,
            )
            if match is not None:
                if match.get("color") == preset:
                    return CategoryChange.UNCHANGED
                await self.client.patch(
                    f"{path}/{segment(str(match['id']))}", {"color": preset}, **common
                )
                return CategoryChange.UPDATED
            try:
                # A repeated POST answered "already exists" means our lost first try worked.
                await self.client.request(
                    "POST",
                    path,
                    json={"displayName": name, "color": preset},
                    idempotent=True,
                    tolerate=frozenset({"ErrorAlreadyExists"}),
                    **common,
                )
            except RequestRejected as exc:
                if exc.code == "ErrorAlreadyExists":
                    continue  # created meanwhile by someone else: compare colours again
                raise
            return CategoryChange.CREATED
        return CategoryChange.UNCHANGED

    async def create_message(
        self, mailbox: MailboxRef, folder: str, message: NewMessage, *, draft: bool = False
    ) -> MessageRef:
        user = self._authorize(mailbox)
        internet_id = message.internet_message_id or f"<{uuid.uuid4()}@mailtrawl.invalid>"
        payload: JSON = {
            "subject": message.subject,
            "body": {"contentType": message.body_type, "content": message.body},
            "internetMessageId": internet_id,
            "isRead": message.is_read,
        }
        if message.from_ is not None:
            payload["from"] = _recipient(message.from_)
            payload["sender"] = _recipient(message.from_)
        if message.to:
            payload["toRecipients"] = [_recipient(a) for a in message.to]
        if message.cc:
            payload["ccRecipients"] = [_recipient(a) for a in message.cc]
        if message.reply_to:
            payload["replyTo"] = [_recipient(a) for a in message.reply_to]
        if message.flag_status is not None:
            payload["flag"] = {"flagStatus": message.flag_status}
        if message.importance is not None:
            payload["importance"] = message.importance
        if message.categories:
            payload["categories"] = list(message.categories)
        if message.headers:
            payload["internetMessageHeaders"] = [
                {"name": h.name, "value": h.value} for h in message.headers
            ]
        if message.attachments:
            payload["attachments"] = [
                {
                    "@odata.type": "#microsoft.graph.fileAttachment",
                    "name": a.name,
                    "contentType": a.content_type or "application/octet-stream",
                    "contentBytes": base64.b64encode(a.content or b"").decode(),
                    "isInline": a.is_inline,
                    **({"contentId": a.content_id} if a.content_id else {}),
                }
                for a in message.attachments
            ]
        if not draft:
            # PidTagMessageFlags = mfRead without mfUnsent: saved as received mail, not a draft.
            props = [{"id": "Integer 0x0E07", "value": "1"}]
            if message.received is not None:
                props.append({"id": "SystemTime 0x0E06", "value": _iso(message.received)})
            if message.sent is not None or message.received is not None:
                sent = message.sent or message.received
                assert sent is not None
                props.append({"id": "SystemTime 0x0039", "value": _iso(sent)})
            payload["singleValueExtendedProperties"] = props
        path = f"users/{user}/mailFolders/{segment(folder)}/messages"
        common: dict[str, Any] = {
            "mailbox": mailbox.id,
            "role": MAIL_ROLE,
            "headers": {"Prefer": IMMUTABLE_IDS},
            "what": f"The folder {folder}",
        }
        created = await self._create_once(path, payload, internet_id, common)
        ref = message_ref(mailbox, created, _known_folder(folder))
        if (
            not draft
            and created.get("isRead") is not None
            and created.get("isRead") != message.is_read
        ):
            # Message flags win over isRead at creation; set the read state afterwards.
            await self.client.patch(
                f"users/{user}/messages/{segment(ref.stable_id)}",
                {"isRead": message.is_read},
                **common,
            )
        return ref

    async def _create_once(
        self, path: str, payload: JSON, internet_id: str, common: dict[str, Any]
    ) -> JSON:
        """POST a new message; after a lost answer, look for it before posting again."""
        lookup = {
            "$filter": f"internetMessageId eq {odata_string(internet_id)}",
            "$select": "id,parentFolderId,internetMessageId,isRead",
        }
        for _ in range(CREATE_ATTEMPTS - 1):
            try:
                return await self.client.post(path, payload, idempotent=False, **common)
            except OutcomeUnknown:
                found = [item async for item in self.client.paginate(path, lookup, **common)]
                if found:
                    return found[0]
        return await self.client.post(path, payload, idempotent=False, **common)


def _has(categories: list[str], name: str) -> bool:
    return any(c.casefold() == name.casefold() for c in categories)


def _wanted_categories(categories: list[str], action: Action) -> list[str]:
    """The category list a WARN, UNWARN or SET_CATEGORIES action leaves on a message."""
    if action.kind is ActionKind.WARN:
        assert action.category is not None
        if _has(categories, action.category):
            return categories
        return [*categories, action.category]
    if action.kind is ActionKind.UNWARN:
        assert action.category is not None
        return [c for c in categories if c.casefold() != action.category.casefold()]
    return list(dict.fromkeys(action.categories))


def _categories_of(item: JSON) -> tuple[str, ...]:
    raw = item.get("categories")
    return tuple(str(c) for c in raw) if isinstance(raw, list) else ()


def _error_code(answer: BatchResponse) -> str:
    return graph_error_parts(answer.body)[0]


def _purge_unsupported() -> RequestRejected:
    return RequestRejected(
        "Permanent delete is only available in Microsoft's global cloud; use delete.",
        code="NotSupportedInCloud",
    )


def _seen_in(ref: MessageRef, item: JSON) -> MessageRef:
    """`ref` where `item` (a Graph message) says it is now.

    The well-known folder name is kept only while the message is still in the ref's folder.
    """
    folder_id = item.get("parentFolderId") or None
    same_folder = folder_id is not None and folder_id == ref.folder_id
    return MessageRef(
        mailbox=ref.mailbox,
        message_id=str(item.get("id") or ref.message_id),
        immutable_id=str(item.get("id") or ref.stable_id),
        folder_id=folder_id,
        folder_name=_known_folder(ref.folder_name) if same_folder else None,
        internet_message_id=item.get("internetMessageId") or ref.internet_message_id,
    )


def _search_prefix(prefix: str) -> str:
    """A search prefix as sent: one line, bounded (quotes are escaped by `odata_string`)."""
    return " ".join(prefix.split())[:MAX_SEARCH_PREFIX]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
