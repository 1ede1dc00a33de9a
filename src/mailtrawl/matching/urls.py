"""Finding URLs in mail and reducing them to one canonical form, so a filter names a site once.

`normalise_url` follows the browser (WHATWG) reading where attackers exploit the difference:
tabs and newlines inside a URL are ignored, `\\` counts as `/` and any number of slashes may
follow the scheme, the host may be percent-encoded or a numeric IPv4 form ("0x7f.1"), and a
`www.` URL without a scheme is http. Non-ASCII and unsafe characters in the path and query are
percent-encoded as a browser sends them. Rewriting gateways are unwrapped to the destination
(up to five levels): Microsoft Safe Links, Proofpoint URL Defense v1, v2 and v3, and Google's
`/url` redirect. Mimecast protect links (`protect-*.mimecast.com/s/...`) are opaque tokens
resolved only by Mimecast's servers, so they stay as they are.
"""

from __future__ import annotations

import base64
import re
import socket
from dataclasses import dataclass
from ipaddress import IPv6Address
from urllib.parse import parse_qsl, quote, unquote

import re2

from mailtrawl.matching.text import render_html, scrub

MAX_UNWRAP = 5
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
# Besides these, every parameter whose name starts with "utm_".
TRACKING_PARAMETERS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "yclid",
        "igshid",
    }
)

# Stops at whitespace, Unicode separators, control characters, quotes and angle brackets.
_TEXT_URL = re2.compile(r'(?i)(?:\b(?:https?|ftp)://|\bwww\.)[^\s\p{Z}\p{Cc}<>"]+')
_LINK_ATTRIBUTE = re.compile(r"(?:https?|ftp):|www\.", re.IGNORECASE)
_TRAILING = ".,;:!?'\")]}"
_OPENERS = {")": "(", "]": "[", "}": "{"}
# Ideographic and full-width full stops separate labels like '.' does (IDNA).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_C0_AND_SPACE = "".join(map(chr, range(33)))
_FORBIDDEN_HOST = frozenset(' #%/:<>?@[\\]^|"`{}')
_SAFE_PATH = "!$%&'()*+,/:;=?@[]~|^{}"
_GOOGLE = re.compile(r"(?:www\.)?google\.(?:com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})")
_SAFELINKS = (".safelinks.protection.outlook.com", ".safelinks.protection.office365.us")
_V3_TOKEN = re.compile(r"\*(?:\*([A-Za-z0-9_-]))?")
_V3_RUNS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def extract_urls(
    text: str | None = None, html: str | None = None, *, limit: int = 10_000
) -> list[str]:
    """URLs in plain text and in HTML, raw, de-duplicated, in order of appearance (text first),
    at most `limit` of them. In HTML both the visible text and the href/src/action-like
    attributes count; attributes only when they hold http(s), ftp or www. URLs (not cid:,
    mailto: or relative links)."""
    found: dict[str, None] = {}
    candidates: list[str] = []
    if text:
        candidates.extend(_trim(match.group()) for match in _TEXT_URL.finditer(scrub(text)))
    if html:
        rendered = render_html(html)
        attributes = [(at, 0, url) for at, url in rendered.links if _looks_like_url(url)]
        in_text = [(m.start(), 1, _trim(m.group())) for m in _TEXT_URL.finditer(rendered.text)]
        # A tag's attributes come before the text that follows it.
        candidates.extend(url for _, _, url in sorted(attributes + in_text))
    for url in candidates:
        if len(found) >= limit:
            break
        if url:
            found.setdefault(url, None)
    return list(found)


def _looks_like_url(value: str) -> bool:
    return _LINK_ATTRIBUTE.match(_clean(value)) is not None


def _trim(url: str) -> str:
    """Drop trailing punctuation, keeping a closing bracket whose opener is in the URL;
    "" if nothing but the scheme is left."""
    balance = {closer: url.count(closer) - url.count(opener) for closer, opener in _OPENERS.items()}
    end = len(url)
    while end and url[end - 1] in _TRAILING:
        last = url[end - 1]
        if last in balance:
            if balance[last] <= 0:
                break
            balance[last] -= 1
        end -= 1
    url = url[:end]
    return "" if url.endswith("://") or url.lower() == "www." else url


@dataclass(frozen=True, slots=True)
class _Url:
    scheme: str
    host: str  # normalised; an IPv6 address without brackets
    port: int | None  # None for the scheme's default
    path: str
    query: str  # raw, tracking parameters already removed
    raw: str  # the cleaned input, for unwrapping formats that do not survive splitting

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        path = quote(self.path, safe=_SAFE_PATH)
        query = f"?{quote(self.query, safe=_SAFE_PATH)}" if self.query else ""
        return f"{self.scheme}://{host}{port}{path}{query}"


def normalise_url(url: str) -> str | None:
    """The canonical form of an http(s)/ftp URL after unwrapping, or None if it is not one."""
    parsed = _resolve(url)
    return None if parsed is None else str(parsed)


def url_host(url: str) -> str | None:
    """The normalised host of a URL (after unwrapping), or None if it is not an http(s)/ftp URL."""
    parsed = _resolve(url)
    return None if parsed is None else parsed.host


def normalise_domain(domain: str) -> str:
    """Strip, lowercase, drop the trailing dot and write Unicode labels in punycode."""
    labels = domain.strip().translate(_DOTS).rstrip(".").split(".")
    return ".".join(_label(label.lower()) for label in labels)


