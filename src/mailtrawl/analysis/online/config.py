"""Settings for the optional online engines: every engine is off until enabled (and keyed).

Nothing leaves the machine unless an engine here is enabled: hashes go to VirusTotal, URLs and
domains to the services an administrator switched on, relay IPs and domains to Spamhaus DNS.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class OnlineEngineConfig(BaseModel):
    """What every online engine shares."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    api_key: SecretStr | None = None
    rate_per_minute: float = Field(default=60.0, gt=0)
    burst: int | None = Field(default=None, ge=1)  # tokens available at once; default: 1 min
    timeout_s: float = Field(default=10.0, gt=0)  # per request
    budget_s: float = Field(
        default=60.0, gt=0
    )  # per report: lookups not started by then are skipped
    cache_ttl_s: float = Field(default=6 * 3600.0, ge=0)
    max_lookups_per_report: int = Field(default=20, ge=1, le=500)
    concurrency: int = Field(default=4, ge=1, le=32)


class VirusTotalConfig(OnlineEngineConfig):
    """VirusTotal API v3; the public API allows 4 requests a minute (and a daily quota)."""

    rate_per_minute: float = Field(default=4.0, gt=0)
    check_files: bool = True
    check_urls: bool = True
    check_domains: bool = True
    malicious_threshold: int = Field(default=3, ge=1)  # engines saying malicious
    base_url: str = "https://www.virustotal.com/api/v3"


class UrlscanConfig(OnlineEngineConfig):
    """urlscan.io: reads existing public scans; submitting new scans is a separate switch."""

    rate_per_minute: float = Field(default=30.0, gt=0)
    results_per_lookup: int = Field(default=1, ge=1, le=10)  # newest scans whose verdict is read
    submit: bool = False  # sends the URL to urlscan.io, which then visits it
    submit_visibility: Literal["private", "unlisted", "public"] = "private"
    max_submissions_per_report: int = Field(default=3, ge=0, le=20)
    base_url: str = "https://urlscan.io/api/v1"


SAFE_BROWSING_THREATS = (
    "MALWARE",
    "SOCIAL_ENGINEERING",
    "UNWANTED_SOFTWARE",
    "POTENTIALLY_HARMFUL_APPLICATION",
)
WEB_RISK_THREATS = ("MALWARE", "SOCIAL_ENGINEERING", "UNWANTED_SOFTWARE")


class SafeBrowsingConfig(OnlineEngineConfig):
    """Google Safe Browsing v4 Lookup API (`threatMatches:find`), one request per report."""

    threat_types: tuple[str, ...] = SAFE_BROWSING_THREATS
    client_id: str = "mailtrawl"
    base_url: str = "https://safebrowsing.googleapis.com/v4"


class WebRiskConfig(OnlineEngineConfig):
    """Google Cloud Web Risk (`uris:search`), one request per URL."""

    threat_types: tuple[str, ...] = WEB_RISK_THREATS
    base_url: str = "https://webrisk.googleapis.com/v1"


class SpamhausConfig(OnlineEngineConfig):
    """Spamhaus DBL (domains) and ZEN (IPs) over DNS; `api_key` is a Data Query Service key.

    Without a key the public mirrors are queried, which refuse queries arriving through public
    resolvers (8.8.8.8, 1.1.1.1...): run a local resolver, or use a DQS key.
    """

    rate_per_minute: float = Field(default=600.0, gt=0)
    timeout_s: float = Field(default=3.0, gt=0)
    cache_ttl_s: float = Field(default=3600.0, ge=0)
    check_domains: bool = True
    check_ips: bool = True
    max_lookups_per_report: int = Field(default=30, ge=1, le=500)


class OnlineEnginesConfig(BaseModel):
    """All online engines; the factory builds only those enabled (and keyed where needed)."""

    model_config = ConfigDict(extra="forbid")

    virustotal: VirusTotalConfig = Field(default_factory=VirusTotalConfig)
    urlscan: UrlscanConfig = Field(default_factory=UrlscanConfig)
    safe_browsing: SafeBrowsingConfig = Field(default_factory=SafeBrowsingConfig)
    web_risk: WebRiskConfig = Field(default_factory=WebRiskConfig)
    spamhaus: SpamhausConfig = Field(default_factory=SpamhausConfig)
