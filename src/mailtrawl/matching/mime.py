"""Parsing a raw email (an attached .eml or item attachment, a reported message) for matching.

Built on the standard library's `email` package with `policy.default`, wrapped so that hostile
input never raises: unknown charsets fall back to UTF-8, undecodable bytes become U+FFFD, a
header the policy cannot parse keeps its raw value, and each such problem is recorded in
`defects`. Only an input over `max_bytes` is refused, with MailParseError.

Structured header parsing in the standard library is superlinear, so headers longer than
MAX_PARSED_HEADER characters are only RFC 2047-decoded, and addresses are picked out of them
by a plain addr-spec scan. A text part without a charset is read as UTF-8 (a superset of the
ASCII it should be). A multipart part whose boundary is missing is read as text, as the
reader's client would show it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.errors import MessageDefect
from email.headerregistry import HeaderRegistry
from email.message import Message
from email.parser import BytesParser

import re2

MAX_PARSED_HEADER = 8_192
_TEXT_TYPES = frozenset({"text/plain", "text/html"})
_EMAIL_TYPES = frozenset({"message/rfc822", "message/global"})
_ADDRESS_HEADERS = ("from", "sender", "to", "cc", "bcc", "reply-to")
# Every header read as free text, RFC 2047 encoded-words decoded.
_UNSTRUCTURED = HeaderRegistry(use_default_map=False)
_ADDR_SPEC = re2.compile(r"[^\s<>@,;:\"()\[\]]+@[^\s<>@,;:\"()\[\]]+")
# The same inside angle brackets: the real address when a display name holds another one.
_ANGLE_ADDR = re2.compile(r"<\s*([^\s<>@,;:\"()\[\]]+@[^\s<>@,;:\"()\[\]]+)\s*>")

Address = tuple[str, str]


class MailParseError(ValueError):
    """The message is larger than the parser was allowed to read."""


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    name: str
    content_type: str
    size: int
    content: bytes
    is_inline: bool


@dataclass(frozen=True, slots=True)
class ParsedEmail:
    """What filters look at in one message; addresses are (display name, address) pairs."""

    subject: str = ""
    from_: Address | None = None
    sender: Address | None = None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    date: datetime | None = None
    message_id: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    text: str | None = None
    html: str | None = None
    attachments: tuple[ParsedAttachment, ...] = ()
    attached_emails: tuple[ParsedEmail, ...] = ()
    defects: tuple[str, ...] = ()


@dataclass(slots=True)
class _Limits:
    max_depth: int
    parts_left: int  # shared by a message and everything attached to it


@dataclass(slots=True)
class _Body:
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    emails: list[ParsedEmail] = field(default_factory=list)


def parse_email(
    raw: bytes,
    *,
    max_bytes: int = 50 * 1024 * 1024,
    max_depth: int = 3,
    max_parts: int = 1000,
) -> ParsedEmail:
    """Parse a raw RFC 5322 message, with attached emails down to `max_depth` levels."""
    if len(raw) > max_bytes:
        raise MailParseError(f"the message is {len(raw)} bytes, more than the {max_bytes} allowed")
    return _parse(bytes(raw), 0, _Limits(max_depth, max_parts))


def _parse(raw: bytes, depth: int, limits: _Limits) -> ParsedEmail:
    parser = BytesParser(policy=policy.default)
    try:
        return _convert(parser.parsebytes(raw), depth, limits, [])
    except RecursionError:
        # Thousands of nested parts exhaust the parser's recursion; the headers still count.
        defects = ["MIME structure nested too deeply; only the headers were parsed"]
    except Exception as exc:  # the email package does not document all it may raise
        defects = [f"message could not be parsed ({type(exc).__name__}); only the headers were"]
    try:
        return _convert(
            parser.parsebytes(raw, headersonly=True), depth, limits, defects, body=False
        )
    except Exception as exc:
        return ParsedEmail(
            defects=(*defects, f"headers could not be parsed ({type(exc).__name__})")
        )


def _convert(
    message: Message, depth: int, limits: _Limits, defects: list[str], *, body: bool = True
) -> ParsedEmail:
    headers: list[tuple[str, str]] = []
    addresses: dict[str, list[Address]] = {name: [] for name in _ADDRESS_HEADERS}
    date: datetime | None = None
    for name, value in message.raw_items():
        parsed, text = _header(message, name, str(value), defects)
        headers.append((name, text))
        key = name.lower()
        if key in addresses:
            addresses[key] += _addresses(parsed, text, _clean(str(value)[:MAX_PARSED_HEADER]))
        elif key == "date" and date is None:
            date = _date(parsed)
    first = {name.lower(): text for name, text in reversed(headers)}
    parts = _walk(message, depth, limits, defects) if body else _Body()
    return ParsedEmail(
        subject=first.get("subject", ""),
        from_=next(iter(addresses["from"]), None),
        sender=next(iter(addresses["sender"]), None),
        to=tuple(addresses["to"]),
        cc=tuple(addresses["cc"]),
        bcc=tuple(addresses["bcc"]),
        reply_to=tuple(addresses["reply-to"]),
        date=date,
        message_id=first.get("message-id", "").strip() or None,
        headers=tuple(headers),
        text="\n".join(parts.texts) if parts.texts else None,
        html="\n".join(parts.htmls) if parts.htmls else None,
        attachments=tuple(parts.attachments),
        attached_emails=tuple(parts.emails),
        defects=tuple(dict.fromkeys(defects)),
    )


def _walk(message: Message, depth: int, limits: _Limits, defects: list[str]) -> _Body:
    """Sort the parts of `message` into bodies, attachments and attached emails, in order."""
    body = _Body()
    stack = [message]
    while stack:
        part = stack.pop()
        if limits.parts_left <= 0:
            defects.append("too many MIME parts; the rest were not parsed")
            break
        limits.parts_left -= 1
        defects.extend(_defect_names(part.defects))
        content_type, disposition, charset, name = _describe(part, defects)
        is_inline = disposition == "inline"
        if part.is_multipart():
            children = [child for child in part.get_payload() if isinstance(child, Message)]
            if content_type not in _EMAIL_TYPES:
                stack.extend(reversed(children))
                continue
            inner = children[0] if children else Message(policy=policy.default)
            nested = (
                None
                if _too_deep(depth, limits, defects)
                else _convert(inner, depth + 1, limits, [])
            )
            if nested is not None:
                body.emails.append(nested)
            content = _serialise(inner, defects)
            name = name or (nested.subject if nested else "")
            body.attachments.append(
                ParsedAttachment(name, content_type, len(content), content, is_inline)
            )
            continue
        payload = _payload(part, defects)
        if content_type in _TEXT_TYPES and disposition != "attachment" and not name:
            (body.texts if content_type == "text/plain" else body.htmls).append(
                _decode(payload, charset, defects)
            )
        elif content_type.startswith("multipart/"):  # its boundary is missing
            body.texts.append(_decode(payload, charset, defects))
        else:
            body.attachments.append(
                ParsedAttachment(name, content_type, len(payload), payload, is_inline)
            )
            if name.lower().endswith(".eml") and not _too_deep(depth, limits, defects):
                body.emails.append(_parse(payload, depth + 1, limits))
    return body


def _too_deep(depth: int, limits: _Limits, defects: list[str]) -> bool:
    if depth < limits.max_depth:
        return False
    defects.append(f"an email attached more than {limits.max_depth} levels deep was not parsed")
    return True


def _header(message: Message, name: str, value: str, defects: list[str]) -> tuple[object, str]:
    """The policy's parsed header (None if it was not parsed) and its decoded text."""
    unfolded = value.replace("\r", "").replace("\n", "")
    if len(value) > MAX_PARSED_HEADER:
        defects.append(f"{name} header longer than {MAX_PARSED_HEADER} characters: only decoded")
        try:
            return None, _clean(str(_UNSTRUCTURED(name, unfolded)))
        except Exception:
            return None, _clean(unfolded)
    try:
        parsed: object = message.policy.header_fetch_parse(name, value)
        text = str(parsed)
    except Exception as exc:
        defects.append(f"{name} header could not be parsed ({type(exc).__name__}); kept raw")
        return None, _clean(unfolded)
    defects.extend(
        f"{name} header: {defect}" for defect in _defect_names(getattr(parsed, "defects", ()))
    )
    return parsed, _clean(text)


