"""Run-time knobs of the emulator: throttling limits, injected faults, token lifetime.

All of them can be set at start (`mailtrawl emulator serve` flags) and changed while running
through the control API (`PATCH /_emulator/settings`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Limits:
    """Graph's Outlook service limits, per (app id, mailbox), and an app-wide request rate."""

    mailbox_concurrency: int = 4
    mailbox_requests_per_window: int = 10_000
    mailbox_window_seconds: float = 600.0
    # Requests per second for one app across all mailboxes; 0 disables the check.
    app_requests_per_second: float = 0.0
    # Retry-After sent when the concurrency limit is hit (Graph sends small integers).
    concurrency_retry_after: float = 1.0


@dataclass
class Faults:
    """Injected latency and failures, applied to Graph requests (not identity or control)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_504: float = 0.0
    rate_reset: float = 0.0
    # The request is carried out, then the connection drops before the answer: the client
    # cannot tell whether it happened (batch envelopes included).
    rate_reset_after: float = 0.0
    # Retry-After sent with injected 429 and 503 answers.
    retry_after: float = 1.0
    seed: int | None = None

    @property
    def any_failure(self) -> bool:
        return (
            self.rate_429 + self.rate_503 + self.rate_504 + self.rate_reset + self.rate_reset_after
        ) > 0


@dataclass
class EmulatorSettings:
    token_lifetime_seconds: int = 3599
    limits: Limits = field(default_factory=Limits)
    faults: Faults = field(default_factory=Faults)
    # How many untouched generated mailboxes stay materialised in memory.
    mailbox_cache_size: int = 2000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update such as {"faults": {"rate_429": 0.1}}; unknown keys raise."""
        for key, value in changes.items():
            if key in ("limits", "faults"):
                target = getattr(self, key)
                if not isinstance(value, dict):
                    raise ValueError(f"{key} must be an object")
                names = {f.name: f for f in fields(target)}
                for sub, sub_value in value.items():
                    if sub not in names:
                        raise ValueError(f"unknown setting {key}.{sub}")
                    setattr(target, sub, _coerce(getattr(target, sub), sub_value, f"{key}.{sub}"))
            elif key in ("token_lifetime_seconds", "mailbox_cache_size"):
                setattr(self, key, _coerce(getattr(self, key), value, key))
            else:
                raise ValueError(f"unknown setting {key}")


def _coerce(current: object, value: object, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    if isinstance(current, int) and not isinstance(current, bool):
        return int(value)
    return float(value)
