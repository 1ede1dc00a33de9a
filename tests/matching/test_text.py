"""Visible text of HTML mail, with linear time on the inputs that stall html.parser."""

from __future__ import annotations

import time

import pytest

from mailtrawl.matching.text import html_to_text, normalise_space, render_html


def test_visible_text_with_block_breaks_and_entities() -> None:
    html = (
        "<!DOCTYPE html><html><head><title>Hidden title</title><style>p{color:red}</style>"
        '<meta charset="utf-8"></head><body><p>Hello&nbsp;<b>wor</b>ld &amp; &eacute;l&#232;ve</p>'
        "<div>Line&#x32;<br>Line 3</div><!-- a comment --><script>var s = '<p>not text</p>';</script>"
        "<table><tr><td>cell</td><td>next</td></tr></table><ul><li>one<li>two</ul></body></html>"
    )
    assert html_to_text(html) == "Hello world & élève\nLine2\nLine 3\ncell next\none\ntwo"


def test_stray_text_in_head_is_shown_like_browsers_do() -> None:
    assert html_to_text("<head>Pay now<title>t</title></head>") == "Pay now"


def test_broken_html_never_raises() -> None:
    assert html_to_text("a < b and c<d <3 </ x> <!doctype html> text <!-- c --> after") == (
        "a < b and c text after"
    )
    assert html_to_text("<p>kept<a href='never closed>dropped to the end") == "kept"
    assert html_to_text("<p>kept<!-- unterminated comment") == "kept"
    assert html_to_text("<p>kept<script>never closed <b>x</b>") == "kept"
    assert html_to_text("<![CDATA[x]]>y</>z<?php echo 1 ?>w") == "yzw"
    assert html_to_text('<a title="1 > 0" href=x>link</a>') == "link"
    assert html_to_text("") == ""
    assert html_to_text("&bogus; &#xD800; &#0;") == "&bogus; \ufffd \ufffd"


def test_input_is_truncated_at_max_chars() -> None:
    assert html_to_text("<p>abc</p><p>def</p>", max_chars=14) == "abc\nd"


def test_render_keeps_url_attributes_with_offsets() -> None:
    rendered = render_html(
        '<p>Go <a HREF="http://x.example/?a=1&amp;b=2">here</a></p>'
        "<img src=http://img.example/i.png alt=i><form action='https://post.example'></form>"
        '<a name="top" href="">empty</a>'
    )
    assert rendered.text == "\nGo here\n\n\nempty"
    assert rendered.links == (
        (4, "http://x.example/?a=1&b=2"),
        (9, "http://img.example/i.png"),
        (9, "https://post.example"),
    )


@pytest.mark.parametrize(
    "html",
    [
        "<a" * 200_000,
        "<!--" * 200_000,
        "</" * 200_000,
        "<?" * 200_000,
        "a<" * 200_000,
        "<a b=c " * 100_000,
        "<a " + '=" ' * 200_000,
        "<script>" + "</scrip" * 200_000,
        "&#x" * 200_000,
        "<p>" + "x" * 5_000_000,
    ],
)
def test_hostile_markup_is_linear(html: str) -> None:
    started = time.perf_counter()
    html_to_text(html)
    assert time.perf_counter() - started < 5


def test_normalise_space() -> None:
    assert normalise_space("  a \t\n b\u00a0c  ") == "a b c"
    assert normalise_space("") == ""