def _addresses(parsed: object, text: str, raw: str) -> list[Address]:
    try:
        found = [(a.display_name, a.addr_spec) for a in getattr(parsed, "addresses", None) or ()]
    except Exception:
        found = []
    # The raw value: the parser's rendering of a malformed header may drop the bracketed part.
    bracketed = {m.group(1).casefold() for m in _ANGLE_ADDR.finditer(raw)}
    if found and bracketed and not any(a.casefold() in bracketed for _, a in found):
        # A malformed header ("victim@contoso.com <evil@attacker.example>"): the stdlib
        # takes the first address-like text, mail clients the bracketed one; so do we.
        found = []
    if parsed is None or not found:
        # Unparsed, or nothing the parser recognised: pick out what is shaped like an address,
        # angle-bracketed ones first (a spoofed display name may hold another address).
        found = [("", match.group(1)) for match in _ANGLE_ADDR.finditer(raw or text)] or [
            ("", match.group()) for match in _ADDR_SPEC.finditer(text)
        ]
    return [(_clean(name), _clean(address)) for name, address in found if name or address]


def _date(parsed: object) -> datetime | None:
    value = getattr(parsed, "datetime", None)
    if not isinstance(value, datetime):
        return None
    # "-0000" (time zone unknown) parses as naive; read it as UTC so comparisons work.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _describe(part: Message, defects: list[str]) -> tuple[str, str | None, str | None, str]:
    """Content type, disposition, charset and file name of a part, tolerating broken headers."""
    try:
        name = part.get_filename() or ""
        return (
            part.get_content_type(),
            part.get_content_disposition(),
            part.get_content_charset(),
            _clean(str(name)).strip(),
        )
    except Exception as exc:
        defects.append(f"part headers could not be parsed ({type(exc).__name__})")
        return "application/octet-stream", None, None, ""


