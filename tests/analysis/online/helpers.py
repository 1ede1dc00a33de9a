"""A mock HTTP service recording requests, and a hand-driven clock."""

from __future__ import annotations

from collections.abc import Callable

import httpx


class Recorder:
    """An httpx.MockTransport whose handler answers and remembers every request."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._handler(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self))


class FakeClock:
    """time.monotonic and anyio.sleep stand-ins: sleeping advances the clock at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
