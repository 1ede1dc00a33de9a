"""Rebuilding a deleted or purged message from its raw MIME, to put it back as received mail.

The undo vault keeps a message's MIME and its mailbox state (`MessageSnapshot`); restore turns
them into a `NewMessage` that a provider creates in the original folder, not as a draft.

The MIME is attacker-controlled, so parsing never raises on malformed input: headers go
through `mailtrawl.matching.mime.parse_email` (RFC 2047 decoding, tolerant addresses and
dates), unknown charsets are read as UTF-8, undecodable bytes become U+FFFD, and control
characters are removed from every single-line value (no header injection through a decoded
subject or name). Only an input over `max_bytes` is refused, with `MimeTooLarge`. When the
MIME structure cannot be taken apart (nested too deeply, too many parts, a parser failure),
nothing is dropped: the original message is attached whole as `original.eml` under a short
explanatory text body.

What a restored message keeps: subject, from, to, cc, reply-to, the sent time (Date), the
Internet message id, the HTML body (else the text body), every attachment with its bytes
(inline parts keep their Content-ID so `cid:` images still show), attached emails as `.eml`
file attachments, and a bounded number of custom `x-` headers (the only ones a platform lets
us set; each new header name also uses up one of the mailbox's named properties).
"""

from __future__ import annotations

import binascii
import codecs
import logging
import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser

from mailtrawl.core.mail import AttachmentContent, BodyType, EmailAddress, Header, NewMessage
from mailtrawl.matching.mime import ParsedEmail, parse_email

logger = logging.getLogger(__name__)

# Exchange Online's largest message; the vault never holds anything bigger.
MAX_RESTORE_BYTES = 150 * 1024 * 1024
MAX_PARTS = 1000
MAX_DEPTH = 40  # multipart nesting; deeper structures are kept whole as original.eml
MAX_RECIPIENTS = 500  # per address list
MAX_TEXT = 16 * 1024  # characters kept of a subject, display name or file name
MAX_CUSTOM_HEADERS = 20
MAX_CUSTOM_HEADER_VALUE = 2_000
MAX_CUSTOM_HEADER_TOTAL = 16 * 1024
FLAG_STATUSES = frozenset({"notFlagged", "flagged", "complete"})
IMPORTANCES = frozenset({"low", "normal", "high"})
FALLBACK_NAME = "original.eml"
FALLBACK_BODY = (
    "This message could not be restored part by part. "
    f"The original message is attached unchanged as {FALLBACK_NAME}."
)

# C0 and C1 controls, DEL and the Unicode line and paragraph separators.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_HEADER_NAME = re.compile(r"[Xx]-[A-Za-z0-9_.-]{1,98}")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,995}>")
_TEXT_TYPES = frozenset({"text/plain", "text/html"})
_EMAIL_TYPES = frozenset({"message/rfc822", "message/global"})
# Codecs no mail client honours, or that are slow or surprising on hostile input.
_REFUSED_CODECS = frozenset(
    {"punycode", "idna", "unicode_escape", "raw_unicode_escape", "undefined", "utf_7"}
)
# Regenerating an attached message: keep its folding and bytes, CRLF line ends.
_ATTACHED_EMAIL_POLICY = policy.default.clone(
    linesep="\r\n", refold_source="none", max_line_length=0
)


class MimeTooLarge(ValueError):
    """The raw message is larger than the restore was allowed to read."""


class _Unrebuildable(Exception):
    """The structure cannot be taken apart within the limits; restore the message whole."""


@dataclass(slots=True)
class _Content:
    body: str = ""
    body_type: BodyType = "text"
    attachments: list[AttachmentContent] = field(default_factory=list)


