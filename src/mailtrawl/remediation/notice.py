"""The warning notice placed in a user's inbox when suspicious email was found in it.

The subject and HTML body are editable templates (`string.Template`, `$name` placeholders):

    $subject       the subject of the (first) suspicious email
    $sender        its sender, "Name <address>"
    $received      when it was received, "2026-11-04 12:30 UTC"
    $mailbox       the address of the mailbox the notice is for
    $count         how many suspicious emails the notice is about
    $messages      an HTML list of them (subject, sender, received)
    $organisation  the organisation's name ("your organisation" when not set)

Every value is attacker-controlled or may be, so in the body each one is HTML-escaped, and
everywhere control characters, line breaks and bidirectional-text controls are removed,
values are cut to a bounded length, and URL schemes are defanged ("hxxps[:]//…") so a quoted
phishing subject never becomes a clickable link in a trusted notice. The subject line is one
line of at most MAX_SUBJECT characters. `$$` writes a dollar sign.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from string import Template

from mailtrawl.core.mail import EmailAddress, MailboxRef, MessageMeta, NewMessage

PLACEHOLDERS = frozenset(
    {"subject", "sender", "received", "mailbox", "count", "messages", "organisation"}
)
MAX_SUBJECT = 255
MAX_VALUE = 200  # characters of one quoted subject, name or address
MAX_LISTED = 25  # emails listed in $messages; the rest are counted
MAX_TEMPLATE = 64 * 1024
NO_ORGANISATION = "your organisation"

DEFAULT_NOTICE_SUBJECT = "Security warning: suspicious email in your mailbox"
DEFAULT_NOTICE_BODY = """\
<html>
<body style="font-family: Segoe UI, Arial, sans-serif; font-size: 14px; color: #1f1f1f;">
<p style="font-size: 16px;"><strong>Security warning: suspicious email in your mailbox</strong></p>
<p>Hello,</p>
<p>The security team at $organisation found suspicious email in your mailbox ($mailbox):</p>
$messages
<p>The security team has already quarantined or flagged each email listed above. Please:</p>
<ul>
<li>do not open links or attachments in the suspicious email;</li>
<li>do not reply to it or forward it;</li>
<li>do not enter your password or any other details it asks for.</li>
</ul>
<p>If you have already opened a link or attachment, or entered any details, tell your IT or
security team straight away.</p>
<p>You do not need to do anything else. This notice was placed in your mailbox by the
security team; it contains no links or attachments.</p>
</body>
</html>
"""

# C0 and C1 controls, DEL, zero-width and bidirectional-text controls, line separators.
_UNSAFE_CHARACTERS = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
# A URL scheme and its colon ("https:", "javascript :"), to be defanged.
_SCHEME = re.compile(
    r"\b(https?|ftp|file|javascript|vbscript|data|mailto|ms-[a-z-]+)\s*:", re.IGNORECASE
)
_WWW = re.compile(r"\bwww\.", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"<[^<>\s@]{1,400}@[^<>\s@]{1,250}>")


class NoticeTemplateError(ValueError):
    """A notice template uses a placeholder that does not exist, or a stray `$`."""


@dataclass(frozen=True, slots=True)
class NoticeItem:
    """One suspicious email the notice is about; every field is attacker-controlled."""

    subject: str
    sender_address: str
    sender_name: str = ""
    received: datetime | None = None

    @classmethod
    def from_meta(cls, meta: MessageMeta) -> NoticeItem:
        sender = meta.from_ or meta.sender
        return cls(
            subject=meta.subject or "",
            sender_address=sender.address if sender else "",
            sender_name=sender.name if sender else "",
            received=meta.received,
        )


def validate_template(subject: str, body: str) -> None:
    """Refuse templates with unknown placeholders or a `$` that is not one (write `$$`)."""
    problems: list[str] = []
    for what, text in (("subject", subject), ("body", body)):
        if len(text) > MAX_TEMPLATE:
            problems.append(f"the {what} template is longer than {MAX_TEMPLATE} characters")
            continue
        template = Template(text)
        unknown = sorted(set(template.get_identifiers()) - PLACEHOLDERS)
        if unknown:
            names = ", ".join(f"${name}" for name in unknown)
            problems.append(f"the {what} template uses unknown placeholders: {names}")
        if not template.is_valid():
            problems.append(
                f"the {what} template has a '$' that starts no placeholder (write $$ for a "
                "dollar sign)"
            )
    if not subject.strip():
        problems.append("the subject template is empty")
    if problems:
        known = ", ".join(f"${name}" for name in sorted(PLACEHOLDERS))
        raise NoticeTemplateError(
            "The notice template is invalid: " + "; ".join(problems) + f". Known: {known}."
        )


def notice_message_id(key: str, domain: str = "mailtrawl.invalid") -> str:
    """A deterministic Internet message id for the notice identified by `key`.

    Creating the notice again with the same key gives the same id, so a re-run can find the
    notice it already placed instead of placing a second one.
    """
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"<notice.{digest}@{domain}>"


def render_notice(
    *,
    mailbox: MailboxRef,
    items: Sequence[NoticeItem],
    subject_template: str = DEFAULT_NOTICE_SUBJECT,
    body_template: str = DEFAULT_NOTICE_BODY,
    organisation: str = "",
    internet_message_id: str,
    sender: EmailAddress | None = None,
) -> NewMessage:
    """The warning notice for `mailbox` about `items`, ready for `Provider.create_message`.

    Create it with `draft=False` in the inbox; it arrives unread, received now.
    """
    if not items:
        raise ValueError("A notice needs at least one suspicious email to tell the user about.")
    if not _MESSAGE_ID.fullmatch(internet_message_id):
        raise ValueError(
            f"{internet_message_id!r} is not an Internet message id like <id@domain>; "
            "use notice_message_id()."
        )
    validate_template(subject_template, body_template)
    first = items[0]
    plain = {
        "subject": _text(first.subject),
        "sender": _sender(first),
        "received": _when(first.received),
        "mailbox": _text(mailbox.address),
        "count": str(len(items)),
        "organisation": _text(organisation) or NO_ORGANISATION,
    }
    subject = Template(subject_template).safe_substitute({**plain, "messages": plain["subject"]})
    escaped = {name: html.escape(value, quote=True) for name, value in plain.items()}
    body = Template(body_template).safe_substitute({**escaped, "messages": _list(items)})
    return NewMessage(
        subject=_text(subject, MAX_SUBJECT) or DEFAULT_NOTICE_SUBJECT,
        body=body,
        body_type="html",
        from_=sender,
        to=(EmailAddress(mailbox.address, _text(mailbox.display_name)),),
        received=None,
        internet_message_id=internet_message_id,
        is_read=False,
    )


def _text(value: str, limit: int = MAX_VALUE) -> str:
    """One line of plain text: no controls, no live URL schemes, bounded."""
    line = " ".join(_UNSAFE_CHARACTERS.sub(" ", value).split())
    line = _WWW.sub("www[.]", _SCHEME.sub(lambda m: _defang(m.group(1)) + "[:]", line))
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _defang(scheme: str) -> str:
    return re.sub("(?i)tt", lambda m: "xx" if m.group().islower() else "XX", scheme)


def _sender(item: NoticeItem) -> str:
    address, name = _text(item.sender_address), _text(item.sender_name)
    if name and address and name.casefold() != address.casefold():
        return f"{name} <{address}>"
    return address or name or "(unknown sender)"


def _when(value: datetime | None) -> str:
    if value is None:
        return "(unknown time)"
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _list(items: Sequence[NoticeItem]) -> str:
    rows = [
        "<li>"
        f"<strong>Subject:</strong> {html.escape(_text(item.subject) or '(no subject)')}<br>"
        f"<strong>From:</strong> {html.escape(_sender(item))}<br>"
        f"<strong>Received:</strong> {html.escape(_when(item.received))}"
        "</li>"
        for item in items[:MAX_LISTED]
    ]
    more = len(items) - MAX_LISTED
    if more > 0:
        rows.append(f"<li>and {more} more</li>")
    return "<ul>\n" + "\n".join(rows) + "\n</ul>"
