"""The visible text of HTML mail, for matching words and URLs the recipient actually sees.

This is a small HTML tokenizer of its own rather than `html.parser`: on Python 3.11.7 the
standard parser is quadratic on inputs such as `"<a" * 200_000` (97 s) or `"<!--" * 200_000`
(over 5 minutes), which any sender can put in a message. Here every scan only moves forward,
so the time is linear in the input. It follows the HTML5 tokenizer where it matters for
matching: a tag left open at the end of the input is dropped with the rest of the input, as
is an unterminated comment, and `>` inside a quoted attribute value does not end the tag.

Dropped: comments, doctypes, and the content of <script>, <style>, <title> and <template> (the
parts of <head> that have content; stray text in <head> is shown by browsers, so it is kept).
Text hidden with CSS is kept: matching errs towards seeing too much rather than too little.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterator
from dataclasses import dataclass

# Attributes whose values are URLs a reader can follow or a client will fetch.
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "background", "poster"})
# Raw text up to the matching end tag, which no other '<' can close.
_HIDDEN = {
    tag: re.compile(rf"</{tag}[\s/>]", re.IGNORECASE)
    for tag in ("script", "style", "title", "template")
}
# fmt: off
_BLOCKS = frozenset({
    "address", "article", "aside", "blockquote", "br", "caption", "center", "dd", "details", "div",
    "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
    "tbody", "tfoot", "thead", "tr", "ul",
})
# fmt: on
_CELLS = frozenset({"td", "th"})

_TAG_NAME = re.compile(r"[^\s/>]*")
_ATTR_NAME = re.compile(r"[\s/]*([^\s/>=][^\s/>=]*)?\s*(=?)\s*")
_UNQUOTED = re.compile(r"[^\s>]*")
_SPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class RenderedHtml:
    """Visible text before tidying (one space per whitespace run, "\\n" at block edges) and
    the URL-bearing attribute values, each with the offset in `text` where its tag stood."""

    text: str
    links: tuple[tuple[int, str], ...]


def scrub(text: str) -> str:
    """Replace lone surrogates (undecodable bytes smuggled through by the email package) with
    U+FFFD, one for one, so the text can be encoded to UTF-8 for RE2."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def normalise_space(text: str) -> str:
    """Collapse every whitespace run to one space and strip the ends."""
    return _SPACE.sub(" ", text).strip()


def html_to_text(html: str, *, max_chars: int = 5_000_000) -> str:
    """Visible text of an HTML document, one line per block; never raises."""
    lines = (
        normalise_space(line) for line in render_html(html, max_chars=max_chars).text.split("\n")
    )
    return "\n".join(line for line in lines if line)


def render_html(html: str, *, max_chars: int = 5_000_000) -> RenderedHtml:
    """Tokenize (the first `max_chars` of) `html` into visible text and URL attributes."""
    html = scrub(html[:max_chars])
    parts: list[str] = []
    links: list[tuple[int, str]] = []
    size = 0
    for kind, value, attrs in _tokens(html):
        if kind == "text":
            piece = _SPACE.sub(" ", html_lib.unescape(value))
        else:
            for name, url in attrs:
                if name in URL_ATTRIBUTES and url.strip():
                    links.append((size, html_lib.unescape(url).strip()))
            piece = "\n" if value in _BLOCKS else " " if value in _CELLS else ""
        parts.append(piece)
        size += len(piece)
    return RenderedHtml("".join(parts), tuple(links))


_Token = tuple[str, str, list[tuple[str, str]]]


def _tokens(html: str) -> Iterator[_Token]:
    """("text", text, []), ("start", name, attributes) and ("end", name, []) tokens, in order."""
    i, end = 0, len(html)
    while i < end:
        lt = html.find("<", i)
        if lt < 0:
            yield "text", html[i:], []
            return
        if lt > i:
            yield "text", html[i:lt], []
        after = html[lt + 1 : lt + 2]
        if html.startswith("<!--", lt):
            close = html.find("-->", lt + 4)
            i = end if close < 0 else close + 3
        elif after in ("!", "?") or (after == "/" and not html[lt + 2 : lt + 3].isalpha()):
            # Doctypes, CDATA, processing instructions and "</ 3>" are bogus comments up to '>'.
            close = html.find(">", lt + 2)
            i = end if close < 0 else close + 1
        elif after == "/":
            name = _TAG_NAME.match(html, lt + 2)
            assert name is not None  # the pattern can match empty
            close = html.find(">", name.end())
            if close < 0:
                return
            yield "end", name.group().lower(), []
            i = close + 1
        elif after.isascii() and after.isalpha():
            name = _TAG_NAME.match(html, lt + 1)
            assert name is not None
            tag = name.group().lower()
            attrs, i = _attributes(html, name.end())
            if i < 0:
                return  # the input ended inside the tag
            yield "start", tag, attrs
            if tag in _HIDDEN:
                close_tag = _HIDDEN[tag].search(html, i)
                if close_tag is None:
                    return
                i = close_tag.start()
        else:
            yield "text", "<", []
            i = lt + 1


def _attributes(html: str, i: int) -> tuple[list[tuple[str, str]], int]:
    """Attributes from `i` to the '>' ending a start tag, and the index after it (-1 at EOF)."""
    attrs: list[tuple[str, str]] = []
    end = len(html)
    while i < end:
        if html[i] == ">":
            return attrs, i + 1
        match = _ATTR_NAME.match(html, i)
        assert match is not None
        name, equals = match.group(1), match.group(2)
        i = match.end()
        if not name and not equals:
            continue  # whitespace or slashes only; the loop resumes at '>' or at the end
        value = ""
        if equals and i < end:
            if html[i] in "\"'":
                close = html.find(html[i], i + 1)
                if close < 0:
                    return attrs, -1
                value, i = html[i + 1 : close], close + 1
            else:
                unquoted = _UNQUOTED.match(html, i)
                assert unquoted is not None
                value, i = unquoted.group(), unquoted.end()
        attrs.append(((name or "").lower(), value))
    return attrs, -1