def message_from_mime(
    mime: bytes,
    *,
    received: datetime | None,
    categories: Iterable[str] = (),
    is_read: bool | None,
    flag_status: str | None,
    importance: str | None,
    max_bytes: int = MAX_RESTORE_BYTES,
) -> NewMessage:
    """The message to create again from raw MIME and the state the vault kept of it.

    `received` (from the snapshot) wins over the Date header for the received time; the Date
    header is the sent time. Unknown `flag_status`/`importance` values are left to the
    platform's defaults; a missing importance is read from the Importance/X-Priority headers.
    Raises `MimeTooLarge` above `max_bytes`; never raises on malformed MIME.
    """
    if len(mime) > max_bytes:
        raise MimeTooLarge(
            f"The message is {len(mime)} bytes, more than the {max_bytes} bytes a restore may "
            "read; restore it from the vault by hand."
        )
    raw = bytes(mime)
    head = parse_email(_header_block(raw), max_bytes=max_bytes)
    try:
        content = _content(raw)
    except Exception as exc:  # _Unrebuildable, RecursionError, or what the email package raises
        logger.warning("restoring a message whole as %s: %s", FALLBACK_NAME, exc)
        content = _whole(raw)
    sent = head.date
    return NewMessage(
        subject=_one_line(head.subject),
        body=content.body,
        body_type=content.body_type,
        from_=_address(head.from_ or head.sender),
        to=_addresses(head.to),
        cc=_addresses(head.cc),
        reply_to=_addresses(head.reply_to),
        received=_aware(received) or sent,
        sent=sent,
        internet_message_id=_message_id(head.message_id),
        headers=_custom_headers(head.headers),
        categories=tuple(dict.fromkeys(c for c in categories if c)),
        is_read=bool(is_read),
        attachments=tuple(content.attachments),
        flag_status=flag_status if flag_status in FLAG_STATUSES else None,
        importance=_importance(importance, head),
    )


# Headers -----------------------------------------------------------------------------------


def _header_block(raw: bytes) -> bytes:
    """The header section, up to and including the first empty line (all of it if none)."""
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    return raw[: min(ends) + 1] if ends else raw


def _one_line(value: str, limit: int = MAX_TEXT) -> str:
    """The value on one line: each run of control characters (CR, LF, ...) becomes a space."""
    return _CONTROLS.sub(" ", value).strip()[:limit]


def _address(pair: tuple[str, str] | None) -> EmailAddress | None:
    if pair is None:
        return None
    name, address = _one_line(pair[0]), _one_line(pair[1], 998).replace(" ", "")
    return EmailAddress(address, name) if address else None


def _addresses(pairs: Iterable[tuple[str, str]]) -> tuple[EmailAddress, ...]:
    found = (_address(pair) for pair in pairs)
    return tuple(a for a in found if a is not None)[:MAX_RECIPIENTS]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _message_id(value: str | None) -> str | None:
    """The original <id>; one without brackets gets them, an unusable one is dropped."""
    if not value:
        return None
    match = _MESSAGE_ID.search(value)
    if match:
        return match.group()
    token = _one_line(value).strip("<> ")
    return f"<{token}>" if token and " " not in token and len(token) <= 995 else None


def _custom_headers(headers: Iterable[tuple[str, str]]) -> tuple[Header, ...]:
    """The `x-` headers a platform accepts on create, within the count and size bounds."""
    kept: list[Header] = []
    total = 0
    for name, value in headers:
        if not _HEADER_NAME.fullmatch(name):
            continue
        text = _one_line(value, MAX_CUSTOM_HEADER_VALUE + 1)
        size = len(name) + len(text)
        # Skipped, not cut: a truncated value would be a false one.
        if len(text) > MAX_CUSTOM_HEADER_VALUE or total + size > MAX_CUSTOM_HEADER_TOTAL:
            continue
        kept.append(Header(name, text))
        total += size
        if len(kept) >= MAX_CUSTOM_HEADERS:
            break
    return tuple(kept)


