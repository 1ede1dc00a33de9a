"""The retry policy on its own: a seeded RNG and a fake clock, no network."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from mailtrawl.errors import AuthFailed, ProviderUnavailable, Throttled
from mailtrawl.providers.retry import (
    Failure,
    GiveUp,
    Retry,
    RetryableFailure,
    RetryPolicy,
    parse_retry_after,
)

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("10", 10.0),
        ("2.128", 2.128),
        (" 0 ", 0.0),
        ("-3", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_retry_after_is_honoured_with_bounded_jitter() -> None:
    policy = RetryPolicy(retry_after_jitter=0.1)
    state = policy.begin(random.Random(7))
    decision = state.decide(Failure.THROTTLED, 2.0)
    assert isinstance(decision, Retry)
    assert 2.0 <= decision.delay <= 2.2
    assert not decision.refresh_token


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    policy = RetryPolicy(max_attempts=50, base_delay=1.0, max_delay=8.0, budget=1e9)
    caps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for seed in range(20):
        state = policy.begin(random.Random(seed))
        for cap in caps:
            decision = state.decide(Failure.GATEWAY_TIMEOUT)
            assert isinstance(decision, Retry)
            assert 0.0 <= decision.delay <= cap


def test_same_seed_same_delays() -> None:
    policy = RetryPolicy(max_attempts=20, budget=1e9)

    def delays(seed: int) -> list[float]:
        state = policy.begin(random.Random(seed))
        out = []
        for kind in [Failure.CONNECTION, Failure.UNAVAILABLE, Failure.GATEWAY_TIMEOUT] * 3:
            decision = state.decide(kind)
            assert isinstance(decision, Retry)
            out.append(decision.delay)
        return out

    assert delays(3) == delays(3)
    assert delays(3) != delays(4)


def test_503_asks_for_a_new_connection() -> None:
    state = RetryPolicy().begin(random.Random(1))
    first = state.decide(Failure.UNAVAILABLE, 1.0)
    second = state.decide(Failure.CONNECTION)
    assert isinstance(first, Retry)
    assert first.new_connection
    assert isinstance(second, Retry)
    assert not second.new_connection


def test_unauthorized_refreshes_the_token_once_then_gives_up_with_auth_failed() -> None:
    state = RetryPolicy().begin(random.Random(1))
    first = state.decide(Failure.UNAUTHORIZED)
    assert first == Retry(0.0, refresh_token=True)
    second = state.decide(Failure.UNAUTHORIZED)
    assert isinstance(second, GiveUp)
    assert isinstance(second.error, AuthFailed)


def test_budget_exhausted_while_throttled_raises_throttled_with_the_last_retry_after() -> None:
    policy = RetryPolicy(budget=5.0, retry_after_jitter=0.0)
    state = policy.begin(random.Random(1))
    assert isinstance(state.decide(Failure.THROTTLED, 2.0), Retry)
    assert isinstance(state.decide(Failure.THROTTLED, 2.0), Retry)
    # 4 s waited, 1 s left: a Retry-After of 3 s cannot be honoured.
    final = state.decide(Failure.THROTTLED, 3.0)
    assert isinstance(final, GiveUp)
    assert isinstance(final.error, Throttled)
    assert final.error.retry_after == 3.0
    assert state.waited == pytest.approx(4.0)


def test_a_retry_after_longer_than_the_budget_fails_at_once() -> None:
    state = RetryPolicy(budget=10.0).begin(random.Random(1))
    final = state.decide(Failure.THROTTLED, 60.0)
    assert isinstance(final, GiveUp)
    assert isinstance(final.error, Throttled)
    assert final.error.retry_after == 60.0
    assert state.waited == 0.0


def test_max_attempts_without_throttling_raises_provider_unavailable() -> None:
    policy = RetryPolicy(max_attempts=3, budget=1e9)
    state = policy.begin(random.Random(1))
    assert isinstance(state.decide(Failure.CONNECTION), Retry)
    assert isinstance(state.decide(Failure.CONNECTION), Retry)
    final = state.decide(Failure.CONNECTION)
    assert isinstance(final, GiveUp)
    assert type(final.error) is ProviderUnavailable
    assert "3 attempts" in str(final.error)


def test_a_503_with_retry_after_counts_as_throttling() -> None:
    state = RetryPolicy(max_attempts=2).begin(random.Random(1))
    assert isinstance(state.decide(Failure.UNAVAILABLE, 0.5), Retry)
    final = state.decide(Failure.UNAVAILABLE, 0.5)
    assert isinstance(final, GiveUp)
    assert isinstance(final.error, Throttled)


def test_backoff_delays_never_exceed_the_remaining_budget() -> None:
    policy = RetryPolicy(max_attempts=100, base_delay=10.0, max_delay=10.0, budget=12.0)
    state = policy.begin(random.Random(5))
    total = 0.0
    while True:
        decision = state.decide(Failure.GATEWAY_TIMEOUT)
        if isinstance(decision, GiveUp):
            break
        total += decision.delay
    assert total <= 12.0 + 1e-9
    assert isinstance(decision.error, ProviderUnavailable)


async def test_run_retries_until_success_and_sleeps_on_the_fake_clock() -> None:
    clock = FakeClock()
    policy = RetryPolicy(retry_after_jitter=0.0)
    calls: list[Retry | None] = []

    async def attempt(previous: Retry | None) -> str:
        calls.append(previous)
        if len(calls) == 1:
            raise RetryableFailure(Failure.THROTTLED, retry_after=1.5)
        if len(calls) == 2:
            raise RetryableFailure(Failure.UNAUTHORIZED)
        return "done"

    waits: list[tuple[Failure, float]] = []
    result = await policy.run(
        attempt, sleep=clock.sleep, rng=random.Random(1), on_wait=lambda k, d: waits.append((k, d))
    )
    assert result == "done"
    assert clock.sleeps == [1.5]
    assert calls[0] is None
    assert calls[1] == Retry(1.5)
    assert calls[2] == Retry(0.0, refresh_token=True)
    assert waits == [(Failure.THROTTLED, 1.5), (Failure.UNAUTHORIZED, 0.0)]


async def test_run_raises_the_final_error_and_other_errors_pass_through() -> None:
    clock = FakeClock()
    policy = RetryPolicy(budget=3.0, retry_after_jitter=0.0)

    async def always_throttled(previous: Retry | None) -> None:
        raise RetryableFailure(Failure.THROTTLED, retry_after=1.0)

    with pytest.raises(Throttled) as caught:
        await policy.run(always_throttled, sleep=clock.sleep, rng=random.Random(1))
    assert caught.value.retry_after == 1.0
    assert sum(clock.sleeps) == pytest.approx(3.0)

    async def broken(previous: Retry | None) -> None:
        raise ValueError("not retryable")

    with pytest.raises(ValueError, match="not retryable"):
        await policy.run(broken, sleep=clock.sleep)


async def test_run_uses_the_error_an_attempt_supplies_for_a_refused_token() -> None:
    async def refused(previous: Retry | None) -> None:
        raise RetryableFailure(Failure.UNAUTHORIZED, error=AuthFailed("token refused twice"))

    with pytest.raises(AuthFailed, match="token refused twice"):
        await RetryPolicy().run(refused, sleep=FakeClock().sleep)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(budget=-1)
