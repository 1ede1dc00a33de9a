"""Deterministic tenants with realistic mail and planted phishing campaigns.

`generate()` writes a tenant fixture (`tenant.json`, see `mailtrawl.emulator.fixtures`) and a
`ground-truth.json` describing every planted campaign: its indicators and the exact messages
(mailbox, folder, internetMessageId, immutableId) that carry it. Nothing per message is
written to disk: the fixture's `generator` section holds the seed and the parameters, and
`GeneratedContent.populate()` builds a mailbox's content on demand, identically every time.

Background mail (colleagues, replies, partners, newsletters, service notices, calendar
responses, junk) is built directly as `Message` objects that share subject and body strings,
so a mailbox of 100 messages builds in a few milliseconds and a fully materialised
10,000 × 100 tenant stays around a gigabyte. Its `internetMessageHeaders` (a Received chain
with the sending IP, Authentication-Results, From, To, Subject, Date, Message-ID,
MIME-Version, Content-Type) are computed when read rather than stored.

Campaign copies are built as raw RFC 822 and parsed by `message_from_rfc822`, so they are
exposed exactly as delivered mail is. Across campaigns they use what real campaigns use:
spoofed display names, lookalike and IDN (punycode) domains, RFC 2047 subjects (B and Q,
UTF-8 and ISO-8859-1), HTML-only bodies, per-recipient tracking URLs, quoted-printable
bodies whose URL is split by a soft line break, the same attachment bytes under different
names, broadcast copies sharing one Message-ID, resent copies, copies in Junk Email and
Deleted Items, and forwarded copies (the phish attached as message/rfc822 to an internal
forward). Background mail never carries a campaign's distinctive indicators, but it does
carry near misses: genuine mail from the brands the campaigns imitate, similar subjects,
the real partner whose domain a campaign mimics.

Memory: background messages share one immutable empty list for empty cc, bcc, replyTo and
categories (the emulator assigns new lists when it changes them; in-place mutation raises
TypeError rather than changing every message), and compute `headers` on read.

ground-truth.json
=================

```
{"version": 1, "generator": {...the spec...}, "tenant": {"id", "domain"},
 "summary": {"users", "mailboxes", "backgroundMessagesPerMailbox", "campaigns", "plantedMessages"},
 "campaigns": [{
   "id": "campaign-01", "index", "theme", "title", "techniques": [...], "hitRate", "start",
   "perRecipient",                  # false: one broadcast Message-ID shared by all recipients
   "indicators": {                  # distinctive: never present in background mail
     "senderAddresses", "fromDomains" (ASCII/punycode), "fromDomainsUnicode", "displayNames",
     "replyTo", "subjects" (decoded), "encodedSubjects" (as in the header), "urls" (as in the
     decoded body), "urlDomains" (ASCII), "urlDomainsUnicode", "attachmentUrls",
     "attachments": [{"names", "contentType", "size", "md5", "sha1", "sha256", "sha512"}],
     "internetMessageIds" (direct and resent copies), "senderIps", "senderHosts",
     "bodyKeywords"},
   "nonDistinctive": {"displayNames"},   # e.g. a spoofed executive: legitimate mail has it too
   "counts": {"mailboxes", "messages", "direct", "resend", "forwarded"},
   "messages": [{"mailbox": UPN, "folder": well-known name, "internetMessageId", "immutableId",
                 "variant": "direct" | "resend" | "forwarded", "received", "copy", "urls",
                 "attachmentNames",
                 "forwardedBy", "innerInternetMessageId"}]   # the last two for forwarded copies
 }]}
```
A forwarded copy is an internal message (From: the colleague who forwarded it, Subject
"FW: …") whose item attachment is the phish that colleague received.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import html
import io
import json
import os
import random
import time
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, ClassVar, Literal, NoReturn

import orjson

from mailtrawl.emulator.mime import (
    content_type_for,
    conversation_id_for,
    encode_unstructured,
    format_addresses,
    format_date,
    message_from_rfc822,
)
from mailtrawl.emulator.state import (
    Attachment,
    BodyType,
    EmailAddress,
    Mailbox,
    Message,
    Tenant,
    User,
    deterministic_uuid,
    graph_id,
)

__all__ = [
    "DEFAULT_EPOCH",
    "DEFAULT_WINDOW_DAYS",
    "Campaign",
    "GeneratedContent",
    "GeneratedMessage",
    "GenerationSummary",
    "GeneratorSpec",
    "PlannedCopy",
    "generate",
    "tenant_document",
]

# Received times lie in the window before this instant, never before "now": output is stable.
DEFAULT_EPOCH = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
DEFAULT_WINDOW_DAYS = 30
GENERATOR_VERSION = 1
TENANT_DOMAIN = "contoso.com"
TENANT_NAME = "Contoso Ltd"
DEMO_APP_NAME = "mailtrawl demo"
DEMO_PERMISSIONS = (
    "Directory.Read.All",
    "Mail.ReadWrite",
    "MailboxSettings.ReadWrite",
    "User.Read.All",
)
MAX_USERS = 1_000_000
MAX_MESSAGES_PER_MAILBOX = 50_000
MAX_CAMPAIGNS = 1_000

# First octets of sending IPs. Background mail comes from the big senders' ranges and
# campaigns from elsewhere, so a sender-IP indicator never matches background mail.
_BACKGROUND_RANGES: Mapping[str, tuple[int, int, int]] = {
    "microsoft": (40, 107, 0),  # (first, second, third-octet span start)
    "google": (209, 85, 128),
    "mailchimp": (198, 2, 128),
    "sendgrid": (167, 89, 0),
    "ses": (54, 240, 0),
    "generic": (35, 190, 0),
}
_CAMPAIGN_FIRST_OCTETS = (185, 45, 91, 193, 194, 103, 5, 31, 146, 176, 217, 89, 37, 62, 80, 77)
_SERVER_PREFIXES = ("DM6PR", "BY5PR", "SN6PR", "CH3PR", "PH0PR", "MW4PR", "SA1PR", "BL1PR")
_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

WellKnownFolder = Literal["inbox", "sentitems", "deleteditems", "junkemail", "archive"]
Variant = Literal["direct", "resend", "forwarded"]


# --------------------------------------------------------------------------- hashing


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=16).digest()


def _int(*parts: object) -> int:
    return int.from_bytes(_digest(*parts)[:8], "big")


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) for these parts."""
    return (_int(*parts) >> 11) / float(1 << 53)


def _hex(length: int, *parts: object) -> str:
    return hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=32).hexdigest()[
        :length
    ]


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return "".join(ch for ch in folded.replace(" ", "") if ch.isalnum() or ch in ".-")


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- static data


@dataclass(frozen=True, slots=True)
class _Department:
    name: str
    weight: int
    head: str
    titles: tuple[str, ...]
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Sender:
    name: str
    address: str
    provider: str
    subjects: tuple[str, ...]
    theme: str = ""
    link: str = ""
    text: str = ""


@dataclass(frozen=True, slots=True)
class _Partner:
    org: str
    domain: str
    provider: str
    contacts: tuple[tuple[str, str], ...]
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Data:
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    offices: tuple[str, ...]
    departments: tuple[_Department, ...]
    general_topics: tuple[str, ...]
    international_subjects: tuple[str, ...]
    partners: tuple[_Partner, ...]
    newsletters: tuple[_Sender, ...]
    services: tuple[_Sender, ...]
    spam: tuple[_Sender, ...]
    paragraphs: tuple[str, ...]
    reply_openers: tuple[str, ...]
    forward_notes: tuple[str, ...]
    attachments: tuple[tuple[str, str, str], ...]


