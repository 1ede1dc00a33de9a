"""Evaluating a `Hunt` on one message, with whatever parts of it are known so far.

Evaluation is three-valued: a filter whose part of the message has not been fetched yet is
*unknown*, and `all`/`any`/`not` combine unknowns the way Kleene logic does. A message is
dropped as soon as the answer is false and kept as soon as it is true; only an unknown
answer makes the engine fetch more (attachment contents), so bodies and attachments are
read only for messages that still need them.

Literal body keywords of the whole query are found in one pass by a multi-pattern matcher
(`mailtrawl.matching.literals`); hunts compiled together (`compile_hunts`, as the watcher
does for every active investigation of a configuration) share one matcher, so a message's
text is scanned once for all of them. Regexes are RE2 (linear time). Children of a group
are evaluated cheapest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mailtrawl.core.criteria import Area, Group, Hunt, Leaf, Node, Not, leaves
from mailtrawl.core.mail import AttachmentContent, EmailAddress, FetchedMessage
from mailtrawl.matching.attachments import compile_glob, digests, extension
from mailtrawl.matching.literals import LiteralMatcher
from mailtrawl.matching.mime import ParsedEmail
from mailtrawl.matching.received import ip_matches, received_ips
from mailtrawl.matching.regex import compile_regex
from mailtrawl.matching.text import html_to_text, normalise_space
from mailtrawl.matching.urls import (
    extract_urls,
    host_in_domain,
    normalise_domain,
    normalise_url,
    url_host,
)

_AREA_COST = {
    Area.HEADER: 0,
    Area.RAW_HEADERS: 1,
    Area.BODY: 2,
    Area.ATTACHMENT_LIST: 3,
    Area.ATTACHMENT_CONTENT: 4,
}
# Attachments that are emails in their own right, inspected when `attached_emails` is on.
_EMAIL_TYPES = ("message/rfc822",)
_EMAIL_EXTENSIONS = ("eml",)
MAX_ATTACHED_DEPTH = 3


@dataclass(frozen=True, slots=True)
class AttachmentView:
    name: str
    content_type: str
    size: int
    content: bytes | None  # None: not fetched (or not available)
    is_inline: bool = False
    kind: str = "file"  # "file", "item" (an attached email) or "reference"

    @property
    def is_email(self) -> bool:
        return (
            self.kind == "item"
            or self.content_type.lower().split(";")[0].strip() in _EMAIL_TYPES
            or extension(self.name) in _EMAIL_EXTENSIONS
        )


@dataclass(slots=True)
class MessageView:
    """The parts of one message a filter may read; None means "not known yet"."""

    subject: str = ""
    from_: EmailAddress | None = None
    to: tuple[EmailAddress, ...] = ()
    cc: tuple[EmailAddress, ...] = ()
    bcc: tuple[EmailAddress, ...] = ()
    reply_to: tuple[EmailAddress, ...] = ()
    internet_message_id: str | None = None
    has_attachments: bool | None = None
    headers: tuple[tuple[str, str], ...] | None = None
    body_text: str | None = None
    body_html: str | None = None
    body_known: bool = False
    attachments: tuple[AttachmentView, ...] | None = None
    # Derived values by name, and keyword findings by `KeywordPool`.
    _cache: dict[object, Any] = field(default_factory=dict)

    def derived(self, key: str) -> Any:
        """Values computed once per message: the searchable text, links, relay IPs."""
        if key not in self._cache:
            if key == "text":
                parts = [self.body_text or ""]
                if self.body_html:
                    parts.append(html_to_text(self.body_html))
                self._cache[key] = normalise_space("\n".join(p for p in parts if p))
            elif key == "urls":
                found = extract_urls(self.body_text, self.body_html)
                self._cache[key] = {u for u in (normalise_url(x) for x in found) if u}
            elif key == "hosts":
                self._cache[key] = {h for h in (url_host(u) for u in self.derived("urls")) if h}
            elif key == "ips":
                self._cache[key] = received_ips(self.headers or ())
            elif key == "digests":
                self._cache[key] = [
                    set(digests(a.content).values()) if a.content is not None else None
                    for a in self.attachments or ()
                    if a.kind == "file"
                ]
        return self._cache[key]


def view_of_fetched(message: FetchedMessage) -> MessageView:
    """A view of a message listed or fetched from a mailbox."""
    meta = message.meta
    body = message.body
    attachments = None
    if message.attachments is not None:
        attachments = tuple(_attachment_view(a) for a in message.attachments)
    return MessageView(
        subject=meta.subject or "",
        from_=meta.from_,
        to=meta.to,
        cc=meta.cc,
        bcc=meta.bcc,
        reply_to=meta.reply_to,
        internet_message_id=meta.internet_message_id,
        has_attachments=meta.has_attachments,
        headers=None
        if message.headers is None
        else tuple((h.name, h.value) for h in message.headers),
        body_text=body.content if body is not None and body.content_type == "text" else None,
        body_html=body.content if body is not None and body.content_type == "html" else None,
        body_known=body is not None,
        attachments=attachments,
    )


def _attachment_view(item: AttachmentContent) -> AttachmentView:
    return AttachmentView(
        name=item.name,
        content_type=(item.content_type or "").lower(),
        size=item.size,
        content=item.content,
        is_inline=item.is_inline,
        kind=item.kind,
    )


def _email(pair: tuple[str, str] | None) -> EmailAddress | None:
    return None if pair is None else EmailAddress(pair[1], pair[0])


def view_of_parsed(email: ParsedEmail) -> MessageView:
    """A view of an email parsed from bytes (an attached email): every part is known."""
    return MessageView(
        subject=email.subject or "",
        from_=_email(email.from_),
        to=tuple(EmailAddress(a, n) for n, a in email.to),
        cc=tuple(EmailAddress(a, n) for n, a in email.cc),
        bcc=tuple(EmailAddress(a, n) for n, a in email.bcc),
        reply_to=tuple(EmailAddress(a, n) for n, a in email.reply_to),
        internet_message_id=email.message_id,
        has_attachments=any(not a.is_inline for a in email.attachments)
        or bool(email.attached_emails),
        headers=email.headers,
        body_text=email.text,
        body_html=email.html,
        body_known=True,
        attachments=tuple(
            AttachmentView(a.name, a.content_type.lower(), a.size, a.content, a.is_inline)
            for a in email.attachments
        ),
    )


def _address_key(address: str) -> str:
    local, _, domain = address.strip().rpartition("@")
    return f"{local.lower()}@{normalise_domain(domain)}" if domain else address.strip().lower()


def _address_matches(addresses: Iterable[EmailAddress], wanted: tuple[str, ...]) -> bool:
    for item in addresses:
        key = _address_key(item.address)
        domain = key.rpartition("@")[2]
        for value in wanted:
            if value.startswith("@"):
                if domain and host_in_domain(domain, value[1:]):
                    return True
            elif key == value:
                return True
    return False


class KeywordPool:
    """The body keywords of one or many hunts, compiled into one multi-pattern matcher.

    Hunts add their keywords, then the pool is compiled (a bad keyword fails there, not
    in the middle of a scan); a message's findings are kept on its view, so every hunt of
    the pool reads the same single scan.
    """

    def __init__(self) -> None:
        self._patterns: list[str] = []
        self._matcher: LiteralMatcher | None = None

    def add(self, values: Sequence[str]) -> list[int]:
        if self._matcher is not None:
            raise RuntimeError("keywords cannot be added once the pool is in use")
        start = len(self._patterns)
        self._patterns.extend(values)
        return list(range(start, len(self._patterns)))

    def compile(self) -> None:
        if self._matcher is None:
            self._matcher = LiteralMatcher(self._patterns, word_start=True)

    def found(self, view: MessageView) -> set[int]:
        """Ids of this pool's keywords in the message's text (scanned once per view)."""
        if self not in view._cache:
            self.compile()
            assert self._matcher is not None
            view._cache[self] = self._matcher.find(view.derived("text"))
        found: set[int] = view._cache[self]
        return found


def compile_hunts(hunts: Sequence[Hunt]) -> list[CompiledHunt]:
    """Hunts compiled to be evaluated together: one keyword scan per message serves all."""
    pool = KeywordPool()
    compiled = [CompiledHunt(hunt, keywords=pool) for hunt in hunts]
    pool.compile()
    return compiled


class CompiledHunt:
    """A `Hunt` made ready to evaluate on many messages."""

    def __init__(self, hunt: Hunt, *, keywords: KeywordPool | None = None) -> None:
        self.hunt = hunt
        own_pool = keywords is None
        self._keywords = KeywordPool() if keywords is None else keywords
        self._keyword_ids: dict[str, list[int]] = {}
        self._regexes: dict[str, list[Any]] = {}
        self._globs: dict[str, list[Any]] = {}
        for leaf in leaves(hunt.match):
            if leaf.field == "body":
                self._keyword_ids[leaf.path] = self._keywords.add(leaf.values)
            elif leaf.field == "body_regex":
                self._regexes[leaf.path] = [compile_regex(v) for v in leaf.values]
            elif leaf.field in ("attachment_name", "attachment_type"):
                self._globs[leaf.path] = [compile_glob(v) for v in leaf.values]
        if own_pool:
            self._keywords.compile()
        self._root = _ordered(hunt.match) if hunt.match is not None else None
        self.needs_attachment_content = any(
            leaf.field == "attachment_hash" for leaf in leaves(hunt.match)
        )

    # Evaluation --------------------------------------------------------------------------

    def evaluate(self, view: MessageView) -> tuple[bool | None, list[Leaf]]:
        """True, False or None (unknown yet), and the filters found true on the way."""
        if self._root is None:
            return True, []
        matched: list[Leaf] = []
        return self._node(self._root, view, matched), matched

    def _node(self, node: Node, view: MessageView, matched: list[Leaf]) -> bool | None:
        if isinstance(node, Leaf):
            result = self._leaf(node, view)
            if result:
                matched.append(node)
            return result
        if isinstance(node, Not):
            inner = self._node(node.child, view, [])
            return None if inner is None else not inner
        unknown = False
        decisive = node.kind == "any"  # any: a true child decides; all: a false one does
        for child in node.children:
            result = self._node(child, view, matched)
            if result is None:
                unknown = True
            elif result is decisive:
                return decisive
        return None if unknown else not decisive

    def _leaf(self, leaf: Leaf, view: MessageView) -> bool | None:
        name, values = leaf.field, leaf.values
        if name == "subject":
            # Compared as the server compares (case-insensitive, spacing kept), so a subject
            # filter pushed to the server never drops a message the local check would keep.
            subject = view.subject.casefold()
            if leaf.op == "equals":
                return any(subject.strip() == v.casefold() for v in values)
            return any(v.casefold() in subject for v in values)
        if name == "sender_name":
            shown = normalise_space(view.from_.name if view.from_ else "").casefold()
            if leaf.op == "equals":
                return any(shown == normalise_space(v).casefold() for v in values)
            return any(normalise_space(v).casefold() in shown for v in values)
        if name == "from":
            return _address_matches((view.from_,) if view.from_ else (), values)
        if name == "from_domain":
            domain = view.from_.domain if view.from_ else ""
            return bool(domain) and any(host_in_domain(domain, v) for v in values)
        if name in ("to", "cc", "bcc", "reply_to"):
            return _address_matches(getattr(view, name), values)
        if name == "internet_message_id":
            own = (view.internet_message_id or "").strip()
            return any(own == v for v in values)
        if name == "has_attachments":
            if view.has_attachments is None:
                return None
            return view.has_attachments == (values[0] == "true")
        if name == "sender_ip":
            if view.headers is None:
                return None
            return any(ip_matches(ip, spec) for ip in view.derived("ips") for spec in values)
        if name == "header":
            if view.headers is None:
                return None
            found = [v for n, v in view.headers if n.lower() == leaf.header_name]
            if leaf.op == "exists":
                return bool(found)
            texts = [normalise_space(v).casefold() for v in found]
            wanted = [normalise_space(v).casefold() for v in values]
            if leaf.op == "equals":
                return any(t == w for t in texts for w in wanted)
            return any(w in t for t in texts for w in wanted)
        if leaf.spec.area is Area.BODY:
            if not view.body_known:
                return None
            return self._body(leaf, view)
        return self._attachment(leaf, view)

    def _body(self, leaf: Leaf, view: MessageView) -> bool:
        if leaf.field == "body":
            found = self._keywords.found(view)
            return any(i in found for i in self._keyword_ids[leaf.path])
        if leaf.field == "url":
            urls: set[str] = view.derived("urls")
            if leaf.op == "starts_with":
                return any(u.startswith(v) for u in urls for v in leaf.values)
            return any(v in urls for v in leaf.values)
        if leaf.field == "url_domain":
            return any(host_in_domain(h, v) for h in view.derived("hosts") for v in leaf.values)
        text = view.derived("text")
        return any(r.search(text) for r in self._regexes[leaf.path])

    def _attachment(self, leaf: Leaf, view: MessageView) -> bool | None:
        if view.attachments is None:
            return None
        files = view.attachments
        name = leaf.field
        if name == "attachment_name":
            return any(g.matches(a.name) for a in files for g in self._globs[leaf.path])
        if name == "attachment_type":
            return any(g.matches(a.content_type) for a in files for g in self._globs[leaf.path])
        if name == "attachment_extension":
            return any(extension(a.name) in leaf.values for a in files)
        if name == "attachment_size":
            low, high = leaf.size_min, leaf.size_max
            return any(
                (low is None or a.size >= low) and (high is None or a.size <= high) for a in files
            )
        # attachment_hash
        unknown = False
        for hashes in view.derived("digests"):
            if hashes is None:
                unknown = True
            elif any(v in hashes for v in leaf.values):
                return True
        return None if unknown else False

    # Attached emails ---------------------------------------------------------------------

    def inspect_attached(self, views: Sequence[MessageView]) -> list[Leaf] | None:
        """The filters matched by the first attached email that matches, else None."""
        for view in views:
            result, matched = self.evaluate(view)
            if result:
                return matched
        return None


def attached_email_views(email: ParsedEmail, depth: int = 0) -> list[MessageView]:
    """Views of a parsed email and of the emails attached inside it (bounded depth)."""
    out = [view_of_parsed(email)]
    if depth < MAX_ATTACHED_DEPTH:
        for inner in email.attached_emails:
            out.extend(attached_email_views(inner, depth + 1))
    return out


def _cost(node: Node) -> int:
    return max((_AREA_COST[leaf.spec.area] for leaf in leaves(node)), default=0)


def _ordered(node: Node) -> Node:
    """The same tree with every group's children sorted cheapest first."""
    if isinstance(node, Group):
        children = sorted((_ordered(c) for c in node.children), key=_cost)
        return Group(node.kind, tuple(children), node.path)
    if isinstance(node, Not):
        return Not(_ordered(node.child), node.path)
    return node