def _importance(value: str | None, head: ParsedEmail) -> str | None:
    if value is not None and value.lower() in IMPORTANCES:
        return value.lower()
    for name, text in head.headers:
        low, word = name.lower(), text.strip().lower()
        if low in ("importance", "priority") and word in ("high", "urgent"):
            return "high"
        if low in ("importance", "priority") and word in ("low", "non-urgent"):
            return "low"
        if low == "x-priority" and word[:1] in ("1", "2"):
            return "high"
        if low == "x-priority" and word[:1] in ("4", "5"):
            return "low"
    return None


# Body and attachments ----------------------------------------------------------------------


def _content(raw: bytes) -> _Content:
    root = BytesParser(policy=policy.default).parsebytes(raw)
    body = _find_body(root, 0)
    skip = _skipped(root, body)
    content = _Content()
    if body is not None:
        content.body = _decode(_payload(body), _charset(body))
        content.body_type = "html" if body.get_content_type() == "text/html" else "text"
    unnamed = 0
    stack: list[tuple[Message, int]] = [(root, 0)]
    visited = 0
    while stack:
        part, depth = stack.pop()
        visited += 1
        if visited > MAX_PARTS:
            raise _Unrebuildable(f"more than {MAX_PARTS} MIME parts")
        if id(part) in skip:
            continue
        content_type = part.get_content_type()
        if content_type in _EMAIL_TYPES:
            content.attachments.append(_attached_email(part, len(content.attachments)))
            continue
        children = _children(part)
        if content_type.startswith("multipart/") and part.is_multipart():
            if depth >= MAX_DEPTH:
                raise _Unrebuildable(f"MIME parts nested more than {MAX_DEPTH} levels deep")
            stack.extend((child, depth + 1) for child in reversed(children))
            continue
        name = _filename(part)
        if not name:
            unnamed += 1
            name = f"ATT{unnamed:05d}{_extension(content_type)}"
        content_id = _content_id(part)
        content.attachments.append(
            _attachment(
                len(content.attachments),
                name,
                content_type,
                _payload(part),
                is_inline=content_id is not None and _disposition(part) != "attachment",
                content_id=content_id,
            )
        )
    return content


def _whole(raw: bytes) -> _Content:
    original = _attachment(0, FALLBACK_NAME, "message/rfc822", raw)
    return _Content(body=FALLBACK_BODY, body_type="text", attachments=[original])


def _attachment(
    index: int,
    name: str,
    content_type: str,
    content: bytes,
    *,
    is_inline: bool = False,
    content_id: str | None = None,
) -> AttachmentContent:
    return AttachmentContent(
        id=f"restored-{index}",
        name=name,
        content_type=content_type,
        size=len(content),
        content=content,
        is_inline=is_inline,
        kind="file",
        content_id=content_id,
    )


def _find_body(part: Message, depth: int) -> Message | None:
    """The part a mail client shows as the body: HTML among alternatives, else text."""
    if depth > MAX_DEPTH:
        return None
    content_type = part.get_content_type()
    if content_type in _TEXT_TYPES:
        return None if depth and _is_attachment(part) else part
    if not content_type.startswith("multipart/"):
        return None
    if not part.is_multipart():  # its boundary is missing: shown as text, as clients do
        return None if depth else part
    children = _children(part)
    if content_type == "multipart/alternative":
        found = [b for b in (_find_body(c, depth + 1) for c in children) if b is not None]
        html = [b for b in found if b.get_content_type() == "text/html"]
        # RFC 2046: the last alternative is the preferred one.
        return html[-1] if html else (found[-1] if found else None)
    if content_type == "multipart/related" and children:
        start = _param(part, "start").strip("<> ")
        root = next((c for c in children if start and _content_id(c) == start), children[0])
        return _find_body(root, depth + 1)
    for child in children:
        if not _is_attachment(child):
            found_body = _find_body(child, depth + 1)
            if found_body is not None:
                return found_body
    return None


def _skipped(root: Message, body: Message | None) -> set[int]:
    """The body part and the alternatives to it that the body replaces."""
    if body is None:
        return set()
    path = _path_to(root, body)
    chain = [*path, body]
    skip = {id(body)}
    for index, container in enumerate(path):
        if container.get_content_type() == "multipart/alternative":
            keep = chain[index + 1]
            skip.update(id(c) for c in _children(container) if c is not keep)
    return skip


