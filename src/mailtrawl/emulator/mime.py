"""RFC 822 in and out, the way Exchange Online exposes mail through Microsoft Graph.

`message_from_rfc822` turns delivered bytes into the properties Graph shows for a message
(from, sender, recipients, decoded subject, html-or-text body, `internetMessageHeaders`,
file and item attachments). `rfc822_from_message` goes the other way for `$value`: the stored
bytes when the message arrived as MIME, otherwise a faithful document synthesised from the
structured fields.

Email content is attacker-controlled, so parsing is bounded everywhere: total size, MIME
nesting depth (pre-scanned, because the standard library parser recurses per level), number
of parts, attachments, header fields and header length. The structured MIME headers the
standard parser consults (Content-Type, Content-Disposition, Content-Transfer-Encoding) are
cleaned before it sees them, since its header grammar recurses on nested comments. Broken
charsets, bad base64 and malformed RFC 2047 words degrade to best-effort text, never to an
exception; `MimeError` is raised only when there is nothing to parse.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.message import Message as StdMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote_to_bytes

from mailtrawl.emulator.bodies import html_to_text
from mailtrawl.emulator.state import (
    Attachment,
    BodyType,
    EmailAddress,
    Mailbox,
    Message,
    graph_id,
    utcnow,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_MIME_BYTES",
    "MimeError",
    "ParsedAttachment",
    "ParsedMail",
    "content_type_for",
    "conversation_id_for",
    "decode_rfc2047",
    "encode_unstructured",
    "format_addresses",
    "format_date",
    "message_from_parsed",
    "message_from_rfc822",
    "normalize_subject",
    "parse_rfc822",
    "rfc822_from_message",
]

# Exchange Online's largest accepted message; Graph's upload sessions stop at 150 MB too.
MAX_MIME_BYTES = 150 * 1024 * 1024
MAX_DEPTH = 50
MAX_PARTS = 2000
MAX_ATTACHMENTS = 250
MAX_HEADERS = 1000
MAX_HEADER_VALUE = 32 * 1024  # characters kept per internetMessageHeaders value
MAX_DECODED = 16 * 1024  # characters kept for subject, display names, file names
MAX_ADDRESSES = 1000
_MAX_STRUCTURED = 8 * 1024  # Content-Type & co. are cut to this before any parsing

_SOFT_WRAP = re.compile(r"\r\n(?=[ \t])|\n(?=[ \t])|\r(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]{0,4096})\?=")
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,995}>")
_MIME_TYPE = re.compile(r"\s*([A-Za-z0-9!#$&^_.+-]{1,127})\s*/\s*([A-Za-z0-9!#$&^_.+-]{1,127})")
_TOKEN = re.compile(r"\s*([A-Za-z0-9!#$&^_.+-]{1,127})")
_PARAM = re.compile(
    r";\s*([A-Za-z0-9!#$&^_.+*'-]{1,80})\s*=\s*"
    r'(?:"((?:[^"\\\r\n]|\\.){0,4096})"|([^;\s"]{0,4096}))'
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_CONTINUATION = re.compile(r"([^*]+)\*(\d{1,3})(\*?)")
_SUBJECT_PREFIX = re.compile(
    r"^(?:\s*(?:re|fw|fwd|aw|wg|sv|vs|antw|tr|rif|r|i|enc|res|odp|pd|ynt|vb|doorst)"
    r"\s*(?:\[\d+\])?\s*[:：]\s*)+",
    re.IGNORECASE,
)
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,200}$")
_RECEIVED_DATE = re.compile(r";([^;]*)$")
_ADDRESS_FALLBACK = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")

# Codecs that are not charsets a mail client would honour, or are quadratic on hostile input.
_REFUSED_CODECS = frozenset(
    {"punycode", "idna", "unicode_escape", "raw_unicode_escape", "undefined"}
)
# Labels mail clients use that Python does not know, or knows by a narrower codec.
_CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "unicode-1-1-utf-7": "utf-7",
    "iso-8859-1": "cp1252",  # browsers and Outlook read Latin-1 labels as Windows-1252
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "x-user-defined": "latin-1",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
}
_PARAM_NAMES = frozenset(
    {
        "boundary",
        "charset",
        "format",
        "delsp",
        "type",
        "start",
        "start-info",
        "report-type",
        "method",
        "protocol",
        "micalg",
        "smime-type",
        "reply-type",
        "size",
    }
)
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".htm",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "message/rfc822": ".eml",
}
_AUTHORITATIVE = frozenset(
    {"from", "sender", "to", "cc", "bcc", "reply-to", "subject", "date", "message-id"}
)
_STRUCTURAL = frozenset(
    {
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-id",
        "content-description",
        "content-length",
    }
)
_ADDRESS_SPECIALS = frozenset('()<>@,;:\\".[]')


class MimeError(ValueError):
    """The input holds nothing that can be read as an RFC 822 message."""


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    name: str
    content_type: str
    content: bytes
    kind: Literal["file", "item"] = "file"
    is_inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """Everything Graph shows for a message, parsed once and independent of any mailbox.

    `message_from_parsed` turns it into a fresh `Message`; callers that rebuild mailboxes
    (fixtures) keep these instead of re-parsing the bytes.
    """

    raw: bytes
    subject: str
    from_: tuple[str, str] | None
    sender: tuple[str, str] | None
    to: tuple[tuple[str, str], ...]
    cc: tuple[tuple[str, str], ...]
    bcc: tuple[tuple[str, str], ...]
    reply_to: tuple[tuple[str, str], ...]
    sent: datetime | None
    header_received: datetime | None
    internet_message_id: str
    headers: tuple[tuple[str, str], ...]
    body: str
    body_type: BodyType
    attachments: tuple[ParsedAttachment, ...]
    importance: str
    conversation_id: str


# --------------------------------------------------------------------------- text helpers


def _unfold(value: str) -> str:
    return _SOFT_WRAP.sub("", value)


def _one_line(value: str) -> str:
    """No CR, LF or other control characters: nothing may break out of a header line."""
    return _CONTROL.sub(" ", value)


def _repair(value: str) -> str:
    """Header text the parser kept as surrogate escapes (raw 8-bit bytes) back to Unicode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        data = value.encode("utf-8", "surrogateescape")
        return _decode_bytes(data, None)
    return value


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    label = label.split("*", 1)[0]  # RFC 2231 language suffix: utf-8*en
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if info.name in _REFUSED_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes to text: the declared charset, else UTF-8, else Windows-1252; never raises."""
    codec = _codec(charset)
    for candidate in (codec, "utf-8", "cp1252"):
        if candidate is None:
            continue
        try:
            return data.decode(candidate)
        except (UnicodeDecodeError, LookupError, ValueError):
            continue
    return data.decode("latin-1")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    if encoding in "bB":
        cleaned = re.sub(r"[^A-Za-z0-9+/]", "", text)
        cleaned += "=" * (-len(cleaned) % 4)
        try:
            return base64.b64decode(cleaned)
        except (binascii.Error, ValueError):
            return None
    try:
        return binascii.a2b_qp(text.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return None


def decode_rfc2047(value: str) -> str:
    """Decode RFC 2047 encoded words leniently, the way mail clients display them.

    Adjacent encoded words are joined (whitespace between them is dropped) and decoded
    together, so multi-byte characters split across words survive. Unknown charsets fall
    back to UTF-8 then Windows-1252; undecodable words stay as they are.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset: str | None = None
    last_end = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            out.append(_decode_bytes(b"".join(pending), pending_charset))
        pending = []
        pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[last_end : match.start()]
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:
            flush()
            out.append(gap + match.group(0))
            last_end = match.end()
            continue
        charset = match.group(1).split("*", 1)[0].lower()
        if gap and (gap.strip() or not pending):
            flush()
            out.append(gap)
        elif pending and charset != pending_charset:
            flush()
        pending.append(data)
        pending_charset = charset
        last_end = match.end()
    flush()
    out.append(value[last_end:])
    return "".join(out)