def _strs(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("generator data: expected a list of strings")
    return tuple(value)


def _obj(value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("generator data: expected an object")
    return value


def _sender(entry: object) -> _Sender:
    item = _obj(entry)
    return _Sender(
        name=str(item["name"]),
        address=str(item["address"]),
        provider=str(item.get("provider", "generic")),
        subjects=_strs(item["subjects"]),
        theme=str(item.get("theme", "")),
        link=str(item.get("link", "")),
        text=str(item.get("text", "")),
    )


@cache
def _data() -> _Data:
    """The word lists and templates in data/generator.json, read once on first use."""
    text = resources.files("mailtrawl.emulator").joinpath("data/generator.json").read_text("utf-8")
    raw = _obj(json.loads(text))
    return _Data(
        first_names=_strs(raw["firstNames"]),
        last_names=_strs(raw["lastNames"]),
        offices=_strs(raw["offices"]),
        departments=tuple(
            _Department(
                name=str(d["name"]),
                weight=int(d["weight"]),
                head=str(d["head"]),
                titles=_strs(d["titles"]),
                topics=_strs(d["topics"]),
            )
            for d in map(_obj, raw["departments"])
        ),
        general_topics=_strs(raw["generalTopics"]),
        international_subjects=_strs(raw["internationalSubjects"]),
        partners=tuple(
            _Partner(
                org=str(p["org"]),
                domain=str(p["domain"]),
                provider=str(p["provider"]),
                contacts=tuple((str(c[0]), str(c[1])) for c in p["contacts"]),
                topics=_strs(p["topics"]),
            )
            for p in map(_obj, raw["partners"])
        ),
        newsletters=tuple(_sender(s) for s in raw["newsletters"]),
        services=tuple(_sender(s) for s in raw["services"]),
        spam=tuple(_sender({**_obj(s), "provider": "generic"}) for s in raw["spam"]),
        paragraphs=_strs(raw["paragraphs"]),
        reply_openers=_strs(raw["replyOpeners"]),
        forward_notes=_strs(raw["forwardNotes"]),
        attachments=tuple((str(a[0]), str(a[1]), str(a[2])) for a in raw["attachments"]),
    )


@cache
def _providers() -> Mapping[str, str]:
    """Sending domain -> mail provider, for the background Received chain's IP range."""
    data = _data()
    out: dict[str, str] = {p.domain: p.provider for p in data.partners}
    for sender in (*data.newsletters, *data.services, *data.spam):
        out.setdefault(sender.address.rsplit("@", 1)[-1].lower(), sender.provider)
    return out


# --------------------------------------------------------------------------- tiny files


def _zip_bytes(entries: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def _pdf_bytes(title: str, lines: Sequence[str], uri: str | None = None) -> bytes:
    text = " ".join(f"({line.replace('(', '[').replace(')', ']')}) Tj T*" for line in lines)
    stream = f"BT /F1 11 Tf 14 TL 72 720 Td ({title}) Tj T* {text} ET".encode("latin-1", "replace")
    annot = (
        f"/Annots [<</Type/Annot/Subtype/Link/Rect[72 600 300 620]/A<</S/URI/URI({uri})>>>>]"
        if uri
        else ""
    )
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        f"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R{annot}>>".encode(),
        b"<</Length " + str(len(stream)).encode() + b">>stream\n" + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<</Size {len(objects) + 1}/Root 1 0 R>>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def _office_bytes(kind: str, title: str) -> bytes:
    if kind == "docx":
        return _zip_bytes(
            [
                ("[Content_Types].xml", b'<?xml version="1.0"?><Types/>'),
                (
                    "word/document.xml",
                    f"<w:document><w:t>{html.escape(title)}</w:t></w:document>".encode(),
                ),
            ]
        )
    return _zip_bytes(
        [
            ("[Content_Types].xml", b'<?xml version="1.0"?><Types/>'),
            (
                "xl/worksheets/sheet1.xml",
                f"<worksheet><c t='s'>{html.escape(title)}</c></worksheet>".encode(),
            ),
        ]
    )


def _jpeg_bytes(seed: str) -> bytes:
    body = hashlib.sha256(seed.encode()).digest() * 8
    return (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + body + b"\xff\xd9"
    )


_LOGO_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@cache
def _attachment_pool() -> tuple[tuple[str, str, bytes], ...]:
    """Small, realistic background attachments; the bytes are shared by every message."""
    out = []
    for name, content_type, kind in _data().attachments:
        if kind == "pdf":
            content = _pdf_bytes(name, [f"{name}", "Contoso internal document", "Page 1 of 1"])
        elif kind == "jpg":
            content = _jpeg_bytes(name)
        else:
            content = _office_bytes(kind, name)
        out.append((name, content_type, content))
    return tuple(out)


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True, slots=True)
class GeneratorSpec:
    """The `generator` section of a tenant fixture: everything lazy content derives from."""

    seed: int
    messages_per_mailbox: int
    campaigns: int
    epoch: datetime = DEFAULT_EPOCH
    window_days: int = DEFAULT_WINDOW_DAYS
    mailboxes: tuple[str, ...] | None = None  # UPNs; None = every user with a mailbox
    version: int = GENERATOR_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "seed": self.seed,
            "messagesPerMailbox": self.messages_per_mailbox,
            "campaigns": self.campaigns,
            "epoch": _iso(self.epoch),
            "windowDays": self.window_days,
            "mailboxes": "all" if self.mailboxes is None else list(self.mailboxes),
        }
        return out


# --------------------------------------------------------------------------- people


@dataclass(frozen=True, slots=True)
class _Person:
    index: int
    user_id: str
    upn: str
    address: str
    name: str
    given: str
    department: str
    job_title: str
    enabled: bool
    covered: bool  # has a mailbox with generated content


# --------------------------------------------------------------------------- campaigns


@dataclass(frozen=True, slots=True)
class _Theme:
    key: str
    title: str
    display_names: tuple[str, ...]
    sender_local: str
    domains: tuple[str, ...]  # Unicode form; "{label}" is the tenant's domain label
    url_host: str  # "" = the from domain itself; "login." = a subdomain of it
    url_path: str | None  # Template: $token $user $ref; None = no link in the body
    subject: str  # Template
    subject_charset: str
    subject_encoding: Literal["none", "B", "Q"]
    body: Literal["html-only", "alternative", "text-only"]
    transfer: Literal["quoted-printable", "base64", "8bit", "7bit"]
    per_recipient: bool  # own Message-ID and tracking token per recipient
    attachment: Literal["", "html", "pdf", "xlsm"]
    attachment_names: tuple[str, ...]  # Template
    forward_rate: float
    max_copies: int
    junk_share: float
    keywords: tuple[str, ...]  # Template
    techniques: tuple[str, ...]
    html: str  # Template
    text: str  # Template
    reply_to: str = ""  # Template


_THEMES: tuple[_Theme, ...] = (
    _Theme(
        key="password-expiry",
        title="Microsoft 365 password expiry",
        display_names=(
            "Microsoft 365 Security",
            "Microsoft Account Protection",
            "Office 365 Admin Center",
        ),
        sender_local="alerts",
        domains=("m1crosoft-support.com", "microsoft-securelogin.com", "office365-admincenter.net"),
        url_host="login.",
        url_path="/owa/auth/reset.aspx?session=$token&u=$user&realm=$ref&continue=outlook",
        subject="Action Required: Your password expires today [$ref]",
        subject_charset="utf-8",
        subject_encoding="none",
        body="html-only",
        transfer="quoted-printable",
        per_recipient=True,
        attachment="",
        attachment_names=(),
        forward_rate=0.08,
        max_copies=2,
        junk_share=0.1,
        keywords=(
            "Keep my current password",
            "pending messages will be deleted",
            "Reference: $ref",
        ),
        techniques=(
            "spoofed-display-name",
            "lookalike-domain",
            "html-only",
            "per-recipient-url",
            "qp-soft-break-url",
            "resent-copies",
            "forwarded-copy",
        ),
        html=(
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
            "<style>.btn{background:#0078d4;color:#ffffff;padding:10px 18px;text-decoration:none}"
            "</style></head>\r\n<body style=\"font-family:'Segoe UI',Arial,sans-serif\">\r\n"
            '<table width="100%" cellpadding="0" cellspacing="0"><tr><td>\r\n'
            "<p>Dear $name,</p>\r\n"
            "<p>The password for your account <b>$email</b> expires today. To keep your current "
            "password and avoid losing access to Outlook, Teams and OneDrive, confirm it now.</p>\r\n"
            '<p><a class="btn" href="$url">Keep my current password</a></p>\r\n'
            "<p>If you do not confirm within 24 hours your mailbox will be suspended and "
            "pending messages will be deleted.</p>\r\n"
            "<p>Reference: $ref</p>\r\n"
            "<p>Microsoft 365 Security<br>One Microsoft Way, Redmond, WA 98052</p>\r\n"
            "</td></tr></table>\r\n</body></html>\r\n"
        ),
        text="",
    ),
    _Theme(
        key="shared-document-idn",
        title="Shared document from an IDN lookalike",
        display_names=(
            "OneDrive für Business",
            "SharePoint Online Freigabe",
            "Microsoft OneDrive Teilen",
        ),
        sender_local="no-reply",
        domains=("mіcrosoft-onedrive.com", "onedrіve-freigabe.com", "sharepoіnt-dokumente.net"),
        url_host="",
        url_path="/s/$token/Gehaltsuebersicht?dl=$ref&e=$user",
        subject="„Gehaltsübersicht $year.xlsx“ wurde für Sie freigegeben ($ref)",
        subject_charset="utf-8",
        subject_encoding="B",
        body="alternative",
        transfer="base64",
        per_recipient=True,
        attachment="",
        attachment_names=(),
        forward_rate=0.0,
        max_copies=1,
        junk_share=0.05,
        keywords=("Gehaltsübersicht $year.xlsx", "Dokument-ID: $ref"),
        techniques=(
            "idn-domain",
            "spoofed-display-name",
            "rfc2047-b-subject",
            "per-recipient-url",
            "base64-body",
        ),
        html=(
            '<html><head><meta charset="utf-8"></head>\r\n<body style="font-family:Arial">\r\n'
            "<p>Hallo $first,</p>\r\n"
            "<p>Die Personalabteilung hat die Datei „Gehaltsübersicht $year.xlsx“ für Sie "
            "freigegeben.</p>\r\n"
            '<p><a href="$url">Öffnen</a></p>\r\n'
            "<p>Oder kopieren Sie diesen Link: $url</p>\r\n"
            "<p>Dieser Link funktioniert nur für die direkten Empfänger. Dokument-ID: $ref</p>\r\n"
            "</body></html>\r\n"
        ),
        text=(
            "Hallo $first,\r\n\r\nDie Personalabteilung hat die Datei „Gehaltsübersicht $year.xlsx“ "
            "für Sie freigegeben.\r\n\r\nÖffnen: $url\r\n\r\nDokument-ID: $ref\r\n"
        ),
    ),
    _Theme(
        key="invoice-html-attachment",
        title="Overdue invoice with an HTML attachment",
        display_names=(
            "Fabrikam Accounts Receivable",
            "Northwind Billing Department",
            "Adventure Works Finance",
        ),
        sender_local="billing",
        domains=("fabrikarn.com", "northwind-traders.co", "adventure-works.co"),
        url_host="secure-docs.",
        url_path=None,
        subject="Facture impayée n° $inv / Overdue invoice $inv",
        subject_charset="iso-8859-1",
        subject_encoding="Q",
        body="text-only",
        transfer="7bit",
        per_recipient=True,
        attachment="html",
        attachment_names=("Invoice_$inv.html", "INV-$inv.htm", "Payment_Remittance_$inv.html"),
        forward_rate=0.0,
        max_copies=1,
        junk_share=0.0,
        keywords=("invoice $inv for services rendered", "open the attached remittance advice"),
        techniques=(
            "lookalike-domain",
            "rfc2047-q-subject-latin1",
            "text-only",
            "html-attachment",
            "same-attachment-different-names",
        ),
        html="",
        text=(
            "Dear customer,\r\n\r\nPlease find attached invoice $inv for services rendered. Our "
            "records show this invoice is now 14 days overdue.\r\n\r\nTo avoid a late payment "
            "fee, open the attached remittance advice and confirm payment today.\r\n\r\n"
            "Kind regards,\r\nAccounts Receivable\r\nRef: $ref\r\n"
        ),
    ),
    _Theme(
        key="ceo-gift-card",
        title="CEO impersonation (gift cards)",
        display_names=("$ceo",),
        sender_local="$ceo_slug.office",
        domains=("{label}-executive.com", "{label}-leadership.net", "{label}-board.org"),
        url_host="",
        url_path=None,
        subject="Confidential – are you at your desk? ($ref)",
        subject_charset="utf-8",
        subject_encoding="Q",
        body="text-only",
        transfer="8bit",
        per_recipient=True,
        attachment="",
        attachment_names=(),
        forward_rate=0.15,
        max_copies=1,
        junk_share=0.0,
        keywords=("discreet purchase", "Apple gift cards", "client appreciation event"),
        techniques=(
            "spoofed-executive-display-name",
            "reply-to-mismatch",
            "rfc2047-q-subject",
            "text-only",
            "8bit-body",
            "forwarded-copy",
        ),
        html="",
        text=(
            "Hi $first,\r\n\r\nAre you at your desk? I need you to handle a discreet purchase "
            "for me today – $count Apple gift cards ($$100 each) for a client appreciation "
            "event. I'm in meetings all afternoon, so reply to this email only.\r\n\r\nPlease "
            "keep this confidential until I announce it.\r\n\r\n$ceo_first\r\nSent from my iPhone\r\n"
        ),
        reply_to="ceo.private.$nn@securemail-inbox.com",
    ),
    _Theme(
        key="docusign-lookalike",
        title="DocuSign lookalike with a PDF",
        display_names=(
            "DocuSign Electronic Signature Service",
            "DocuSign Secure Review",
            "eSignature Notification",
        ),
        sender_local="dse",
        domains=("docusign-esign.net", "docusign-review.com", "esign-docs-center.com"),
        url_host="www.",
        url_path="/Signing/StartInSession.aspx?t=$token&a=$ref&r=$user&src=email-notification",
        subject="Please review and sign: $org Services Agreement #$ref",
        subject_charset="utf-8",
        subject_encoding="none",
        body="alternative",
        transfer="quoted-printable",
        per_recipient=True,
        attachment="pdf",
        attachment_names=(
            "Agreement_$ref.pdf",
            "${org_slug}_Services_Agreement.pdf",
            "Contract-$ref.pdf",
        ),
        forward_rate=0.05,
        max_copies=1,
        junk_share=0.05,
        keywords=("Services Agreement #$ref", "security code: $code"),
        techniques=(
            "brand-impersonation",
            "lookalike-domain",
            "per-recipient-url",
            "qp-soft-break-url",
            "pdf-attachment",
            "same-attachment-different-names",
            "forwarded-copy",
        ),
        html=(
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>\r\n'
            '<body style="background:#eaeaea;font-family:Helvetica,Arial,sans-serif">\r\n'
            "<p>$org sent you a document to review and sign.</p>\r\n"
            '<p><a href="$url" style="background:#ffc423;padding:8px 24px;color:#333">REVIEW '
            "DOCUMENT</a></p>\r\n"
            "<p>$org Services Agreement #$ref</p>\r\n"
            "<p>Alternate signing method: visit DocuSign.com, click 'Access Documents' and enter "
            "the security code: $code</p>\r\n</body></html>\r\n"
        ),
        text=(
            "$org sent you a document to review and sign.\r\n\r\nREVIEW DOCUMENT: $url\r\n\r\n"
            "$org Services Agreement #$ref\r\n\r\nAlternate signing method: enter the security "
            "code: $code\r\n"
        ),
    ),
    _Theme(
        key="voicemail",
        title="Voicemail broadcast with an HTML attachment",
        display_names=("Voicemail Service", "Unified Messaging Voicemail", "Voice Message Center"),
        sender_local="voicemail",
        domains=("vm-notify-center.com", "voicemail-portal.net", "unified-msg-center.com"),
        url_host="play.",
        url_path="/listen/VM-$ref?src=email",
        subject="📞 New voicemail from +1 (415) 555-$phone – $seconds seconds",
        subject_charset="utf-8",
        subject_encoding="B",
        body="html-only",
        transfer="base64",
        per_recipient=False,
        attachment="html",
        attachment_names=("VM_$phone.htm", "Voicemail_Message_$phone.html"),
        forward_rate=0.1,
        max_copies=2,
        junk_share=0.15,
        keywords=("VM-$ref", "Play voicemail"),
        techniques=(
            "broadcast-same-message-id",
            "rfc2047-b-subject",
            "html-only",
            "base64-body",
            "html-attachment",
            "same-attachment-different-names",
            "resent-copies",
            "forwarded-copy",
        ),
        html=(
            '<html><head><meta charset="utf-8"></head>\r\n<body style="font-family:Calibri">\r\n'
            "<p>You have received a new voicemail message.</p>\r\n"
            "<table><tr><td>From:</td><td>+1 (415) 555-$phone</td></tr>"
            "<tr><td>Duration:</td><td>$seconds seconds</td></tr>"
            "<tr><td>Message ID:</td><td>VM-$ref</td></tr></table>\r\n"
            '<p><a href="$url">▶ Play voicemail</a></p>\r\n'
            "<p>The audio file is also attached. Voicemail Service – Unified Messaging</p>\r\n"
            "</body></html>\r\n"
        ),
        text="",
    ),
    _Theme(
        key="parcel-customs",
        title="Parcel held in customs",
        display_names=("DHL Express Customs", "DHL Parcel Service", "DHL Delivery Notification"),
        sender_local="noreply",
        domains=("dhl-parcel-tracking.info", "dhl-customs-fee.com", "dhl-express-delivery.net"),
        url_host="track.",
        url_path="/pay/customs?shipment=$trk&token=$token&lang=en&utm_source=notification",
        subject="Your parcel $trk is on hold – customs fee unpaid",
        subject_charset="utf-8",
        subject_encoding="Q",
        body="html-only",
        transfer="quoted-printable",
        per_recipient=True,
        attachment="",
        attachment_names=(),
        forward_rate=0.0,
        max_copies=3,
        junk_share=0.3,
        keywords=("customs fee of EUR 2.99", "Parcels not claimed within 48 hours"),
        techniques=(
            "brand-impersonation",
            "lookalike-domain",
            "rfc2047-q-subject",
            "html-only",
            "per-recipient-url",
            "qp-soft-break-url",
            "resent-copies",
            "junk-folder",
        ),
        html=(
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>\r\n'
            '<body style="font-family:Arial;color:#333">\r\n'
            '<div style="background:#ffcc00;padding:12px"><b>DHL</b> Express</div>\r\n'
            "<p>Dear customer,</p>\r\n"
            "<p>Your parcel <b>$trk</b> is being held at our distribution centre because a "
            "customs fee of EUR 2.99 is unpaid.</p>\r\n"
            '<p><a href="$url">Pay customs fee and reschedule delivery</a></p>\r\n'
            "<p>Parcels not claimed within 48 hours are returned to the sender.</p>\r\n"
            "</body></html>\r\n"
        ),
        text="",
    ),
    _Theme(
        key="payroll-lookalike",
        title="Payroll lookalike of the tenant's own domain",
        display_names=("Payroll Team", "Compensation Office", "Payroll & Benefits"),
        sender_local="payroll",
        domains=("{label}-hr.com", "{label}-payroll.net", "{label}-benefits.com"),
        url_host="portal.",
        url_path="/payroll/confirm?employee=$user&session=$token&case=$ref",
        subject="Salary adjustment $year – please confirm by Friday ($ref)",
        subject_charset="utf-8",
        subject_encoding="Q",
        body="alternative",
        transfer="quoted-printable",
        per_recipient=True,
        attachment="xlsm",
        attachment_names=("Salary_Adjustment_$year.xlsm", "Compensation_Review_$ref.xlsm"),
        forward_rate=0.1,
        max_copies=1,
        junk_share=0.05,
        keywords=("salary adjustment letter is ready", "Payroll Team · Case $ref"),
        techniques=(
            "own-domain-lookalike",
            "rfc2047-q-subject",
            "per-recipient-url",
            "qp-soft-break-url",
            "macro-attachment",
            "same-attachment-different-names",
            "forwarded-copy",
        ),
        html=(
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>\r\n'
            '<body style="font-family:Aptos,Calibri,sans-serif">\r\n'
            "<p>Hello $first,</p>\r\n"
            "<p>As part of the $year compensation review, your salary adjustment letter is ready. "
            "Review the attached summary and confirm your bank details in the payroll portal by "
            "Friday.</p>\r\n"
            '<p><a href="$url">Open payroll portal</a></p>\r\n'
            "<p>Payroll Team · Case $ref</p>\r\n</body></html>\r\n"
        ),
        text=(
            "Hello $first,\r\n\r\nAs part of the $year compensation review, your salary "
            "adjustment letter is ready. Confirm your bank details in the payroll portal by "
            "Friday: $url\r\n\r\nPayroll Team · Case $ref\r\n"
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Campaign:
    """One planted campaign, fully resolved from the seed."""

    index: int
    id: str
    theme: str
    title: str
    techniques: tuple[str, ...]
    display_name: str
    display_name_distinctive: bool
    sender: str  # ASCII (punycode) address
    from_domain: str  # ASCII (punycode)
    from_domain_unicode: str
    reply_to: str | None
    subject: str  # decoded
    encoded_subject: str  # as in the Subject header
    url_host: str | None  # Unicode
    url_host_ascii: str | None
    sender_ip: str
    sender_host: str
    start: datetime
    hit_rate: float
    forward_rate: float
    max_copies: int
    junk_share: float
    per_recipient: bool
    keywords: tuple[str, ...]
    attachment_names: tuple[str, ...]
    attachment_type: str | None
    attachment_content: bytes | None
    attachment_url: str | None
    values: Mapping[str, str] = field(default_factory=dict)  # template values for the bodies


@dataclass(frozen=True, slots=True)
class PlannedCopy:
    """One campaign message in one mailbox, known without building the mailbox."""

    campaign: int
    recipient: str  # user id of the mailbox
    copy: int  # which send of the campaign (resends count up)
    folder: WellKnownFolder
    received: datetime
    variant: Variant
    internet_message_id: str
    ordinal: int = 0  # position of the (original) recipient among the campaign's targets
    forwarder: str | None = None  # user id whose copy was forwarded (variant "forwarded")


# --------------------------------------------------------------------------- lazy headers

_HEADERS_SLOT: Any = Message.__dict__["headers"]  # the slot the dataclass created
# Sentinel stored in the slot: "compute internetMessageHeaders when read".
_LAZY_HEADERS: list[tuple[str, str]] = []


def _immutable_id(user_id: str, counter: int) -> str:
    """The immutable id `Mailbox.new_item_ids()` hands out as item number `counter`.

    Mirrors state.py so the ground truth needs no mailbox; tests check they agree.
    """
    return graph_id(user_id, "item", counter, prefix=b"AAkALgAA")


def _server_name(key: int) -> str:
    return f"{_SERVER_PREFIXES[key % 8]}{key % 89 + 10}MB{key % 8999 + 1000}"


def _region(key: int) -> str:
    return f"namprd{key % 20 + 1:02d}"


def _background_ip(domain: str) -> str:
    first, second, third = _BACKGROUND_RANGES[_providers().get(domain, "generic")]
    key = zlib.crc32(domain.encode())
    return f"{first}.{second}.{third + key % 64}.{(key >> 8) % 250 + 2}"


class _SharedEmpty(list):  # type: ignore[type-arg]
    """An empty list shared by many generated messages (memory); in-place changes are refused.

    The emulator replaces recipient and category lists on update rather than mutating
    them, so sharing is invisible; code that mutated one in place would fail loudly here
    instead of silently changing every message that shares it.
    """

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a generated message's empty list is shared; assign a new list instead")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse


_EMPTY: list[Any] = _SharedEmpty()


class GeneratedMessage(Message):
    """A background message whose `headers` are computed when read instead of stored.

    The value is a deterministic function of the message's own fields, so it is the same on
    every read; assigning `headers` stores the assigned list instead (copies, tests).
    """

    __slots__ = ()
    route: ClassVar[str] = "internal"

    @property
    def headers(self) -> list[tuple[str, str]]:
        stored: list[tuple[str, str]] = _HEADERS_SLOT.__get__(self, Message)
        return _background_headers(self) if stored is _LAZY_HEADERS else stored

    @headers.setter
    def headers(self, value: list[tuple[str, str]]) -> None:
        _HEADERS_SLOT.__set__(self, value)


class _InternalMessage(GeneratedMessage):
    __slots__ = ()
    route = "internal"


class _ExternalMessage(GeneratedMessage):
    __slots__ = ()
    route = "external"


class _NewsletterMessage(GeneratedMessage):
    __slots__ = ()
    route = "newsletter"


class _SentMessage(GeneratedMessage):
    __slots__ = ()
    route = "sent"


def _background_headers(msg: GeneratedMessage) -> list[tuple[str, str]]:
    route = msg.route
    key = zlib.crc32(msg.internet_message_id.encode())
    rcpt = msg.to[0].address if msg.to else ""
    sender = msg.from_.address if msg.from_ else ""
    domain = sender.rsplit("@", 1)[-1].lower()
    rkey = zlib.crc32(rcpt.encode())
    mailbox_server = _server_name(rkey)
    hub = _server_name(rkey >> 3)
    region = _region(rkey)
    received = format_date(msg.received)
    out: list[tuple[str, str]] = []
    if route != "sent":
        out.append(
            (
                "Received",
                f"from {hub}.{region}.prod.outlook.com (2603:10b6:{rkey % 999:x}:{key % 255:x}::{key % 97:x}) "
                f"by {mailbox_server}.{region}.prod.outlook.com with HTTPS; {received}",
            )
        )
        if route == "internal":
            skey = zlib.crc32(sender.encode())
            out.append(
                (
                    "Received",
                    f"from {_server_name(skey)}.{_region(skey)}.prod.outlook.com "
                    f"(2603:10b6:{skey % 999:x}:{key % 200:x}::{key % 13:x}) by {hub}.{region}.prod.outlook.com "
                    "(2603:10b6:806:c9::14) with Microsoft SMTP Server (version=TLS1_2, "
                    "cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.21; " + received,
                )
            )
            out.append(
                (
                    "Authentication-Results",
                    f"dkim=none (message not signed) header.d=none;dmarc=none action=none header.from={domain};",
                )
            )
        else:
            ip = _background_ip(domain)
            frontend = f"{region[-2:]}FT{key % 900 + 100:03d}.mail.protection.outlook.com"
            out.append(
                (
                    "Received",
                    f"from {frontend} (2603:10b6:806:d1::{key % 15:x}) by {hub}.{region}.prod.outlook.com "
                    "(2603:10b6:806:c9::14) with Microsoft SMTP Server (version=TLS1_2, "
                    "cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.21; " + received,
                )
            )
            out.append(
                (
                    "Received",
                    f"from mail.{domain} ({ip}) by {frontend} (10.167.242.{key % 250 + 2}) with "
                    "Microsoft SMTP Server (version=TLS1_3, cipher=TLS_AES_256_GCM_SHA384) id "
                    f"15.20.7633.21 via Frontend Transport; {received}",
                )
            )
            out.append(
                (
                    "Authentication-Results",
                    f"spf=pass (sender IP is {ip}) smtp.mailfrom={domain}; dkim=pass (signature was "
                    f"verified) header.d={domain};dmarc=pass action=none header.from={domain};"
                    "compauth=pass reason=100",
                )
            )
            out.append(
                (
                    "Received-SPF",
                    f"Pass (protection.outlook.com: domain of {domain} designates {ip} as permitted "
                    f"sender) receiver=protection.outlook.com; client-ip={ip}; helo=mail.{domain}; pr=C",
                )
            )
    if msg.from_ is not None:
        out.append(("From", format_addresses([msg.from_])))
    if msg.to:
        out.append(("To", format_addresses(msg.to)))
    if msg.cc:
        out.append(("Cc", format_addresses(msg.cc)))
    out.append(("Subject", encode_unstructured(msg.subject)))
    out.append(("Date", format_date(msg.sent or msg.received)))
    out.append(("Message-ID", msg.internet_message_id))
    if msg.importance in ("high", "low"):
        out.append(("Importance", msg.importance))
    if route in ("internal", "sent"):
        out.append(("X-MS-Has-Attach", "yes" if msg.has_attachments else ""))
    out.append(("MIME-Version", "1.0"))
    out.append(("Content-Type", content_type_for(msg, html_only=route == "newsletter")))
    return out


# --------------------------------------------------------------------------- content


def _html_body(paragraphs: Sequence[str], greeting: str = "Hi,", closing: str = "Thanks,") -> str:
    inner = "".join(f"<p>{html.escape(p)}</p>\r\n" for p in paragraphs)
    return (
        '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\r\n'
        "</head>\r\n<body>\r\n"
        '<div style="font-family: Aptos, Calibri, sans-serif; font-size: 11pt; color: #000000">\r\n'
        f"<p>{html.escape(greeting)}</p>\r\n{inner}<p>{html.escape(closing)}</p>\r\n</div>\r\n"
        "</body>\r\n</html>\r\n"
    )


def _newsletter_body(letter: _Sender, subject: str) -> str:
    name, host = letter.name, letter.address.rsplit("@", 1)[-1]
    slug = _ascii_slug(subject)[:40] or "issue"
    return (
        '<html><head><meta charset="utf-8"><style>body{font-family:Georgia,serif}'
        ".cta{color:#ffffff;background:#222222;padding:6px 12px}</style></head>\r\n<body>\r\n"
        f"<h1>{html.escape(name)}</h1>\r\n<h2>{html.escape(subject)}</h2>\r\n"
        "<p>Our editors picked the stories that matter this week, with analysis you will not "
        "find anywhere else.</p>\r\n"
        f'<p><a class="cta" href="https://{host}/read/{slug}">Read the full issue</a></p>\r\n'
        f'<p style="font-size:9pt">You receive this because you subscribed. <a href="https://{host}'
        '/unsubscribe">Unsubscribe</a></p>\r\n</body></html>\r\n'
    )


def _service_body(service: _Sender) -> str:
    return (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>\r\n'
        '<body style="font-family:Segoe UI,Arial,sans-serif">\r\n'
        f"<p>{html.escape(service.text)}</p>\r\n"
        f'<p><a href="{html.escape(service.link)}">Open {html.escape(service.name)}</a></p>\r\n'
        f'<p style="font-size:9pt;color:#666">This message was sent by {html.escape(service.name)}.'
        " Please do not reply.</p>\r\n</body></html>\r\n"
    )


def _spam_body(sender: _Sender) -> str:
    host = sender.address.rsplit("@", 1)[-1]
    return (
        "<html><body>\r\n<h1>Limited time only!</h1>\r\n<p>Thousands of businesses already "
        "trust us. Reply today to claim your exclusive discount.</p>\r\n"
        f'<p><a href="https://www.{host}/offer">Claim the offer</a></p>\r\n'
        f'<p style="font-size:8pt"><a href="https://www.{host}/optout">Opt out</a></p>\r\n'
        "</body></html>\r\n"
    )


# Cumulative weights of background message kinds (percent).
_KINDS = ("internal", "sent", "external", "newsletter", "service", "calendar", "spam")
_KIND_CUMULATIVE = (0.34, 0.48, 0.62, 0.75, 0.84, 0.94, 1.0)
_CALENDAR_PREFIXES = (
    "Accepted: ",
    "Declined: ",
    "Tentative: ",
    "Invitation: ",
    "Updated invitation: ",
    "Canceled: ",
)


class GeneratedContent:
    """Lazily generated mailbox content for a tenant, derived from a `GeneratorSpec`.

    Built once per loaded tenant; `populate()` is pure: the same user always gets the same
    messages with the same ids. Users are snapshotted at construction, so later changes to
    the tenant do not change what a mailbox contains.
    """

    def __init__(self, spec: GeneratorSpec, tenant: Tenant) -> None:
        self.spec = spec
        self.tenant_id = tenant.id
        self.domain = tenant.domains[0] if tenant.domains else TENANT_DOMAIN
        self.label = self.domain.split(".", 1)[0]
        wanted = None if spec.mailboxes is None else {u.lower() for u in spec.mailboxes}
        people: list[_Person] = []
        for user in tenant.users.values():
            covered = user.has_mailbox and (
                wanted is None or user.user_principal_name.lower() in wanted
            )
            people.append(
                _Person(
                    index=len(people),
                    user_id=user.id,
                    upn=user.user_principal_name,
                    address=user.mail or user.user_principal_name,
                    name=user.display_name,
                    given=user.given_name or user.display_name.split(" ", 1)[0],
                    department=user.department or "",
                    job_title=user.job_title or "",
                    enabled=user.account_enabled,
                    covered=covered,
                )
            )
        self._people = people
        self._by_id = {p.user_id: p for p in people}
        # Colleagues who write mail: people with a mailbox, by department.
        self._writers = [p for p in people if p.covered]
        self._by_dept: dict[str, list[_Person]] = {}
        for person in self._writers:
            self._by_dept.setdefault(person.department, []).append(person)
        self._security = next(
            (
                p
                for p in self._writers
                if p.enabled and p.upn.split("@", 1)[0].lower() in ("security", "phishing", "soc")
            ),
            None,
        )
        self._ceo = next(
            (p for p in people if "chief executive" in p.job_title.lower() or p.job_title == "CEO"),
            next((p for p in people if p.department == "Executive"), people[0] if people else None),
        )
        self._strings: dict[str, str] = {}
        self._bodies_cache: dict[str, str] = {}
        self._conversations: dict[str, str] = {}
        self._contacts = [
            (partner, contact) for partner in _data().partners for contact in partner.contacts
        ]
        self._bodies = self._make_bodies()
        self.campaigns: tuple[Campaign, ...] = tuple(
            self._make_campaign(i) for i in range(spec.campaigns)
        )
        self._plan: dict[str, tuple[PlannedCopy, ...]] | None = None

    # ------------------------------------------------------------------ public

    def covers(self, user: User) -> bool:
        """Whether this user's mailbox has generated content."""
        person = self._by_id.get(user.id)
        return person is not None and person.covered

    def populate(self, box: Mailbox, user: User) -> None:
        """Add the user's generated messages to `box`: background mail, then campaign copies."""
        person = self._by_id.get(user.id)
        if person is None or not person.covered:
            return
        self._background(box, person)
        for planned in self.plan().get(person.user_id, ()):
            box.add_message(self._planted_message(box, person, planned))

    def plan(self) -> Mapping[str, tuple[PlannedCopy, ...]]:
        """Campaign copies per mailbox (user id), in the order they are added."""
        if self._plan is None:
            self._plan = self._make_plan()
        return self._plan

    def ground_truth(self) -> dict[str, Any]:
        """Every campaign's indicators and the exact messages that carry it."""
        plan = self.plan()
        k = self.spec.messages_per_mailbox
        entries: dict[int, list[dict[str, Any]]] = {c.index: [] for c in self.campaigns}
        for user_id, items in plan.items():
            person = self._by_id[user_id]
            for position, item in enumerate(items, start=1):
                immutable_id = _immutable_id(user_id, k + position)
                campaign = self.campaigns[item.campaign]
                entry: dict[str, Any] = {
                    "mailbox": person.upn,
                    "folder": item.folder,
                    "internetMessageId": item.internet_message_id,
                    "immutableId": immutable_id,
                    "variant": item.variant,
                    "received": _iso(item.received),
                    "copy": item.copy,
                }
                source = person
                if item.forwarder is not None:
                    source = self._by_id[item.forwarder]
                    entry["forwardedBy"] = source.upn
                    entry["innerInternetMessageId"] = self._campaign_message_id(
                        campaign, source, item.copy
                    )
                url = self._campaign_url(campaign, source, item.copy)
                entry["urls"] = [url] if url else []
                name = self._attachment_name(campaign, item.ordinal, item.copy)
                entry["attachmentNames"] = [name] if name else []
                entries[item.campaign].append(entry)
        campaigns = []
        for campaign in self.campaigns:
            messages = sorted(
                entries[campaign.index], key=lambda e: (e["received"], e["mailbox"], e["variant"])
            )
            campaigns.append(self._campaign_truth(campaign, messages))
        return {
            "version": GENERATOR_VERSION,
            "generator": self.spec.to_json(),
            "tenant": {"id": self.tenant_id, "domain": self.domain},
            "summary": {
                "users": len(self._people),
                "mailboxes": len(self._writers),
                "backgroundMessagesPerMailbox": k,
                "campaigns": len(self.campaigns),
                "plantedMessages": sum(len(c["messages"]) for c in campaigns),
            },
            "notes": [
                "Campaigns target enabled users with a mailbox; forwarded copies land in the "
                "security mailbox or a colleague's inbox.",
                "indicators are distinctive: background mail never contains them. "
                "nonDistinctive values also occur in legitimate mail.",
                "urls are as written in the body after transfer decoding; urlDomains are ASCII "
                "(punycode), urlDomainsUnicode as displayed.",
            ],
            "campaigns": campaigns,
        }

    # ------------------------------------------------------------------ helpers

    def _s(self, text: str) -> str:
        """Share one string object for equal subjects across all mailboxes."""
        return self._strings.setdefault(text, text)

    def _conversation(self, subject: str) -> str:
        found = self._conversations.get(subject)
        if found is None:
            found = self._conversations.setdefault(subject, conversation_id_for(subject))
        return found

    def _make_bodies(self) -> dict[str, tuple[str, ...]]:
        data = _data()
        paras = data.paragraphs
        count = len(paras)
        internal = tuple(
            _html_body([paras[i % count], paras[(i * 7 + 3) % count]]) for i in range(24)
        )
        replies = tuple(
            _html_body([opener, paras[(i * 5 + 1) % count]], greeting="Hi,", closing="Best,")
            for i, opener in enumerate(data.reply_openers * 3)
        )
        partner = tuple(
            _html_body(
                [paras[(i * 3 + 2) % count], "Let me know if you have any questions."],
                greeting="Hello,",
                closing="Kind regards,",
            )
            for i in range(8)
        )
        calendar = ("", "Sorry, I have a conflict.\r\n", "Looking forward to it.\r\n")
        return {
            "internal": internal,
            "reply": replies,
            "partner": partner,
            "calendar": calendar,
        }

    def _circle(self, rng: random.Random, me: _Person) -> list[_Person]:
        same = self._by_dept.get(me.department, [])
        picks = [p for p in rng.sample(same, min(13, len(same))) if p is not me][:12]
        others = [p for p in rng.sample(self._writers, min(8, len(self._writers))) if p is not me]
        circle = picks + [p for p in others if p not in picks]
        return circle or [me]

    # ------------------------------------------------------------------ background

    def _background(self, box: Mailbox, me: _Person) -> None:
        spec = self.spec
        count = spec.messages_per_mailbox
        if count <= 0:
            return
        data = _data()
        rng = random.Random(_int(spec.seed, "mailbox", me.user_id))
        circle = self._circle(rng, me)
        my_contacts = rng.sample(self._contacts, min(5, len(self._contacts)))
        my_letters = rng.sample(data.newsletters, min(3, len(data.newsletters)))
        addresses: dict[str, EmailAddress] = {}

        def address(name: str, addr: str) -> EmailAddress:
            found = addresses.get(addr)
            if found is None:
                found = addresses[addr] = EmailAddress(name, addr)
            return found

        me_address = address(me.name, me.address)
        folders = box.well_known
        inbox, sent_folder = folders["inbox"], folders["sentitems"]
        deleted, junk, archive = folders["deleteditems"], folders["junkemail"], folders["archive"]
        dept_topics = next(
            (d.topics for d in data.departments if d.name == me.department), data.general_topics
        )
        pool = _attachment_pool()
        bodies = self._bodies
        prefix = _hex(12, spec.seed, "message-id", me.user_id).upper()
        my_server = _server_name(zlib.crc32(me.address.encode()))
        my_region = _region(zlib.crc32(me.address.encode()))
        epoch = spec.epoch
        span = spec.window_days * 86400
        offsets = sorted((rng.randrange(span) for _ in range(count)), reverse=True)
        recent = 2 * 86400
        conversation = self._conversation
        s = self._s
        for number, offset in enumerate(offsets):
            received = epoch - timedelta(seconds=offset)
            kind = _KINDS[bisect.bisect_right(_KIND_CUMULATIVE, rng.random())]
            body_type: BodyType = "html"
            importance = "normal"
            cc: list[EmailAddress] = _EMPTY
            attach: list[tuple[str, str, bytes, bool]] = []
            folder = inbox
            inference = "focused"
            cls: type[GeneratedMessage] = _InternalMessage
            lag = rng.randrange(2, 40)
            is_read = offset > recent and rng.random() < 0.9
            if kind in ("internal", "sent", "calendar"):
                colleague = circle[rng.randrange(len(circle))]
                colleague_address = address(colleague.name, colleague.address)
                roll = rng.random()
                if kind == "calendar":
                    topic = dept_topics[rng.randrange(len(dept_topics))]
                    subject = s(_CALENDAR_PREFIXES[rng.randrange(6)] + topic)
                    body, body_type = bodies["calendar"][rng.randrange(3)], "text"
                elif roll < 0.06:
                    subject = data.international_subjects[
                        rng.randrange(len(data.international_subjects))
                    ]
                    body, body_type = bodies["internal"][rng.randrange(24)], "html"
                else:
                    pool_topics = dept_topics if roll < 0.8 else data.general_topics
                    topic = pool_topics[rng.randrange(len(pool_topics))]
                    prefix_roll = rng.random()
                    if prefix_roll < 0.3:
                        subject = s("RE: " + topic)
                        body = bodies["reply"][rng.randrange(len(bodies["reply"]))]
                    elif prefix_roll < 0.38:
                        subject = s("FW: " + topic)
                        body = bodies["internal"][rng.randrange(24)]
                    else:
                        subject = topic
                        body = bodies["internal"][rng.randrange(24)]
                    body_type = "html"
                    if rng.random() < 0.08:
                        name, ctype, content = pool[rng.randrange(len(pool))]
                        attach.append((name, ctype, content, False))
                if rng.random() < 0.25:
                    other = circle[rng.randrange(len(circle))]
                    if other is not colleague:
                        cc = [address(other.name, other.address)]
                if rng.random() < 0.03:
                    importance = "high"
                if kind == "sent":
                    cls = _SentMessage
                    sender_address, to = me_address, [colleague_address]
                    folder, is_read = sent_folder, True
                    server, region = my_server, my_region
                else:
                    sender_address, to = colleague_address, [me_address]
                    key = zlib.crc32(colleague.address.encode())
                    server, region = _server_name(key), _region(key)
                    folder = archive if rng.random() < 0.07 else inbox
                message_id = (
                    f"<{server}{prefix}{number:05X}{rng.getrandbits(32):08X}"
                    f"@{server}.{region}.prod.outlook.com>"
                )
            else:
                cls = _ExternalMessage
                lag = rng.randrange(30, 600)
                if kind == "external":
                    partner, (contact_name, local) = my_contacts[rng.randrange(len(my_contacts))]
                    host = partner.domain
                    sender_address = address(contact_name, f"{local}@{partner.domain}")
                    topic = partner.topics[rng.randrange(len(partner.topics))]
                    subject = s(
                        topic.replace("{n}", f"2025-0{rng.randrange(1, 10)}{rng.randrange(10, 99)}")
                    )
                    if rng.random() < 0.3:
                        subject = s("RE: " + subject)
                    body, body_type = bodies["partner"][rng.randrange(8)], "html"
                    if rng.random() < 0.12:
                        name, ctype, content = pool[rng.randrange(len(pool))]
                        attach.append((name, ctype, content, False))
                    if rng.random() < 0.1:
                        attach.append(("image001.png", "image/png", _LOGO_PNG, True))
                    folder = archive if rng.random() < 0.08 else inbox
                elif kind == "newsletter":
                    cls = _NewsletterMessage
                    letter = my_letters[rng.randrange(len(my_letters))]
                    host = letter.address.rsplit("@", 1)[-1]
                    sender_address = address(letter.name, letter.address)
                    subject = letter.subjects[rng.randrange(len(letter.subjects))]
                    body = self._cached(
                        f"newsletter|{letter.address}|{subject}", _newsletter_body, letter, subject
                    )
                    body_type = "html"
                    inference = "other"
                    roll = rng.random()
                    folder = deleted if roll < 0.15 else archive if roll < 0.22 else inbox
                elif kind == "service":
                    service = data.services[rng.randrange(len(data.services))]
                    sender_mail = service.address.replace("{domain}", self.domain)
                    host = sender_mail.rsplit("@", 1)[-1]
                    if host == self.domain:
                        cls = _InternalMessage
                    sender_address = address(service.name, sender_mail)
                    template = service.subjects[rng.randrange(len(service.subjects))]
                    colleague = circle[rng.randrange(len(circle))]
                    subject = s(
                        template.replace("{colleague}", colleague.name).replace(
                            "{n}", str(1_000_000_000 + rng.randrange(8_999_999_999))
                        )
                    )
                    body = self._cached(f"service|{service.address}", _service_body, service)
                    body_type = "html"
                    inference = "other"
                    folder = deleted if rng.random() < 0.1 else inbox
                else:  # spam
                    spam = data.spam[rng.randrange(len(data.spam))]
                    host = spam.address.rsplit("@", 1)[-1]
                    sender_address = address(spam.name, spam.address)
                    subject = spam.subjects[rng.randrange(len(spam.subjects))]
                    body = self._cached(f"spam|{spam.address}", _spam_body, spam)
                    body_type = "html"
                    folder, inference = junk, "other"
                    cls = _NewsletterMessage
                to = [me_address]
                message_id = f"<{prefix.lower()}{number:05x}{rng.getrandbits(40):010x}@mail.{host}>"
            if folder is inbox and rng.random() < 0.04:
                folder = deleted
            immutable_id, rest_id = box.new_item_ids()
            attachments = [
                Attachment(
                    id=graph_id(immutable_id, "att", i, prefix=b"AAMkAGAT"),
                    name=name,
                    content_type=ctype,
                    content=content,
                    is_inline=inline,
                    content_id="image001.png@01DB0A1C.5F3E2D10" if inline else None,
                    last_modified=received,
                )
                for i, (name, ctype, content, inline) in enumerate(attach)
            ]
            message = cls(
                immutable_id,
                rest_id,
                folder,
                message_id,
                subject,
                sender_address,
                sender_address,
                to,
                cc,
                _EMPTY,
                _EMPTY,
                received,
                received - timedelta(seconds=lag),
                body,
                body_type,
                _LAZY_HEADERS,
                attachments,
                categories=_EMPTY,
                is_read=is_read,
                importance=importance,
                inference_classification=inference,
                conversation_id=conversation(subject),
                created=received,
                last_modified=received,
            )
            box.add_message(message)

    def _cached(self, key: str, make: Callable[..., str], *args: Any) -> str:
        """A body built once per tenant and shared by every message that uses it."""
        found = self._bodies_cache.get(key)
        if found is None:
            found = self._bodies_cache[key] = make(*args)
        return found

    # ------------------------------------------------------------------ campaigns

    def _make_campaign(self, index: int) -> Campaign:
        spec = self.spec
        theme = _THEMES[index % len(_THEMES)]
        round_ = index // len(_THEMES)
        rng = random.Random(_int(spec.seed, "campaign", index))
        ref = "".join(rng.choice(_REF_ALPHABET) for _ in range(6))
        alt = round_ % len(theme.domains)
        ceo = self._ceo
        ceo_name = ceo.name if ceo else "Chief Executive"
        ceo_given = ceo.given if ceo else "CEO"
        ceo_slug = _ascii_slug(ceo_name.replace(" ", ".")) or "ceo"
        domain_unicode = theme.domains[alt].replace("{label}", self.label)
        if round_ >= len(theme.domains):
            stem, _dot, tld = domain_unicode.rpartition(".")
            domain_unicode = f"{stem}-{round_ + 1}.{tld}"
        domain_ascii = domain_unicode.encode("idna").decode("ascii")
        partner_orgs = [p.org for p in _data().partners]
        org = partner_orgs[rng.randrange(len(partner_orgs))]
        values = {
            "ref": ref,
            "inv": str(rng.randrange(10_000, 99_999)),
            "year": str(spec.epoch.year),
            "org": org,
            "org_slug": org.replace(" ", "_"),
            "phone": f"{rng.randrange(100, 9999):04d}",
            "seconds": str(rng.randrange(12, 95)),
            "trk": f"JD0146{rng.randrange(10**9, 10**10)}",
            "code": _hex(32, spec.seed, "code", index).upper(),
            "count": str(rng.choice((5, 8, 10, 12))),
            "nn": f"{rng.randrange(10, 99)}",
            "ceo": ceo_name,
            "ceo_first": ceo_given,
            "ceo_slug": ceo_slug,
        }
        display = Template(theme.display_names[alt % len(theme.display_names)]).substitute(values)
        if round_ >= len(theme.display_names) and theme.key != "ceo-gift-card":
            display = f"{display} {round_ + 1}"
        local = Template(theme.sender_local).substitute(values)
        subject = Template(theme.subject).substitute(values)
        if theme.subject_encoding == "none":
            encoded_subject = subject
        else:
            encoding = "b" if theme.subject_encoding == "B" else "q"
            encoded_subject = _encode_words(subject, theme.subject_charset, encoding)
        url_host: str | None = None
        url_host_ascii: str | None = None
        if theme.url_path is not None or theme.attachment == "html":
            url_host = f"{theme.url_host}{domain_unicode}"
            url_host_ascii = url_host.encode("idna").decode("ascii")
        sender_ip = (
            f"{_CAMPAIGN_FIRST_OCTETS[rng.randrange(len(_CAMPAIGN_FIRST_OCTETS))]}."
            f"{rng.randrange(1, 255)}.{rng.randrange(0, 256)}.{rng.randrange(2, 254)}"
        )
        window = spec.window_days * 86400
        start = spec.epoch - timedelta(seconds=rng.randrange(86400, max(86401, window - 86400)))
        attachment_content: bytes | None = None
        attachment_type: str | None = None
        attachment_url: str | None = None
        if theme.attachment == "html":
            attachment_url = f"https://{url_host}/doc/{ref}/view"
            encoded = base64.b64encode(attachment_url.encode()).decode()
            attachment_content = (
                f'<html><head><meta charset="utf-8"><title>Document {ref}</title>'
                f'<script>var u=atob("{encoded}");window.location.replace(u);</script></head>'
                f"<body><p>Loading secure document {ref} …</p></body></html>\r\n"
            ).encode()
            attachment_type = "text/html"
        elif theme.attachment == "pdf":
            attachment_url = f"https://{url_host_ascii}/Signing/Document/{ref}"
            attachment_content = _pdf_bytes(
                f"{org} Services Agreement #{ref}",
                [
                    "Please review and sign the attached agreement.",
                    f"Security code {values['code']}",
                ],
                uri=attachment_url,
            )
            attachment_type = "application/pdf"
        elif theme.attachment == "xlsm":
            attachment_content = _zip_bytes(
                [
                    ("[Content_Types].xml", b'<?xml version="1.0"?><Types/>'),
                    (
                        "xl/workbook.xml",
                        f"<workbook><name>Compensation {ref}</name></workbook>".encode(),
                    ),
                    (
                        "xl/vbaProject.bin",
                        hashlib.sha512(f"{spec.seed}:{index}:vba".encode()).digest() * 4,
                    ),
                ]
            )
            attachment_type = "application/vnd.ms-excel.sheet.macroEnabled.12"
        reply_to = Template(theme.reply_to).substitute(values) if theme.reply_to else None
        keywords = tuple(Template(k).substitute(values) for k in theme.keywords)
        return Campaign(
            index=index,
            id=f"campaign-{index + 1:02d}",
            theme=theme.key,
            title=theme.title,
            techniques=theme.techniques,
            display_name=display,
            display_name_distinctive=theme.key != "ceo-gift-card",
            sender=f"{local}@{domain_ascii}",
            from_domain=domain_ascii,
            from_domain_unicode=domain_unicode,
            reply_to=reply_to,
            subject=subject,
            encoded_subject=encoded_subject,
            url_host=url_host,
            url_host_ascii=url_host_ascii,
            sender_ip=sender_ip,
            sender_host=f"mail.{domain_ascii}",
            start=start,
            hit_rate=round(rng.uniform(0.01, 0.30), 4),
            forward_rate=theme.forward_rate,
            max_copies=theme.max_copies,
            junk_share=theme.junk_share,
            per_recipient=theme.per_recipient,
            keywords=keywords,
            attachment_names=tuple(Template(n).substitute(values) for n in theme.attachment_names),
            attachment_type=attachment_type,
            attachment_content=attachment_content,
            attachment_url=attachment_url,
            values=values,
        )

    def _campaign_url(self, campaign: Campaign, person: _Person, copy: int) -> str | None:
        theme = _THEMES[campaign.index % len(_THEMES)]
        if theme.url_path is None or campaign.url_host is None:
            return None
        token = self._token(campaign, person, copy)
        user = base64.urlsafe_b64encode(person.address.encode()).decode().rstrip("=")
        if not campaign.per_recipient:
            user = "all"
        path = Template(theme.url_path).substitute(
            {**campaign.values, "token": token, "user": user}
        )
        return f"https://{campaign.url_host}{path}"

    def _token(self, campaign: Campaign, person: _Person, copy: int) -> str:
        if campaign.per_recipient:
            return _hex(24, self.spec.seed, "token", campaign.index, person.user_id, copy)
        return _hex(24, self.spec.seed, "token", campaign.index, copy)

    def _campaign_message_id(self, campaign: Campaign, person: _Person, copy: int) -> str:
        if campaign.per_recipient:
            local = _hex(32, self.spec.seed, "mid", campaign.index, person.user_id, copy)
        else:
            local = _hex(32, self.spec.seed, "mid", campaign.index, copy)
        return f"<{local}@{campaign.sender_host}>"

    def _attachment_name(self, campaign: Campaign, ordinal: int, copy: int) -> str | None:
        """Same bytes, different names: the name rotates over recipients (and resends)."""
        names = campaign.attachment_names
        if not names:
            return None
        if campaign.per_recipient:
            return names[(ordinal + copy) % len(names)]
        return names[copy % len(names)]

    def _make_plan(self) -> dict[str, tuple[PlannedCopy, ...]]:
        spec = self.spec
        targets = [p for p in self._writers if p.enabled]
        plans: dict[str, list[PlannedCopy]] = {}
        latest = spec.epoch - timedelta(minutes=5)
        for campaign in self.campaigns:
            # One random stream per campaign, drawn in user order: cheap for large tenants.
            rng = random.Random(_int(spec.seed, "plan", campaign.index))
            scores = [(rng.random(), p) for p in targets]
            hits = [p for score, p in scores if score < campaign.hit_rate]
            if len(hits) < min(3, len(scores)):
                # Tiny tenants: still enough recipients to show every variant.
                ranked = [p for _score, p in sorted(scores, key=lambda pair: pair[0])[:3]]
                hits = [p for p in targets if p in ranked]
            firsts: list[PlannedCopy] = []
            for ordinal, person in enumerate(hits):
                copies = 1 + sum(rng.random() < 0.35 for _ in range(campaign.max_copies - 1))
                if ordinal == 0 and campaign.max_copies > 1:
                    copies = max(copies, 2)  # every resending campaign shows a resend
                when = campaign.start + timedelta(seconds=rng.randrange(4 * 3600))
                for copy in range(copies):
                    if copy:
                        when = when + timedelta(seconds=rng.randrange(3 * 3600, 30 * 3600))
                    roll = rng.random()
                    folder: WellKnownFolder = "inbox"
                    if roll < campaign.junk_share:
                        folder = "junkemail"
                    elif roll < campaign.junk_share + 0.08:
                        folder = "deleteditems"
                    planned = PlannedCopy(
                        campaign=campaign.index,
                        recipient=person.user_id,
                        copy=copy,
                        folder=folder,
                        received=min(when, latest),
                        variant="direct" if copy == 0 else "resend",
                        internet_message_id=self._campaign_message_id(campaign, person, copy),
                        ordinal=ordinal,
                    )
                    plans.setdefault(person.user_id, []).append(planned)
                    if copy == 0:
                        firsts.append(planned)
            if campaign.forward_rate > 0:
                forwarded = [
                    f
                    for f in firsts
                    if f.folder == "inbox"
                    and _unit(spec.seed, "forward", campaign.index, f.recipient)
                    < campaign.forward_rate
                ]
                if not forwarded:
                    forwarded = [f for f in firsts if f.folder == "inbox"][:1]
                for first in forwarded:
                    target = self._forward_target(campaign, self._by_id[first.recipient])
                    if target is None:
                        continue
                    delay = 600 + int(
                        _unit(spec.seed, "delay", campaign.index, first.recipient) * 7200
                    )
                    outer_id = self._forward_message_id(campaign, first.recipient)
                    plans.setdefault(target.user_id, []).append(
                        PlannedCopy(
                            campaign=campaign.index,
                            recipient=target.user_id,
                            copy=first.copy,
                            folder="inbox",
                            received=min(first.received + timedelta(seconds=delay), latest),
                            variant="forwarded",
                            internet_message_id=outer_id,
                            ordinal=first.ordinal,
                            forwarder=first.recipient,
                        )
                    )
        order = {"direct": 0, "resend": 1, "forwarded": 2}
        return {
            user_id: tuple(
                sorted(
                    items,
                    key=lambda p: (
                        p.received,
                        p.campaign,
                        order[p.variant],
                        p.copy,
                        p.forwarder or "",
                    ),
                )
            )
            for user_id, items in plans.items()
        }

    def _forward_target(self, campaign: Campaign, sender: _Person) -> _Person | None:
        if (
            self._security is not None
            and self._security is not sender
            and _unit(self.spec.seed, "report", campaign.index, sender.user_id) < 0.6
        ):
            return self._security
        colleagues = [
            p for p in self._by_dept.get(sender.department, ()) if p is not sender and p.enabled
        ] or [p for p in self._writers if p is not sender and p.enabled]
        if not colleagues:
            return None
        return colleagues[
            _int(self.spec.seed, "colleague", campaign.index, sender.user_id) % len(colleagues)
        ]

    def _forward_message_id(self, campaign: Campaign, forwarder_id: str) -> str:
        person = self._by_id[forwarder_id]
        key = zlib.crc32(person.address.encode())
        server = _server_name(key)
        local = _hex(28, self.spec.seed, "forward", campaign.index, forwarder_id).upper()
        return f"<{server}{local}@{server}.{_region(key)}.prod.outlook.com>"

    def _planted_message(self, box: Mailbox, person: _Person, planned: PlannedCopy) -> Message:
        campaign = self.campaigns[planned.campaign]
        if planned.forwarder is None:
            raw = self._campaign_rfc822(
                campaign, person, planned.copy, planned.received, planned.ordinal
            )
        else:
            forwarder = self._by_id[planned.forwarder]
            inner_received = next(
                p.received
                for p in self.plan()[forwarder.user_id]
                if p.campaign == campaign.index and p.copy == planned.copy and p.forwarder is None
            )
            inner = self._campaign_rfc822(
                campaign, forwarder, planned.copy, inner_received, planned.ordinal
            )
            raw = self._forward_rfc822(campaign, forwarder, person, planned, inner)
        message = message_from_rfc822(
            raw, box=box, folder_id=box.well_known[planned.folder], received=planned.received
        )
        message.inference_classification = "other" if planned.folder == "junkemail" else "focused"
        shared = campaign.attachment_content
        for attachment in message.attachments:
            if shared is not None and attachment.content == shared:
                attachment.content = shared  # one bytes object for every copy (memory)
        return message

    def _campaign_rfc822(
        self, campaign: Campaign, person: _Person, copy: int, received: datetime, ordinal: int
    ) -> bytes:
        """The raw message of one campaign copy as delivered to `person`."""
        theme = _THEMES[campaign.index % len(_THEMES)]
        values = dict(campaign.values)
        url = self._campaign_url(campaign, person, copy) or ""
        values.update(
            {
                "name": person.name,
                "first": person.given,
                "email": person.address,
                "url": url,
            }
        )
        jitter = _int(self.spec.seed, "jitter", campaign.index, person.user_id, copy)
        sent = received - timedelta(seconds=20 + jitter % 300)
        rkey = zlib.crc32(person.address.encode())
        frontend = f"{_region(rkey)[-2:]}FT{jitter % 900 + 100:03d}.mail.protection.outlook.com"
        hub = f"{_server_name(rkey >> 3)}.{_region(rkey)}.prod.outlook.com"
        server = f"{_server_name(rkey)}.{_region(rkey)}.prod.outlook.com"
        ip = campaign.sender_ip
        headers = [
            (
                "Received",
                f"from {hub} (2603:10b6:806:c9::14) by {server} with HTTPS; {format_date(received)}",
            ),
            (
                "Received",
                f"from {frontend} (2603:10b6:806:d1::4) by {hub} (2603:10b6:806:c9::14) with "
                "Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) "
                f"id 15.20.7633.21; {format_date(received - timedelta(seconds=1))}",
            ),
            (
                "Received",
                f"from {campaign.sender_host} ({ip}) by {frontend} (10.167.242.{jitter % 250 + 2}) "
                "with Microsoft SMTP Server (version=TLS1_2, "
                "cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.7633.21 via Frontend "
                f"Transport; {format_date(received - timedelta(seconds=3))}",
            ),
            (
                "Authentication-Results",
                f"spf=softfail (sender IP is {ip}) smtp.mailfrom={campaign.from_domain}; dkim=none "
                f"(message not signed) header.d=none;dmarc=fail action=quarantine "
                f"header.from={campaign.from_domain};compauth=fail reason=001",
            ),
            (
                "Received-SPF",
                f"SoftFail (protection.outlook.com: domain of transitioning {campaign.from_domain} "
                f"discourages use of {ip} as permitted sender)",
            ),
            ("From", format_addresses([EmailAddress(campaign.display_name, campaign.sender)])),
        ]
        if campaign.per_recipient:
            headers.append(("To", format_addresses([EmailAddress(person.name, person.address)])))
        else:
            headers.append(("To", "undisclosed-recipients:;"))
        if campaign.reply_to:
            headers.append(("Reply-To", campaign.reply_to))
        headers += [
            ("Subject", campaign.encoded_subject),
            ("Date", format_date(sent)),
            ("Message-ID", self._campaign_message_id(campaign, person, copy)),
            ("MIME-Version", "1.0"),
        ]
        if theme.key == "ceo-gift-card":
            headers.append(("X-Mailer", "iPhone Mail (21E236)"))
        boundary = f"----=_Part_{_hex(16, self.spec.seed, 'boundary', campaign.index, copy)}"
        body_headers, body = self._campaign_body(theme, values, boundary)
        parts_headers = body_headers
        payload = body
        name = self._attachment_name(campaign, ordinal, copy)
        if name and campaign.attachment_content is not None and campaign.attachment_type:
            mixed = f"{boundary}_mixed"
            attachment = (
                f'Content-Type: {campaign.attachment_type}; name="{name}"\r\n'
                f'Content-Disposition: attachment; filename="{name}"\r\n'
                "Content-Transfer-Encoding: base64\r\n\r\n"
            ).encode() + base64.encodebytes(campaign.attachment_content).replace(b"\n", b"\r\n")
            inner_part = "".join(f"{n}: {v}\r\n" for n, v in body_headers).encode() + b"\r\n" + body
            payload = (
                f"--{mixed}\r\n".encode()
                + inner_part
                + f"\r\n--{mixed}\r\n".encode()
                + attachment
                + f"\r\n--{mixed}--\r\n".encode()
            )
            parts_headers = [("Content-Type", f'multipart/mixed; boundary="{mixed}"')]
        head = "".join(f"{n}: {v}\r\n" for n, v in [*headers, *parts_headers])
        return head.encode("utf-8") + b"\r\n" + payload

    def _campaign_body(
        self, theme: _Theme, values: Mapping[str, str], boundary: str
    ) -> tuple[list[tuple[str, str]], bytes]:
        def encode(text: str) -> tuple[str, bytes]:
            data = text.encode("utf-8")
            if theme.transfer == "quoted-printable":
                return "quoted-printable", binascii.b2a_qp(data, istext=True)
            if theme.transfer == "base64":
                return "base64", base64.encodebytes(data).replace(b"\n", b"\r\n")
            return theme.transfer, data

        def part(kind: str, text: str) -> tuple[list[tuple[str, str]], bytes]:
            cte, data = encode(text)
            return [
                ("Content-Type", f'{kind}; charset="utf-8"'),
                ("Content-Transfer-Encoding", cte),
            ], data

        if theme.body == "text-only":
            return part("text/plain", Template(theme.text).substitute(values))
        if theme.body == "html-only":
            return part("text/html", Template(theme.html).substitute(values))
        alt = f"{boundary}_alt"
        chunks = []
        for kind, template in (("text/plain", theme.text), ("text/html", theme.html)):
            headers, data = part(kind, Template(template).substitute(values))
            chunks.append(
                f"--{alt}\r\n".encode()
                + "".join(f"{n}: {v}\r\n" for n, v in headers).encode()
                + b"\r\n"
                + data
                + b"\r\n"
            )
        return [("Content-Type", f'multipart/alternative; boundary="{alt}"')], b"".join(
            chunks
        ) + f"--{alt}--\r\n".encode()

    def _forward_rfc822(
        self,
        campaign: Campaign,
        forwarder: _Person,
        target: _Person,
        planned: PlannedCopy,
        inner: bytes,
    ) -> bytes:
        data = _data()
        note = data.forward_notes[
            _int(self.spec.seed, "note", campaign.index, forwarder.user_id)
            % len(data.forward_notes)
        ]
        key = zlib.crc32(forwarder.address.encode())
        rkey = zlib.crc32(target.address.encode())
        received = planned.received
        boundary = (
            f"_004_{_hex(32, self.spec.seed, 'fwd', campaign.index, forwarder.user_id).upper()}_"
        )
        headers = [
            (
                "Received",
                f"from {_server_name(key)}.{_region(key)}.prod.outlook.com (2603:10b6:a03:3a4::9) by "
                f"{_server_name(rkey)}.{_region(rkey)}.prod.outlook.com with HTTPS; {format_date(received)}",
            ),
            (
                "Authentication-Results",
                f"dkim=none (message not signed) header.d=none;dmarc=none action=none header.from={self.domain};",
            ),
            ("From", format_addresses([EmailAddress(forwarder.name, forwarder.address)])),
            ("To", format_addresses([EmailAddress(target.name, target.address)])),
            ("Subject", encode_unstructured("FW: " + campaign.subject)),
            ("Thread-Topic", encode_unstructured(campaign.subject)),
            ("Date", format_date(received - timedelta(seconds=4))),
            ("Message-ID", planned.internet_message_id),
            ("X-MS-Has-Attach", "yes"),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/mixed; boundary="{boundary}"'),
        ]
        text = binascii.b2a_qp(f"{note}\r\n\r\n{forwarder.name}\r\n".encode(), istext=True)
        inner = inner if inner.endswith(b"\r\n") else inner + b"\r\n"
        payload = (
            f'--{boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode()
            + text
            + f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n"
            "Content-Disposition: attachment\r\n\r\n".encode()
            + inner
            + f"\r\n--{boundary}--\r\n".encode()
        )
        head = "".join(f"{n}: {v}\r\n" for n, v in headers)
        return head.encode("utf-8") + b"\r\n" + payload

    def _campaign_truth(self, campaign: Campaign, messages: list[dict[str, Any]]) -> dict[str, Any]:
        urls = sorted({u for m in messages for u in m["urls"]})
        names = sorted({n for m in messages for n in m["attachmentNames"]})
        direct_ids = sorted(
            {m["internetMessageId"] for m in messages if m["variant"] != "forwarded"}
        )
        indicators: dict[str, Any] = {
            "senderAddresses": [campaign.sender],
            "fromDomains": [campaign.from_domain],
            "fromDomainsUnicode": [campaign.from_domain_unicode],
            "displayNames": [campaign.display_name] if campaign.display_name_distinctive else [],
            "replyTo": [campaign.reply_to] if campaign.reply_to else [],
            "subjects": [campaign.subject],
            "encodedSubjects": [campaign.encoded_subject],
            "urls": urls,
            "urlDomains": [campaign.url_host_ascii] if urls and campaign.url_host_ascii else [],
            "urlDomainsUnicode": [campaign.url_host] if urls and campaign.url_host else [],
            "attachments": [],
            "attachmentUrls": [campaign.attachment_url] if campaign.attachment_url else [],
            "internetMessageIds": direct_ids,
            "senderIps": [campaign.sender_ip],
            "senderHosts": [campaign.sender_host],
            "bodyKeywords": list(campaign.keywords),
        }
        if campaign.attachment_content is not None and names:
            content = campaign.attachment_content
            indicators["attachments"] = [
                {
                    "names": names,
                    "contentType": campaign.attachment_type,
                    "size": len(content),
                    "md5": hashlib.md5(content).hexdigest(),  # noqa: S324 - an indicator, not security
                    "sha1": hashlib.sha1(content).hexdigest(),  # noqa: S324 - an indicator, not security
                    "sha256": hashlib.sha256(content).hexdigest(),
                    "sha512": hashlib.sha512(content).hexdigest(),
                }
            ]
        counts: dict[str, int] = {}
        for message in messages:
            counts[message["variant"]] = counts.get(message["variant"], 0) + 1
        return {
            "id": campaign.id,
            "index": campaign.index,
            "theme": campaign.theme,
            "title": campaign.title,
            "techniques": list(campaign.techniques),
            "hitRate": campaign.hit_rate,
            "start": _iso(campaign.start),
            "perRecipient": campaign.per_recipient,
            "indicators": indicators,
            "nonDistinctive": {
                "displayNames": []
                if campaign.display_name_distinctive
                else [campaign.display_name],
            },
            "counts": {
                "mailboxes": len({m["mailbox"] for m in messages}),
                "messages": len(messages),
                **counts,
            },
            "messages": messages,
        }


def _encode_words(text: str, charset: str, encoding: str) -> str:
    """RFC 2047 encoded words (B or Q) of at most 75 characters, never splitting a character."""
    words: list[str] = []
    chunk = ""
    for ch in text:
        candidate = chunk + ch
        if chunk and len(_encoded_word(candidate, charset, encoding)) > 75:
            words.append(_encoded_word(chunk, charset, encoding))
            chunk = ch
        else:
            chunk = candidate
    if chunk:
        words.append(_encoded_word(chunk, charset, encoding))
    return " ".join(words)


def _encoded_word(text: str, charset: str, encoding: str) -> str:
    data = text.encode(charset)
    if encoding == "b":
        return f"=?{charset}?B?{base64.b64encode(data).decode()}?="
    quoted = "".join(
        chr(b) if (chr(b).isalnum() and b < 128) else "_" if b == 0x20 else f"={b:02X}"
        for b in data
    )
    return f"=?{charset}?Q?{quoted}?="


# --------------------------------------------------------------------------- tenant


def _secret_value(seed: int) -> str:
    raw = base64.b64encode(_digest("demo-secret", seed) + _digest("demo-secret-2", seed)).decode()
    cleaned = raw.replace("+", "~").replace("/", "_").rstrip("=")
    return f"{cleaned[:3]}8Q~{cleaned[3:39]}"


def tenant_document(
    *,
    users: int,
    messages_per_mailbox: int,
    campaigns: int,
    seed: int,
    epoch: datetime = DEFAULT_EPOCH,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> dict[str, Any]:
    """The `tenant.json` document `generate()` writes (pure; useful in tests)."""
    data = _data()
    rng = random.Random(_int(seed, "users"))
    domain = TENANT_DOMAIN
    shared = [
        ("security", "Security Operations", "IT"),
        ("helpdesk", "IT Helpdesk", "IT"),
        ("accounts.payable", "Accounts Payable", "Finance"),
        ("info", "Contoso Info", "Marketing"),
    ]
    n_shared = 0 if users < 10 else min(len(shared), 1 + users // 50)
    regular = users - n_shared
    n_exec = 0 if regular <= 0 else max(1, min(7, regular // 150 + 1))
    departments = [d for d in data.departments if d.name != "Executive"]
    executive = next(d for d in data.departments if d.name == "Executive")
    weights = [d.weight for d in departments]
    used: dict[str, int] = {}
    heads: dict[str, str] = {}
    out_users: list[dict[str, Any]] = []
    members: dict[str, list[str]] = {d.name: [] for d in data.departments}
    for i in range(regular):
        dept = executive if i < n_exec else rng.choices(departments, weights)[0]
        first = rng.choice(data.first_names)
        last = rng.choice(data.last_names)
        base = f"{_ascii_slug(first)}.{_ascii_slug(last)}".strip(".") or f"user{i}"
        used[base] = used.get(base, 0) + 1
        local = base if used[base] == 1 else f"{base}{used[base]}"
        upn = f"{local}@{domain}"
        if dept.name not in heads:
            heads[dept.name] = upn
            title = dept.head
        elif dept is executive:
            title = dept.titles[(i - 1) % len(dept.titles)]
        else:
            title = dept.titles[rng.randrange(len(dept.titles))]
        user: dict[str, Any] = {
            "id": deterministic_uuid("generated-user", seed, i),
            "userPrincipalName": upn,
            "displayName": f"{first} {last}",
            "givenName": first,
            "surname": last,
            "mail": upn,
            "department": dept.name,
            "jobTitle": title,
            "officeLocation": data.offices[rng.randrange(len(data.offices))],
            "createdDateTime": _iso(epoch - timedelta(days=30 + rng.randrange(2000))),
        }
        special = i < n_exec or heads.get(dept.name) == upn
        if not special and rng.random() < 0.02:
            user["accountEnabled"] = False
        if not special and rng.random() < 0.01:
            user["hasMailbox"] = False
            del user["mail"]
        members[dept.name].append(upn)
        out_users.append(user)
    for j, (local, name, dept_name) in enumerate(shared[:n_shared]):
        upn = f"{local}@{domain}"
        out_users.append(
            {
                "id": deterministic_uuid("generated-shared", seed, j),
                "userPrincipalName": upn,
                "displayName": name,
                "mail": upn,
                "department": dept_name,
                "jobTitle": "Shared mailbox",
                "createdDateTime": _iso(epoch - timedelta(days=2000)),
            }
        )
    groups: list[dict[str, Any]] = []
    for dept in data.departments:
        if not members[dept.name]:
            continue
        slug = _ascii_slug(dept.name.replace(" ", "-"))
        groups.append(
            {
                "id": deterministic_uuid("generated-group", seed, dept.name),
                "displayName": dept.name,
                "mail": f"{slug}@{domain}",
                "members": members[dept.name],
            }
        )
    dept_groups = [g["displayName"] for g in groups]
    if dept_groups:
        groups.append(
            {
                "id": deterministic_uuid("generated-group", seed, "All Staff"),
                "displayName": "All Staff",
                "mail": f"allstaff@{domain}",
                "members": dept_groups,
            }
        )
    leadership = [heads[d] for d in sorted(heads) if d != "Executive"]
    if members["Executive"]:
        leadership = ["Executive", *leadership]
    if leadership:
        groups.append(
            {
                "id": deterministic_uuid("generated-group", seed, "Leadership"),
                "displayName": "Leadership",
                "members": leadership,
            }
        )
    spec = GeneratorSpec(
        seed=seed,
        messages_per_mailbox=messages_per_mailbox,
        campaigns=campaigns,
        epoch=epoch,
        window_days=window_days,
    )
    return {
        "tenant": {
            "id": deterministic_uuid("generated-tenant", seed),
            "displayName": TENANT_NAME,
            "domains": [domain, f"{domain.split('.', 1)[0]}.onmicrosoft.com"],
        },
        "apps": [
            {
                "clientId": deterministic_uuid("generated-app", seed),
                "displayName": DEMO_APP_NAME,
                "secrets": [
                    {
                        "id": deterministic_uuid("generated-secret", seed),
                        "value": _secret_value(seed),
                        "expires": "2099-12-31T00:00:00Z",
                        "displayName": "demo",
                    }
                ],
                "permissions": dict.fromkeys(DEMO_PERMISSIONS, True),
            }
        ],
        "users": out_users,
        "groups": groups,
        "generator": spec.to_json(),
    }


@dataclass(frozen=True, slots=True)
class GenerationSummary:
    """What `generate()` wrote, and how to sign in to it."""

    out_dir: Path
    tenant_file: Path
    ground_truth_file: Path
    tenant_id: str
    domain: str
    client_id: str
    client_secret: str
    users: int
    mailboxes: int
    messages_per_mailbox: int
    campaigns: int
    planted_messages: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": str(self.tenant_file),
            "groundTruth": str(self.ground_truth_file),
            "tenantId": self.tenant_id,
            "domain": self.domain,
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "users": self.users,
            "mailboxes": self.mailboxes,
            "messagesPerMailbox": self.messages_per_mailbox,
            "campaigns": self.campaigns,
            "plantedMessages": self.planted_messages,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
        }


def _write_json(path: Path, document: Any) -> None:
    """Write JSON atomically (readers never see half a file); orjson keeps large tenants fast."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(path)


def generate(
    out_dir: Path,
    *,
    users: int,
    messages_per_mailbox: int,
    campaigns: int,
    seed: int,
    epoch: datetime = DEFAULT_EPOCH,
    window_days: int = DEFAULT_WINDOW_DAYS,
) -> GenerationSummary:
    """Write `tenant.json` and `ground-truth.json` for a deterministic generated tenant.

    The same arguments always give byte-identical files. Mailbox content is not written:
    loading the fixture builds it lazily from the `generator` section.
    """
    from mailtrawl.emulator.fixtures import load_tenant  # fixtures imports this module

    if not 1 <= users <= MAX_USERS:
        raise ValueError(f"users must be between 1 and {MAX_USERS}")
    if not 0 <= messages_per_mailbox <= MAX_MESSAGES_PER_MAILBOX:
        raise ValueError(f"messages_per_mailbox must be between 0 and {MAX_MESSAGES_PER_MAILBOX}")
    if not 0 <= campaigns <= MAX_CAMPAIGNS:
        raise ValueError(f"campaigns must be between 0 and {MAX_CAMPAIGNS}")
    if not 2 <= window_days <= 3650:
        raise ValueError("window_days must be between 2 and 3650")
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    document = tenant_document(
        users=users,
        messages_per_mailbox=messages_per_mailbox,
        campaigns=campaigns,
        seed=seed,
        epoch=epoch,
        window_days=window_days,
    )
    tenant_file = out_dir / "tenant.json"
    _write_json(tenant_file, document)
    loaded = load_tenant(out_dir)
    content = loaded.generated
    if content is None:  # pragma: no cover - the document always has a generator section
        raise RuntimeError("generated tenant has no generator section")
    truth = content.ground_truth()
    truth_file = out_dir / "ground-truth.json"
    _write_json(truth_file, truth)
    app = document["apps"][0]
    return GenerationSummary(
        out_dir=out_dir,
        tenant_file=tenant_file,
        ground_truth_file=truth_file,
        tenant_id=document["tenant"]["id"],
        domain=document["tenant"]["domains"][0],
        client_id=app["clientId"],
        client_secret=app["secrets"][0]["value"],
        users=users,
        mailboxes=truth["summary"]["mailboxes"],
        messages_per_mailbox=messages_per_mailbox,
        campaigns=campaigns,
        planted_messages=truth["summary"]["plantedMessages"],
        seed=seed,
        seconds=time.perf_counter() - started,
    )
