"""IP addresses from trace headers, and IP/CIDR specs."""

from __future__ import annotations

import ipaddress

import pytest

from mailtrawl.matching.received import ip_matches, parse_ip_spec, received_ips


def test_addresses_from_every_trace_header_in_order() -> None:
    headers = [
        ("Subject", "from 198.51.100.77 by nobody"),
        (
            "Received",
            "from mail.example.com (mail.example.com [203.0.113.5])\r\n\tby mx.example.net "
            "(Postfix) with ESMTPS id 4F2 for <u@example.net>; Mon, 1 Jan 2024 10:00:00 +0000",
        ),
        ("received", "from [203.0.113.6] by mx (10.0.0.1) with SMTP"),
        ("Received", "from DM6PR01MB1234.prod.outlook.com (2603:10b6:5:1c0::37) by X"),
        ("Received", "from host ([IPv6:2001:DB8:0::1]) by mx; date"),
        ("Received", "from host (helo [2001:db8::2]) via relay"),
        ("Received", "from host (unknown [::ffff:192.0.2.9]) id 42"),
        ("Received", "from mail.example.com (mail.example.com [203.0.113.5]) by mx2"),
        ("Received", "by mx.example.net with local (no from clause 192.0.2.200)"),
        ("X-Originating-IP", "[192.0.2.10]"),
        ("X-Sender-IP", "192.0.2.11"),
        (
            "Received-SPF",
            "Pass (protection.outlook.com: domain of example.com designates 192.0.2.99 as "
            "permitted sender) receiver=protection.outlook.com; client-ip=192.0.2.12; helo=x;",
        ),
        ("Authentication-Results", "spf=pass (sender IP is 192.0.2.13) smtp.mailfrom=x.example"),
        ("X-MS-Exchange-Organization-OriginalClientIPAddress", "2001:db8::3"),
    ]
    assert received_ips(headers) == [
        "203.0.113.5",
        "203.0.113.6",
        "2603:10b6:5:1c0::37",
        "2001:db8::1",
        "2001:db8::2",
        "192.0.2.9",
        "192.0.2.10",
        "192.0.2.11",
        "192.0.2.12",
        "192.0.2.13",
        "2001:db8::3",
    ]


@pytest.mark.parametrize(
    "value",
    [
        "from [999.1.1.1] by x",
        "from [0.0.0.0] (::) by x",
        "from 1.2.3 by x",
        "from dead:beef by x",
        "from " + "a." * 100_000 + " by x",
        "",
        "from",
    ],
)
def test_garbage_is_ignored(value: str) -> None:
    assert received_ips([("Received", value), ("X-Originating-IP", value)]) == []


@pytest.mark.parametrize(
    ("ip", "spec", "expected"),
    [
        ("203.0.113.5", "203.0.113.5", True),
        ("203.0.113.5", "203.0.113.0/24", True),
        ("203.0.113.5", "203.0.112.0/24", False),
        ("203.0.113.5", "203.0.113.9/16", True),  # host bits set: read as the network
        (" 2001:db8::1 ", "2001:db8::/32", True),
        ("2001:db9::1", "2001:db8::/32", False),
        ("::ffff:192.0.2.1", "192.0.2.0/24", True),
        ("192.0.2.1", "2001:db8::/32", False),
        ("not an ip", "192.0.2.0/24", False),
        ("192.0.2.1", "192.0.2.0/33", False),
        ("192.0.2.1", "", False),
    ],
)
def test_ip_matches(ip: str, spec: str, expected: bool) -> None:
    assert ip_matches(ip, spec) is expected


def test_parse_ip_spec() -> None:
    assert parse_ip_spec(" 10.1.2.3/8 ") == ipaddress.ip_network("10.0.0.0/8")
    assert parse_ip_spec("2001:db8::1") == ipaddress.ip_network("2001:db8::1/128")
    with pytest.raises(ValueError, match=r"not an IP address or CIDR range: '10\.0\.0\.0/40'"):
        parse_ip_spec("10.0.0.0/40")
