"""The one retry policy every provider request goes through.

A `RetryPolicy` is configuration; `RetryPolicy.begin()` gives a `RetryState` for one
operation, which turns each transient failure into a decision: wait this long (and maybe
refresh the token or open a new connection), or give up with a typed error.

- `Retry-After` is honoured exactly (seconds, fractional seconds or an HTTP date), plus a
  small jitter so that throttled workers do not return in lockstep;
- 503, 504, 429 without `Retry-After` and connection errors back off exponentially with full
  jitter (a uniform wait between 0 and base * 2^n, capped); a 503 asks for a new connection;
- a 401 refreshes the token once, then gives up with `AuthFailed`;
- every operation has a budget of total waiting and a maximum number of attempts; when
  either runs out the operation fails with `Throttled(retry_after=<last Retry-After>)` if the
  platform was throttling, else `ProviderUnavailable`.

Given a seeded `random.Random` and a fake `sleep`, everything here is deterministic.
"""

from __future__ import annotations

import asyncio
import enum
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from mailtrawl.errors import AuthFailed, ProviderError, ProviderUnavailable, Throttled

T = TypeVar("T")


class Failure(enum.Enum):
    """The kinds of failure worth another attempt."""

    THROTTLED = "throttled"  # 429
    UNAVAILABLE = "unavailable"  # 503
    GATEWAY_TIMEOUT = "gateway-timeout"  # 502, 504
    CONNECTION = "connection"  # refused, reset, timed out
    UNAUTHORIZED = "unauthorized"  # 401: the token expired or was revoked


@dataclass(frozen=True, slots=True)
class Retry:
    """Wait `delay` seconds, then try again (with a fresh token / on a new connection)."""

    delay: float
    new_connection: bool = False
    refresh_token: bool = False


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Stop: `error` is what the operation raises."""

    error: ProviderError


Decision = Retry | GiveUp


class RetryableFailure(Exception):
    """Raised by one attempt to ask the policy for another.

    `error` is what to raise if the policy gives up on this failure (defaults are built by
    the policy); `retry_after` is the platform's `Retry-After` in seconds, if it sent one.
    """

    def __init__(
        self,
        kind: Failure,
        *,
        retry_after: float | None = None,
        error: ProviderError | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(detail or kind.value)
        self.kind = kind
        self.retry_after = retry_after
        self.error = error


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: integer, fractional or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. The defaults suit long investigations; tests and checks pass smaller."""

    max_attempts: int = 10
    base_delay: float = 0.5
    max_delay: float = 30.0
    # Total seconds one operation may spend waiting between attempts.
    budget: float = 300.0
    # Fraction of a Retry-After added at random on top of it.
    retry_after_jitter: float = 0.1
    token_refreshes: int = 1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.budget < 0:
            raise ValueError("delays and budget must not be negative")

    def begin(self, rng: random.Random | None = None) -> RetryState:
        """The state of one operation (one logical request, or one batch)."""
        return RetryState(self, rng or random.Random())

    async def run(
        self,
        attempt: Callable[[Retry | None], Awaitable[T]],
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_wait: Callable[[Failure, float], None] | None = None,
    ) -> T:
        """Call `attempt` until it returns, raises a non-retryable error, or the policy gives up.

        `attempt` receives the previous decision (None the first time), so it can refresh the
        token or open a new connection when asked to.
        """
        state = self.begin(rng)
        previous: Retry | None = None
        while True:
            try:
                return await attempt(previous)
            except RetryableFailure as failure:
                decision = state.decide(failure.kind, failure.retry_after, error=failure.error)
                if isinstance(decision, GiveUp):
                    raise decision.error from failure
                if on_wait is not None:
                    on_wait(failure.kind, decision.delay)
                if decision.delay > 0:
                    await sleep(decision.delay)
                previous = decision


@dataclass(slots=True)
class RetryState:
    """Attempts and waiting so far for one operation."""

    policy: RetryPolicy
    rng: random.Random
    attempts: int = 1  # the first attempt has been made when a failure is reported
    waited: float = 0.0
    backoffs: int = 0
    token_refreshes: int = 0
    last_retry_after: float | None = None
    throttled: bool = False
    history: list[Failure] = field(default_factory=list)

    @property
    def remaining_budget(self) -> float:
        return max(0.0, self.policy.budget - self.waited)

    def decide(
        self,
        failure: Failure,
        retry_after: float | None = None,
        *,
        error: ProviderError | None = None,
    ) -> Decision:
        """What to do after `failure` (the latest attempt's), given everything before it."""
        self.history.append(failure)
        if retry_after is not None:
            self.last_retry_after = retry_after
        if failure in (Failure.THROTTLED,) or (
            failure is Failure.UNAVAILABLE and retry_after is not None
        ):
            self.throttled = True
        if self.attempts >= self.policy.max_attempts:
            return GiveUp(self._final_error(failure, error))
        if failure is Failure.UNAUTHORIZED:
            if self.token_refreshes >= self.policy.token_refreshes:
                return GiveUp(self._final_error(failure, error))
            self.token_refreshes += 1
            self.attempts += 1
            return Retry(0.0, refresh_token=True)
        if retry_after is not None:
            delay = retry_after * (1.0 + self.rng.uniform(0.0, self.policy.retry_after_jitter))
            # Waiting less than the platform asked for is pointless: give up instead.
            if retry_after > self.remaining_budget:
                return GiveUp(self._final_error(failure, error))
            delay = min(delay, self.remaining_budget)
        else:
            cap = min(self.policy.max_delay, self.policy.base_delay * (2.0**self.backoffs))
            self.backoffs += 1
            if self.remaining_budget <= 0.0 and cap > 0.0:
                return GiveUp(self._final_error(failure, error))
            delay = min(self.rng.uniform(0.0, cap), self.remaining_budget)
        self.waited += delay
        self.attempts += 1
        # Graph's advice for 503: retry on a new connection (a broken one is dropped anyway).
        return Retry(delay, new_connection=failure is Failure.UNAVAILABLE)

    def _final_error(self, failure: Failure, error: ProviderError | None) -> ProviderError:
        if failure is Failure.UNAUTHORIZED:
            return error or AuthFailed(
                "Microsoft 365 kept refusing the access token; test the mail configuration."
            )
        if self.throttled:
            return Throttled(retry_after=self.last_retry_after)
        if error is not None:
            return error
        return ProviderUnavailable(
            f"The mail platform kept failing ({failure.value}) after {self.attempts} attempts "
            f"and {self.waited:.1f} s of waiting; check its service health and try again later."
        )