def _payload(part: Message, defects: list[str]) -> bytes:
    """The part's content with its transfer encoding undone."""
    known = len(part.defects)
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:
        defects.append(f"part content could not be decoded ({type(exc).__name__})")
        return b""
    defects.extend(_defect_names(part.defects[known:]))  # bad base64 is noted while decoding
    return data if isinstance(data, bytes) else b""


def _decode(payload: bytes, charset: str | None, defects: list[str]) -> str:
    try:
        return payload.decode(charset or "utf-8", "replace")
    except (LookupError, ValueError):
        defects.append(f"unknown charset {charset!r}; read as UTF-8")
        return payload.decode("utf-8", "replace")


def _serialise(message: Message, defects: list[str]) -> bytes:
    """The MIME of an attached email, as an item attachment's content."""
    try:
        # compat32 writes headers back as they came instead of refolding them.
        return message.as_bytes(policy=policy.compat32)
    except Exception as exc:
        defects.append(f"an attached email could not be serialised ({type(exc).__name__})")
        return b""


def _defect_names(defects: Iterable[MessageDefect]) -> list[str]:
    return [f"{type(d).__name__}: {d}" if str(d) else type(d).__name__ for d in defects]


def _clean(text: str) -> str:
    """Turn undecodable bytes the parser smuggled in as surrogates into text (or U+FFFD)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # raw 8-bit headers, escaped by the parser: usually UTF-8 (RFC 6532)
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
