"""What HTML in a report does: its links with their visible text, forms, scripts, refreshes.

Built on the forward-only tokenizer of `matching.text` (linear time on any input, unlike
`html.parser`), so hostile HTML cannot stall analysis.
"""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass, field

from mailtrawl.matching.text import _tokens, normalise_space, scrub

MAX_HTML_CHARS = 5_000_000
MAX_ANCHORS = 2_000
MAX_ANCHOR_TEXT = 300
_URL_KEYS = ("href", "src", "action", "formaction")
_WANTED_ATTRIBUTES = frozenset({*_URL_KEYS, "type", "http-equiv"})
_COUNTED = frozenset({"script", "form"})


@dataclass(slots=True)
class HtmlFeatures:
    anchors: list[tuple[str, str]] = field(default_factory=list)  # (href, visible text)
    data_uris: list[str] = field(default_factory=list)  # data: URIs in href/src/action
    forms: int = 0
    password_inputs: int = 0
    scripts: int = 0
    meta_refresh: bool = False
    form_actions: list[str] = field(default_factory=list)

    @property
    def collects_credentials(self) -> bool:
        return self.password_inputs > 0 or (self.forms > 0 and bool(self.form_actions))


def scan_html(html: str) -> HtmlFeatures:
    """Anchors (href and visible text), forms, password fields, scripts and meta refreshes."""
    features = HtmlFeatures()
    open_href: str | None = None
    text: list[str] = []
    length = 0
    for kind, name, attrs in _tokens(scrub(html[:MAX_HTML_CHARS])):
        if kind == "text":
            if open_href is not None and length < MAX_ANCHOR_TEXT:
                text.append(name)
                length += len(name)
            continue
        if name == "a":
            if open_href is not None and len(features.anchors) < MAX_ANCHORS:
                visible = normalise_space(html_lib.unescape("".join(text)))[:MAX_ANCHOR_TEXT]
                features.anchors.append((open_href, visible))
            open_href, text, length = None, [], 0
        if kind != "start" or (not attrs and name not in _COUNTED):
            continue
        # Attribute values are unescaped only for the few tags and attributes looked at.
        values = {key: value for key, value in attrs if key in _WANTED_ATTRIBUTES}
        for key in _URL_KEYS:
            value = values.get(key, "").lstrip()
            if value[:5].lower() == "data:" and len(features.data_uris) < MAX_ANCHORS:
                features.data_uris.append(html_lib.unescape(value)[:200])
        if name == "a" and values.get("href", "").strip():
            open_href = html_lib.unescape(values["href"]).strip()
        elif name == "form":
            features.forms += 1
            if values.get("action", "").strip():
                features.form_actions.append(html_lib.unescape(values["action"]).strip()[:2_000])
        elif name == "input" and values.get("type", "").strip().lower() == "password":
            features.password_inputs += 1
        elif name == "script":
            features.scripts += 1
        elif name == "meta" and values.get("http-equiv", "").strip().lower() == "refresh":
            features.meta_refresh = True
    if open_href is not None and len(features.anchors) < MAX_ANCHORS:
        features.anchors.append(
            (open_href, normalise_space(html_lib.unescape("".join(text)))[:MAX_ANCHOR_TEXT])
        )
    return features
