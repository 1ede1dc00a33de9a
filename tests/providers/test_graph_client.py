"""The Graph client against the emulator: concurrency caps, $batch, errors, tokens, faults."""

from __future__ import annotations

import asyncio

import pytest

from mailtrawl.core import NewMessage, ServerQuery
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.errors import MailboxUnavailable, NotFound, PermissionMissing, Throttled
from mailtrawl.providers.errors import AccessPolicyBlocked, OutcomeUnknown, RequestRejected
from mailtrawl.providers.graph.client import BatchRequest, GraphClient, WeightedLimiter
from mailtrawl.providers.graph.provider import GraphProvider
from mailtrawl.providers.retry import RetryPolicy
from tests.providers.conftest import FOUR, MakeProvider, new_app

pytestmark = pytest.mark.anyio

ALICE = "a1a1a1a1-0000-4000-8000-000000000001"


@pytest.fixture
def m365(make_m365: MakeProvider) -> GraphProvider:
    return make_m365()


def _inbox(mailbox: str = ALICE) -> str:
    return f"users/{mailbox}/mailFolders/inbox/messages"


async def test_at_most_four_requests_per_mailbox_in_flight(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    emulator.settings(faults={"latency_ms": 40})
    provider = make_m365()
    client = provider.client
    await client.get("users", params={"$top": "1"})  # token and connection warm-up
    emulator.control("DELETE", "/stats")
    seen: list[int] = []

    async def one() -> None:
        seen.append(client.in_flight(ALICE))
        await client.get(_inbox(), params={"$top": "1"}, mailbox=ALICE)
        seen.append(client.in_flight(ALICE))

    await asyncio.gather(*(one() for _ in range(12)))
    stats = emulator.stats()
    assert stats["peakMailboxInFlight"] <= 4
    assert stats["throttled"] == 0
    assert max(seen) <= 4
    assert client.stats.throttled == 0
    assert client.in_flight(ALICE) == 0


async def test_without_the_mailbox_key_outlook_throttles_and_the_retries_absorb_it(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    emulator.settings(faults={"latency_ms": 250}, limits={"concurrency_retry_after": 0.05})
    client = make_m365().client
    await asyncio.gather(*(client.get(_inbox(), params={"$top": "1"}) for _ in range(10)))
    assert emulator.stats()["throttled"] > 0
    assert client.stats.throttled > 0
    assert client.stats.retries >= client.stats.throttled


async def test_global_cap(emulator: EmulatorProcess, make_m365: MakeProvider) -> None:
    emulator.settings(faults={"latency_ms": 30})
    client = make_m365(max_concurrency=2).client
    users = [u async for u in client.paginate("users", {"$select": "id,mail"})]
    boxes = [u["id"] for u in users if u.get("mail")]
    emulator.control("DELETE", "/stats")
    await asyncio.gather(
        *(client.get(_inbox(b), params={"$top": "1"}, mailbox=b) for b in boxes * 2)
    )
    assert emulator.stats()["peakInFlight"] <= 2


async def test_batch_splits_into_twenties_and_keeps_order(
    emulator: EmulatorProcess, m365: GraphProvider
) -> None:
    client = m365.client
    names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "phishing"] * 6
    requests = [
        BatchRequest("GET", f"users/{n}@contoso.com", {"$select": "userPrincipalName"})
        for n in names[:45]
    ]
    emulator.control("DELETE", "/stats")
    answers = await client.batch(requests)
    assert [a.json()["userPrincipalName"] for a in answers] == [
        f"{n}@contoso.com" for n in names[:45]
    ]
    assert all(a.ok and a.status == 200 for a in answers)
    stats = emulator.stats()
    assert stats["batches"] == 3
    assert stats["batchSubrequests"] == 45
    assert client.stats.batches == 3
    assert client.stats.subrequests == 45
    assert client.stats.graph_requests == 45
    assert await client.batch([]) == []


async def test_batch_retries_only_the_throttled_sub_requests(
    emulator: EmulatorProcess, m365: GraphProvider
) -> None:
    client = m365.client
    await client.get("users", params={"$top": "1"})
    emulator.control("DELETE", "/stats")
    emulator.settings(faults={"rate_429": 0.3, "rate_503": 0.1, "retry_after": 0.02, "seed": 3})
    requests = [
        BatchRequest("GET", _inbox(), {"$top": "1", "$select": "id"}, mailbox=ALICE)
        for _ in range(30)
    ]
    answers = await client.batch(requests)
    assert all(a.ok for a in answers), [a.error for a in answers if not a.ok]
    stats = emulator.stats()
    assert sum(stats["injectedFaults"].values()) > 0
    # Each retried sub-request is sent again on its own, never the whole batch.
    assert stats["batchSubrequests"] == client.stats.subrequests
    assert client.stats.subrequests == 30 + client.stats.retries
    assert stats["peakMailboxInFlight"] <= 4


async def test_batch_maps_each_sub_response_to_its_error(
    emulator: EmulatorProcess, m365: GraphProvider
) -> None:
    emulator.control(
        "PUT",
        "/access-policies",
        [{"appId": emulator.info["client_id"], "group": "Leadership", "mode": "DenyAccess"}],
    )
    answers = await m365.client.batch(
        [
            BatchRequest("GET", "users/nobody@contoso.com", {"$select": "id"}, what="The user"),
            BatchRequest("GET", _inbox("dave@contoso.com"), mailbox="dave@contoso.com"),
            BatchRequest("GET", _inbox("erin@contoso.com"), mailbox="erin@contoso.com"),
            BatchRequest("GET", f"users/{ALICE}/messages/AAMkNOPE", mailbox=ALICE),
            BatchRequest("GET", _inbox(), {"$select": "id"}, mailbox=ALICE),
        ]
    )
    assert isinstance(answers[0].error, NotFound)
    assert isinstance(answers[1].error, MailboxUnavailable)
    assert isinstance(answers[2].error, AccessPolicyBlocked)
    assert isinstance(answers[3].error, NotFound)
    assert answers[4].ok
    assert answers[4].json()["value"]


async def test_batch_gives_up_with_throttled_when_the_budget_runs_out(
    emulator: EmulatorProcess, make_m365: MakeProvider
) -> None:
    client = make_m365(retry=RetryPolicy(budget=0.2, retry_after_jitter=0.0)).client
    await client.get("users", params={"$top": "1"})
    emulator.settings(faults={"rate_429": 1.0, "retry_after": 0.05})
    answers = await client.batch([BatchRequest("GET", _inbox(), mailbox=ALICE)] * 3)
    assert all(isinstance(a.error, Throttled) for a in answers)
    assert all(a.error.retry_after == 0.05 for a in answers if isinstance(a.error, Throttled))


async def test_typed_errors(emulator: EmulatorProcess, make_m365: MakeProvider) -> None:
    client = make_m365().client
    with pytest.raises(NotFound, match="The message was not found"):
        await client.get(f"users/{ALICE}/messages/AAMkNOPE", mailbox=ALICE, what="The message")
    with pytest.raises(MailboxUnavailable, match="has no Exchange Online mailbox"):
        await client.get(_inbox("dave@contoso.com"), mailbox="dave@contoso.com")
    with pytest.raises(MailboxUnavailable, match="There is no user"):
        await client.get(_inbox("nobody@contoso.com"), mailbox="nobody@contoso.com")
    with pytest.raises(RequestRejected) as rejected:
        await client.get(
            _inbox(),
            params={"$filter": "subject eq 'x'", "$orderby": "receivedDateTime desc"},
            mailbox=ALICE,
        )
    assert rejected.value.code == "InefficientFilter"
    assert rejected.value.status == 400
    app = new_app(emulator, {p: True for p in FOUR if p != "Mail.ReadWrite"})
    from mailtrawl.providers.graph.auth import ClientSecret

    limited = make_m365(
        client_id=app["clientId"], credential=ClientSecret(app["secret"]["value"])
    ).client
    with pytest.raises(PermissionMissing) as missing:
        await limited.get(_inbox(), mailbox=ALICE, role="Mail.ReadWrite")
    assert missing.value.role == "Mail.ReadWrite"
    assert "Mail.ReadWrite" in str(missing.value)


async def test_a_revoked_token_is_refreshed_once(
    emulator: EmulatorProcess, m365: GraphProvider
) -> None:
    client = m365.client
    await client.get("users", params={"$top": "1"})
    emulator.control("POST", "/tokens/revoke")
    # The emulator refuses tokens minted in the same second as the revocation.
    emulator.control("POST", "/clock", {"advanceSeconds": 2})
    page = await client.get("users", params={"$top": "1"})
    assert page["value"]
    assert client.stats.token_refreshes == 1
    assert m365.tokens.requests_made == 2
    assert emulator.stats()["byStatus"]["401"] == 1


async def test_tokens_come_from_cache_between_requests(
    emulator: EmulatorProcess, m365: GraphProvider
) -> None:
    for _ in range(5):
        await m365.client.get("users", params={"$top": "1"})
    assert m365.tokens.requests_made == 1
    assert emulator.stats()["tokenRequests"] == 1


async def test_links_to_other_hosts_are_refused_before_sending(m365: GraphProvider) -> None:
    client = m365.client
    with pytest.raises(RequestRejected, match="another host"):
        await client.get("https://evil.example/v1.0/users?$skiptoken=x")
    mailbox = await m365.get_mailbox("alice@contoso.com")
    with pytest.raises(RequestRejected, match="another host"):
        await m365.changes(mailbox, "inbox", "https://evil.example/v1.0/delta?$deltatoken=x")
    assert client.stats.http_requests == 1  # only the user lookup


async def test_a_lost_answer_to_a_creation_never_duplicates_it(
    emulator: EmulatorProcess, m365: GraphProvider
) -> None:
    grace = await m365.get_mailbox("grace@contoso.com")
    await m365.ensure_category(grace, "warm-up")  # token and connection
    emulator.settings(faults={"rate_reset": 0.3, "seed": 2})
    subjects = [f"Notice {i}" for i in range(8)]
    for subject in subjects:
        await m365.create_message(grace, "inbox", NewMessage(subject=subject, body="x"))
    emulator.settings(faults={"rate_reset": 0.0})
    stored = [
        m["subject"]
        for f in emulator.snapshot("grace@contoso.com")["folders"]
        for m in f["messages"]
    ]
    assert sorted(s for s in stored if s.startswith("Notice")) == subjects
    assert emulator.stats()["injectedFaults"].get("reset", 0) > 0


async def test_a_reset_on_a_post_that_cannot_be_repeated_is_outcome_unknown(
    emulator: EmulatorProcess, m365: GraphProvider
) -> None:
    client = m365.client
    await client.get("users", params={"$top": "1"})
    emulator.settings(faults={"rate_reset": 1.0})
    with pytest.raises(OutcomeUnknown):
        await client.post(
            f"users/{ALICE}/mailFolders/drafts/messages",
            {"subject": "x"},
            mailbox=ALICE,
            idempotent=False,
        )


async def test_faults_on_reads_are_absorbed(emulator: EmulatorProcess, m365: GraphProvider) -> None:
    alice = await m365.get_mailbox("alice@contoso.com")
    before = {m.ref.message_id async for m in m365.search(alice, ServerQuery())}
    emulator.settings(
        faults={"rate_503": 0.2, "rate_504": 0.2, "rate_reset": 0.2, "retry_after": 0.01, "seed": 9}
    )
    for _ in range(3):
        assert {m.ref.message_id async for m in m365.search(alice, ServerQuery())} == before
    assert m365.stats()["retries"] > 0
    assert m365.stats()["fresh_connections"] > 0  # each 503 was retried on a new connection


# The limiter on its own ---------------------------------------------------------------------


async def test_weighted_limiter_is_first_come_first_served() -> None:
    limiter = WeightedLimiter(4)
    assert await limiter.acquire(3) == 3
    order: list[str] = []

    async def take(name: str, slots: int) -> None:
        await limiter.acquire(slots)
        order.append(name)

    big = asyncio.create_task(take("big", 4))
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 1))
    await asyncio.sleep(0)
    assert order == []  # the small one waits behind the big one although a slot is free
    limiter.release(3)
    await big
    assert order == ["big"]
    limiter.release(4)
    await small
    assert order == ["big", "small"]
    limiter.release(1)
    assert limiter.idle


