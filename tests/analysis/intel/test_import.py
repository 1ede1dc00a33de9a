from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailtrawl.analysis.intel import (
    IntelFormatError,
    IntelType,
    load_intel_file,
    normalise_value,
)

DATA = Path(__file__).parent / "data"


def values(intel_list, kind: IntelType) -> set[str]:
    return {i.value for i in intel_list.indicators if i.type is kind}


def test_csv_with_header_normalises_every_type() -> None:
    intel = load_intel_file(DATA / "phishing.csv")
    assert intel.name == "phishing.csv"
    assert intel.source_kind == "csv"
    assert values(intel, IntelType.SHA256) == {
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    }
    assert values(intel, IntelType.MD5) == {"44d88612fea8a8f36de82e1278abb02f"}  # "hash" inferred
    # Refanged, tracking parameter dropped, as the parser normalises links.
    assert values(intel, IntelType.URL) == {
        "https://login-micros0ft.example/owa/auth.php",
        "http://files.example.net/payload/",
    }
    assert values(intel, IntelType.DOMAIN) == {"evil-payments.example", "badcdn.example"}
    assert values(intel, IntelType.IP) == {"203.0.113.66"}
    assert values(intel, IntelType.CIDR) == {"198.51.100.0/24"}
    assert values(intel, IntelType.EMAIL) == {"billing@evil-payments.example"}
    eicar = next(i for i in intel.indicators if i.type is IntelType.MD5)
    assert (eicar.description, eicar.source) == ("EICAR test file (md5)", "eicar.org")


def test_csv_without_header_and_columns_in_another_order() -> None:
    positional = load_intel_file(b"domain,bad.example\nip,192.0.2.1,relay\n")
    assert positional.source_kind == "csv"
    assert {(i.type, i.value) for i in positional.indicators} == {
        (IntelType.DOMAIN, "bad.example"),
        (IntelType.IP, "192.0.2.1"),
    }
    reordered = load_intel_file(b"value,type,source\nbad.example,domain,feed-x\n")
    assert reordered.source_kind == "csv"
    assert reordered.indicators[0].source == "feed-x"


def test_one_value_per_line_infers_types() -> None:
    intel = load_intel_file(DATA / "feed.txt")
    assert intel.source_kind == "lines"
    assert {(i.type, i.value) for i in intel.indicators} == {
        (IntelType.MD5, "d41d8cd98f00b204e9800998ecf8427e"),
        (IntelType.URL, "https://drop.example.org/a/b.exe"),
        (IntelType.DOMAIN, "phish-bank.example"),
        (IntelType.IP, "192.0.2.10"),
        (IntelType.CIDR, "2001:db8:bad::/48"),
        (IntelType.EMAIL, "ceo-urgent@mailbox.example"),
    }


def test_bad_csv_value_names_its_line() -> None:
    data = b"type,value\nsha256,abc123\n"
    with pytest.raises(IntelFormatError) as caught:
        load_intel_file(data)
    assert caught.value.position == "line 2"
    assert "sha256 digest must be 64 hex characters" in str(caught.value)


def test_unknown_csv_type_is_an_error_with_position() -> None:
    with pytest.raises(IntelFormatError, match=r"line 3: unknown type 'registry'"):
        load_intel_file(b"type,value\ndomain,ok.example\nregistry,HKLM\\Run\n", kind="csv")


def test_lenient_import_keeps_good_values_and_reports_bad_ones() -> None:
    intel = load_intel_file(b"type,value\nsha256,abc123\ndomain,ok.example\n", strict=False)
    assert [i.value for i in intel.indicators] == ["ok.example"]
    assert intel.warnings == ("line 2: a sha256 digest must be 64 hex characters, not 'abc123'",)


def test_unparseable_line_in_a_plain_list() -> None:
    with pytest.raises(IntelFormatError, match=r"line 2: cannot tell what 'hello'"):
        load_intel_file(b"bad.example\nhello\n")