def _header_text(value: str, limit: int = MAX_DECODED) -> str:
    """A header value as people read it: unfolded, decoded, one line, bounded."""
    text = decode_rfc2047(_repair(_unfold(value[: limit * 4])))
    return _one_line(text).strip()[:limit]


def normalize_subject(subject: str) -> str:
    """The conversation topic: the subject without reply/forward prefixes (RE:, FW:, AW: …)."""
    return _SUBJECT_PREFIX.sub("", subject).strip()


def conversation_id_for(subject: str) -> str:
    """A conversation id derived from the normalised subject (Exchange groups by thread topic)."""
    topic = " ".join(normalize_subject(subject).lower().split())
    return graph_id("conversation", topic, prefix=b"AAQkAG")


# --------------------------------------------------------------------------- parameters


def _raw_params(value: str) -> tuple[str, list[tuple[str, str, bool]]]:
    """(leading token, [(name, value, was quoted)]) of a Content-Type-like header, linearly."""
    value = _unfold(value)[:_MAX_STRUCTURED]
    semi = value.find(";")
    head = (value if semi < 0 else value[:semi]).strip()
    params: list[tuple[str, str, bool]] = []
    if semi >= 0:
        for match in _PARAM.finditer(value, semi):
            if len(params) >= 64:
                break
            quoted = match.group(2)
            if quoted is not None:
                params.append((match.group(1).lower(), _QUOTED_PAIR.sub(r"\1", quoted), True))
            else:
                params.append((match.group(1).lower(), match.group(3) or "", False))
    return head, params


def _params(value: str) -> tuple[str, dict[str, str]]:
    """Decoded parameters, with RFC 2231 continuations/charsets and RFC 2047 words resolved."""
    head, raw = _raw_params(value)
    simple: dict[str, str] = {}
    extended: dict[str, str] = {}
    pieces: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, val, _quoted in raw:
        cont = _CONTINUATION.fullmatch(name)
        if cont:
            pieces.setdefault(cont.group(1), {})[int(cont.group(2))] = (val, bool(cont.group(3)))
        elif name.endswith("*"):
            extended.setdefault(name[:-1], val)
        else:
            simple.setdefault(name, val)
    result = {k: decode_rfc2047(_repair(v)) for k, v in simple.items()}
    for base_name, parts in pieces.items():
        charset: str | None = None
        chunks: list[bytes] = []
        order = sorted(parts)[:100]
        for index in order:
            val, encoded = parts[index]
            if encoded:
                if index == order[0] and val.count("'") >= 2:
                    charset, _lang, val = val.split("'", 2)
                chunks.append(unquote_to_bytes(val))
            else:
                chunks.append(val.encode("utf-8", "surrogateescape"))
        result[base_name] = _decode_bytes(b"".join(chunks), charset or "utf-8")
    for base_name, val in extended.items():
        if val.count("'") >= 2:
            charset, _lang, data = val.split("'", 2)
            result[base_name] = _decode_bytes(unquote_to_bytes(data), charset or "utf-8")
        elif base_name not in result:
            result[base_name] = val
    return head, result