def _path_to(root: Message, target: Message) -> list[Message]:
    """The containers from root down to target (exclusive)."""
    stack: list[tuple[Message, list[Message]]] = [(root, [])]
    while stack:
        part, path = stack.pop()
        if part is target:
            return path
        if part.get_content_type().startswith("multipart/") and len(path) < MAX_DEPTH:
            stack.extend((child, [*path, part]) for child in _children(part))
    return []


def _attached_email(part: Message, index: int) -> AttachmentContent:
    """A message/rfc822 part as a `.eml` file attachment holding the attached message's MIME."""
    content, inner = _email_bytes(part)
    subject = ""
    if inner is not None:
        try:
            subject = str(inner.get("subject", "") or "")
        except Exception:  # a header the policy cannot parse: the name falls back below
            subject = ""
    name = _filename(part) or _safe_file_name(subject) or "Attached message"
    if not name.lower().endswith(".eml"):
        name += ".eml"
    return _attachment(index, name, "message/rfc822", content)


def _email_bytes(part: Message) -> tuple[bytes, Message | None]:
    """The attached message's MIME, and its parsed form when there is one."""
    inner = next(iter(_children(part)), None)
    if inner is None:
        return _payload(part), None
    data = inner.as_bytes(policy=_ATTACHED_EMAIL_POLICY)
    encoding = str(part.get("content-transfer-encoding", "") or "").strip().lower()
    if encoding not in ("base64", "quoted-printable"):
        return data, inner
    # RFC 2046 forbids encoding a message/rfc822 part; some mailers do it anyway, and the
    # parser then took the encoded text for a message: decode it and read its headers.
    try:
        if encoding == "base64":
            cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
            decoded = binascii.a2b_base64(cleaned + b"=" * (-len(cleaned) % 4))
        else:
            decoded = binascii.a2b_qp(data)
    except (binascii.Error, ValueError):
        return data, inner  # not really encoded after all: keep it as it came
    return decoded, BytesParser(policy=policy.default).parsebytes(decoded, headersonly=True)


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _is_attachment(part: Message) -> bool:
    return _disposition(part) == "attachment" or bool(_filename(part))


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:  # RFC 2231 parameters the policy cannot decode
        name = None
    return _safe_file_name(str(name)) if name else ""


def _safe_file_name(name: str) -> str:
    return _one_line(_fix_surrogates(name), 255).strip()


def _param(part: Message, name: str) -> str:
    try:
        value = part.get_param(name)
    except Exception:
        return ""
    return value if isinstance(value, str) else ""


def _content_id(part: Message) -> str | None:
    try:
        raw = part.get("content-id")
    except Exception:
        return None
    if raw is None:
        return None
    cid = _one_line(str(raw), 998).strip("<> ")
    return cid or None


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _payload(part: Message) -> bytes:
    """The part's content with its transfer encoding undone (or as it came, if broken)."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _decode(payload: bytes, charset: str | None) -> str:
    codec = _codec(charset)
    try:
        return payload.decode(codec, "replace")
    except (LookupError, ValueError):
        return payload.decode("utf-8", "replace")


def _codec(charset: str | None) -> str:
    if not charset:
        return "utf-8"  # a superset of the ASCII an unlabelled part should be
    try:
        info = codecs.lookup(charset.strip())
    except (LookupError, ValueError):
        return "utf-8"
    name = info.name.replace("-", "_")
    if name in _REFUSED_CODECS or not getattr(info, "_is_text_encoding", True):
        return "utf-8"
    return info.name


def _extension(content_type: str) -> str:
    if content_type == "text/plain":
        return ".txt"
    return mimetypes.guess_extension(content_type, strict=False) or ".dat"


def _fix_surrogates(text: str) -> str:
    """Undecodable bytes the parser smuggled in as surrogates, as UTF-8 (or U+FFFD)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
