"""Find which of many literal phrases occur in a text, the way Exchange's keyword search does.

Semantics, identical on every backend:

- Case-insensitive by Unicode casefolding (then NFC), so "STRASSE" finds "Straße". Folding is
  language-neutral: Turkish "İ" folds to "i" plus a combining dot, so "istanbul" does not find
  "İstanbul", while "ı" (dotless) stays distinct from "i".
- Every run of whitespace, in a pattern or in the text, counts as one space; patterns are
  stripped, and a pattern with nothing left is rejected.
- With `word_start` a match must begin at the start of a word: at the beginning of the text or
  after a character that is not a letter, digit or underscore. The end is open, so "invoice"
  also finds "invoices" (a prefix search).

Hyperscan is used when it is installed (it scans the UTF-8 of the normalised text);
pyahocorasick is the portable fallback.
"""

from __future__ import annotations

import contextlib
import re
import threading
import unicodedata
from collections.abc import Sequence
from typing import Protocol

import ahocorasick  # type: ignore[import-not-found]  # ships no type information

try:
    import hyperscan
except ImportError:  # an optional dependency
    hyperscan = None  # type: ignore[assignment]

_SPACE = re.compile(r"\s+")


def available_backends() -> tuple[str, ...]:
    return ("hyperscan", "aho-corasick") if hyperscan is not None else ("aho-corasick",)


DEFAULT_BACKEND: str = available_backends()[0]


def normalise_literal(text: str) -> str:
    """Casefold, NFC-normalise and collapse whitespace runs, as both sides of a match are."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text.casefold()))


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


class _Backend(Protocol):
    def find(self, text: str) -> set[int]:
        """Ids of the unique normalised patterns found in the normalised `text`."""
        ...


class LiteralMatcher:
    """Patterns compiled once; `find` returns the indexes of those occurring in a text."""

    def __init__(
        self, patterns: Sequence[str], *, word_start: bool = True, backend: str | None = None
    ) -> None:
        if isinstance(patterns, str):
            raise TypeError("patterns must be a sequence of strings, not one string")
        backend = backend or DEFAULT_BACKEND
        if backend not in available_backends():
            raise ValueError(f"unknown or unavailable literal backend: {backend!r}")
        self.patterns = tuple(patterns)
        self.word_start = word_start
        self.backend = backend
        # Patterns equal after normalisation are searched once and report all their indexes.
        unique: dict[str, int] = {}
        self._indexes: list[list[int]] = []
        for index, pattern in enumerate(self.patterns):
            folded = normalise_literal(pattern).strip()
            if not folded:
                raise ValueError(f"literal pattern {index} is empty")
            uid = unique.setdefault(folded, len(unique))
            if uid == len(self._indexes):
                self._indexes.append([])
            self._indexes[uid].append(index)
        self._engine: _Backend | None = None
        if unique:
            engine = _Hyperscan if backend == "hyperscan" else _AhoCorasick
            self._engine = engine(list(unique), word_start)

    def find(self, text: str) -> set[int]:
        if self._engine is None or not text:
            return set()
        found = self._engine.find(normalise_literal(text))
        return {index for uid in found for index in self._indexes[uid]}

    def __repr__(self) -> str:
        return f"LiteralMatcher({len(self.patterns)} patterns, backend={self.backend!r})"


class _AhoCorasick:
    def __init__(self, patterns: list[str], word_start: bool) -> None:
        self._count = len(patterns)
        self._word_start = word_start
        self._automaton = ahocorasick.Automaton()
        for uid, pattern in enumerate(patterns):
            self._automaton.add_word(pattern, (uid, len(pattern)))
        self._automaton.make_automaton()

    def find(self, text: str) -> set[int]:
        found: set[int] = set()
        for end, (uid, length) in self._automaton.iter(text):
            if uid in found:
                continue
            start = end - length + 1
            if self._word_start and start > 0 and _is_word(text[start - 1]):
                continue
            found.add(uid)
            if len(found) == self._count:
                break
        return found


class _Hyperscan:
    def __init__(self, patterns: list[str], word_start: bool) -> None:
        assert hyperscan is not None
        # Lone surrogates (from undecodable mail) must survive the trip to bytes.
        self._literals = [p.encode("utf-8", "surrogatepass") for p in patterns]
        self._word_start = word_start
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        # Without the word-start check the first report is enough; with it a later one may count.
        flags = 0 if word_start else hyperscan.HS_FLAG_SINGLEMATCH
        self._db.compile(expressions=self._literals, flags=flags, literal=True)
        # A scratch space must not be shared by concurrent scans.
        self._local = threading.local()

    def find(self, text: str) -> set[int]:
        assert hyperscan is not None
        data = text.encode("utf-8", "surrogatepass")
        found: set[int] = set()
        count = len(self._literals)

        def on_match(uid: int, _from: int, end: int, _flags: int, _context: object) -> bool:
            if uid not in found and not (
                self._word_start and _after_word(data, end - len(self._literals[uid]))
            ):
                found.add(uid)
            return len(found) == count  # True stops the scan

        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        with contextlib.suppress(hyperscan.ScanTerminated):
            self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        return found


def _after_word(data: bytes, start: int) -> bool:
    """Whether the UTF-8 character ending just before byte `start` is a word character."""
    if start <= 0:
        return False
    begin = start - 1
    while begin > max(0, start - 4) and 0x80 <= data[begin] < 0xC0:  # continuation bytes
        begin -= 1
    return _is_word(data[begin:start].decode("utf-8", "surrogatepass"))
