"""Safe previews of an email's HTML: sanitised with nh3 (ammonia), shown in a sandboxed frame.

Email HTML is attacker-controlled. Three layers keep it inert:

1. `sanitize_email_html` keeps formatting tags only: no script, style sheet, form, frame,
   object, event handler, `javascript:` or `data:` link, and no remote image (an image is kept
   only when it is embedded as a `data:image/...` URL; a remote one would tell the sender that
   the message was opened). Style attributes survive only without `url(...)`, `expression`,
   `@import` or escapes.
2. `preview_response` serves the result as a document with its own CSP
   (`PREVIEW_CSP`: nothing may load but embedded images and inline styles; the `sandbox`
   directive makes it a scriptless, unique-origin document even when opened directly).
3. Pages embed it as `<iframe sandbox src="…">` (no `allow-*` token): no scripts, no forms, no
   top navigation, no same-origin access.

`preview_srcdoc` gives the same document for `<iframe sandbox srcdoc="…">`; note that a srcdoc
frame inherits the page's CSP (inline styles are then dropped), so a separate URL served by
`preview_response` shows the message more faithfully.
"""

from __future__ import annotations

import re

import nh3
from starlette.responses import HTMLResponse

# Looser than the pages for styles (emails are styled inline), stricter for everything else.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
PREVIEW_CSP = f"{_POLICY}; frame-ancestors 'self'; sandbox"
# A meta tag cannot carry frame-ancestors or sandbox (browsers ignore them there, noisily).
_META_CSP = _POLICY
# How much HTML a preview takes; longer bodies are cut (the frame shows a notice).
MAX_PREVIEW_CHARS = 2_000_000

_TAGS = {
    "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code",
    "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption", "figure",
    "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark",
    "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup",
    "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var",
}  # fmt: skip
# Removed with their content, not just their tags.
_DROP_WITH_CONTENT = {"script", "style", "title", "head", "template", "noscript", "textarea"}
_LAYOUT = {"align", "valign", "width", "height", "bgcolor", "border", "style", "dir", "lang"}
_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"title", "dir", "lang", "style"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "align", "border"},
    "font": {"color", "face", "size"},
    "table": _LAYOUT | {"cellpadding", "cellspacing", "summary"},
    "td": _LAYOUT | {"colspan", "rowspan", "nowrap"},
    "th": _LAYOUT | {"colspan", "rowspan", "scope"},
    "tr": _LAYOUT,
    "tbody": _LAYOUT,
    "thead": _LAYOUT,
    "tfoot": _LAYOUT,
    "div": _LAYOUT,
    "p": _LAYOUT,
    "span": _LAYOUT,
    "center": _LAYOUT,
    "hr": _LAYOUT | {"size", "noshade"},
    "col": _LAYOUT | {"span"},
    "colgroup": _LAYOUT | {"span"},
    "ol": {"start", "type"},
    "ul": {"type"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "time": {"datetime"},
}
_URL_SCHEMES = {"http", "https", "mailto", "data"}
_EMBEDDED_IMAGE = re.compile(
    r"^data:image/(png|gif|jpeg|jpg|webp|bmp);base64,[a-z0-9+/=\s]*$", re.I
)
# CSS that can fetch, run or hide what it does: url(), expression(), @import, escapes, behaviours.
_UNSAFE_CSS = re.compile(r"url\s*\(|expression|@import|\\|behavior|-moz-binding|javascript:", re.I)


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        # Only embedded images: a remote image is a read receipt for the sender.
        return value if _EMBEDDED_IMAGE.match(value.strip()) else None
    if attribute == "href" and value.strip().lower().startswith("data:"):
        return None
    if attribute == "style" and _UNSAFE_CSS.search(value):
        return None
    return value


def sanitize_email_html(html: str) -> str:
    """The HTML of an email reduced to inert formatting (see the module docstring)."""
    return nh3.clean(
        html[:MAX_PREVIEW_CHARS],
        tags=_TAGS,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes=_URL_SCHEMES,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


def preview_document(html: str) -> str:
    """A whole HTML document around the sanitised body, with the preview CSP in a meta tag too."""
    body = sanitize_email_html(html)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_META_CSP}">'
        '<meta name="referrer" content="no-referrer">'
        f"</head><body>{body}</body></html>"
    )


def preview_srcdoc(html: str) -> str:
    """The document for `<iframe sandbox srcdoc="{{ … }}">` (the template escapes the quotes)."""
    return preview_document(html)


def preview_response(html: str) -> HTMLResponse:
    """The sanitised email as its own document, with the preview CSP and framing by us only."""
    return HTMLResponse(
        preview_document(html),
        headers={
            "Content-Security-Policy": PREVIEW_CSP,
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "no-store",
        },
    )
