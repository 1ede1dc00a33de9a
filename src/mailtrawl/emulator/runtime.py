"""The running emulator: tenant state, mailbox cache, clock, keys, throttling and statistics."""

from __future__ import annotations

import base64
import copy
import hashlib
import math
import random
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailtrawl.emulator.settings import EmulatorSettings
from mailtrawl.emulator.state import Group, Mailbox, Tenant, User, new_mailbox
from mailtrawl.emulator.tls import load_or_create_signing_key

MailboxBuilder = Callable[[User], Mailbox]


@dataclass
class TenantSource:
    """What `reset` restores: a fresh tenant and its deterministic mailbox builder."""

    load: Callable[[], tuple[Tenant, MailboxBuilder]]


class MailboxStore:
    """Mailboxes by user id: changed ones are kept, untouched generated ones live in an LRU."""

    def __init__(self, tenant: Tenant, builder: MailboxBuilder, cache_size: int) -> None:
        self._tenant = tenant
        self._builder = builder
        self._cache: OrderedDict[str, Mailbox] = OrderedDict()
        self.cache_size = cache_size
        self.builds = 0

    def get(self, user: User) -> Mailbox:
        pinned = self._tenant.mailboxes.get(user.id)
        if pinned is not None:
            return pinned
        box = self._cache.get(user.id)
        if box is not None:
            if not box.pristine:
                # Changed since it was built: it can no longer be rebuilt, keep it for good.
                del self._cache[user.id]
                self._tenant.mailboxes[user.id] = box
            else:
                self._cache.move_to_end(user.id)
            return box
        box = self._builder(user)
        box.pristine = True
        self.builds += 1
        self._cache[user.id] = box
        self._evict()
        return box

    def _evict(self) -> None:
        while len(self._cache) > self.cache_size:
            uid, box = self._cache.popitem(last=False)
            if not box.pristine:
                self._tenant.mailboxes[uid] = box

    def materialised(self) -> int:
        return len(self._cache) + len(self._tenant.mailboxes)


class Throttle:
    """Graph's Outlook limits per (app, mailbox): concurrent requests and a sliding window."""

    _BUCKETS = 60

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self.inflight: dict[tuple[str, str], int] = {}
        self._window: dict[tuple[str, str], deque[list[float]]] = {}
        self._app_tokens: dict[str, tuple[float, float]] = {}

    def acquire(self, app_id: str, mailbox_id: str) -> tuple[float | None, str]:
        """Take a slot; on refusal answer (retry_after_seconds, reason)."""
        limits = self.settings.limits
        key = (app_id, mailbox_id)
        current = self.inflight.get(key, 0)
        if current >= limits.mailbox_concurrency:
            return limits.concurrency_retry_after, "MailboxConcurrency"
        now = time.monotonic()
        bucket_span = limits.mailbox_window_seconds / self._BUCKETS
        window = self._window.setdefault(key, deque())
        while window and window[0][0] <= now - limits.mailbox_window_seconds:
            window.popleft()
        used = sum(int(b[1]) for b in window)
        if used >= limits.mailbox_requests_per_window:
            retry = max(1.0, window[0][0] + limits.mailbox_window_seconds - now)
            return float(math.ceil(retry)), "MailboxRequestLimit"
        if window and now - window[-1][0] < bucket_span:
            window[-1][1] += 1
        else:
            window.append([now, 1])
        self.inflight[key] = current + 1
        return None, ""

    def release(self, app_id: str, mailbox_id: str) -> None:
        key = (app_id, mailbox_id)
        left = self.inflight.get(key, 1) - 1
        if left <= 0:
            self.inflight.pop(key, None)
        else:
            self.inflight[key] = left

    def app_rate(self, app_id: str) -> float | None:
        """Token bucket over the app's whole traffic; answers a Retry-After when empty."""
        rate = self.settings.limits.app_requests_per_second
        if rate <= 0:
            return None
        now = time.monotonic()
        tokens, last = self._app_tokens.get(app_id, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)
        if tokens < 1:
            self._app_tokens[app_id] = (tokens, now)
            return max(1.0, math.ceil((1 - tokens) / rate))
        self._app_tokens[app_id] = (tokens - 1, now)
        return None

    def reset(self) -> None:
        self.inflight.clear()
        self._window.clear()
        self._app_tokens.clear()


