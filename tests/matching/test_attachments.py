"""Hashes, globs and extensions of attachment names."""

from __future__ import annotations

import time

import pytest

from mailtrawl.matching.attachments import (
    HASH_ALGORITHMS,
    compile_glob,
    digests,
    extension,
    hash_kind,
)


def test_digests_of_known_data() -> None:
    result = digests(b"abc")
    assert tuple(result) == HASH_ALGORITHMS
    assert result["md5"] == "900150983cd24fb0d6963f7d28e17f72"
    assert result["sha1"] == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert result["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert result["sha512"].startswith("ddaf35a193617aba")
    assert all(value == value.lower() for value in result.values())


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("900150983CD24FB0D6963F7D28E17F72", "md5"),
        ("a9993e364706816aba3e25717850c26c9cd0d89d", "sha1"),
        (" " + "ab" * 32 + " ", "sha256"),
        ("0" * 128, "sha512"),
        ("g" * 32, None),
        ("0" * 33, None),
        ("", None),
        ("٣" * 32, None),  # digits, but not hex
    ],
)
def test_hash_kind(value: str, kind: str | None) -> None:
    assert hash_kind(value) == kind


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*.pdf", "Invoice.PDF", True),
        ("*.pdf", "invoice.pdf.exe", False),
        ("invoice?.doc[xm]", "INVOICE7.DOCM", True),
        ("invoice?.doc[xm]", "invoice.docx", False),
        ("*.[!p]df", "a.xdf", True),
        ("*.[!p]df", "a.pdf", False),
        ("*.[^p]df", "a.pdf", False),
        ("report-[0-9][0-9].*", "report-42.zip", True),
        ("report-[0-9][0-9].*", "report-4x.zip", False),
        ("[]]x", "]x", True),
        ("[!]]x", "ax", True),
        ("a[-b]c", "a-c", True),
        ("a[b-]c", "a-c", True),
        ("(a+)+.txt", "(a+)+.txt", True),
        ("(a+)+.txt", "aa.txt", False),
        ("a\\b", "a\\b", True),
        ("*", "line\nbreak", True),
        ("überweisung*", "ÜBERWEISUNG.pdf", True),
        ("*.pdf", "", False),
        ("a?b.pdf", "a\udcffb.pdf", True),
    ],
)
def test_glob(pattern: str, name: str, expected: bool) -> None:
    assert compile_glob(pattern).matches(name) is expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("", "empty"),
        ("*.[pdf", "'\\[' at position 2 is never closed"),
        ("[z-a]", "reversed range z-a"),
        ("*" + "a" * 1_000, "longer than 1000"),
    ],
)
def test_invalid_glob(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        compile_glob(pattern)


def test_hostile_glob_is_linear() -> None:
    glob = compile_glob("*a*a*a*a*a*a*a*a*a*a*b")
    started = time.perf_counter()
    assert not glob.matches("a" * 100_000)
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("name", "ext"),
    [
        ("archive.tar.gz", "gz"),
        ("Invoice.PDF", "pdf"),
        ("noextension", ""),
        ("", ""),
        ("trailing.", ""),
        ("invoice.exe. .", "exe"),
        ("C:\\Users\\x\\a.docm", "docm"),
        ("dir.v2/readme", ""),
        (".htaccess", "htaccess"),
        ("invoice\u202efdp.exe", "exe"),
    ],
)
def test_extension(name: str, ext: str) -> None:
    assert extension(name) == ext
