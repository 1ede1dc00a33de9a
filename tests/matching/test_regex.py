"""User regexes: RE2 only, readable errors with positions, linear time on hostile input."""

from __future__ import annotations

import time

import pytest

from mailtrawl.matching.regex import CompiledRegex, RegexError, compile_regex


def test_search_is_unanchored_and_case_insensitive_by_default() -> None:
    regex = compile_regex(r"inv(oice)?\s+#\d+")
    assert isinstance(regex, CompiledRegex)
    assert regex.pattern == r"inv(oice)?\s+#\d+"
    assert regex.search("Please pay INVOICE   #4411 today")
    assert not regex.search("invoice 4411")


def test_case_sensitive_on_request_and_unicode_folding() -> None:
    assert compile_regex("ÜBERWEISUNG").search("eine überweisung")
    assert not compile_regex("ÜBERWEISUNG", ignore_case=False).search("eine überweisung")


@pytest.mark.parametrize(
    ("pattern", "position", "reason"),
    [
        ("ab(c", 2, "missing ')'"),
        ("abc)", 3, "unexpected ')'"),
        ("a(b)c)d", 5, "unexpected ')'"),
        ("[)](x", 3, "missing ')'"),
        ("x[a", 1, "missing ']'"),
        ("é\\q", 1, "invalid escape sequence '\\q'"),
        ("a**", 1, "bad repetition operator '**'"),
        ("[z-a]", 1, "invalid character class range 'z-a'"),
        ("(?<=a)b", 0, "invalid perl operator '(?<='"),
        ("x\\", 1, "trailing '\\'"),
        (r"(a)\1", 3, "invalid escape sequence '\\1'"),
    ],
)
def test_errors_point_into_the_pattern(pattern: str, position: int, reason: str) -> None:
    with pytest.raises(RegexError) as caught:
        compile_regex(pattern)
    assert caught.value.position == position
    assert caught.value.reason == reason
    assert str(caught.value) == f"invalid regular expression at position {position}: {reason}"


@pytest.mark.parametrize("pattern", ["", "a" * 2_001])
def test_empty_and_overlong_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(RegexError) as caught:
        compile_regex(pattern)
    assert caught.value.position is None
    assert isinstance(caught.value, ValueError)


def test_a_pattern_too_large_for_re2_memory_is_an_error() -> None:
    with pytest.raises(RegexError, match="pattern too large") as caught:
        compile_regex(r"\pL{1000}\pL{900}")
    assert caught.value.position is None


def test_catastrophic_pattern_runs_in_linear_time() -> None:
    regex = compile_regex("(a+)+$")
    text = "a" * 5_000_000 + "!"
    started = time.perf_counter()
    assert not regex.search(text)
    assert regex.search(text[:-1])
    assert time.perf_counter() - started < 5


def test_text_with_lone_surrogates_is_searchable() -> None:
    # The email package smuggles undecodable bytes through as surrogates; RE2 needs UTF-8.
    assert compile_regex("pay.now").search("\udcffpay\udcffnow")