def _clean_structured(name: str, value: str) -> str:
    """A small, well-formed copy of a MIME header for the standard parser to consult."""
    value = _one_line(_unfold(value[:_MAX_STRUCTURED]))
    if name == "content-transfer-encoding":
        token = _TOKEN.match(value)
        return token.group(1).lower() if token else ""
    if name == "content-type":
        mtype = _MIME_TYPE.match(value)
        if not mtype:
            return ""
        head = f"{mtype.group(1)}/{mtype.group(2)}".lower()
    else:
        token = _TOKEN.match(value)
        if not token:
            return ""
        head = token.group(1).lower()
    out = [head]
    for pname, pval, _quoted in _raw_params(value)[1]:
        base_name = pname.split("*", 1)[0]
        if base_name not in _PARAM_NAMES and base_name not in ("name", "filename"):
            continue
        if pname.endswith("*") and re.fullmatch(r"[A-Za-z0-9!#$&+.^_`|~%'-]*", pval):
            out.append(f"{pname}={pval}")
        else:
            escaped = pval.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'{pname}="{escaped}"')
    return "; ".join(out)


if TYPE_CHECKING:
    _PolicyBase = EmailPolicy[StdMessage]
else:
    _PolicyBase = EmailPolicy


class _SafePolicy(_PolicyBase):
    """`email.policy.default`, except that MIME structure headers are cleaned before parsing.

    The parser asks for a part's Content-Type many times; parsed structure headers are
    cached by value (they are immutable), which makes parsing several times faster.
    """

    def header_fetch_parse(self, name: str, value: str) -> Any:
        low = name.lower()
        if low in ("content-type", "content-disposition", "content-transfer-encoding"):
            key = (low, value)
            cached = _STRUCTURED_CACHE.get(key)
            if cached is None:
                cached = self._parse(name, _clean_structured(low, value))
                if len(_STRUCTURED_CACHE) >= 4096:
                    _STRUCTURED_CACHE.clear()
                _STRUCTURED_CACHE[key] = cached
            return cached
        return self._parse(name, value[:_MAX_STRUCTURED])

    def _parse(self, name: str, value: str) -> Any:
        try:
            return super().header_fetch_parse(name, value)
        except Exception:  # the header grammar recurses and raises on hostile input
            return super().header_fetch_parse(name, "")


_STRUCTURED_CACHE: dict[tuple[str, str], Any] = {}
_POLICY = _SafePolicy()
# Regenerating an attached message: keep its folding and bytes, CRLF line ends.
_OUT_POLICY = _SafePolicy(linesep="\r\n", refold_source="none", max_line_length=0)


# --------------------------------------------------------------------------- nesting guard