def host_in_domain(host: str, domain: str) -> bool:
    """Whether `host` is `domain` or one of its subdomains."""
    host, domain = normalise_domain(host), normalise_domain(domain)
    return bool(domain) and (host == domain or host.endswith(f".{domain}"))


def _label(label: str) -> str:
    if label.isascii():
        return label
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:  # not valid IDNA (too long, prohibited characters): keep it readable
        return label


def _resolve(url: str) -> _Url | None:
    parsed = _split(url)
    for _ in range(MAX_UNWRAP):
        inner = _unwrap(parsed) if parsed else None
        inner_parsed = _split(inner) if inner else None
        if inner_parsed is None:
            break
        parsed = inner_parsed
    return parsed


def _clean(url: str) -> str:
    """Strip leading/trailing spaces and controls and drop tabs and newlines, as browsers do."""
    return url.strip(_C0_AND_SPACE).translate({9: None, 10: None, 13: None})


def _split(url: str) -> _Url | None:
    url = scrub(_clean(url))
    if url[:4].lower() == "www.":
        url = f"http://{url}"
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in DEFAULT_PORTS:
        return None
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    rest = rest.replace("\\", "/").lstrip("/")
    authority, slash, path = rest.partition("/")
    host_and_port = _host_and_port(authority.rpartition("@")[2])
    if host_and_port is None:
        return None
    host, port = host_and_port
    query = "&".join(
        piece for piece in query.split("&") if piece and not _is_tracking(piece.partition("=")[0])
    )
    return _Url(
        scheme,
        host,
        None if port == DEFAULT_PORTS[scheme] else port,
        f"/{path}" if slash else "/",
        query,
        url,
    )


def _host_and_port(authority: str) -> tuple[str, int | None] | None:
    """The normalised host and the port if one is given; None if either is invalid."""
    if authority.startswith("["):
        literal, _, port_text = authority[1:].partition("]")
        port_text = port_text.removeprefix(":")
        try:
            host = IPv6Address(literal).compressed
        except ValueError:
            return None
    else:
        host_text, _, port_text = authority.partition(":")
        host = _normalise_host(unquote(host_text))
    if not host:
        return None
    if not port_text:
        return host, None
    # The length check keeps int() away from huge digit strings.
    if len(port_text) > 5 or not port_text.isascii() or not port_text.isdigit():
        return None
    if int(port_text) > 65535:
        return None
    return host, int(port_text)


def _normalise_host(host: str) -> str:
    host = normalise_domain(host)
    if any(char in _FORBIDDEN_HOST or ord(char) < 33 for char in host):
        return ""
    if host and set(host) <= set("0123456789abcdefx.") and host[-1] != ".":
        try:  # numeric IPv4 forms ("2130706433", "0x7f.1", "0177.0.0.1") browsers accept
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            pass
    return host


def _is_tracking(key: str) -> bool:
    key = unquote(key).lower()
    return key.startswith("utm_") or key in TRACKING_PARAMETERS


def _unwrap(url: _Url) -> str | None:
    """The destination of a rewriting gateway's link, or None if `url` is not one."""
    host, path = url.host, url.path
    if host.endswith(_SAFELINKS):
        return _parameter(url.raw, "url")
    if host == "urldefense.proofpoint.com" and path == "/v1/url":
        return _parameter(url.raw, "u")
    if host == "urldefense.proofpoint.com" and path == "/v2/url":
        # v2 percent-encodes with '-' for '%', and writes '/' as '_'.
        encoded = _parameter(url.raw, "u", decode=False)
        return unquote(encoded.replace("-", "%").replace("_", "/")) if encoded else None
    if host == "urldefense.com" and path.startswith("/v3/__"):
        return _proofpoint_v3(url.raw)
    if _GOOGLE.fullmatch(host) and path == "/url":
        return _parameter(url.raw, "q") or _parameter(url.raw, "url")
    return None


def _parameter(url: str, name: str, *, decode: bool = True) -> str | None:
    query = url.partition("#")[0].partition("?")[2]
    if decode:
        return next((value for key, value in parse_qsl(query) if key == name and value), None)
    pairs = (piece.partition("=") for piece in query.split("&"))
    return next((value for key, _, value in pairs if key == name and value), None)


def _proofpoint_v3(url: str) -> str | None:
    """Decode `urldefense.com/v3/__<url>__;<base64 of the starred characters>!!...`.

    Each `*` in the URL stands for the next character of the decoded blob, and `**X` for a run
    of them whose length is X's position in `_V3_RUNS` plus two.
    """
    body = url[url.find("/v3/__") + 6 :]
    end = body.rfind("__;")
    if end < 0:
        return None
    encoded, blob = unquote(body[:end]), body[end + 3 :].partition("!")[0]
    try:
        replacements = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4)).decode("utf-8")
    except ValueError:  # not base64 (binascii.Error), not ASCII, or not UTF-8
        return None
    out: list[str] = []
    position = taken = 0
    for token in _V3_TOKEN.finditer(encoded):
        count = _V3_RUNS.index(token.group(1)) + 2 if token.group(1) else 1
        if taken + count > len(replacements):
            return None
        out += (encoded[position : token.start()], replacements[taken : taken + count])
        position, taken = token.end(), taken + count
    out.append(encoded[position:])
    return "".join(out)
