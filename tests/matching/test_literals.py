"""The literal matcher behaves the same on every backend."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailtrawl.matching import literals
from mailtrawl.matching.literals import (
    DEFAULT_BACKEND,
    LiteralMatcher,
    available_backends,
    normalise_literal,
)

BACKENDS = available_backends()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_backends() -> None:
    assert "aho-corasick" in BACKENDS
    assert BACKENDS[0] == DEFAULT_BACKEND
    assert ("hyperscan" in BACKENDS) == (literals.hyperscan is not None)


def test_unknown_backend_and_empty_patterns_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown or unavailable"):
        LiteralMatcher(["x"], backend="grep")
    with pytest.raises(ValueError, match="pattern 1 is empty"):
        LiteralMatcher(["x", " \t\n"])
    with pytest.raises(ValueError, match="pattern 0 is empty"):
        LiteralMatcher([""])


def test_a_single_string_is_not_a_list_of_patterns() -> None:
    with pytest.raises(TypeError):
        LiteralMatcher("invoice")


def test_concurrent_use_from_threads(backend: str) -> None:
    matcher = LiteralMatcher([f"word{i:02d}" for i in range(50)], backend=backend)
    texts = [(" ".join(f"word{j:02d}" for j in range(i, 50, 7)) + " ") * 200 for i in range(7)]
    expected = [set(range(i, 50, 7)) for i in range(7)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(matcher.find, texts * 20))
    assert results == expected * 20


def test_no_patterns_find_nothing(backend: str) -> None:
    assert LiteralMatcher([], backend=backend).find("anything") == set()


@pytest.mark.parametrize(
    ("patterns", "text", "expected"),
    [
        # Case folding and the open end: a prefix search.
        (["invoice", "PAYMENT"], "Your Invoices and payments", {0, 1}),
        # Word start: not inside a word, digits and underscores count as word characters.
        (["voice"], "invoice", set()),
        (["voice"], "in-voice", {0}),
        (["pay"], "1pay _pay", set()),
        (["pay"], "(pay) ", {0}),
        # Overlapping patterns, and patterns that are prefixes of each other.
        (["abc", "bcd", "abcd", "ab"], "abcd", {0, 2, 3}),
        (["aa", "aaa"], "aaaa", {0, 1}),
        (["bank", "bank account", "bank account number"], "your bank account no", {0, 1}),
        # Whitespace runs on either side count as one space.
        (["wire  transfer"], "urgent WIRE\n\t transfer", {0}),
        (["wire transfer"], "wiretransfer", set()),
        # Non-ASCII: casefolding ("ß" is "ss"), composed and decomposed forms.
        (["überweisung"], "Ihre ÜBERWEISUNG", {0}),
        (["überweisung"], "Ihre U\u0308berweisung", {0}),
        (["strasse"], "Hauptstraße 1, STRASSE", {0}),
        (["straße"], "STRASSE", {0}),
        (["счёт"], "Ваш СЧЁТ", {0}),
        (["счёт"], "пересчёт", set()),
        (["請求書"], "ご確認:請求書", {0}),
        # Duplicates after normalisation report every index.
        (["Invoice", "INVOICE", "invoice "], "invoice", {0, 1, 2}),
        # A word start is checked on the occurrence, not just the first one.
        (["pay"], "repay and pay", {0}),
    ],
)
def test_matching(backend: str, patterns: list[str], text: str, expected: set[int]) -> None:
    assert LiteralMatcher(patterns, backend=backend).find(text) == expected


def test_without_word_start_matches_anywhere(backend: str) -> None:
    matcher = LiteralMatcher(["voice", "ß", "x"], word_start=False, backend=backend)
    assert matcher.find("INVOICE strasse") == {0, 1}
    assert matcher.find("") == set()


def test_turkish_dotted_i_is_not_folded_to_plain_i(backend: str) -> None:
    # Language-neutral casefolding: documented, not a bug.
    matcher = LiteralMatcher(["istanbul", "ıstanbul"], backend=backend)
    assert matcher.find("İSTANBUL") == set()
    assert matcher.find("ISTANBUL") == {0}
    assert matcher.find("ıstanbul") == {1}


def test_lone_surrogates_from_broken_mail_do_not_break_matching(backend: str) -> None:
    matcher = LiteralMatcher(["pay", "\udcff"], word_start=False, backend=backend)
    assert matcher.find("x\udcffpay") == {0, 1}


def test_thousand_patterns(backend: str) -> None:
    patterns = [f"keyword{i:04d}" for i in range(1_000)]
    matcher = LiteralMatcher(patterns, backend=backend)
    text = " ".join(f"KEYWORD{i:04d}" for i in range(0, 1_000, 7)) + " xkeyword0001"
    assert matcher.find(text) == set(range(0, 1_000, 7))
    assert matcher.find(text * 50) == set(range(0, 1_000, 7))


def test_many_occurrences_of_a_short_pattern(backend: str) -> None:
    matcher = LiteralMatcher(["a", "zz"], backend=backend)
    assert matcher.find("ba " * 200_000) == set()
    assert matcher.find("ba " * 200_000 + "a") == {0}


def _reference(patterns: list[str], text: str, word_start: bool) -> set[int]:
    """The documented semantics, by brute force."""
    folded = normalise_literal(text)
    found = set()
    for index, pattern in enumerate(patterns):
        needle = normalise_literal(pattern).strip()
        start = folded.find(needle)
        while start >= 0:
            before = folded[start - 1] if start else " "
            if not word_start or not (before.isalnum() or before == "_"):
                found.add(index)
                break
            start = folded.find(needle, start + 1)
    return found


@pytest.mark.parametrize("word_start", [True, False])
def test_random_text_matches_the_reference(backend: str, word_start: bool) -> None:
    rng = random.Random(7)
    alphabet = "ab ßSs\u0130i_-Ü\u0308\t"
    patterns = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3))) for _ in range(80)]
    patterns = [p for p in patterns if p.strip()]
    matcher = LiteralMatcher(patterns, word_start=word_start, backend=backend)
    for _ in range(40):
        text = "".join(rng.choice(alphabet) for _ in range(200))
        assert matcher.find(text) == _reference(patterns, text, word_start)
