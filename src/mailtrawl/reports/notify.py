"""Telling reporters the verdict: editable templates, and two ways to deliver them.

Templates are Jinja2, rendered in a sandboxed environment (no attribute access to Python
internals, bounded `range`) with autoescape on for the HTML body. Variables:

    subject          the reported message's subject
    verdict          undetected | suspicious | phishing | malicious | simulation
    verdict_label    the verdict in words ("Phishing")
    analyst_message  what the analyst wrote with the verdict ("" when nothing)
    reporter_name    the reporter's display name (else their address)
    reporter_address the reporter's address
    organisation     the organisation's name ("your organisation" when not set)
    reported_at      when they reported it, "2026-11-04 12:30 UTC"
    case_id          the case's id

Every value may be attacker-controlled (the subject is), so values are cut to a bounded
length, control and bidirectional characters are removed, and URL schemes are defanged
("hxxps[:]//…") so that a quoted phishing subject never becomes a link in a trusted message.

Delivery is either by creating the message directly in the reporter's inbox through a mail
configuration (`Provider.create_message`: Mail.ReadWrite, no Mail.Send needed), as the
warning notices of remediation are, or by SMTP (`smtplib`, STARTTLS or TLS) when configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailtrawl.core.mail import EmailAddress, MailboxRef, MessageRef, NewMessage
from mailtrawl.errors import MailtrawlError, NotFound, ProviderError
from mailtrawl.matching.text import html_to_text
from mailtrawl.providers.base import Provider
from mailtrawl.reports.schemas import SmtpSettings

MAX_SUBJECT = 255
MAX_VALUE = 300
MAX_MESSAGE = 4_000
MAX_BODY = 256 * 1024  # rendered
NO_ORGANISATION = "your organisation"
VARIABLES = (
    "subject",
    "verdict",
    "verdict_label",
    "analyst_message",
    "reporter_name",
    "reporter_address",
    "organisation",
    "reported_at",
    "case_id",
)
VERDICT_LABELS = {
    "undetected": "No threat found",
    "suspicious": "Suspicious",
    "phishing": "Phishing",
    "malicious": "Malicious",
    "simulation": "Phishing simulation",
}

DEFAULT_SUBJECT = "Your report: {{ subject }} ({{ verdict_label }})"
DEFAULT_BODY = """\
<html>
<body style="font-family: Segoe UI, Arial, sans-serif; font-size: 14px; color: #1f1f1f;">
<p>Hello {{ reporter_name }},</p>
<p>Thank you for reporting the email <strong>{{ subject }}</strong> to the security team at
{{ organisation }}.</p>
{% if verdict == "phishing" or verdict == "malicious" %}
<p>We found that it is <strong>{{ verdict_label | lower }}</strong>. Please delete it, and do
not open its links or attachments. If you already did, or entered any details, tell your IT or
security team straight away.</p>
{% elif verdict == "suspicious" %}
<p>We found it <strong>suspicious</strong>. Please do not open its links or attachments; the
security team is looking into it.</p>
{% elif verdict == "simulation" %}
<p>It was a <strong>phishing simulation</strong>, part of security awareness training. Well
spotted, and thank you for reporting it.</p>
{% else %}
<p>We found no threat in it. If you were not expecting it, you may still delete it.</p>
{% endif %}
{% if analyst_message %}<p><strong>Message from the security team:</strong> {{ analyst_message }}</p>{% endif %}
<p>This message was placed in your mailbox by the security team; it contains no links or
attachments.</p>
</body>
</html>
"""

# C0 and C1 controls, DEL, zero-width and bidirectional-text controls, line separators.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_SCHEME = re.compile(
    r"\b(https?|ftp|file|javascript|vbscript|data|mailto|ms-[a-z-]{1,40})\s{0,5}:", re.IGNORECASE
)
_WWW = re.compile(r"\bwww\.", re.IGNORECASE)


class TemplateRejected(MailtrawlError):
    """A notification template does not compile or does not render."""


class DeliveryFailed(MailtrawlError):
    """The notification could not be delivered (the reason says why)."""


def _environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        autoescape=autoescape, undefined=StrictUndefined, auto_reload=False
    )


_SUBJECTS = _environment(False)
_BODIES = _environment(True)


def plain(value: str, limit: int = MAX_VALUE) -> str:
    """One line of plain text: no controls, no live URL schemes, bounded."""
    line = " ".join(_UNSAFE.sub(" ", value[: limit * 4]).split())
    line = _WWW.sub("www[.]", _SCHEME.sub(lambda m: _defang(m.group(1)) + "[:]", line))
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _defang(scheme: str) -> str:
    return re.sub("(?i)tt", lambda m: "xx" if m.group().islower() else "XX", scheme)


def sample_variables() -> dict[str, str]:
    """Values for checking a template renders."""
    return {
        "subject": "Invoice 4471 overdue",
        "verdict": "phishing",
        "verdict_label": VERDICT_LABELS["phishing"],
        "analyst_message": "We blocked the sender.",
        "reporter_name": "Alice",
        "reporter_address": "alice@example.com",
        "organisation": "Contoso",
        "reported_at": "2026-11-04 12:30 UTC",
        "case_id": "00000000-0000-0000-0000-000000000000",
    }


def validate_template(subject: str, body: str) -> None:
    """Raise TemplateRejected unless both templates compile and render with sample values."""
    render(subject, body, sample_variables())


def render(subject_template: str, body_template: str, variables: dict[str, str]) -> tuple[str, str]:
    """(subject line, HTML body) of a notification."""
    try:
        subject = _SUBJECTS.from_string(subject_template).render(variables)
        body = _BODIES.from_string(body_template).render(variables)
    except SecurityError as exc:
        raise TemplateRejected(f"The template does something not allowed: {exc}") from None
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise TemplateRejected(f"The template does not render{where}: {exc.message}") from None
    if len(body) > MAX_BODY:
        raise TemplateRejected(f"The rendered message is longer than {MAX_BODY} characters.")
    return plain(subject, MAX_SUBJECT) or "Your report", body


def variables_for(
    *,
    subject: str,
    verdict: str,
    analyst_message: str | None,
    reporter_name: str,
    reporter_address: str,
    organisation: str,
    reported_at: datetime | None,
    case_id: str,
) -> dict[str, str]:
    """The template variables, every one cleaned (see the module docstring)."""
    address = plain(reporter_address, 320)
    return {
        "subject": plain(subject) or "(no subject)",
        "verdict": verdict,
        "verdict_label": VERDICT_LABELS.get(verdict, verdict),
        "analyst_message": plain(analyst_message or "", MAX_MESSAGE),
        "reporter_name": plain(reporter_name) or address or "there",
        "reporter_address": address,
        "organisation": plain(organisation) or NO_ORGANISATION,
        "reported_at": reported_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        if reported_at
        else "",
        "case_id": case_id,
    }


def notification_message_id(key: str, address: str) -> str:
    """A deterministic Internet message id: a re-run finds the notification it placed."""
    digest = hashlib.sha256(f"{key}\0{address.lower()}".encode()).hexdigest()[:40]
    return f"<report-notice.{digest}@mailtrawl.invalid>"


@dataclass(frozen=True)
class Notification:
    to_address: str
    to_name: str
    subject: str
    html: str
    message_id: str
    sender_name: str
    sender_address: str = ""  # the reporting mailbox, when there is one


async def deliver_to_mailbox(provider: Provider, notification: Notification) -> str:
    """Create the notification, unread, in the reporter's inbox; returns its message id.

    A notification placed by an attempt whose outcome was never recorded (the process died
    in between) is found by its deterministic Internet message id and not placed twice.
    """
    mailbox: MailboxRef = await provider.get_mailbox(notification.to_address)
    placed = await _placed_before(provider, mailbox, notification.message_id)
    if placed is not None:
        return placed
    created = await provider.create_message(
        mailbox,
        "inbox",
        NewMessage(
            subject=notification.subject,
            body=notification.html,
            body_type="html",
            from_=EmailAddress(notification.sender_address, notification.sender_name)
            if notification.sender_address
            else None,
            to=(EmailAddress(notification.to_address, notification.to_name),),
            internet_message_id=notification.message_id,
            is_read=False,
        ),
        draft=False,
    )
    return created.stable_id


async def _placed_before(provider: Provider, mailbox: MailboxRef, message_id: str) -> str | None:
    probe = MessageRef(mailbox=mailbox, message_id="", internet_message_id=message_id)
    [location] = await provider.locate_many([probe])
    if isinstance(location, NotFound):
        return None
    if isinstance(location, ProviderError):
        raise location
    copies = [c for c in (location.found, *location.others) if c is not None]
    return copies[0].stable_id if copies else None


def build_smtp_message(notification: Notification, from_address: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = Address(notification.sender_name, addr_spec=from_address)
    message["To"] = Address(notification.to_name, addr_spec=notification.to_address)
    message["Subject"] = notification.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = notification.message_id or make_msgid(domain="mailtrawl.invalid")
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    message.set_content(html_to_text(notification.html, max_chars=MAX_BODY) or " ")
    message.add_alternative(notification.html, subtype="html")
    return message


def _send_smtp(settings: SmtpSettings, password: str | None, message: EmailMessage) -> None:
    if not settings.host:
        raise DeliveryFailed("No SMTP server is set (settings: smtp.host).")
    context = ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if settings.security == "tls":
            client = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout_s, context=context
            )
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
        with client:
            client.ehlo()
            if settings.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if settings.username:
                client.login(settings.username, password or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        reason = str(exc)[:300] or type(exc).__name__
        raise DeliveryFailed(
            f"The SMTP server {settings.host}:{settings.port} did not take the message ({reason})."
        ) from None


async def deliver_by_smtp(
    settings: SmtpSettings, password: str | None, notification: Notification
) -> str:
    """Send the notification through the configured SMTP server; returns its Message-ID."""
    if not settings.from_address:
        raise DeliveryFailed("No sender address is set for SMTP (settings: smtp.from_address).")
    message = build_smtp_message(notification, settings.from_address)
    await asyncio.to_thread(_send_smtp, settings, password, message)
    return str(message["Message-ID"])


def describe_variables() -> dict[str, Any]:
    """The variables and the built-in templates, for the settings page and the API."""
    return {"variables": list(VARIABLES), "subject": DEFAULT_SUBJECT, "body": DEFAULT_BODY}


__all__ = [
    "DEFAULT_BODY",
    "DEFAULT_SUBJECT",
    "VARIABLES",
    "VERDICT_LABELS",
    "DeliveryFailed",
    "Notification",
    "TemplateRejected",
    "deliver_by_smtp",
    "deliver_to_mailbox",
    "notification_message_id",
    "plain",
    "render",
    "validate_template",
    "variables_for",
]
