"""Domains for analysis: registrable domains (offline public suffix list), lookalikes, brands.

The public suffix list comes from the `publicsuffixlist` package, which ships its data file:
nothing is downloaded at run time. Lookalike tests compare the first label of a registrable
domain (``paypa1`` in ``paypa1.com``) with the organisation's own domains and a built-in list of
brands that phishing imitates, three ways: a confusable skeleton (Cyrillic ``а`` and Latin
``a``, ``rn`` and ``m``, ``0`` and ``o`` read alike), a small edit distance, and the brand
embedded in a longer name (``microsoft-login``). A brand's real domains are never flagged.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from mailtrawl.matching.urls import normalise_domain

MAX_LABEL = 63  # DNS's own bound; longer labels are not real domains and are cut

# Brand name -> the registrable domains that really belong to it.
BRANDS: dict[str, tuple[str, ...]] = {
    "microsoft": ("microsoft.com", "microsoftonline.com", "live.com", "msft.net", "azure.com"),
    "office365": ("office365.com", "office.com", "microsoft.com"),
    "outlook": ("outlook.com", "office.com", "live.com", "hotmail.com"),
    "onedrive": ("onedrive.com", "live.com", "microsoft.com"),
    "sharepoint": ("sharepoint.com", "microsoft.com"),
    "paypal": ("paypal.com", "paypal.me", "paypal-communication.com"),
    "apple": ("apple.com", "icloud.com", "me.com"),
    "icloud": ("icloud.com", "apple.com"),
    "google": (
        "google.com",
        "gmail.com",
        "googlemail.com",
        "googleapis.com",
        "googleusercontent.com",
        "youtube.com",
        "goo.gl",
        "g.co",
    ),
    "gmail": ("gmail.com", "google.com", "googlemail.com"),
    "amazon": ("amazon.com", "amazonaws.com", "amazonses.com", "a2z.com"),
    "docusign": ("docusign.com", "docusign.net"),
    "dhl": ("dhl.com", "dhl.de", "dhl.fr", "dhl.co.uk", "dpdhl.com"),
    "fedex": ("fedex.com",),
    "ups": ("ups.com",),
    "usps": ("usps.com", "usps.gov"),
    "netflix": ("netflix.com", "netflix.net"),
    "linkedin": ("linkedin.com", "licdn.com"),
    "dropbox": ("dropbox.com", "dropboxmail.com"),
    "wellsfargo": ("wellsfargo.com", "wf.com"),
    "chase": ("chase.com", "jpmorgan.com", "jpmorganchase.com"),
    "bankofamerica": ("bankofamerica.com", "bofa.com"),
    "citibank": ("citibank.com", "citi.com"),
    "hsbc": ("hsbc.com", "hsbc.co.uk"),
    "adobe": ("adobe.com", "adobesign.com", "adobe.io"),
    "facebook": ("facebook.com", "fb.com", "meta.com", "facebookmail.com"),
    "instagram": ("instagram.com",),
    "whatsapp": ("whatsapp.com", "whatsapp.net"),
    "twitter": ("twitter.com", "x.com"),
    "zoom": ("zoom.us", "zoom.com"),
    "webex": ("webex.com", "cisco.com"),
    "wetransfer": ("wetransfer.com",),
    "coinbase": ("coinbase.com",),
    "binance": ("binance.com",),
    "steam": ("steampowered.com", "steamcommunity.com"),
    "ebay": ("ebay.com",),
    "intuit": ("intuit.com",),
    "quickbooks": ("intuit.com", "quickbooks.com"),
    "salesforce": ("salesforce.com", "force.com"),
    "okta": ("okta.com", "oktacdn.com"),
}

# The confusables that phishing uses most: Cyrillic, Greek and other letters drawn like Latin
# ones, and ASCII pairs that read alike in most fonts. A subset of Unicode's confusables.txt.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "ɑ": "a", "α": "a", "ạ": "a", "à": "a", "á": "a", "â": "a", "ä": "a",
        "å": "a", "ã": "a", "ā": "a",
        "ь": "b", "Ь": "b", "ḃ": "b",
        "с": "c", "ϲ": "c", "ç": "c", "ć": "c",
        "ԁ": "d", "ɗ": "d", "ḍ": "d",
        "е": "e", "ё": "e", "ε": "e", "è": "e", "é": "e", "ê": "e", "ë": "e", "ē": "e",
        "ė": "e", "ę": "e", "ẹ": "e",
        "ɡ": "g", "ġ": "g",
        "һ": "h", "ḥ": "h",
        "і": "l", "ї": "l", "ι": "l", "ì": "l", "í": "l", "î": "l", "ï": "l", "ı": "l",
        "ј": "j",
        "κ": "k", "к": "k",
        "ӏ": "l", "ⅼ": "l", "ł": "l", "ḷ": "l", "|": "l",
        "м": "m",
        "п": "n", "ո": "n", "ñ": "n", "ń": "n",
        "о": "o", "ο": "o", "օ": "o", "ò": "o", "ó": "o", "ô": "o", "ö": "o", "õ": "o",
        "ø": "o", "ọ": "o", "σ": "o",
        "р": "p", "ρ": "p",
        "ԛ": "q",
        "г": "r",
        "ѕ": "s", "ş": "s", "ś": "s", "š": "s",
        "т": "t", "τ": "t",
        "υ": "u", "ս": "u", "ù": "u", "ú": "u", "û": "u", "ü": "u", "ū": "u",
        "ν": "v", "ѵ": "v",
        "ѡ": "w", "ԝ": "w",
        "х": "x", "χ": "x",
        "у": "y", "ү": "y", "ý": "y", "ÿ": "y",
        "ᴢ": "z", "ż": "z", "ź": "z",
        # ASCII lookalikes: digits for letters, and 'i' drawn like 'l' in sans-serif fonts.
        "0": "o", "1": "l", "i": "l", "3": "e", "5": "s",
    }
)  # fmt: skip
_MULTI_CHAR = (("rn", "m"), ("vv", "w"), ("cl", "d"))
_FREEMAIL = frozenset(
    {
        "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
        "yahoo.com", "ymail.com", "aol.com", "icloud.com", "me.com", "mail.com", "gmx.com",
        "gmx.net", "gmx.de", "web.de", "proton.me", "protonmail.com", "yandex.com", "yandex.ru",
        "mail.ru", "zoho.com", "qq.com", "163.com",
    }
)  # fmt: skip


@cache
def _public_suffixes() -> PublicSuffixList:
    # Built once on first use (not at import): parsing the bundled list takes ~50 ms.
    return PublicSuffixList()


def is_ip(host: str) -> bool:
    """Whether `host` is an IPv4 or IPv6 address (without brackets)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def registrable_domain(host: str) -> str:
    """The registrable domain ("eTLD+1") of a host, e.g. "example.co.uk" for "a.example.co.uk".

    IP addresses are returned as they are; a host that is itself a public suffix, or empty,
    gives "". Unicode labels are written in punycode first.
    """
    host = host.strip().strip("[]")
    if not host:
        return ""
    if is_ip(host):
        return str(ipaddress.ip_address(host))
    host = normalise_domain(host)[:253]
    if not host or ".." in host:
        return ""
    try:
        found = _public_suffixes().privatesuffix(host)
    except Exception:  # the list rejects malformed names in ways it does not document
        return ""
    return found or ""


