from __future__ import annotations

import time

import pytest

from mailtrawl.analysis.intel import PatternError, parse_pattern


def atoms(pattern: str) -> list[tuple[str, str, bool, tuple[str, ...]]]:
    return [(c.path, c.operator, c.negated, c.values) for c in parse_pattern(pattern)]


def test_hash_path_with_quoted_key() -> None:
    assert atoms("[file:hashes.'SHA-256' = 'ABC']") == [
        ("file:hashes.SHA-256", "=", False, ("ABC",))
    ]


def test_or_and_nesting_and_qualifiers() -> None:
    pattern = (
        "([url:value = 'http://a.example/' OR (domain-name:value = 'b.example')] "
        "AND [ipv4-addr:value != '10.0.0.1']) WITHIN 300 SECONDS "
        "FOLLOWEDBY [email-addr:value IN ('x@c.example', 'y@c.example')] "
        "START t'2024-01-01T00:00:00Z' STOP t'2025-01-01T00:00:00Z'"
    )
    assert atoms(pattern) == [
        ("url:value", "=", False, ("http://a.example/",)),
        ("domain-name:value", "=", False, ("b.example",)),
        ("ipv4-addr:value", "!=", False, ("10.0.0.1",)),
        ("email-addr:value", "IN", False, ("x@c.example", "y@c.example")),
    ]


def test_escapes_not_and_reference_paths() -> None:
    assert atoms(
        r"[email-message:from_ref.value NOT = 'o\'brien@x.example' AND "
        r"file:extensions.'windows-pebinary-ext'.sections[*].name = 'a\\b']"
    ) == [
        ("email-message:from_ref.value", "=", True, ("o'brien@x.example",)),
        ("file:extensions.windows-pebinary-ext.sections.name", "=", False, ("a\\b",)),
    ]


def test_exists_and_numbers() -> None:
    assert atoms("[EXISTS file:name AND file:size > 1024]") == [
        ("file:size", ">", False, ("1024",))
    ]


@pytest.mark.parametrize(
    ("pattern", "position", "reason"),
    [
        ("[url:value = 'x'", 16, "expected ']'"),
        ("url:value = 'x'", 0, "expected '[' or '('"),
        ("[url:value ~ 'x']", 11, "expected a comparison operator"),
        ("[url:value = 'x]", 16, "unterminated string"),
        ("[urlvalue = 'x']", 9, "expected ':'"),
        ("[url:value = 'x'] garbage", 18, "unexpected text"),
        ("[url:value = 'x'] REPEATS TIMES", 26, "expected a number"),
    ],
)
def test_errors_point_into_the_pattern(pattern: str, position: int, reason: str) -> None:
    with pytest.raises(PatternError) as caught:
        parse_pattern(pattern)
    assert caught.value.position == position
    assert reason in caught.value.reason


def test_nesting_and_length_are_bounded() -> None:
    deep = "(" * 500 + "[url:value = 'x']" + ")" * 500
    with pytest.raises(PatternError, match="nested deeper"):
        parse_pattern(deep)
    with pytest.raises(PatternError, match="longer than"):
        parse_pattern("[url:value = '" + "a" * 200_000 + "']")


def test_long_or_chain_parses_in_linear_time() -> None:
    pattern = "[" + " OR ".join(f"domain-name:value = 'h{n}.example'" for n in range(2000)) + "]"
    started = time.perf_counter()
    assert len(parse_pattern(pattern)) == 2000
    assert time.perf_counter() - started < 2