def test_duplicates_are_kept_once() -> None:
    intel = load_intel_file(b"BAD.example\nbad.example.\nhxxp://bad[.]example/\n")
    assert [(i.type, i.value) for i in intel.indicators] == [
        (IntelType.DOMAIN, "bad.example"),
        (IntelType.URL, "http://bad.example/"),
    ]


def test_stix_bundle_patterns_and_observables() -> None:
    intel = load_intel_file(DATA / "bundle.json")
    assert intel.source_kind == "stix"
    by_value = {i.value: i for i in intel.indicators}
    loader = by_value["aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"]
    assert (loader.type, loader.description, loader.source) == (
        IntelType.SHA256,
        "Emotet loader",
        "Example CERT",
    )
    assert by_value["http://secure-update.example/login"].type is IntelType.URL
    assert by_value["paypa1-support.example"].type is IntelType.DOMAIN  # OR-ed comparison
    assert by_value["192.0.2.128/25"].type is IntelType.CIDR  # ISSUBSET
    assert by_value["hr-notice@corp-payroll.example"].type is IntelType.EMAIL
    assert by_value["cdn-malware.example"].type is IntelType.DOMAIN  # a domain-name SCO
    assert by_value["098f6bcd4621d373cade4e832627b4f6"].type is IntelType.MD5  # a file SCO
    assert by_value["a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"].type is IntelType.SHA1
    assert "old-c2.example" not in by_value  # valid_until is in the past
    assert any("file:name cannot be looked up" in w for w in intel.warnings)
    assert any("pattern_type 'yara' is not supported" in w for w in intel.warnings)


def test_stix_bad_pattern_names_object_and_position() -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--1",
        "objects": [
            {
                "type": "indicator",
                "id": "indicator--bad",
                "pattern": "[url:value = 'http://x.example/'",
                "pattern_type": "stix",
            }
        ],
    }
    with pytest.raises(IntelFormatError) as caught:
        load_intel_file(json.dumps(bundle).encode())
    message = str(caught.value)
    assert "objects[0] (indicator--bad)" in message
    assert "position 32" in message
    assert "expected ']'" in message


def test_stix_revoked_indicator_is_skipped() -> None:
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--r",
        "pattern": "[domain-name:value = 'gone.example']",
        "pattern_type": "stix",
        "revoked": True,
    }
    intel = load_intel_file(json.dumps(indicator).encode())
    assert intel.source_kind == "stix"
    assert intel.indicators == ()
    assert intel.warnings == ("objects[0] (indicator--r): revoked, skipped",)


def test_misp_event_attributes_and_objects() -> None:
    intel = load_intel_file(DATA / "misp_event.json")
    assert intel.source_kind == "misp"
    got = {(i.type, i.value) for i in intel.indicators}
    assert got == {
        (IntelType.URL, "https://o365-verify.example/session/start"),
        (IntelType.DOMAIN, "o365-verify.example"),
        (IntelType.IP, "198.18.0.77"),  # from domain|ip
        (IntelType.IP, "203.0.113.200"),  # ip-dst|port
        (IntelType.EMAIL, "it-helpdesk@o365-verify.example"),
        (IntelType.DOMAIN, "tracking.o365-verify.example"),
        (IntelType.SHA256, "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"),
        (IntelType.MD5, "acbd18db4cc2f85cedef654fccc4a4d8"),  # filename|md5 in an object
    }
    landing = next(i for i in intel.indicators if i.type is IntelType.URL)
    assert (landing.description, landing.source) == ("Landing page", "CIRCL-like Sharing Group")
    # The recipient (the victim) and a comment are not indicators; the deleted sha1 is gone.
    assert any("'email-dst' is not looked up" in w for w in intel.warnings)
    assert not any(i.type is IntelType.SHA1 for i in intel.indicators)


def test_misp_only_to_ids() -> None:
    intel = load_intel_file(DATA / "misp_event.json", only_to_ids=True)
    assert (IntelType.DOMAIN, "tracking.o365-verify.example") not in {
        (i.type, i.value) for i in intel.indicators
    }
    assert len(intel.indicators) == 7


