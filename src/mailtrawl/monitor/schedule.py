"""When to read a watched mailbox next: the poll interval, its budget floor and back-off.

Microsoft Graph allows each app 10,000 requests per mailbox per 10 minutes. Watching reads
every watched folder once per round (one delta request each, when nothing changed), so the
shortest interval that keeps within a share of that budget is
`folders × 600 s / (share × 10,000)`: 2.4 s for two folders at 5 %.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

GRAPH_MAILBOX_REQUESTS = 10_000  # per app, per mailbox
GRAPH_MAILBOX_WINDOW_S = 600.0
MAX_BACKOFF_S = 600.0
# A mailbox with a hit this recently is read twice as often: campaigns come in waves.
HOT_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class PollPolicy:
    interval_s: float  # the normal interval between two reads of a mailbox
    backstop_s: float  # the interval when change notifications cover the mailbox
    budget_share: float  # at most this share of the mailbox's request budget
    folders: int  # folders read per round

    @property
    def floor_s(self) -> float:
        """The shortest interval within the budget share."""
        return self.folders * GRAPH_MAILBOX_WINDOW_S / (self.budget_share * GRAPH_MAILBOX_REQUESTS)

    def next_poll(
        self,
        now: datetime,
        *,
        last_hit_at: datetime | None,
        notified: bool = False,
        rng: random.Random | None = None,
    ) -> datetime:
        """After a good read: sooner for a recently hit mailbox, never under the floor."""
        interval = self.backstop_s if notified else self.interval_s
        if last_hit_at is not None and now - last_hit_at < HOT_WINDOW:
            interval = min(interval, self.interval_s) / 2
        interval = max(self.floor_s, interval)
        # A little jitter spreads mailboxes that started together over the interval.
        jitter = (rng or random).uniform(0.0, 0.1 * interval)
        return now + timedelta(seconds=interval + jitter)

    def after_failure(
        self, now: datetime, failures: int, *, retry_after: float | None = None
    ) -> datetime:
        """After a failed read: exponential back-off, at least what Graph asked for."""
        wait = min(MAX_BACKOFF_S, max(self.floor_s, self.interval_s) * 2 ** min(failures, 10))
        if retry_after is not None:
            wait = max(wait if failures > 1 else 0.0, retry_after, self.floor_s)
        return now + timedelta(seconds=wait)

    def budget_used(self, interval_s: float) -> float:
        """The share of a mailbox's budget used when read every `interval_s` seconds."""
        per_window = self.folders * GRAPH_MAILBOX_WINDOW_S / interval_s
        return per_window / GRAPH_MAILBOX_REQUESTS