async def test_weighted_limiter_cancelled_waiters_give_way() -> None:
    limiter = WeightedLimiter(2)
    await limiter.acquire(2)
    waiter = asyncio.create_task(limiter.acquire(2))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    later = asyncio.create_task(limiter.acquire(1))
    limiter.release(2)
    assert await later == 1
    assert limiter.available == 1
    limiter.release(1)
    assert await limiter.acquire(10) == 2  # never more than the capacity
    with pytest.raises(ValueError, match="capacity"):
        WeightedLimiter(0)


def test_client_builds_urls_on_the_graph_host() -> None:
    class NoTokens:
        async def token(self) -> object:
            raise AssertionError

        async def refresh(self, stale: str | None = None) -> object:
            raise AssertionError

    client = GraphClient(base_url="https://graph.microsoft.com/v1.0/", tokens=NoTokens())
    assert client.url("users", {"$select": "id,mail", "$filter": "mail eq 'a b'"}) == (
        "https://graph.microsoft.com/v1.0/users?$select=id,mail&$filter=mail%20eq%20'a%20b'"
    )
    assert client.url("https://GRAPH.microsoft.com/v1.0/users?$skiptoken=1") == (
        "https://GRAPH.microsoft.com/v1.0/users?$skiptoken=1"
    )
    asyncio.run(client.aclose())