_BOUNDARY_WORD = re.compile(rb"(?i)boundary")
_MESSAGE_WORD = re.compile(rb"(?i)content-type[ \t]*:[ \t]*message/")
_HEADER_CT = re.compile(rb"(?im)^content-type[ \t]*:[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
_LINE = re.compile(rb"([^\r\n]*)(?:\r\n|\r|\n|$)")
_BOUNDARY_PARAM = re.compile(rb'(?i)boundary[ \t]*=[ \t]*(?:"([^"\r\n]*)"|([^;\s]+))')


def _classify(block: bytes) -> tuple[str, bytes | None]:
    match = _HEADER_CT.search(block)
    if not match:
        return "leaf", None
    value = match.group(1).strip().lower()
    if value.startswith(b"multipart/"):
        bmatch = _BOUNDARY_PARAM.search(match.group(1))
        if bmatch:
            return "multipart", (bmatch.group(1) or bmatch.group(2) or b"").strip()
        return "leaf", None
    if value.startswith(b"message/") and not value.startswith(b"message/delivery-status"):
        return "message", None
    return "leaf", None


def _limit_nesting(raw: bytes) -> bytes:
    """Cut the input where MIME nesting would pass MAX_DEPTH; what comes before stays."""
    declared = sum(1 for _ in _BOUNDARY_WORD.finditer(raw))
    declared += sum(1 for _ in _MESSAGE_WORD.finditer(raw))
    if declared <= MAX_DEPTH:
        return raw
    stack: list[bytes | None] = []
    in_headers = True
    block: list[bytes] = []
    block_size = 0
    block_start = 0
    # Lines end in CRLF, LF or a bare CR: the parser accepts all three, so must this scan.
    for match in _LINE.finditer(raw):
        pos, nxt = match.start(), match.end()
        if pos == nxt:
            break
        line = match.group(1)
        if in_headers:
            if not line.strip():
                kind, boundary = _classify(b"\n".join(block))
                block, block_size = [], 0
                if kind != "leaf":
                    if len(stack) >= MAX_DEPTH:
                        return raw[:block_start]
                    stack.append(boundary if kind == "multipart" else None)
                in_headers = kind == "message"
                block_start = nxt
            elif block_size < 256 * 1024:
                block.append(line)
                block_size += len(line)
        elif line.startswith(b"--") and stack:
            token = line[2:].rstrip(b" \t")
            for index in range(len(stack) - 1, -1, -1):
                boundary = stack[index]
                if boundary is None:
                    continue
                if token == boundary:
                    del stack[index + 1 :]
                    in_headers, block, block_size, block_start = True, [], 0, pos
                    break
                if token == boundary + b"--":
                    del stack[index:]
                    break
    return raw


# --------------------------------------------------------------------------- parsing


def _part_header(part: StdMessage, name: str) -> str | None:
    low = name.lower()
    for key, value in part.raw_items():
        if key.lower() == low:
            return str(value)
    return None


def _content_type(part: StdMessage) -> str:
    return part.get_content_type().lower()


def _disposition(part: StdMessage) -> tuple[str, dict[str, str]]:
    raw = _part_header(part, "content-disposition")
    if raw is None:
        return "", {}
    head, params = _params(raw)
    return head.lower(), params


def _filename(part: StdMessage) -> str | None:
    _disp, dparams = _disposition(part)
    name = dparams.get("filename")
    if not name:
        ctype = _part_header(part, "content-type")
        if ctype is not None:
            name = _params(ctype)[1].get("name")
    if not name:
        return None
    name = _one_line(name).strip()[:MAX_DECODED]
    return name or None


def _charset(part: StdMessage) -> str | None:
    raw = _part_header(part, "content-type")
    return _params(raw)[1].get("charset") if raw is not None else None


def _content_id(part: StdMessage) -> str | None:
    raw = _part_header(part, "content-id")
    if raw is None:
        return None
    cid = _one_line(_unfold(raw)).strip()[:998].strip("<> ")
    return cid or None


def _children(part: StdMessage) -> list[StdMessage]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, StdMessage)]
    return []


def _is_attachment_like(part: StdMessage) -> bool:
    disp, _ = _disposition(part)
    return disp == "attachment" or _filename(part) is not None


def _payload_bytes(part: StdMessage) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a malformed transfer encoding: keep the bytes as they came
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _find_body(part: StdMessage, depth: int) -> StdMessage | None:
    if depth > MAX_DEPTH:
        return None
    ctype = _content_type(part)
    if ctype in ("text/html", "text/plain"):
        return None if (depth and _is_attachment_like(part)) else part
    if not ctype.startswith("multipart/"):
        return None
    children = _children(part)
    if ctype == "multipart/alternative":
        found = [b for b in (_find_body(c, depth + 1) for c in children) if b is not None]
        html = [b for b in found if _content_type(b) == "text/html"]
        if html:
            return html[-1]  # RFC 2046: the last alternative is the preferred one
        return found[-1] if found else None
    if ctype == "multipart/related" and children:
        _head, params = _params(_part_header(part, "content-type") or "")
        start = params.get("start", "").strip("<> ")
        root = next((c for c in children if start and _content_id(c) == start), children[0])
        return _find_body(root, depth + 1)
    for child in children:
        if _is_attachment_like(child):
            continue
        found_body = _find_body(child, depth + 1)
        if found_body is not None:
            return found_body
    return None


def _path_to(root: StdMessage, target: StdMessage) -> list[StdMessage]:
    """The chain of containers from root down to target (exclusive), iteratively."""
    stack: list[tuple[StdMessage, list[StdMessage]]] = [(root, [])]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, path = stack.pop()
        seen += 1
        if part is target:
            return path
        if _content_type(part).startswith("multipart/") and len(path) < MAX_DEPTH:
            stack.extend((child, [*path, part]) for child in _children(part))
    return []


def _item_bytes(part: StdMessage) -> tuple[bytes, StdMessage | None]:
    """The attached message's bytes (and parsed form) of a message/rfc822 part."""
    cte = (_part_header(part, "content-transfer-encoding") or "").strip().lower()
    inner = next(iter(_children(part)), None)
    if inner is None:
        return _payload_bytes(part), None
    try:
        data = inner.as_bytes(policy=_OUT_POLICY)
    except Exception:
        data = b""
    if cte in ("base64", "quoted-printable"):
        # Not allowed by RFC 2046, sent anyway by some mailers: the parser took the encoded
        # text for a message; decode it and parse again.
        encoded = data
        decoded = (
            _lenient_b64(encoded) if cte == "base64" else binascii.a2b_qp(encoded, header=False)
        )
        if decoded:
            try:
                reparsed = BytesParser(policy=_POLICY).parsebytes(_limit_nesting(decoded))
            except Exception:
                return decoded, None
            return decoded, reparsed
    return data, inner


