from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rrset
import pytest

from mailtrawl.analysis.model import Address, AnalysisContext, Verdict
from mailtrawl.analysis.online import DnsError, DnspythonResolver, SpamhausConfig, SpamhausEngine
from mailtrawl.analysis.online.spamhaus import reverse_ip
from tests.analysis.intel.reports import link, make_report

pytestmark = pytest.mark.anyio


class FakeResolver:
    """Answers from a table; names not in it do not exist (NXDOMAIN)."""

    def __init__(self, answers: dict[str, tuple[str, ...] | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve_a(self, name: str, *, timeout_s: float) -> tuple[str, ...]:
        assert timeout_s == 3.0
        self.asked.append(name)
        answer = self.answers.get(name, ())
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_reverse_ip() -> None:
    assert reverse_ip("192.0.2.99") is None  # documentation range: not global
    assert reverse_ip("10.1.2.3") is None
    assert reverse_ip("8.8.4.4") == "4.4.8.8"
    assert reverse_ip("::ffff:8.8.4.4") == "4.4.8.8"
    assert reverse_ip("2606:4700::1") == ".".join(reversed("26064700000000000000000000000001"))
    assert reverse_ip("nonsense") is None


async def test_dbl_and_zen_listings_become_indicators() -> None:
    resolver = FakeResolver(
        {
            "kit.phish.example.dbl.spamhaus.org": ("127.0.1.4",),
            "spam-sender.example.dbl.spamhaus.org": ("127.0.1.2",),
            "2.0.113.45.zen.spamhaus.org": ("127.0.0.2", "127.0.0.10"),
        }
    )
    report = make_report(
        sender=Address("news@spam-sender.example"),
        urls=(link("https://kit.phish.example/login", domain="phish.example"),),
        domains=("phish.example",),
        originating_ip="45.113.0.2",
        ips=("45.113.0.2", "10.0.0.5"),
    )
    engine = SpamhausEngine(SpamhausConfig(enabled=True), resolver)
    indicators = await engine.analyze(report, AnalysisContext())
    got = {(i.kind, i.value, i.verdict, i.score) for i in indicators}
    assert got == {
        ("spamhaus.dbl", "kit.phish.example", Verdict.PHISHING, 85),
        ("spamhaus.dbl", "spam-sender.example", Verdict.SUSPICIOUS, 60),
        ("spamhaus.zen", "45.113.0.2", Verdict.SUSPICIOUS, 60),
        ("spamhaus.zen", "45.113.0.2", Verdict.SUSPICIOUS, 5),
    }
    assert "10.0.0.5" not in " ".join(resolver.asked)  # private addresses are never sent
    # Link hosts and their registrable domains both: the DBL lists abused host names too.
    assert sorted(resolver.asked) == [
        "2.0.113.45.zen.spamhaus.org",
        "kit.phish.example.dbl.spamhaus.org",
        "phish.example.dbl.spamhaus.org",
        "spam-sender.example.dbl.spamhaus.org",
    ]


async def test_public_resolver_error_code_is_not_a_listing() -> None:
    resolver = FakeResolver(
        {f"d{n}.example.dbl.spamhaus.org": ("127.255.255.254",) for n in range(5)}
    )
    report = make_report(
        sender=Address("someone@d0.example"), domains=tuple(f"d{n}.example" for n in range(5))
    )
    engine = SpamhausEngine(SpamhausConfig(enabled=True, concurrency=1), resolver)
    (note,) = await engine.analyze(report, AnalysisContext())
    assert note.score == 0
    assert note.verdict is Verdict.UNDETECTED
    assert "public or open resolver" in note.evidence
    assert note.evidence.endswith("5 lookups were not checked.")
    assert len(resolver.asked) == 1  # stopped after the first error answer


async def test_dqs_key_changes_the_zones_and_dns_failures_are_notes() -> None:
    resolver = FakeResolver(
        {
            "bad.example.k3y.dbl.dq.spamhaus.net": ("127.0.1.5",),
            "slow.example.k3y.dbl.dq.spamhaus.net": DnsError("Timeout"),
        }
    )
    config = SpamhausConfig(enabled=True, api_key="k3y")  # type: ignore[arg-type]
    report = make_report(domains=("bad.example", "slow.example"))
    indicators = await SpamhausEngine(config, resolver).analyze(report, AnalysisContext())
    assert {(i.kind, i.value) for i in indicators} == {
        ("spamhaus.dbl", "bad.example"),
        ("spamhaus.unavailable.network", None),
    }
    network = next(i for i in indicators if i.value is None)
    assert (
        network.evidence == "Spamhaus could not be reached (DNS Timeout); 1 lookup was not checked."
    )


class LocalDnsServer:
    """A UDP DNS server on 127.0.0.1 answering A queries from a table (NXDOMAIN otherwise)."""

    def __init__(self, records: dict[str, str], *, silent: frozenset[str] = frozenset()) -> None:
        self.records = records
        self.silent = silent  # names it never answers, to exercise timeouts
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LocalDnsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text()
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            if name in self.records:
                response.answer.append(dns.rrset.from_text(name, 60, "IN", "A", self.records[name]))
            else:
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)


async def test_dnspython_resolver_against_a_local_server() -> None:
    records = {"bad.example.dbl.spamhaus.org.": "127.0.1.4"}
    silent = frozenset({"slow.example.dbl.spamhaus.org."})
    with LocalDnsServer(records, silent=silent) as server:
        resolver = DnspythonResolver(("127.0.0.1",), port=server.port)
        assert await resolver.resolve_a("bad.example.dbl.spamhaus.org", timeout_s=2) == (
            "127.0.1.4",
        )
        assert await resolver.resolve_a("good.example.dbl.spamhaus.org", timeout_s=2) == ()
        with pytest.raises(DnsError):
            await resolver.resolve_a("slow.example.dbl.spamhaus.org", timeout_s=0.3)