@dataclass
class Stats:
    """Request statistics for tests and benchmarks (`GET /_emulator/stats`)."""

    total: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_mailbox: Counter[str] = field(default_factory=Counter)
    by_status: Counter[int] = field(default_factory=Counter)
    by_app: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    injected_faults: Counter[str] = field(default_factory=Counter)
    injected_faults_by_app: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    batch_subrequests: int = 0
    token_requests: int = 0
    token_requests_by_app: Counter[str] = field(default_factory=Counter)  # by client id
    in_flight: int = 0
    peak_in_flight: int = 0
    peak_mailbox_in_flight: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "byEndpoint": dict(self.by_endpoint.most_common()),
            "byMailbox": dict(self.by_mailbox.most_common()),
            "byStatus": {str(k): v for k, v in sorted(self.by_status.items())},
            "byApp": dict(self.by_app),
            "throttled": self.throttled,
            "injectedFaults": dict(self.injected_faults),
            "injectedFaultsByApp": dict(self.injected_faults_by_app),
            "batches": self.batches,
            "batchSubrequests": self.batch_subrequests,
            "tokenRequests": self.token_requests,
            "tokenRequestsByApp": dict(self.token_requests_by_app),
            "inFlight": self.in_flight,
            "peakInFlight": self.peak_in_flight,
            "peakMailboxInFlight": self.peak_mailbox_in_flight,
        }


class EmulatorState:
    """Everything one emulator process serves; created by `create_state`, never at import."""

    def __init__(
        self,
        *,
        source: TenantSource,
        settings: EmulatorSettings,
        state_dir: Path,
        control_token: str | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.initial_settings = copy.deepcopy(settings)
        self.state_dir = state_dir
        self.control_token = control_token or secrets.token_urlsafe(24)
        self.signing_key: rsa.RSAPrivateKey = load_or_create_signing_key(state_dir)
        der = self.signing_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.key_id = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")  # noqa: S324 - key id, as Entra's x5t
        self.public_key_pem = self.signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.delta_secret = secrets.token_bytes(32)
        # Bumped to expire every delta token of every mailbox at once.
        self.delta_epoch = 0
        self.clock_offset = timedelta(0)
        self.throttle = Throttle(settings)
        self.stats = Stats()
        self.rng = random.Random(settings.faults.seed)
        # Validated access tokens: raw token -> claims (signature checks are the hot path).
        self.token_cache: dict[str, dict[str, Any]] = {}
        # Bumped by the control plane's "revoke tokens": tokens of older generations answer 401.
        self.token_generation = 0
        self.public_base_url = ""
        self.tenant: Tenant
        self.store: MailboxStore
        self._load()

    def _load(self) -> None:
        tenant, builder = self.source.load()
        self.tenant = tenant
        self.store = MailboxStore(tenant, builder, self.settings.mailbox_cache_size)
        self.token_cache.clear()

    def reset(self) -> None:
        """Back to the tenant as loaded: mailboxes, directory, apps; statistics cleared."""
        self._load()
        self.settings = copy.deepcopy(self.initial_settings)
        self.throttle = Throttle(self.settings)
        self.rng = random.Random(self.settings.faults.seed)
        self.stats = Stats()
        self.delta_epoch += 1
        self.clock_offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def epoch(self) -> float:
        return time.time() + self.clock_offset.total_seconds()

    def mailbox(self, user: User) -> Mailbox:
        return self.store.get(user)

    # Directory helpers --------------------------------------------------------------
    def transitive_members(self, group: Group) -> list[User | Group]:
        """Users and groups reachable from a group (nested groups expanded, cycles safe)."""
        seen: set[str] = {group.id}
        out: list[User | Group] = []
        stack = list(reversed(group.member_ids))
        while stack:
            mid = stack.pop()
            if mid in seen:
                continue
            seen.add(mid)
            user = self.tenant.users.get(mid)
            if user is not None:
                out.append(user)
                continue
            sub = self.tenant.groups.get(mid)
            if sub is not None:
                out.append(sub)
                stack.extend(reversed(sub.member_ids))
        return out

    def member_of(self, object_id: str) -> list[Group]:
        return [g for g in self.tenant.groups.values() if object_id in g.member_ids]

    def app_may_access(self, app_id: str, user: User) -> bool:
        """Exchange application access policies: RestrictAccess allows only a group's members."""
        policies = [p for p in self.tenant.access_policies if p.app_id == app_id]
        if not policies:
            return True
        allowed_somewhere = False
        restricted = False
        for policy in policies:
            group = self.tenant.groups.get(policy.group_id)
            members = {m.id for m in self.transitive_members(group)} if group else set()
            if policy.mode == "DenyAccess":
                if user.id in members:
                    return False
            else:
                restricted = True
                allowed_somewhere = allowed_somewhere or user.id in members
        return allowed_somewhere or not restricted


def empty_tenant_source(tenant_id: str, domain: str) -> TenantSource:
    """A tenant with nothing in it (used by tests that build state through the control API)."""

    def load() -> tuple[Tenant, MailboxBuilder]:
        tenant = Tenant(id=tenant_id, display_name=domain, domains=[domain])
        return tenant, lambda user: new_mailbox(user.id)

    return TenantSource(load)