def _lenient_b64(data: bytes) -> bytes:
    cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _attachments(root: StdMessage, body: StdMessage | None) -> list[ParsedAttachment]:
    skip: set[int] = set()
    if body is not None:
        path = _path_to(root, body)
        chain = [*path, body]
        for index, container in enumerate(path):
            if _content_type(container) == "multipart/alternative":
                keep = chain[index + 1]
                skip.update(id(c) for c in _children(container) if c is not keep)
        skip.add(id(body))
    found: list[ParsedAttachment] = []
    stack: list[tuple[StdMessage, int]] = [(root, 0)]
    visited = 0
    unnamed = 0
    while stack and visited < MAX_PARTS and len(found) < MAX_ATTACHMENTS:
        part, depth = stack.pop()
        visited += 1
        if id(part) in skip:
            continue
        ctype = _content_type(part)
        if ctype.startswith("multipart/"):
            if depth < MAX_DEPTH:
                stack.extend((c, depth + 1) for c in reversed(_children(part)))
            continue
        disp, _ = _disposition(part)
        cid = _content_id(part)
        name = _filename(part)
        if ctype in ("message/rfc822", "message/global"):
            content, inner = _item_bytes(part)
            subject = ""
            if inner is not None:
                raw_subject = _part_header(inner, "subject")
                subject = _header_text(raw_subject) if raw_subject is not None else ""
            found.append(
                ParsedAttachment(subject or name or "Untitled", "message/rfc822", content, "item")
            )
            continue
        if ctype.startswith("message/"):
            content = b"\r\n".join(
                c.as_bytes(policy=_OUT_POLICY) for c in _children(part)
            ) or _payload_bytes(part)
        else:
            content = _payload_bytes(part)
        if name is None:
            unnamed += 1
            name = f"ATT{unnamed:05d}{_EXTENSIONS.get(ctype, '.dat')}"
        found.append(
            ParsedAttachment(
                name=name,
                content_type=ctype,
                content=content,
                kind="file",
                is_inline=cid is not None and disp != "attachment",
                content_id=cid,
            )
        )
    return found


