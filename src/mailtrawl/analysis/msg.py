"""Outlook .msg reports, converted to MIME so that one parser handles every report.

Reading .msg needs `extract-msg`, which is GPL-3.0 and therefore an optional extra:
``pip install 'mailtrawl[msg]'``. Without it, `msg_to_mime` raises `ReportParseError` with a
sentence saying so. The conversion (`message_to_mime`) only reads attributes, so it works on
any object shaped like extract-msg's `Message`: the transport headers (`headerText`), or the
`subject`/`sender`/`to`/`cc`/`date`/`messageId` properties when a message has none, the plain
and HTML bodies, and `attachments` whose `data` is bytes or, for an attached Outlook item,
another message (converted as an attached `message/rfc822`, at most `max_depth` deep).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from datetime import datetime
from email import policy, utils
from email.message import EmailMessage
from typing import Any, Protocol

from mailtrawl.analysis.errors import ReportParseError

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MSG_EXTRA_MISSING = (
    "This report is an Outlook .msg file, and reading .msg needs the optional extract-msg "
    "package (GPL-3.0): install it with pip install 'mailtrawl[msg]', or send the report as .eml."
)
_MAX_HEADER_TEXT = 1024 * 1024
# The structure comes from the MIME we build, not from the transport headers Outlook kept.
_STRUCTURE_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})
_POLICY = policy.default.clone(max_line_length=998)


class MsgLike(Protocol):
    """What the conversion reads from an extract-msg `Message` (or a test double)."""

    @property
    def attachments(self) -> Iterable[Any]: ...


def msg_to_mime(raw: bytes, *, max_depth: int = 3) -> tuple[bytes, list[str]]:
    """Read an Outlook .msg and return equivalent MIME bytes and conversion warnings."""
    try:
        import extract_msg
    except ImportError:
        raise ReportParseError(MSG_EXTRA_MISSING) from None
    if not raw.startswith(OLE_MAGIC):
        raise ReportParseError("The file is not an Outlook .msg (no OLE2 signature).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # A stream, never bytes: olefile reads short bytes values as a file path.
            message = extract_msg.openMsg(io.BytesIO(raw), delayAttachments=False)
    except Exception as exc:  # extract-msg raises many types on malformed or non-mail items
        raise ReportParseError(
            f"The .msg file could not be read ({type(exc).__name__}); export the message as .eml "
            "and report that instead."
        ) from None
    try:
        return message_to_mime(message, max_depth=max_depth)
    finally:
        close = getattr(message, "close", None)
        if callable(close):
            close()


def message_to_mime(message: MsgLike, *, max_depth: int = 3) -> tuple[bytes, list[str]]:
    """Convert an extract-msg-like message object to MIME bytes; problems become warnings."""
    found_warnings: list[str] = []
    mime = _convert(message, 0, max_depth, found_warnings)
    return mime.as_bytes(policy=_POLICY), found_warnings


def _convert(message: Any, depth: int, max_depth: int, found: list[str]) -> EmailMessage:
    body = EmailMessage(policy=_POLICY)
    text = _text(_attribute(message, "body", found))
    html = _attribute(message, "htmlBody", found)
    html_text = (
        html.decode("utf-8", "replace") if isinstance(html, bytes) else _text(html)
    ) or None
    body.set_content(text or "")
    if html_text:
        body.add_alternative(html_text, subtype="html")
    for attachment in _attribute(message, "attachments", found) or ():
        _attach(body, attachment, depth, max_depth, found)
    headers = _headers(message, found)
    for name, value in headers:
        if name.lower() not in _STRUCTURE_HEADERS:
            try:
                body[name] = value
            except Exception:  # an invalid name or value in hostile transport headers
                found.append(f".msg header {name[:40]!r} could not be carried over")
    return body


def _headers(message: Any, found: list[str]) -> list[tuple[str, str]]:
    header_text = _text(_attribute(message, "headerText", found))[:_MAX_HEADER_TEXT]
    if header_text.startswith("Microsoft Mail Internet Headers Version 2.0"):
        header_text = header_text[43:].lstrip()
    if header_text.strip():
        return _split_headers(header_text)
    # No transport headers (a draft, or a message saved before it was sent): use properties.
    headers: list[tuple[str, str]] = []
    date = _attribute(message, "date", found)
    if isinstance(date, datetime):
        headers.append(("Date", utils.format_datetime(date)))
    for name, attribute in (
        ("From", "sender"),
        ("To", "to"),
        ("Cc", "cc"),
        ("Subject", "subject"),
        ("Message-ID", "messageId"),
    ):
        value = _text(_attribute(message, attribute, found))
        if value:
            headers.append((name, value.replace("\r", " ").replace("\n", " ")))
    return headers


def _split_headers(text: str) -> list[tuple[str, str]]:
    """Header fields from a header block, continuation lines unfolded into their field."""
    headers: list[tuple[str, str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if headers:
                break  # the end of the header block
            continue
        if line[0] in " \t" and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            if name.strip() and " " not in name.strip():
                headers.append((name.strip(), value.strip()))
    return headers


def _attach(
    body: EmailMessage, attachment: Any, depth: int, max_depth: int, found: list[str]
) -> None:
    name = _text(
        _attribute(attachment, "longFilename", found)
        or _attribute(attachment, "shortFilename", found)
        or _attribute(attachment, "name", found)
    )
    data = _attribute(attachment, "data", found)
    if isinstance(data, bytes):
        maintype, _, subtype = (
            _text(_attribute(attachment, "mimetype", found)) or "application/octet-stream"
        ).partition("/")
        if maintype in ("text", "multipart", "message") or not subtype:
            maintype, subtype = "application", "octet-stream"  # keep the bytes as they are
        body.add_attachment(data, maintype=maintype, subtype=subtype, filename=name or None)
    elif data is not None and hasattr(data, "attachments"):
        if depth + 1 >= max_depth:
            found.append(f"an Outlook item attached more than {max_depth} levels deep was dropped")
            return
        inner = _convert(data, depth + 1, max_depth, found)
        body.add_attachment(inner, filename=name or None)
    else:
        found.append(f"attachment {name[:80]!r} in the .msg has no readable content")


def _attribute(item: Any, name: str, found: list[str]) -> Any:
    """An attribute of an extract-msg object; its properties parse lazily and may raise."""
    try:
        return getattr(item, name, None)
    except Exception as exc:
        found.append(f".msg property {name} could not be read ({type(exc).__name__})")
        return None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
