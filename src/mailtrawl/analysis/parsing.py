"""Parsing a reported message (hostile input) into a `ParsedReport`, and unwrapping reports.

`parse_report` builds on `matching.mime.parse_email` (standard-library `email`, modern policy,
never raises on malformed input) and the `matching` helpers for URLs, HTML text, trace headers
and digests. It raises only `ReportTooLarge` (over `max_bytes`) and `ReportParseError` (an
Outlook .msg without the optional extract-msg package); every other problem is a warning on
the report. Everything is bounded: MIME parts and depth (attached emails 3 levels), text and
HTML read, URLs, attachments, archive members and decompressed bytes (see `archives`).

`extract_original` finds the message a user reported inside the report they sent: an attached
`message/rfc822` part, `.eml` or `.msg` (forward-as-attachment, and Microsoft's report
button, which attaches the original and is sent by the reporter) gives fidelity "original";
a plain inline forward gives the message itself and fidelity "forward".
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import re2

from mailtrawl.analysis import filetypes
from mailtrawl.analysis.archives import ArchiveLimits, inspect_zip
from mailtrawl.analysis.domains import (
    domain_of_address,
    has_known_suffix,
    is_ip,
    registrable_domain,
)
from mailtrawl.analysis.errors import ReportParseError, ReportTooLarge
from mailtrawl.analysis.htmlscan import scan_html
from mailtrawl.analysis.model import (
    Address,
    AuthResults,
    ExtractedAttachment,
    ExtractedUrl,
    ParsedReport,
    ReceivedHop,
)
from mailtrawl.analysis.msg import OLE_MAGIC, msg_to_mime
from mailtrawl.analysis.office import inspect_ole, ooxml_has_macros, ooxml_type
from mailtrawl.matching.attachments import digests, extension
from mailtrawl.matching.mime import MailParseError, ParsedAttachment, ParsedEmail, parse_email
from mailtrawl.matching.received import received_ips
from mailtrawl.matching.text import html_to_text, normalise_space
from mailtrawl.matching.urls import extract_urls, normalise_url, url_host

__all__ = [
    "MAX_REPORT_BYTES",
    "ReportParseError",
    "ReportTooLarge",
    "Unwrapped",
    "extract_original",
    "parse_report",
    "parse_reported_email",
]

MAX_REPORT_BYTES = 50 * 1024 * 1024
MAX_EMAIL_DEPTH = 3
MAX_MIME_PARTS = 1_000
MAX_TEXT_CHARS = 2_000_000
MAX_URLS = 2_000
MAX_ATTACHMENTS = 500
MAX_HEADERS = 2_000
MAX_RECEIVED = 100
MAX_WARNINGS = 200
MAX_KEPT_CONTENT = 25 * 1024 * 1024  # attachment bytes kept on the report for later engines
MAX_SCANNED_ATTACHMENT = 5 * 1024 * 1024  # bytes of an attachment searched for URLs
_HEADER_VALUE = 4_096

_RECEIVED_FROM = re2.compile(r"(?i)^\s*from\s+([^\s;()]+)")
_RECEIVED_BY = re2.compile(r"(?i)\sby\s+([^\s;()]+)")
_AUTH_RESULT = re2.compile(r"(?i)^\s*([a-z][a-z0-9_-]*)\s*=\s*([a-z]+)")
_REASON = re2.compile(r"(?i)\breason\s*=\s*([0-9a-z]+)")
_URL_LIKE_TEXT = re2.compile(
    r"(?i)^(?:(?:https?|ftp)://)?(?:[^\s./:@<>]+\.)+[^\s./:@<>0-9]{2,}\.?(?::[0-9]+)?(?:[/?#]\S*)?$"
)
_PDF_URI = re2.compile(r"/URI\s*\(([^)]{1,1000})\)")
_FORWARD_SUBJECT = re2.compile(r"(?i)^\s*(?:fwd?|fw|wg|tr|rv|enc|doorst|vs|i)\s*:")
_FORWARD_BODY = re2.compile(
    r"(?i)(?:-{2,}\s*(?:forwarded message|original message|message d'origine|"
    r"ursprüngliche nachricht|weitergeleitete nachricht)\s*-{2,})|(?:^|\n)\s*from:[^\n]*\n\s*(?:sent|date):"
)
_AUTH_METHODS = ("spf", "dkim", "dmarc", "compauth")
_INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "fc00::/7", "fe80::/10", "ff00::/8",
    )
)  # fmt: skip


@dataclass(frozen=True)
class Unwrapped:
    """The message a report carries: its bytes, how faithful they are, and who reported it."""

    original: bytes
    fidelity: str  # "original" (the message as received) | "forward" (an inline forward)
    reporter: Address | None  # the wrapper's sender, when the report wraps or forwards
    wrapper_subject: str
    warnings: tuple[str, ...] = ()


def parse_report(
    raw: bytes,
    *,
    filename: str | None = None,
    max_bytes: int = MAX_REPORT_BYTES,
    archive_limits: ArchiveLimits | None = None,
) -> ParsedReport:
    """Parse one reported message (.eml bytes, or an Outlook .msg detected by its magic)."""
    if len(raw) > max_bytes:
        raise ReportTooLarge(len(raw), max_bytes)
    warnings: list[str] = []
    mime = raw
    if raw.startswith(OLE_MAGIC):
        mime, conversion_warnings = msg_to_mime(raw, max_depth=MAX_EMAIL_DEPTH)
        warnings += conversion_warnings
    elif filename and filename.lower().endswith(".msg"):
        warnings.append(f"{filename} is named .msg but is not an Outlook item; read as MIME")
    try:
        parsed = parse_email(
            mime,
            max_bytes=max(max_bytes, len(mime)),
            max_depth=MAX_EMAIL_DEPTH,
            max_parts=MAX_MIME_PARTS,
        )
    except MailParseError:
        raise ReportTooLarge(len(mime), max_bytes) from None
    return _Builder(raw, mime, parsed, warnings, archive_limits or ArchiveLimits()).build()


def parse_reported_email(
    raw: bytes, *, filename: str | None = None, max_bytes: int = MAX_REPORT_BYTES
) -> tuple[ParsedReport, Unwrapped]:
    """Unwrap a report (`extract_original`) and parse the message it carries."""
    unwrapped = extract_original(raw, filename=filename, max_bytes=max_bytes)
    report = parse_report(
        unwrapped.original,
        filename=None if unwrapped.original is not raw else filename,
        max_bytes=max_bytes,
    )
    warnings = (*unwrapped.warnings, *report.warnings)
    return replace(report, fidelity=unwrapped.fidelity, warnings=warnings), unwrapped


def extract_original(
    raw: bytes, *, filename: str | None = None, max_bytes: int = MAX_REPORT_BYTES
) -> Unwrapped:
    """The original message inside a report, or the report itself for an inline forward."""
    if len(raw) > max_bytes:
        raise ReportTooLarge(len(raw), max_bytes)
    warnings: list[str] = []
    wrapper_raw = raw
    if raw.startswith(OLE_MAGIC):
        wrapper_raw, conversion_warnings = msg_to_mime(raw, max_depth=MAX_EMAIL_DEPTH)
        warnings += conversion_warnings
    try:
        wrapper = parse_email(wrapper_raw, max_bytes=max(max_bytes, len(wrapper_raw)), max_depth=1)
    except MailParseError:
        raise ReportTooLarge(len(wrapper_raw), max_bytes) from None
    reporter = _address(wrapper.from_)
    originals = [a for a in wrapper.attachments if _is_attached_email(a)]
    if len(originals) > 1:
        warnings.append(f"the report attaches {len(originals)} emails; the first was analysed")
    for attachment in originals:
        content = attachment.content
        if content.startswith(OLE_MAGIC):
            try:
                content, conversion_warnings = msg_to_mime(content, max_depth=MAX_EMAIL_DEPTH)
            except ReportParseError as exc:
                warnings.append(str(exc))
                continue
            warnings += conversion_warnings
        if content.strip():
            return Unwrapped(content, "original", reporter, wrapper.subject, tuple(warnings))
    if _is_inline_forward(wrapper):
        return Unwrapped(raw, "forward", reporter, wrapper.subject, tuple(warnings))
    # Not wrapped at all: the report is the message itself (an analyst's upload of an .eml).
    return Unwrapped(raw, "original", None, wrapper.subject, tuple(warnings))


def _is_attached_email(attachment: ParsedAttachment) -> bool:
    name = attachment.name.lower()
    return (
        attachment.content_type in ("message/rfc822", "message/global")
        or name.endswith((".eml", ".msg"))
        or attachment.content_type == "application/vnd.ms-outlook"
    )


def _is_inline_forward(wrapper: ParsedEmail) -> bool:
    if _FORWARD_SUBJECT.search(wrapper.subject[:200]):
        return True
    body = (wrapper.text or html_to_text(wrapper.html or "", max_chars=200_000))[:200_000]
    return _FORWARD_BODY.search(body) is not None


class _Builder:
    """Turns a `ParsedEmail` into a `ParsedReport`, collecting warnings on the way."""

    def __init__(
        self,
        raw: bytes,
        mime: bytes,
        parsed: ParsedEmail,
        warnings: list[str],
        limits: ArchiveLimits,
    ) -> None:
        self.raw = raw
        self.mime = mime
        self.parsed = parsed
        self.warnings = warnings
        self.limits = limits
        self.urls: dict[tuple[str, str | None], ExtractedUrl] = {}

    def build(self) -> ParsedReport:
        parsed = self.parsed
        self.warnings.extend(parsed.defects)
        headers = self._headers()
        text = parsed.text or (html_to_text(parsed.html) if parsed.html else "")
        if len(text) > MAX_TEXT_CHARS:
            self.warnings.append(f"body text longer than {MAX_TEXT_CHARS} characters was cut")
            text = text[:MAX_TEXT_CHARS]
        received = self._received(headers)
        self._body_urls(parsed.text, parsed.html, "text", "html")
        attachments = self._attachments()
        sender = _address(parsed.from_) or Address("")
        reply_to = tuple(filter(None, (_address(a) for a in parsed.reply_to)))
        return_path = _first(headers, "return-path")
        return_path = (
            return_path.strip().strip("<>").strip().lower() or None if return_path else None
        )
        urls = tuple(self.urls.values())
        return ParsedReport(
            sha256=hashlib.sha256(self.raw).hexdigest(),
            size=len(self.raw),
            message_id=parsed.message_id,
            subject=normalise_space(parsed.subject)[:_HEADER_VALUE],
            sender=sender,
            reply_to=reply_to,
            return_path=return_path,
            to=tuple(filter(None, (_address(a) for a in parsed.to))),
            cc=tuple(filter(None, (_address(a) for a in parsed.cc))),
            date=parsed.date,
            headers=headers,
            received=received,
            originating_ip=_originating_ip(received, headers),
            auth=_auth_results(headers),
            text=text,
            html=parsed.html[: MAX_TEXT_CHARS * 2] if parsed.html else None,
            urls=urls,
            domains=_domains(sender, reply_to, return_path, urls),
            ips=_ips(headers, urls),
            attachments=attachments,
            warnings=self._warnings(),
        )

    def _warnings(self) -> tuple[str, ...]:
        unique = list(dict.fromkeys(self.warnings))
        if len(unique) > MAX_WARNINGS:
            unique = [*unique[:MAX_WARNINGS], f"{len(unique) - MAX_WARNINGS} more warnings"]
        return tuple(unique)

    def _headers(self) -> tuple[tuple[str, str], ...]:
        headers = self.parsed.headers
        if len(headers) > MAX_HEADERS:
            self.warnings.append(f"{len(headers)} header fields; only the first {MAX_HEADERS} kept")
            headers = headers[:MAX_HEADERS]
        cleaned: list[tuple[str, str]] = []
        for name, value in headers:
            if any(char in value for char in "\r\n\x00"):
                # An encoded-word can smuggle a line break into a decoded value.
                self.warnings.append(
                    f"{name[:60]} header holds a line break or NUL after decoding "
                    "(possible header injection)"
                )
                value = " ".join(value.replace("\x00", " ").splitlines())
            cleaned.append((name, value))
        head = self.mime[
            : self.mime.find(b"\n\n") if b"\n\n" in self.mime[:1_048_576] else 1_048_576
        ]
        if b"\r" in head.replace(b"\r\n", b""):
            self.warnings.append(
                "a header holds a bare carriage return (possible header injection)"
            )
        return tuple(cleaned)

    def _received(self, headers: Sequence[tuple[str, str]]) -> tuple[ReceivedHop, ...]:
        hops: list[ReceivedHop] = []
        for name, value in headers:
            if name.lower() != "received":
                continue
            if len(hops) >= MAX_RECEIVED:
                self.warnings.append(f"more than {MAX_RECEIVED} Received headers; the rest ignored")
                break
            hops.append(_received_hop(value[:_HEADER_VALUE]))
        return tuple(hops)

    def _body_urls(
        self, text: str | None, html: str | None, text_source: str, html_source: str
    ) -> None:
        if text:
            for raw_url in extract_urls(text=text[:MAX_TEXT_CHARS], limit=MAX_URLS):
                self._add_url(raw_url, text_source, None)
        if html:
            features = scan_html(html)
            anchors: dict[str, str] = {}
            for href, visible in features.anchors:
                anchors.setdefault(href, visible)
            for raw_url in extract_urls(html=html[: MAX_TEXT_CHARS * 2], limit=MAX_URLS):
                self._add_url(raw_url, html_source, anchors.get(raw_url))
            for data_uri in features.data_uris:
                self._add_data_uri(data_uri, html_source)

    def _add_url(self, raw_url: str, source: str, anchor_text: str | None) -> None:
        if len(self.urls) >= MAX_URLS:
            return
        url = normalise_url(raw_url)
        host = url_host(raw_url) if url else None
        if url is None or host is None:
            return
        domain = registrable_domain(host)
        mismatch = _anchor_mismatch(anchor_text, domain) if anchor_text else False
        key = (url, anchor_text if mismatch else None)
        if key not in self.urls:
            self.urls[key] = ExtractedUrl(
                url=url,
                original=raw_url[:_HEADER_VALUE],
                host=host,
                domain=domain,
                source=source,
                anchor_text=anchor_text or None,
                anchor_mismatch=mismatch,
            )

    def _add_data_uri(self, uri: str, source: str) -> None:
        key = (uri, None)
        if len(self.urls) < MAX_URLS and key not in self.urls:
            self.urls[key] = ExtractedUrl(url=uri, original=uri, host="", domain="", source=source)

    def _attachments(self) -> tuple[ExtractedAttachment, ...]:
        found: list[ExtractedAttachment] = []
        pending: list[tuple[ParsedEmail, int, str | None]] = [(self.parsed, 0, None)]
        while pending:
            message, depth, container = pending.pop(0)
            for attachment in message.attachments:
                if len(found) >= MAX_ATTACHMENTS:
                    self.warnings.append(
                        f"more than {MAX_ATTACHMENTS} attachments; the rest ignored"
                    )
                    return tuple(found)
                found.extend(self._attachment(attachment, depth, container))
            for nested in message.attached_emails:
                label = f"attached email {normalise_space(nested.subject)[:80]!r}"
                self._body_urls(nested.text, nested.html, "attachment", "attachment")
                pending.append((nested, depth + 1, label))
        return tuple(found)

    def _attachment(
        self, attachment: ParsedAttachment, depth: int, container: str | None
    ) -> list[ExtractedAttachment]:
        content = attachment.content
        sniffed = filetypes.sniff(content)
        notes: list[str] = []
        has_macros = encrypted = False
        members: list[ExtractedAttachment] = []
        if sniffed == filetypes.OLE2:
            info = inspect_ole(content)
            sniffed, has_macros, encrypted = info.sniffed_type, info.has_macros, info.encrypted
            notes += [info.warning] if info.warning else []
        elif sniffed == filetypes.ZIP:
            listing = inspect_zip(content, attachment.name or "(unnamed zip)", self.limits)
            office_type = ooxml_type(listing.names)
            notes += listing.warnings
            if office_type:
                sniffed, has_macros = office_type, ooxml_has_macros(listing.names)
            else:
                encrypted = listing.encrypted
                members = [self._member(m, depth) for m in listing.members]
        self._attachment_urls(attachment.name, content, sniffed)
        self.warnings += [f"attachment {attachment.name[:80]!r}: {note}" for note in notes]
        hashes = digests(content)
        top = ExtractedAttachment(
            name=attachment.name,
            declared_type=attachment.content_type,
            sniffed_type=sniffed,
            size=attachment.size,
            md5=hashes["md5"],
            sha1=hashes["sha1"],
            sha256=hashes["sha256"],
            sha512=hashes["sha512"],
            depth=depth,
            container=container,
            has_macros=has_macros,
            encrypted=encrypted,
            content=content if len(content) <= MAX_KEPT_CONTENT else None,
            warnings=tuple(notes),
        )
        return [top, *members]

    def _member(self, member: object, depth: int) -> ExtractedAttachment:
        from mailtrawl.analysis.archives import ArchiveMember

        assert isinstance(member, ArchiveMember)
        content = member.content
        sniffed = filetypes.sniff(content if content is not None else member.head)
        has_macros = False
        notes = list(member.warnings)
        if content is not None and sniffed == filetypes.OLE2:
            info = inspect_ole(content)
            sniffed, has_macros = info.sniffed_type, info.has_macros
            notes += [info.warning] if info.warning else []
        if content is not None:
            self._attachment_urls(member.name, content, sniffed)
        hashes = member.digests or dict.fromkeys(("md5", "sha1", "sha256", "sha512"), "")
        if member.digests is None and not member.encrypted:
            notes.append("not read completely: no hashes")
        guessed = mimetypes.guess_type(member.name, strict=False)[0] or ""
        return ExtractedAttachment(
            name=member.name,
            declared_type=guessed,
            sniffed_type=sniffed if (content is not None or member.head) else "",
            size=member.size if member.complete else member.declared_size,
            md5=hashes["md5"],
            sha1=hashes["sha1"],
            sha256=hashes["sha256"],
            sha512=hashes["sha512"],
            depth=depth + member.depth,
            container=member.container,
            has_macros=has_macros,
            encrypted=member.encrypted,
            content=content,
            warnings=tuple(notes),
        )

    def _attachment_urls(self, name: str, content: bytes, sniffed: str) -> None:
        """URLs in HTML, text and (uncompressed) PDF attachments count as source "attachment"."""
        head = content[:MAX_SCANNED_ATTACHMENT]
        ext = extension(name)
        if sniffed in (filetypes.HTML, filetypes.SVG) or ext in filetypes.HTML_EXTENSIONS:
            self._body_urls(None, head.decode("utf-8", "replace"), "attachment", "attachment")
        elif sniffed == filetypes.TEXT and ext in ("txt", "csv", "url", ""):
            self._body_urls(head.decode("utf-8", "replace"), None, "attachment", "attachment")
        elif sniffed == filetypes.PDF:
            text = head.decode("latin-1")
            for match in _PDF_URI.finditer(text):
                self._add_url(match.group(1).replace("\\", ""), "attachment", None)


def _address(pair: tuple[str, str] | None) -> Address | None:
    if pair is None:
        return None
    name, address = pair
    return Address(address.strip().lower()[:_HEADER_VALUE], normalise_space(name)[:_HEADER_VALUE])


def _first(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _received_hop(value: str) -> ReceivedHop:
    clause, _, date_text = value.rpartition(";") if ";" in value else (value, "", "")
    from_match = _RECEIVED_FROM.search(clause)
    by_match = _RECEIVED_BY.search(clause)
    ips = received_ips([("Received", clause)])
    when: datetime | None = None
    if date_text.strip():
        try:
            when = email.utils.parsedate_to_datetime(date_text.strip()[:200])
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
    return ReceivedHop(
        from_host=from_match.group(1).lower() if from_match else None,
        # The receiving server writes the peer's real address last ("[HELO] (rdns [ip])").
        from_ip=ips[-1] if ips else None,
        by_host=by_match.group(1).lower() if by_match else None,
        when=when,
    )


def is_external_ip(ip: str) -> bool:
    """Whether `ip` is an Internet address: not private, shared, loopback or link-local."""
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return False
    return not any(address in network for network in _INTERNAL_NETWORKS)


def _originating_ip(
    received: Sequence[ReceivedHop], headers: Sequence[tuple[str, str]]
) -> str | None:
    # The oldest hop from an Internet address is where the message entered the Internet.
    for hop in reversed(received):
        if hop.from_ip and is_external_ip(hop.from_ip):
            return hop.from_ip
    declared = _first(headers, "x-originating-ip")
    if declared:
        candidate = declared.strip()[:100].strip("[]() ")
        if is_external_ip(candidate):
            return str(ipaddress.ip_address(candidate))
    return None


def _auth_results(headers: Sequence[tuple[str, str]]) -> AuthResults:
    """SPF/DKIM/DMARC/compauth from the topmost Authentication-Results that states each method,
    then ARC-Authentication-Results, then Received-SPF for SPF."""
    found: dict[str, str] = {}
    reason: str | None = None
    for wanted in ("authentication-results", "arc-authentication-results"):
        for name, value in headers:
            if name.lower() != wanted:
                continue
            seen_here: dict[str, list[str]] = {}
            for segment in value[:_HEADER_VALUE].split(";"):
                match = _AUTH_RESULT.search(segment)
                if match is None:
                    continue
                method, result = match.group(1).lower(), match.group(2).lower()
                if method in _AUTH_METHODS:
                    seen_here.setdefault(method, []).append(result)
                    if method == "compauth" and reason is None:
                        reason_match = _REASON.search(segment)
                        reason = reason_match.group(1).lower() if reason_match else None
            for method, results in seen_here.items():
                # Several DKIM signatures: one that passes is enough, as for DMARC.
                found.setdefault(method, "pass" if "pass" in results else results[0])
    if "spf" not in found:
        received_spf = _first(headers, "received-spf")
        if received_spf and received_spf.split():
            found["spf"] = received_spf.split()[0].lower()[:20]
    return AuthResults(
        spf=found.get("spf"),
        dkim=found.get("dkim"),
        dmarc=found.get("dmarc"),
        compauth=found.get("compauth"),
        compauth_reason=reason if "compauth" in found else None,
    )


def _anchor_mismatch(anchor_text: str, target_domain: str) -> bool:
    """Whether visible link text names a host in another registrable domain than the link."""
    candidate = anchor_text.strip().strip("<>[]()\"'").strip()
    if not candidate or _URL_LIKE_TEXT.search(candidate) is None:
        return False
    shown_host = url_host(candidate if "://" in candidate else f"http://{candidate}")
    if not shown_host or not (is_ip(shown_host) or has_known_suffix(shown_host)):
        return False
    shown = registrable_domain(shown_host)
    return bool(shown) and shown != target_domain


def _domains(
    sender: Address,
    reply_to: Sequence[Address],
    return_path: str | None,
    urls: Sequence[ExtractedUrl],
) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for address in (sender, *reply_to):
        found.setdefault(domain_of_address(address.address), None)
    if return_path:
        found.setdefault(domain_of_address(return_path), None)
    for url in urls:
        if url.domain and not is_ip(url.domain):
            found.setdefault(url.domain, None)
    found.pop("", None)
    return tuple(found)


def _ips(headers: Sequence[tuple[str, str]], urls: Sequence[ExtractedUrl]) -> tuple[str, ...]:
    found = dict.fromkeys(received_ips(headers))
    for url in urls:
        if url.host and is_ip(url.host):
            found.setdefault(url.host, None)
    return tuple(found)