def has_known_suffix(host: str) -> bool:
    """Whether `host` ends in a suffix on the public suffix list ("evil.zip" yes, "file.pdf" no)."""
    host = normalise_domain(host)[:253]
    try:
        return (
            bool(host) and _public_suffixes().publicsuffix(host, accept_unknown=False) is not None
        )
    except Exception:
        return False


def domain_of_address(address: str) -> str:
    """The registrable domain of an e-mail address's domain part ("" if there is none)."""
    _, at, domain = address.rpartition("@")
    return registrable_domain(domain.strip().rstrip(">")) if at else ""


def is_freemail(domain: str) -> bool:
    return registrable_domain(domain) in _FREEMAIL


def first_label(domain: str) -> str:
    """The part of a registrable domain before its public suffix, in Unicode: "paypal" for
    "paypal.co.uk", "раураl" for its punycode form."""
    domain = registrable_domain(domain)
    if not domain or is_ip(domain):
        return ""
    label = domain.partition(".")[0][:MAX_LABEL]
    return unicode_label(label)


def unicode_label(label: str) -> str:
    """A punycode (xn--) label decoded to Unicode; the label itself if it does not decode."""
    if label.startswith("xn--"):
        try:
            return label.encode("ascii").decode("idna")
        except UnicodeError:
            return label
    return label


def skeleton(text: str) -> str:
    """A lookalike-insensitive form: NFKC, case-folded, confusables mapped to Latin letters,
    "rn" read as "m", and hyphens dropped (``pay-pal`` reads as ``paypal``)."""
    folded = unicodedata.normalize("NFKC", text[: MAX_LABEL * 4]).casefold()
    # Combining marks (a dot above, an acute) are what lets "ṁicrosoft" pass for "microsoft".
    stripped = "".join(
        char
        for char in unicodedata.normalize("NFD", folded)
        if not unicodedata.combining(char) and char != "-"
    )
    mapped = unicodedata.normalize("NFC", stripped).translate(_CONFUSABLES)
    for pair, single in _MULTI_CHAR:
        mapped = mapped.replace(pair, single)
    return mapped


