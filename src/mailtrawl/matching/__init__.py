"""Evaluating filters locally on messages: pure functions, safe on attacker-controlled input.

Every matcher here runs in time linear in its input (RE2, Aho-Corasick or Hyperscan, and
forward-only scanners), bounds what it reads, and does not raise on malformed mail.
"""

from mailtrawl.matching.attachments import (
    HASH_ALGORITHMS,
    Glob,
    compile_glob,
    digests,
    extension,
    hash_kind,
)
from mailtrawl.matching.literals import DEFAULT_BACKEND, LiteralMatcher, available_backends
from mailtrawl.matching.mime import MailParseError, ParsedAttachment, ParsedEmail, parse_email
from mailtrawl.matching.received import ip_matches, parse_ip_spec, received_ips
from mailtrawl.matching.regex import CompiledRegex, RegexError, compile_regex
from mailtrawl.matching.text import html_to_text, normalise_space
from mailtrawl.matching.urls import (
    extract_urls,
    host_in_domain,
    normalise_domain,
    normalise_url,
    url_host,
)

__all__ = [
    "DEFAULT_BACKEND",
    "HASH_ALGORITHMS",
    "CompiledRegex",
    "Glob",
    "LiteralMatcher",
    "MailParseError",
    "ParsedAttachment",
    "ParsedEmail",
    "RegexError",
    "available_backends",
    "compile_glob",
    "compile_regex",
    "digests",
    "extension",
    "extract_urls",
    "hash_kind",
    "host_in_domain",
    "html_to_text",
    "ip_matches",
    "normalise_domain",
    "normalise_space",
    "normalise_url",
    "parse_email",
    "parse_ip_spec",
    "received_ips",
    "url_host",
]