def _addresses(value: str | None) -> list[tuple[str, str]]:
    if value is None:
        return []
    text = _one_line(_repair(_unfold(value[: MAX_DECODED * 4])))
    try:
        pairs = getaddresses([text])
    except Exception:  # nested comments recurse in the address parser
        pairs = [("", m.group(0)) for m in _ADDRESS_FALLBACK.finditer(text)]
    out: list[tuple[str, str]] = []
    for name, address in pairs:
        address = address.strip()
        if not address:
            continue
        display = _one_line(decode_rfc2047(name)).strip()[:MAX_DECODED]
        out.append((display, address[:998]))
        if len(out) >= MAX_ADDRESSES:
            break
    return out


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(_one_line(_unfold(value[:256])).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _importance(headers: Sequence[tuple[str, str]]) -> str:
    values = {name.lower(): value.strip().lower() for name, value in reversed(headers)}
    importance = values.get("importance", "")
    if importance in ("high", "low", "normal"):
        return importance
    priority = values.get("x-priority", "")[:1]
    if priority in ("1", "2"):
        return "high"
    if priority in ("4", "5"):
        return "low"
    ms_priority = values.get("x-msmail-priority", "")
    if ms_priority in ("high", "low"):
        return ms_priority
    generic = values.get("priority", "")
    if generic == "urgent":
        return "high"
    if generic == "non-urgent":
        return "low"
    return "normal"


def _generated_message_id(raw: bytes) -> str:
    """What Exchange stamps on a message that arrives without a Message-ID."""
    digest = hashlib.sha256(raw).hexdigest().upper()
    server = f"DM{int(digest[:2], 16) % 9 + 1}PR{int(digest[2:4], 16) % 20 + 10}MB{digest[4:8]}"
    return f"<{server}{digest[8:40]}@{server}.namprd{int(digest[40:42], 16) % 20 + 1:02d}.prod.outlook.com>"


def _message_id(value: str | None, raw: bytes) -> str:
    if value:
        text = _one_line(_repair(_unfold(value[:2048]))).strip()
        match = _MESSAGE_ID.search(text)
        if match:
            return match.group(0)
        token = text.split()[0] if text.split() else ""
        if token:
            return f"<{token.strip('<>')[:995]}>"
    return _generated_message_id(raw)


def parse_rfc822(raw: bytes) -> ParsedMail:
    """Parse delivered bytes into the properties Graph exposes (no mailbox, no ids)."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MimeError("MIME content must be bytes")
    raw = bytes(raw)
    if len(raw) > MAX_MIME_BYTES:
        raise MimeError(f"message is larger than {MAX_MIME_BYTES} bytes")
    if not raw.strip():
        raise MimeError("empty message: no header fields and no body")
    source = _limit_nesting(raw)
    flat = False
    try:
        root = BytesParser(policy=_POLICY).parsebytes(source)
    except RecursionError:
        # Nesting the pre-scan could not see (bare CR line ends): keep headers and raw text.
        root = BytesParser(policy=_POLICY).parsebytes(source, headersonly=True)
        flat = True
    headers: list[tuple[str, str]] = []
    for name, value in root.raw_items():
        if len(headers) >= MAX_HEADERS:
            break
        clean_name = _one_line(_repair(str(name))).strip()
        if not clean_name:
            continue
        text = _repair(_unfold(str(value)[: MAX_HEADER_VALUE * 2]))
        headers.append((clean_name, _one_line(text)[:MAX_HEADER_VALUE]))
    if not headers:
        raise MimeError("no RFC 822 header fields found: this is not an email message")

    def first(name: str) -> str | None:
        low = name.lower()
        return next((v for n, v in headers if n.lower() == low), None)

    def all_of(name: str) -> list[str]:
        low = name.lower()
        return [v for n, v in headers if n.lower() == low]

    subject_raw = first("subject")
    subject = _header_text(subject_raw) if subject_raw is not None else ""
    from_list = _addresses(first("from"))
    sender_list = _addresses(first("sender"))
    received_at = None
    for trace in all_of("received"):
        match = _RECEIVED_DATE.search(trace)
        received_at = _date(match.group(1)) if match else None
        if received_at is not None:
            break
    topic_raw = first("thread-topic")
    topic = _header_text(topic_raw) if topic_raw else subject

    body_type: BodyType = "text"
    if flat:
        body, attachments = _decode_bytes(_payload_bytes(root), None), []
    else:
        body_part = _find_body(root, 0)
        body = ""
        if body_part is not None:
            body = _decode_bytes(_payload_bytes(body_part), _charset(body_part))
            body_type = "html" if _content_type(body_part) == "text/html" else "text"
        attachments = _attachments(root, body_part)

    from_ = from_list[0] if from_list else None
    return ParsedMail(
        raw=raw,
        subject=subject,
        from_=from_,
        sender=sender_list[0] if sender_list else from_,
        to=tuple(_flatten(_addresses(v) for v in all_of("to"))),
        cc=tuple(_flatten(_addresses(v) for v in all_of("cc"))),
        bcc=tuple(_flatten(_addresses(v) for v in all_of("bcc"))),
        reply_to=tuple(_addresses(first("reply-to"))),
        sent=_date(first("date")),
        header_received=received_at,
        internet_message_id=_message_id(first("message-id"), raw),
        headers=tuple(headers),
        body=body,
        body_type=body_type,
        attachments=tuple(attachments),
        importance=_importance(headers),
        conversation_id=conversation_id_for(topic),
    )


def _flatten(groups: Iterable[list[tuple[str, str]]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for group in groups:
        out.extend(group[: MAX_ADDRESSES - len(out)])
    return out


def message_from_parsed(
    parsed: ParsedMail,
    *,
    box: Mailbox,
    folder_id: str,
    received: datetime | None = None,
    default_received: datetime | None = None,
) -> Message:
    """A new `Message` (fresh ids from `box`, not added to it) from parsed mail.

    The received time is `received`, else the newest Received header's date, else
    `default_received`, else now.
    """
    when = received or parsed.header_received or default_received or utcnow()
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    immutable_id, rest_id = box.new_item_ids()
    attachment_time = parsed.sent or when
    attachments = [
        Attachment(
            id=graph_id(immutable_id, "att", index, prefix=b"AAMkAGAT"),
            name=a.name,
            content_type=a.content_type,
            content=a.content,
            kind=a.kind,
            is_inline=a.is_inline,
            content_id=a.content_id,
            last_modified=attachment_time,
        )
        for index, a in enumerate(parsed.attachments)
    ]

    def address(pair: tuple[str, str] | None) -> EmailAddress | None:
        return EmailAddress(pair[0], pair[1]) if pair else None

    return Message(
        immutable_id=immutable_id,
        rest_id=rest_id,
        folder_id=folder_id,
        internet_message_id=parsed.internet_message_id,
        subject=parsed.subject,
        from_=address(parsed.from_),
        sender=address(parsed.sender),
        to=[EmailAddress(n, a) for n, a in parsed.to],
        cc=[EmailAddress(n, a) for n, a in parsed.cc],
        bcc=[EmailAddress(n, a) for n, a in parsed.bcc],
        reply_to=[EmailAddress(n, a) for n, a in parsed.reply_to],
        received=when,
        sent=parsed.sent or when,
        body=parsed.body,
        body_type=parsed.body_type,
        headers=list(parsed.headers),
        attachments=attachments,
        importance=parsed.importance,
        conversation_id=parsed.conversation_id,
        created=when,
        last_modified=when,
        mime=parsed.raw,
    )


def message_from_rfc822(
    raw: bytes,
    *,
    box: Mailbox,
    folder_id: str,
    received: datetime | None = None,
    default_received: datetime | None = None,
) -> Message:
    """Parse delivered RFC 822 bytes into a Graph message with fresh ids from `box`.

    The message is not added to the box; the caller does that. Raises `MimeError` only when
    the input holds no message at all (empty, oversized, or no header fields).
    """
    return message_from_parsed(
        parse_rfc822(raw),
        box=box,
        folder_id=folder_id,
        received=received,
        default_received=default_received,
    )


# --------------------------------------------------------------------------- synthesis


_Part = tuple[list[tuple[str, str]], bytes]


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def _qp(text: str) -> bytes:
    data = _crlf(text.encode("utf-8"))
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    # b2a_qp escapes the CR of CRLF pairs in some inputs; Exchange writes plain CRLF.
    return encoded.replace(b"=0D\r\n", b"\r\n").replace(b"=0D=0A", b"\r\n")


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _encoded_words(value: str) -> str:
    return Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _unstructured(value: str) -> str:
    value = _one_line(value)
    if value.isascii() and "=?" not in value:
        return value
    return _encoded_words(value)


def encode_unstructured(value: str) -> str:
    """A header value as it appears in a message: RFC 2047 words for non-ASCII, one line."""
    return _unfold(_unstructured(value))


def _ascii_address(address: str) -> str:
    address = _one_line(address).strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if at and domain and not domain.isascii() and len(domain) <= 253:
        with contextlib.suppress(UnicodeError):
            domain = domain.encode("idna").decode("ascii")
        return f"{local}@{domain}"
    return address


def _format_address(address: EmailAddress) -> str:
    addr = _ascii_address(address.address)
    name = _one_line(address.name).strip()
    if not name or name == addr:
        return addr
    if name.isascii() and "=?" not in name:
        if any(ch in _ADDRESS_SPECIALS for ch in name):
            name = _quoted(name)
    else:
        name = _encoded_words(name)
    return f"{name} <{addr}>"


def _address_list(addresses: Sequence[EmailAddress]) -> str:
    return ", ".join(_format_address(a) for a in addresses)


def format_addresses(addresses: Sequence[EmailAddress]) -> str:
    """An address list as it appears in a header (RFC 2047 display names), one line."""
    return _unfold(_address_list(addresses))


def format_date(when: datetime) -> str:
    """An RFC 5322 date in UTC, the way Exchange writes Date and Received headers."""
    return _format_date(when)


def _format_date(when: datetime) -> str:
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%a, %d %b %Y %H:%M:%S +0000")


def _safe_mime_type(value: str, default: str = "application/octet-stream") -> str:
    match = _MIME_TYPE.fullmatch(value.strip())
    return f"{match.group(1)}/{match.group(2)}".lower() if match else default


def _hint(msg: Message) -> tuple[str, str | None]:
    """(type, boundary) of the Content-Type the message's own headers declare, if any."""
    for name, value in msg.headers:
        if name.lower() == "content-type":
            head, params = _params(value)
            boundary = params.get("boundary")
            return head.strip().lower(), boundary or None
    return "", None


def _boundary(msg: Message, level: int) -> str:
    seed = f"{msg.immutable_id}|{msg.internet_message_id}|{msg.subject}"
    digest = hashlib.sha1(seed.encode("utf-8", "replace")).hexdigest().upper()  # noqa: S324 - a boundary, not security
    return f"_{level:03d}_{digest[:32]}_"


def _structure(msg: Message, hint_type: str) -> str:
    """The outermost content type `rfc822_from_message` writes for this message."""
    if any(not a.is_inline for a in msg.attachments):
        return "multipart/mixed"
    if msg.attachments:
        return "multipart/related"
    if msg.body_type == "html":
        return "text/html" if hint_type == "text/html" else "multipart/alternative"
    return "text/plain"


def content_type_for(msg: Message, *, html_only: bool = False) -> str:
    """The top-level Content-Type header `rfc822_from_message` synthesises for `msg`.

    Generated messages put this in their own headers, so `internetMessageHeaders` and
    `$value` agree. `html_only` asks for a single text/html part instead of an
    alternative with a plain-text rendition.
    """
    kind = _structure(msg, "text/html" if html_only else "")
    if kind.startswith("multipart/"):
        return f'{kind}; boundary="{_boundary(msg, 0)}"'
    return f'{kind}; charset="utf-8"'


def _text_part(kind: str, text: str) -> _Part:
    return (
        [
            ("Content-Type", f'{kind}; charset="utf-8"'),
            ("Content-Transfer-Encoding", "quoted-printable"),
        ],
        _qp(text),
    )


def _attachment_part(att: Attachment) -> _Part:
    if att.kind == "item":
        content = _crlf(att.content)
        cte = "7bit" if content.isascii() else "8bit"
        return (
            [
                ("Content-Type", "message/rfc822"),
                ("Content-Disposition", "attachment"),
                ("Content-Transfer-Encoding", cte),
            ],
            content if content.endswith(b"\r\n") else content + b"\r\n",
        )
    name = _one_line(att.name).strip() or "attachment"
    ctype = _safe_mime_type(att.content_type)
    if name.isascii():
        name_param = f"name={_quoted(name)}"
        file_param = f"filename={_quoted(name)}"
    else:
        name_param = f"name={_quoted(_encoded_words(name).replace(chr(13) + chr(10), ''))}"
        file_param = "filename*=utf-8''" + quote(name, safe="")
    disposition = "inline" if att.is_inline else "attachment"
    headers = [
        ("Content-Type", f"{ctype}; {name_param}"),
        ("Content-Description", _unstructured(name)),
        ("Content-Disposition", f"{disposition}; {file_param}; size={att.size}"),
    ]
    if att.content_id:
        headers.append(("Content-ID", f"<{_one_line(att.content_id).strip('<> ')}>"))
    headers.append(("Content-Transfer-Encoding", "base64"))
    return headers, _b64(att.content)


def _serialise(part: _Part) -> bytes:
    headers, payload = part
    head = "".join(f"{n}: {v}\r\n" for n, v in headers).encode("utf-8", "replace")
    return head + b"\r\n" + payload


def _multipart(kind: str, parts: Sequence[_Part], boundary: str) -> _Part:
    payloads = [_serialise(p) for p in parts]
    while any(boundary.encode() in p for p in payloads):
        boundary += "="  # never a valid base64/QP run, so this ends quickly
    bnd = boundary.encode()
    body = b"".join(b"--" + bnd + b"\r\n" + p + b"\r\n" for p in payloads) + b"--" + bnd + b"--\r\n"
    return [("Content-Type", f'{kind}; boundary="{boundary}"')], body


def _content(msg: Message) -> _Part:
    hint_type, hint_boundary = _hint(msg)
    outer = _structure(msg, hint_type)
    if outer in ("text/plain", "text/html"):
        return _text_part(outer, msg.body)
    level = 0

    def next_boundary(kind: str) -> str:
        nonlocal level
        reuse = level == 0 and hint_type == kind and hint_boundary
        level += 1
        return _one_line(hint_boundary) if reuse and hint_boundary else _boundary(msg, level - 1)

    inline = [a for a in msg.attachments if a.is_inline]
    files = [a for a in msg.attachments if not a.is_inline]
    outer_boundary = next_boundary(outer)
    related_boundary = (
        next_boundary("multipart/related") if outer == "multipart/mixed" and inline else None
    )
    body_part: _Part
    if msg.body_type == "html":
        renditions = [
            _text_part("text/plain", html_to_text(msg.body)),
            _text_part("text/html", msg.body),
        ]
        if outer == "multipart/alternative":
            return _multipart(outer, renditions, outer_boundary)
        alternative = "multipart/alternative"
        body_part = _multipart(alternative, renditions, next_boundary(alternative))
    else:
        body_part = _text_part("text/plain", msg.body)
    inline_parts = [_attachment_part(a) for a in inline]
    if outer == "multipart/related":
        return _multipart(outer, [body_part, *inline_parts], outer_boundary)
    first = body_part
    if related_boundary is not None:
        first = _multipart("multipart/related", [body_part, *inline_parts], related_boundary)
    return _multipart(outer, [first, *(_attachment_part(a) for a in files)], outer_boundary)


def _fold_long(name: str, value: str) -> str:
    """Fold an ASCII header longer than RFC 5322's 998-character line limit at whitespace."""
    line = f"{name}: {value}"
    if len(line) <= 998 or "\r\n" in value:
        return value
    words = value.split(" ")
    lines: list[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > 900:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\r\n ".join(lines)


def _synthesised_headers(msg: Message) -> list[tuple[str, str]]:
    def authoritative(low: str) -> str | None:
        if low == "from":
            return _format_address(msg.from_) if msg.from_ else None
        if low == "sender":
            same = msg.sender is None or (
                msg.from_ is not None and msg.sender.address.lower() == msg.from_.address.lower()
            )
            return None if same or msg.sender is None else _format_address(msg.sender)
        if low in ("to", "cc", "bcc", "reply-to"):
            field = {"to": msg.to, "cc": msg.cc, "bcc": msg.bcc, "reply-to": msg.reply_to}[low]
            return _fold_long(low, _address_list(field)) if field else None
        if low == "subject":
            return _unstructured(msg.subject)
        if low == "date":
            when = msg.sent or msg.received
            return _format_date(when) if when else None
        if low == "message-id":
            mid = _one_line(msg.internet_message_id).strip()
            return mid or None
        return None

    canonical = {
        "from": "From",
        "sender": "Sender",
        "to": "To",
        "cc": "Cc",
        "bcc": "Bcc",
        "reply-to": "Reply-To",
        "subject": "Subject",
        "date": "Date",
        "message-id": "Message-ID",
    }
    out: list[tuple[str, str]] = []
    done: set[str] = set()
    has_importance = False
    for name, value in msg.headers:
        low = name.lower()
        if not _HEADER_NAME.match(name) or low in _STRUCTURAL:
            continue
        if low in _AUTHORITATIVE:
            if low in done:
                continue
            done.add(low)
            synthesised = authoritative(low)
            if synthesised is not None:
                out.append((name, synthesised))
            continue
        if low in ("importance", "x-priority", "x-msmail-priority", "priority"):
            has_importance = True
        out.append((name, _fold_long(name, _unstructured(value))))
    for low, name in canonical.items():
        if low not in done:
            synthesised = authoritative(low)
            if synthesised is not None:
                out.append((name, synthesised))
    if not has_importance and msg.importance in ("high", "low"):
        out.append(("Importance", msg.importance))
    out.append(("MIME-Version", "1.0"))
    return out


def rfc822_from_message(msg: Message) -> bytes:
    """The MIME of a message, as `GET …/messages/{id}/$value` returns it.

    The delivered bytes when the message came from RFC 822; otherwise a document
    synthesised from the structured fields (multipart/mixed with the body and the
    attachments, item attachments as message/rfc822, RFC 2047 for non-ASCII headers, and
    the message's own trace headers kept in order). Parsing the result gives back the
    same subject, addresses, body and attachments.
    """
    if msg.mime is not None:
        return msg.mime
    content_headers, payload = _content(msg)
    headers = [*_synthesised_headers(msg), *content_headers]
    head = "".join(f"{n}: {v}\r\n" for n, v in headers).encode("utf-8", "replace")
    return head + b"\r\n" + payload
