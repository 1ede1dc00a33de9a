"""URL extraction, normalisation and unwrapping of rewriting gateways."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote

import pytest

from mailtrawl.matching.urls import (
    extract_urls,
    host_in_domain,
    normalise_domain,
    normalise_url,
    url_host,
)


def test_urls_in_plain_text_with_trailing_punctuation_trimmed() -> None:
    text = (
        "See http://a.example/x). Or (https://en.wikipedia.org/wiki/Foo_(bar)), "
        "www.b.example, 'ftp://c.example/f' \"HTTPS://D.example/p?q=1\"; <http://e.example/>"
        " http:// and www. alone, xwww.f.example, http://a.example/x again"
    )
    assert extract_urls(text) == [
        "http://a.example/x",
        "https://en.wikipedia.org/wiki/Foo_(bar)",
        "www.b.example",
        "ftp://c.example/f",
        "HTTPS://D.example/p?q=1",
        "http://e.example/",
    ]


def test_urls_in_html_attributes_and_visible_text_in_order() -> None:
    html = (
        '<p>Visit http://first.example/ now</p><a href="http://d.example/?a=1&amp;b=2">'
        "http://shown.example/</a> <img src='cid:image001'><a href=\"mailto:x@y.example\">m</a>"
        '<form action=" https://post.example/login "></form><a href="#top">top</a>'
        "<p>split http://evil<span>.example</span>/path</p><a href='www.w.example'>w</a>"
    )
    assert extract_urls(html=html) == [
        "http://first.example/",
        "http://d.example/?a=1&b=2",
        "http://shown.example/",
        "https://post.example/login",
        "http://evil.example/path",
        "www.w.example",
    ]


def test_text_then_html_deduplicated_and_limited() -> None:
    text = "http://one.example/ http://two.example/"
    html = '<a href="http://two.example/">x</a> http://three.example/'
    assert extract_urls(text, html) == [
        "http://one.example/",
        "http://two.example/",
        "http://three.example/",
    ]
    assert extract_urls(text, html, limit=2) == ["http://one.example/", "http://two.example/"]
    assert extract_urls() == []


def test_lone_surrogates_become_replacement_characters() -> None:
    assert extract_urls("x http://a.example/\udcff y", "<a href='http://b.example/\udcff'>") == [
        "http://a.example/\ufffd",
        "http://b.example/\ufffd",
    ]
    assert normalise_url("http://a.example/\udcff") == "http://a.example/%EF%BF%BD"


def test_extraction_is_linear_on_hostile_text() -> None:
    started = time.perf_counter()
    assert len(extract_urls("http://x.example/" + ")" * 2_000_000)) == 1
    assert extract_urls("http://" * 500_000) == []
    assert len(extract_urls(" ".join(f"http://h{i}.example/" for i in range(50_000)))) == 10_000
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Scheme and host case, userinfo, default port, trailing dot, fragment, empty path.
        ("HTTP://User:pw@WWW.Example.COM.:80#frag", "http://www.example.com/"),
        ("https://example.com:443/a?b=1", "https://example.com/a?b=1"),
        ("https://example.com:8443/a", "https://example.com:8443/a"),
        ("ftp://files.example.com:21/f.txt", "ftp://files.example.com/f.txt"),
        ("  https://example.com/Path/  ", "https://example.com/Path/"),
        ("www.example.com/x", "http://www.example.com/x"),
        # IDN hosts become punycode.
        ("https://exämple.com/", "https://xn--exmple-cua.com/"),
        ("https://EXÄMPLE.com/", "https://xn--exmple-cua.com/"),
        # Tracking parameters go, the others stay in order.
        (
            "https://example.com/p?utm_source=mail&id=7&UTM_Campaign=x&fbclid=1&z=&gclid=2"
            "&dclid=3&msclkid=4&mc_cid=5&mc_eid=6&_hsenc=7&_hsmi=8&mkt_tok=9&yclid=10&igshid=11&a=b",
            "https://example.com/p?id=7&z=&a=b",
        ),
        ("https://example.com/?utm_medium=x", "https://example.com/"),
        # Browser readings an attacker can rely on.
        ("ht\ttp://ev\nil.com/", "http://evil.com/"),
        ("http:\\\\evil.com\\a\\b?c\\d", "http://evil.com/a/b?c%5Cd"),
        ("https:///evil.com/", "https://evil.com/"),
        ("http://%65vil.com/", "http://evil.com/"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("http://2130706433/", "http://127.0.0.1/"),
        ("http://cafe.be/", "http://cafe.be/"),
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("http://example.com/über?q=ä ö", "http://example.com/%C3%BCber?q=%C3%A4%20%C3%B6"),
        ("http://example.com/%7Euser", "http://example.com/%7Euser"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "mailto:x@example.com",
        "javascript:alert(1)",
        "cid:image001",
        "example.com/path",
        "http://",
        "http:///",
        "http://a b.com/",
        "http://x.com:99999/",
        "http://x.com:8o/",
        "http://x.com:" + "1" * 5_000 + "/",
        "http://x.com:-1/",
        "http://[not-ipv6]/",
        "http://exa<mple.com/",
        "",
    ],
)
def test_not_a_url(url: str) -> None:
    assert normalise_url(url) is None
    assert url_host(url) is None


def _safelinks(url: str) -> str:
    return (
        "https://nam12.safelinks.protection.outlook.com/?url="
        + quote(url, safe="")
        + "&data=05%7C01%7Cuser%40example.com&sdata=abc&reserved=0"
    )


def _proofpoint_v2(url: str) -> str:
    encoded = quote(url, safe="").replace("-", "%2D").replace("_", "%5F")
    encoded = encoded.replace("%", "-").replace("/", "_")
    return (
        f"https://urldefense.proofpoint.com/v2/url?u={encoded}&d=DwMFaQ&c=abc&r=def&m=ghi&s=jkl&e="
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (_safelinks("https://evil.com/login?u=1&utm_source=x"), "https://evil.com/login?u=1"),
        (_proofpoint_v2("https://evil.com/a_b/c?x=1-2"), "https://evil.com/a_b/c?x=1-2"),
        (
            "https://urldefense.proofpoint.com/v1/url?u=http%3A%2F%2Fevil.com%2Fx&k=abc",
            "http://evil.com/x",
        ),
        (
            # v3: each '*' is the next character of the base64 blob, "**A" a run of two.
            "https://urldefense.com/v3/__https://evil.com/a*b*c**Ad__;"
            + base64.urlsafe_b64encode("?=&é".encode()).decode().rstrip("=")
            + "!!ABC!xyz$",
            "https://evil.com/a?b=c&%C3%A9d",
        ),
        ("https://urldefense.com/v3/__https://evil.com/path__;!!ABC!xyz$", "https://evil.com/path"),
        ("https://www.google.com/url?q=https://evil.com/&sa=D", "https://evil.com/"),
        ("https://google.co.uk/url?url=https%3A%2F%2Fevil.com%2Fz", "https://evil.com/z"),
        # Nested gateways unwrap layer by layer.
        (_safelinks(_proofpoint_v2("https://evil.com/deep")), "https://evil.com/deep"),
        # Mimecast links are opaque and stay.
        (
            "https://protect-eu.mimecast.com/s/abcDEF?domain=evil.com",
            "https://protect-eu.mimecast.com/s/abcDEF?domain=evil.com",
        ),
        # A wrapper without a usable destination is kept as it is.
        (
            "https://nam12.safelinks.protection.outlook.com/?url=mailto%3Ax%40y.com",
            "https://nam12.safelinks.protection.outlook.com/?url=mailto%3Ax%40y.com",
        ),
        (
            "https://urldefense.com/v3/__https://evil.com/a*b__;!!ABC!xyz$",  # no characters left
            "https://urldefense.com/v3/__https://evil.com/a*b__;!!ABC!xyz$",
        ),
        (
            "https://urldefense.com/v3/__https://evil.com/a*__;%%%!!x$",  # broken base64
            "https://urldefense.com/v3/__https://evil.com/a*__;%%%!!x$",
        ),
    ],
)
def test_unwrapping(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_unwrapping_stops_after_five_levels() -> None:
    url = "https://evil.com/x"
    for _ in range(5):
        url = "https://www.google.com/url?q=" + quote(url, safe="")
    assert normalise_url(url) == "https://evil.com/x"
    wrapped = normalise_url("https://www.google.com/url?q=" + quote(url, safe=""))
    assert wrapped is not None
    assert wrapped.startswith("https://www.google.com/url?q=https%3A%2F%2Fevil.com")


def test_url_host() -> None:
    assert url_host("HTTPS://Sub.Exämple.COM.:8080/x") == "sub.xn--exmple-cua.com"
    assert url_host(_safelinks("https://evil.com/")) == "evil.com"
    assert url_host("http://[2001:db8::1]/") == "2001:db8::1"
    assert url_host("www.example.com") == "www.example.com"


def test_normalise_domain() -> None:
    assert normalise_domain("  EXAMPLE.com. ") == "example.com"
    assert normalise_domain("exämple.com") == normalise_domain("xn--exmple-cua.com")
    assert normalise_domain("XN--EXMPLE-CUA.COM") == "xn--exmple-cua.com"
    assert normalise_domain("例え。テスト") == "xn--r8jz45g.xn--zckzah"
    assert normalise_domain("ä" * 100 + ".com") == "ä" * 100 + ".com"  # too long for IDNA: kept


def test_host_in_domain() -> None:
    assert host_in_domain("example.com", "example.com")
    assert host_in_domain("a.b.Exämple.com.", "xn--exmple-cua.com")
    assert not host_in_domain("notexample.com", "example.com")
    assert not host_in_domain("example.com", "a.example.com")
    assert not host_in_domain("example.com", "")
