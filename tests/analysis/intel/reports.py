"""Building ParsedReport values directly, so engine tests do not depend on the parser."""

from __future__ import annotations

import hashlib
from typing import Any

from mailtrawl.analysis.model import (
    Address,
    AuthResults,
    ExtractedAttachment,
    ExtractedUrl,
    ParsedReport,
)
from mailtrawl.matching.urls import normalise_url, url_host


def link(url: str, source: str = "html", *, domain: str | None = None) -> ExtractedUrl:
    """An ExtractedUrl as the parser would make it (registrable domain given or guessed)."""
    normalised = normalise_url(url)
    assert normalised is not None, url
    host = url_host(url) or ""
    guessed = ".".join(host.split(".")[-2:]) if not host.replace(".", "").isdigit() else host
    return ExtractedUrl(normalised, url, host, domain or guessed, source)


def attachment(name: str, content: bytes, *, keep_content: bool = True) -> ExtractedAttachment:
    """An attachment with real digests of `content`."""
    return ExtractedAttachment(
        name=name,
        declared_type="application/octet-stream",
        sniffed_type="application/octet-stream",
        size=len(content),
        md5=hashlib.md5(content).hexdigest(),  # noqa: S324 - the digests the lists use
        sha1=hashlib.sha1(content).hexdigest(),  # noqa: S324
        sha256=hashlib.sha256(content).hexdigest(),
        sha512=hashlib.sha512(content).hexdigest(),
        content=content if keep_content else None,
    )


def make_report(**fields: Any) -> ParsedReport:
    """A benign report; keyword arguments replace fields."""
    values: dict[str, Any] = {
        "sha256": "0" * 64,
        "size": 1000,
        "message_id": "<m1@example.org>",
        "subject": "Quarterly numbers",
        "sender": Address("alice@partner.example", "Alice"),
        "reply_to": (),
        "return_path": None,
        "to": (Address("bob@contoso.com", "Bob"),),
        "cc": (),
        "date": None,
        "headers": (),
        "received": (),
        "originating_ip": None,
        "auth": AuthResults(),
        "text": "Hello Bob, the numbers are attached.",
        "html": None,
        "urls": (),
        "domains": ("partner.example",),
        "ips": (),
        "attachments": (),
    }
    values.update(fields)
    return ParsedReport(**values)
