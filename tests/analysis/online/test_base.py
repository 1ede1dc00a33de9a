from __future__ import annotations

import pytest
from pydantic import SecretStr

from mailtrawl.analysis.model import Indicator, Verdict
from mailtrawl.analysis.online import (
    MemoryTtlCache,
    OnlineEnginesConfig,
    SafeBrowsingEngine,
    SpamhausEngine,
    TokenBucket,
    UrlscanEngine,
    VirusTotalEngine,
    WebRiskEngine,
    online_engines,
)
from tests.analysis.online.helpers import FakeClock, Recorder

pytestmark = pytest.mark.anyio


def finding(value: str) -> tuple[Indicator, ...]:
    return (Indicator("x", "x.kind", Verdict.SUSPICIOUS, 10, "evidence", value),)


async def test_cache_expires_and_evicts_least_recently_used() -> None:
    clock = FakeClock()
    cache = MemoryTtlCache(max_entries=2, clock=clock)
    await cache.set("a", finding("a"), 60)
    await cache.set("b", finding("b"), 600)
    assert await cache.get("a") == finding("a")  # "a" is now the most recently used
    await cache.set("c", finding("c"), 600)
    assert await cache.get("b") is None  # evicted
    clock.now += 61
    assert await cache.get("a") is None  # expired
    assert await cache.get("c") == finding("c")
    await cache.set("zero", finding("z"), 0)  # ttl 0 means "do not keep"
    assert await cache.get("zero") is None


async def test_token_bucket_bursts_then_waits_within_the_deadline() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4, clock=clock, sleep=clock.sleep)
    deadline = clock.now + 20
    assert [await bucket.acquire(deadline) for _ in range(4)] == [True] * 4
    assert clock.slept == []
    assert await bucket.acquire(deadline) is True  # waits for the next token: 15 s
    assert clock.slept == [pytest.approx(15.0)]
    assert await bucket.acquire(deadline) is False  # another 15 s would pass the deadline
    assert clock.slept == [pytest.approx(15.0)]


async def test_factory_builds_only_enabled_engines_with_keys() -> None:
    recorder = Recorder(lambda request: pytest.fail("no request expected"))
    async with recorder.client() as client:
        assert online_engines(OnlineEnginesConfig(), client=client) == []
        config = OnlineEnginesConfig.model_validate(
            {
                "virustotal": {"enabled": True, "api_key": "vt-key"},
                "urlscan": {"enabled": True},  # no key: left out
                "safe_browsing": {"enabled": True, "api_key": "sb-key"},
                "web_risk": {"enabled": False, "api_key": "wr-key"},  # off
                "spamhaus": {"enabled": True},  # public mirrors, no key needed
            }
        )
        engines = online_engines(config, client=client)
    assert [type(e) for e in engines] == [VirusTotalEngine, SafeBrowsingEngine, SpamhausEngine]
    assert all(e.online for e in engines)
    assert [e.name for e in engines] == ["virustotal", "safe_browsing", "spamhaus"]
    assert config.virustotal.rate_per_minute == 4
    assert isinstance(config.virustotal.api_key, SecretStr)
    assert "vt-key" not in repr(config)


async def test_keyed_engines_refuse_to_start_without_a_key() -> None:
    config = OnlineEnginesConfig()
    async with Recorder(lambda r: pytest.fail("none")).client() as client:
        for engine, settings in (
            (VirusTotalEngine, config.virustotal),
            (UrlscanEngine, config.urlscan),
            (SafeBrowsingEngine, config.safe_browsing),
            (WebRiskEngine, config.web_risk),
        ):
            with pytest.raises(ValueError, match="needs an API key"):
                engine(settings, client)  # type: ignore[arg-type]
