"""Attachment tests: file hashes, case-insensitive name globs and extensions.

Globs are translated to anchored RE2 patterns rather than handed to `fnmatch`, whose Python
regexes backtrack: a pattern like `*a*a*a*a*b` against a long name would take exponential time.
"""

from __future__ import annotations

import hashlib

import re2

from mailtrawl.matching.text import scrub

HASH_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")
_HASH_LENGTHS = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_HEX = frozenset("0123456789abcdefABCDEF")
MAX_GLOB_LENGTH = 1_000


def hash_kind(value: str) -> str | None:
    """Which algorithm a hex digest of this length comes from, or None if it is not one."""
    value = value.strip()
    return _HASH_LENGTHS.get(len(value)) if value and set(value) <= _HEX else None


def digests(data: bytes) -> dict[str, str]:
    """Lowercase hex digests of `data` for every algorithm in HASH_ALGORITHMS."""
    return {
        name: hashlib.new(name, data, usedforsecurity=False).hexdigest() for name in HASH_ALGORITHMS
    }


def extension(name: str) -> str:
    """The lowercase extension without the dot ("" if none): "archive.tar.gz" gives "gz".

    Trailing dots and spaces are dropped first, as Windows does when it opens "invoice.exe. ",
    and a name that is all extension (".exe") still has one.
    """
    base = name.replace("\\", "/").rpartition("/")[2].rstrip(". \t")
    _, dot, ext = base.rpartition(".")
    return ext.lower() if dot and ext else ""


class Glob:
    """A compiled shell glob matching whole names, ignoring case."""

    __slots__ = ("_regexp", "pattern")

    def __init__(self, pattern: str, regexp: re2._Regexp[str]) -> None:
        self.pattern = pattern
        self._regexp = regexp

    def matches(self, name: str) -> bool:
        return self._regexp.fullmatch(scrub(name)) is not None

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"


def compile_glob(pattern: str) -> Glob:
    """Compile `*`, `?`, `[abc]`, `[!abc]` (or `[^abc]`) and `[a-z]`; ValueError if invalid."""
    if not pattern:
        raise ValueError("invalid glob: the pattern is empty")
    if len(pattern) > MAX_GLOB_LENGTH:
        raise ValueError(f"invalid glob: the pattern is longer than {MAX_GLOB_LENGTH} characters")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            if not out or out[-1] != ".*":  # "**" means the same as "*"
                out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            cls, i = _char_class(pattern, i)
            out.append(cls)
        else:
            out.append(re2.escape(char))
    options = re2.Options()
    options.case_sensitive = False
    options.dot_nl = True
    options.never_capture = True
    options.log_errors = False
    try:
        return Glob(pattern, re2.compile("".join(out), options))
    except re2.error as exc:  # e.g. a program too large for RE2's memory bound
        raise ValueError(f"invalid glob {pattern!r}: {exc.args[0]!r}") from None


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """The RE2 class for a glob class whose '[' ends just before `i`, and the index after ']'."""
    start = i - 1
    negate = pattern[i : i + 1] in ("!", "^")
    i += negate
    members: list[str] = []
    first = True
    while i < len(pattern) and (first or pattern[i] != "]"):
        low = pattern[i]
        first = False
        if pattern[i + 1 : i + 2] == "-" and pattern[i + 2 : i + 3] not in ("", "]"):
            high = pattern[i + 2]
            if low > high:
                raise ValueError(f"invalid glob: reversed range {low}-{high} at position {i}")
            members.append(f"{_class_char(low)}-{_class_char(high)}")
            i += 3
        else:
            members.append(_class_char(low))
            i += 1
    if i >= len(pattern):
        raise ValueError(f"invalid glob: '[' at position {start} is never closed")
    return f"[{'^' if negate else ''}{''.join(members)}]", i + 1


def _class_char(char: str) -> str:
    # Escape everything RE2 could read as class syntax.
    return f"\\{char}" if char in "\\]^-[" else char
