"""Optional online engines (VirusTotal, urlscan.io, Safe Browsing, Web Risk, Spamhaus).

Each is off until enabled in `OnlineEnginesConfig`; `online_engines` builds the enabled ones
(those needing a key only when it is set) around one injected httpx.AsyncClient, which the
caller owns and closes.
"""

from __future__ import annotations

import httpx

from mailtrawl.analysis.model import Engine
from mailtrawl.analysis.online.base import (
    Lookup,
    LookupCache,
    LookupFailure,
    LookupResult,
    MemoryTtlCache,
    OnlineEngine,
    TokenBucket,
)
from mailtrawl.analysis.online.config import (
    OnlineEngineConfig,
    OnlineEnginesConfig,
    SafeBrowsingConfig,
    SpamhausConfig,
    UrlscanConfig,
    VirusTotalConfig,
    WebRiskConfig,
)
from mailtrawl.analysis.online.google import SafeBrowsingEngine, WebRiskEngine
from mailtrawl.analysis.online.spamhaus import (
    DnsError,
    DnspythonResolver,
    DnsResolver,
    SpamhausEngine,
)
from mailtrawl.analysis.online.urlscan import UrlscanEngine
from mailtrawl.analysis.online.virustotal import VirusTotalEngine, url_identifier


def online_engines(
    config: OnlineEnginesConfig,
    *,
    client: httpx.AsyncClient,
    resolver: DnsResolver | None = None,
    cache: LookupCache | None = None,
) -> list[Engine]:
    """The enabled online engines; a keyed service without its key is left out.

    `cache` (one store shared by all engines; keys carry the engine name) defaults to an
    in-memory TTL cache per engine.
    """
    engines: list[Engine] = []
    if config.virustotal.enabled and config.virustotal.api_key:
        engines.append(VirusTotalEngine(config.virustotal, client, cache=cache))
    if config.urlscan.enabled and config.urlscan.api_key:
        engines.append(UrlscanEngine(config.urlscan, client, cache=cache))
    if config.safe_browsing.enabled and config.safe_browsing.api_key:
        engines.append(SafeBrowsingEngine(config.safe_browsing, client, cache=cache))
    if config.web_risk.enabled and config.web_risk.api_key:
        engines.append(WebRiskEngine(config.web_risk, client, cache=cache))
    if config.spamhaus.enabled:  # the key (DQS) is optional
        engines.append(SpamhausEngine(config.spamhaus, resolver, cache=cache))
    return engines


__all__ = [
    "DnsError",
    "DnsResolver",
    "DnspythonResolver",
    "Lookup",
    "LookupCache",
    "LookupFailure",
    "LookupResult",
    "MemoryTtlCache",
    "OnlineEngine",
    "OnlineEngineConfig",
    "OnlineEnginesConfig",
    "SafeBrowsingConfig",
    "SafeBrowsingEngine",
    "SpamhausConfig",
    "SpamhausEngine",
    "TokenBucket",
    "UrlscanConfig",
    "UrlscanEngine",
    "VirusTotalConfig",
    "VirusTotalEngine",
    "WebRiskConfig",
    "WebRiskEngine",
    "online_engines",
    "url_identifier",
]