def test_misp_rest_response_with_several_events() -> None:
    response = {
        "response": [
            {"Event": {"info": "one", "Attribute": [{"type": "domain", "value": "a.example"}]}},
            {"Event": {"info": "two", "Attribute": [{"type": "ip-src", "value": "10.9.0.0/16"}]}},
        ]
    }
    intel = load_intel_file(json.dumps(response).encode(), name="misp-feed")
    assert intel.name == "misp-feed"
    assert {(i.type, i.value, i.description) for i in intel.indicators} == {
        (IntelType.DOMAIN, "a.example", "one"),
        (IntelType.CIDR, "10.9.0.0/16", "two"),
    }


def test_misp_bad_value_names_the_attribute() -> None:
    event = {"Event": {"Attribute": [{"type": "md5", "value": "zz"}]}}
    with pytest.raises(IntelFormatError, match=r"^Event\.Attribute\[0\]: "):
        load_intel_file(json.dumps(event).encode())


def test_invalid_json_reports_line_and_column() -> None:
    with pytest.raises(IntelFormatError, match=r"line 2 column \d+: invalid JSON"):
        load_intel_file(b'{"type": "bundle",\n "objects": [,]}')


def test_json_of_unknown_shape_is_rejected() -> None:
    with pytest.raises(IntelFormatError, match="neither a STIX bundle nor a MISP"):
        load_intel_file(b'{"hello": "world"}')


def test_size_and_count_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"a.example\n" * 200)
    with pytest.raises(IntelFormatError, match="larger than 1000 bytes"):
        load_intel_file(big, max_bytes=1000)
    many = "\n".join(f"host{n}.example" for n in range(50)).encode()
    with pytest.raises(IntelFormatError, match=r"line 11: the list holds more than 10"):
        load_intel_file(many, max_indicators=10)


def test_not_utf8_names_the_line() -> None:
    with pytest.raises(IntelFormatError, match="line 2: the list is not UTF-8"):
        load_intel_file(b"a.example\n\xff\xfe.example\n")


def test_unknown_kind_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IntelFormatError, match="unknown list format 'xml'"):
        load_intel_file(b"", kind="xml")
    with pytest.raises(IntelFormatError, match="cannot read"):
        load_intel_file(tmp_path / "absent.csv")


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        (IntelType.DOMAIN, "Bücher.Example.", (IntelType.DOMAIN, "xn--bcher-kva.example")),
        (IntelType.DOMAIN, "192.0.2.1", (IntelType.IP, "192.0.2.1")),
        (IntelType.IP, "::ffff:192.0.2.1", (IntelType.IP, "192.0.2.1")),
        (IntelType.CIDR, "192.0.2.7/24", (IntelType.CIDR, "192.0.2.0/24")),
        (IntelType.CIDR, "192.0.2.7/32", (IntelType.IP, "192.0.2.7")),
        (IntelType.EMAIL, "<Boss@Corp[.]Example>", (IntelType.EMAIL, "boss@corp.example")),
        (IntelType.URL, "hxxp://evil[.]example", (IntelType.URL, "http://evil.example/")),
    ],
)
def test_normalise_value(kind: IntelType, raw: str, expected: tuple[IntelType, str]) -> None:
    assert normalise_value(kind, raw) == expected


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (IntelType.DOMAIN, "not a domain"),
        (IntelType.URL, "mailto:x@example.org"),
        (IntelType.IP, "300.1.1.1"),
        (IntelType.EMAIL, "no-at-sign"),
        (IntelType.SHA1, "a" * 64),
    ],
)
def test_normalise_value_rejects(kind: IntelType, raw: str) -> None:
    with pytest.raises(ValueError, match=r"not|must be"):
        normalise_value(kind, raw)


def test_deeply_nested_json_is_refused_not_recursed() -> None:
    with pytest.raises(IntelFormatError, match="invalid JSON: depth limit exceeded"):
        load_intel_file(b"[" * 5000 + b"]" * 5000)
