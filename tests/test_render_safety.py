"""Model output is untrusted: no input below may become live markup, whole or streamed."""

from __future__ import annotations

import pytest
from bs4 import BeautifulSoup, Comment, Tag

from chatapp.render.live import LiveMarkdown, render_answer

HOSTILE = [
    # script tags and event handlers
    "<script>alert(1)</script>",
    "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    '<img src=x onerror="alert(1)">',
    "<body onload=alert(1)>",
    '<a href="https://ok.example" onclick="alert(1)">x</a>',
    '<div onmouseover="alert(1)">hover</div>',
    '[x](https://ok.example "title" onclick=alert(1))',
    # javascript:, data: and vbscript: URLs
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](%6aavascript:alert(1))",
    "<javascript:alert(1)>",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](data:image/png;base64,iVBORw0KGgo=)",
    "[click](vbscript:msgbox(1))",
    "[ref]: javascript:alert(1)\n\n[ref]",
    "<a href='javascript:alert(1)'>x</a>",
    # SVG and MathML
    "<svg onload=alert(1)><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></math>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    # htmx and the SSE extension
    '<div hx-get="/messages" hx-trigger="load">x</div>',
    '<div data-hx-post="/conversations/1/settings" data-hx-trigger="load">x</div>',
    '<span hx-swap-oob="innerHTML:#messages">gone</span>',
    '<div hx-swap-oob="true" id="composer">fake</div>',
    '<div sse-connect="/messages/1/stream" sse-swap="frame">x</div>',
    '<div hx-on::load="alert(1)">x</div>',
    "[x](https://ok.example){hx-get=/x}",
    # comments and CSS
    "<!-- hidden --> text",
    "<!--><script>alert(1)</script>-->",
    "<style>body{display:none}</style>",
    '<p style="position:fixed;inset:0">cover</p>',
    "| a |\n|:-:|\n| <style>x</style> |",
    # other ways in
    "<iframe src=https://evil.example></iframe>",
    "<object data=https://evil.example></object><embed src=x>",
    "<form action=https://evil.example><input name=x><button>go</button></form>",
    "<meta http-equiv=refresh content='0;url=https://evil.example'>",
    "<base href=https://evil.example/>",
    "<link rel=stylesheet href=https://evil.example/x.css>",
    "```\n</code></pre><script>alert(1)</script>\n```",
    "```html onload=alert(1)\n<b>x</b>\n```",
    '```"><script>alert(1)</script>\nx\n```',
    "`<script>alert(1)</script>`",
    "<sc<script>ript>alert(1)</sc</script>ript>",
]

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "li",
    "em", "strong", "s", "del", "code", "pre", "a", "span", "div", "button",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"href", "title", "class", "rel", "start", "type", "id", "hx-swap-oob"}


def assert_inert(html: str) -> None:
    soup = BeautifulSoup(html, "html.parser")
    assert not soup.find_all(string=lambda s: isinstance(s, Comment)), html
    for element in soup.find_all(True):
        assert isinstance(element, Tag)
        assert element.name in ALLOWED_TAGS, (element.name, html)
        for name, value in element.attrs.items():
            assert name in ALLOWED_ATTRIBUTES, (name, html)
            if name == "href":
                assert str(value).lower().startswith(("https:", "http:", "mailto:")), html
            if name in ("id", "hx-swap-oob"):
                # Only chatapp's own markup carries these, never anything from the text.
                assert str(value).startswith(
                    (
                        "m-1-",
                        "innerHTML:#m-1-",
                        "beforeend:#m-1-",
                        "beforebegin:#m-1-",
                        "delete:#m-1-",
                    )
                ), html
            if name == "type":
                assert value == "button"


@pytest.mark.parametrize("source", HOSTILE)
def test_nothing_becomes_live_markup(source: str) -> None:
    assert_inert(render_answer(source))


@pytest.mark.parametrize("source", HOSTILE)
@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_nothing_becomes_live_markup_when_streamed(source: str, chunk: int) -> None:
    """Tags broken across chunks: every swap sent on the way, and the end, stay inert."""
    renderer = LiveMarkdown(1)
    for start in range(0, len(source), chunk):
        assert_inert(renderer.feed(source[start : start + chunk]))
        assert_inert(renderer.html())
    assert_inert(renderer.finish())
    assert_inert(renderer.finished_html())


def test_hostile_text_is_still_shown_as_text() -> None:
    html = render_answer("<script>alert(1)</script>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
