"""The values analysis passes around: a parsed report, indicators, verdicts, the engine seam.

Everything here is plain data (no I/O). The parser fills `ParsedReport`; every engine reads
it and returns `Indicator`s; `verdict.py` folds indicators into one verdict and a 0-100 score.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Verdict(enum.StrEnum):
    """Ordered from harmless to worst; `simulation` is outside the order (a drill)."""

    UNDETECTED = "undetected"
    SUSPICIOUS = "suspicious"
    PHISHING = "phishing"
    MALICIOUS = "malicious"
    SIMULATION = "simulation"


@dataclass(frozen=True)
class Address:
    address: str  # lower-cased addr-spec, "" when unparseable
    name: str = ""  # display name as the recipient sees it


@dataclass(frozen=True)
class AuthResults:
    """Authentication-Results (and ARC/Received-SPF) outcomes; None when not stated."""

    spf: str | None = None  # pass | fail | softfail | neutral | none | temperror | permerror
    dkim: str | None = None
    dmarc: str | None = None
    compauth: str | None = None  # Microsoft composite authentication
    compauth_reason: str | None = None


@dataclass(frozen=True)
class ReceivedHop:
    from_host: str | None
    from_ip: str | None
    by_host: str | None
    when: datetime | None


@dataclass(frozen=True)
class ExtractedUrl:
    url: str  # normalised and unwrapped (Safe Links, Proofpoint, Google redirects)
    original: str  # as written in the message
    host: str
    domain: str  # registrable domain (public-suffix aware), or the IP for IP hosts
    source: str  # "text" | "html" | "attachment" | "header"
    anchor_text: str | None = None  # visible text of an <a>, when it came from HTML
    anchor_mismatch: bool = False  # visible text names another host than the target


@dataclass(frozen=True)
class ExtractedAttachment:
    name: str
    declared_type: str  # Content-Type the sender claimed
    sniffed_type: str  # what the bytes are (magic numbers)
    size: int
    md5: str
    sha1: str
    sha256: str
    sha512: str
    depth: int = 0  # 0 for a top-level attachment; archive members and nested mail go deeper
    container: str | None = None  # the archive or message this came out of
    has_macros: bool = False
    encrypted: bool = False
    content: bytes | None = field(default=None, repr=False)  # None when over the read bound
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedReport:
    """One reported message, parsed without trusting any of it."""

    sha256: str  # of the raw message bytes
    size: int
    message_id: str | None
    subject: str
    sender: Address  # From
    reply_to: tuple[Address, ...]
    return_path: str | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    date: datetime | None
    headers: tuple[tuple[str, str], ...]
    received: tuple[ReceivedHop, ...]  # newest first, as in the message
    originating_ip: str | None  # the first external hop's peer, or X-Originating-IP
    auth: AuthResults
    text: str  # visible text (plain part, or HTML rendered to text)
    html: str | None
    urls: tuple[ExtractedUrl, ...]
    domains: tuple[str, ...]  # registrable domains seen anywhere (sender, links, headers)
    ips: tuple[str, ...]
    attachments: tuple[ExtractedAttachment, ...]
    warnings: tuple[str, ...] = ()  # parse problems; never fatal
    fidelity: str = "original"  # "original" | "forward" (a plain forward, no original attached)


@dataclass(frozen=True)
class Indicator:
    """One finding: what an engine saw, what it means, and the evidence for a human."""

    engine: str
    kind: str  # dotted, e.g. "sender.display_name_spoof", "url.ip_host", "intel.hash"
    verdict: Verdict  # the verdict this finding alone points to
    score: int  # 0-100 contribution to the risk score
    evidence: str  # one sentence an analyst can check against the message
    value: str | None = None  # the indicator of compromise it concerns, if any


@dataclass(frozen=True)
class AnalysisContext:
    """What engines may know about the organisation (never fetched by the engine itself)."""

    own_domains: tuple[str, ...] = ()
    colleague_names: tuple[str, ...] = ()  # display names of internal people
    simulation_headers: tuple[tuple[str, str | None], ...] = ()  # (header, value or None)


class Engine(Protocol):
    """An analysis engine. Offline engines never touch the network."""

    name: str
    online: bool

    async def analyze(
        self, report: ParsedReport, context: AnalysisContext
    ) -> Sequence[Indicator]: ...