def edit_distance(a: str, b: str, *, limit: int) -> int:
    """Levenshtein distance between `a` and `b`, or `limit + 1` once it is certain to exceed
    `limit` (so comparing long hostile labels stays cheap)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[-1], limit + 1)


@dataclass(frozen=True, slots=True)
class Lookalike:
    """A domain that imitates `target` (an own domain or a brand name), and how."""

    domain: str
    target: str
    how: str  # "homoglyph" | "edit_distance" | "embedded" | "other_suffix"
    detail: str  # one sentence for the evidence
    own: bool = False  # the target is one of the organisation's own domains


def find_lookalike(
    host: str, own_domains: tuple[str, ...] = (), *, brands: dict[str, tuple[str, ...]] = BRANDS
) -> Lookalike | None:
    """How `host` imitates one of `own_domains` or a brand, or None if it does not (or is one)."""
    domain = registrable_domain(host)
    if not domain or is_ip(domain):
        return None
    own = tuple(filter(None, (registrable_domain(d) for d in own_domains)))
    if domain in own:
        return None
    label = first_label(domain)
    if not label:
        return None
    for target in own:
        found = _compare(domain, label, target, first_label(target), own=True)
        if found is not None:
            return found
    if any(domain in real_domains for real_domains in brands.values()):
        return None
    for brand in brands:
        found = _compare(domain, label, brand, brand, own=False)
        if found is not None:
            return found
    return _embedded_in_subdomain(host, domain, brands)


def _compare(
    domain: str, label: str, target: str, target_label: str, *, own: bool
) -> Lookalike | None:
    if not target_label:
        return None
    what = f"your domain {target}" if own else f"the brand {target}"
    if label == target_label:
        # The same name under another suffix: contoso.co for contoso.com. Brands own many
        # country domains (amazon.de), so only the organisation's own names count here.
        if own:
            return Lookalike(
                domain,
                target,
                "other_suffix",
                f"{domain} uses the name of {what} under another suffix",
                own=own,
            )
        return None
    label_skeleton, target_skeleton = skeleton(label), skeleton(target_label)
    if label_skeleton == target_skeleton:
        shown = label if label.isascii() else f"{label!r} (written {domain})"
        return Lookalike(
            domain,
            target,
            "homoglyph",
            f"{shown} reads like {what} using lookalike characters",
            own=own,
        )
    # Short names are a letter away from common words (steam, stream), brands more than ours.
    one, two = (5, 8) if own else (6, 9)
    limit = 2 if len(target_skeleton) >= two else 1 if len(target_skeleton) >= one else 0
    if limit and edit_distance(label_skeleton, target_skeleton, limit=limit) <= limit:
        return Lookalike(
            domain,
            target,
            "edit_distance",
            f"{domain} differs from {what} by {'one character' if limit == 1 else 'one or two characters'}",
            own=own,
        )
    if len(target_skeleton) >= 4 and _embeds(label_skeleton, target_skeleton):
        return Lookalike(
            domain,
            target,
            "embedded",
            f"{domain} embeds the name of {what} in another domain",
            own=own,
        )
    return None


def _embeds(label: str, name: str) -> bool:
    """Whether `name` is a whole token of `label` (split at digits), or inside it when long
    enough not to be a common word's syllable ("ups" in "groups" is not UPS)."""
    if len(name) >= 6:
        return name in label
    tokens = "".join(char if char.isalpha() else " " for char in label).split()
    return name in tokens and label != name


def _embedded_in_subdomain(
    host: str, domain: str, brands: dict[str, tuple[str, ...]]
) -> Lookalike | None:
    """A brand or its domain written as subdomains of another: paypal.com.secure.example."""
    host = normalise_domain(host)
    prefix = host[: -len(domain)].rstrip(".") if host.endswith(domain) else ""
    if not prefix:
        return None
    dotted, labels = f".{prefix}.", set(prefix.split("."))
    for brand, real_domains in brands.items():
        if (len(brand) >= 5 and brand in labels) or any(
            f".{real}." in dotted for real in real_domains
        ):
            return Lookalike(
                domain, brand, "embedded", f"{host} puts the brand {brand} in front of {domain}"
            )
    return None
