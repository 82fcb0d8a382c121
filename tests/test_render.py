"""Markdown rendering: what it makes, that streaming it converges, and that nothing goes live."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it.common.utils import escapeHtml

from chatapp.render import anchors, markdown
from chatapp.render.live import LiveMarkdown, render_answer, render_streaming
from chatapp.tools import record

from .dom import Document, normalized

MESSAGE = 7


def stream(text: str, cuts: list[int]) -> Document:
    """Apply what streaming `text` in pieces ending at `cuts` sends, to a fresh page."""
    page = Document(f'<div id="{anchors.content(MESSAGE)}">{render_streaming(MESSAGE, "")}</div>')
    renderer = LiveMarkdown(MESSAGE)
    start = 0
    for end in sorted(set(cuts)) + [len(text)]:
        if end > start:
            page.apply(renderer.feed(text[start:end]))
            start = end
    page.apply(renderer.finish())
    return page


def shown(page: Document) -> str:
    return page.inner_html(anchors.content(MESSAGE))


# -- what it makes ---------------------------------------------------------------------------


def test_commonmark_with_tables_and_strikethrough() -> None:
    html = render_answer("# Title\n\n*a* **b** ~~c~~ `d`\n\n| x | y |\n|:-|-:|\n| 1 | 2 |\n")
    assert "<h1>Title</h1>" in html
    assert "<em>a</em> <strong>b</strong> <s>c</s> <code>d</code>" in html
    assert '<th class="align-left">x</th>' in html and '<td class="align-right">2</td>' in html
    assert "style" not in html


def test_fenced_code_is_highlighted_in_a_frame_with_copy() -> None:
    html = render_answer("```python\ndef f():\n    return 1\n```\n")
    assert '<span class="code__lang">python</span>' in html
    assert '<button type="button" class="code__copy">Copy</button>' in html
    assert '<span class="k">def</span>' in html


def test_unknown_language_is_plain_escaped_code() -> None:
    html = render_answer("```nosuchlanguage\n<b>x</b>\n```\n")
    assert "<code>&lt;b&gt;x&lt;/b&gt;\n</code>" in html


def test_links_get_rel_and_only_web_and_mail_schemes() -> None:
    html = render_answer(
        "[a](https://example.com) [b](mailto:x@example.com) [c](ftp://x) [d](/relative) "
        "[e](javascript:alert(1)) <https://auto.example>"
    )
    assert html.count('rel="noopener noreferrer nofollow"') == 3
    assert 'href="https://example.com"' in html and 'href="mailto:x@example.com"' in html
    assert "[c](ftp://x)" in html and "[d](/relative)" in html
    assert "href" not in html.replace('href="https://example.com"', "").replace(
        'href="mailto:x@example.com"', ""
    ).replace('href="https://auto.example"', "")


def test_images_are_links_and_never_loaded() -> None:
    html = render_answer("![a cat](https://example.com/cat.png)")
    assert "<img" not in html
    assert '<a class="image-link" href="https://example.com/cat.png"' in html
    assert "Image: a cat" in html


def test_an_open_fence_streams_as_a_code_block() -> None:
    renderer = LiveMarkdown(MESSAGE)
    renderer.feed("Here:\n\n```python\nprint(1)\n")
    shown_now = renderer.html()
    assert '<code id="m-7-code">print(1)\n</code>' in shown_now
    swaps = renderer.feed("print(2)\n")
    # Only the new text is sent, appended to the code element.
    assert swaps == '<div hx-swap-oob="beforeend:#m-7-code">print(2)\n</div>'


def test_a_line_that_may_close_the_fence_waits_for_its_end() -> None:
    renderer = LiveMarkdown(MESSAGE)
    renderer.feed("```\nx\n")
    assert renderer.feed("``") == ""  # maybe the closing fence: not shown as code
    closing = renderer.feed("`\n\nafter")
    assert "after" in closing and "m-7-code" not in closing.split("beforebegin")[0]


def test_finished_blocks_are_rendered_once_and_only_the_tail_again() -> None:
    renderer = LiveMarkdown(MESSAGE)
    renderer.feed("First paragraph.\n\nSecond\n")
    assert renderer.blocks == ["<p>First paragraph.</p>\n"]
    swaps = renderer.feed("paragraph grows")
    assert swaps == '<div hx-swap-oob="innerHTML:#m-7-tail"><p>Second\nparagraph grows</p>\n</div>'


def test_a_block_is_not_finished_by_a_line_still_being_written() -> None:
    # "#" alone would start a heading, "#x" does not: the paragraph must wait for the line.
    assert render_answer("para\n#x") == "<p>para\n#x</p>\n"
    page = stream("para\n#x", [6])
    assert shown(page) == normalized("<p>para\n#x</p>\n")


# -- convergence -----------------------------------------------------------------------------

WORDS = st.sampled_from(["alpha", "beta", "x", "`y`", "*z*", "**w**", "~~v~~", "<b>", "&amp;"])
INLINE = st.lists(WORDS, min_size=1, max_size=6).map(" ".join)
BLOCKS = st.one_of(
    INLINE,
    INLINE.map(lambda w: f"# {w}"),
    INLINE.map(lambda w: f"{w}\n==="),
    INLINE.map(lambda w: f"{w}\n---"),
    st.lists(INLINE, min_size=1, max_size=4).map(lambda ws: "\n".join(f"- {w}" for w in ws)),
    st.lists(INLINE, min_size=1, max_size=4).map(
        lambda ws: "\n\n".join(f"{i + 1}. {w}" for i, w in enumerate(ws))
    ),
    INLINE.map(lambda w: f"> {w}\n{w}"),
    INLINE.map(lambda w: f"```python\nx = '{w}'\n```"),
    INLINE.map(lambda w: f"~~~\n{w}\n``\n"),
    INLINE.map(lambda w: f"    code {w}"),
    INLINE.map(lambda w: f"| a | b |\n|---|:-:|\n| {w} | 1 |"),
    INLINE.map(lambda w: f"[{w}](https://example.com/{len(w)}) ![{w}](http://i.example/a.png)"),
    st.just("***"),
    st.text(alphabet="ab #*-_`~>|[]()!:\n 1.\t\r=\\<", max_size=40),
)
SEPARATORS = st.sampled_from(["\n", "\n\n", "\n\n\n", " ", "", "\r\n", "\n  "])
# Tool calls between the prose (see chatapp.tools.record): whole, or cut anywhere.
JSONISH = st.text(alphabet='{}[]":, ab1<&>\r\n', max_size=20)
RECORDS = st.builds(
    lambda name, given, result, failed, cut: (
        record.opening("toolu_1", name)
        + given
        + record.input_done()
        + record.outcome(result, is_error=failed, ms=12)
    )[:cut],
    st.sampled_from(["calculator", "<b>x</b>", ""]),
    JSONISH,
    JSONISH,
    st.booleans(),
    st.integers(min_value=1, max_value=200),
)
# Server tools' calls and results, and citations, inline or between blocks, whole or cut.
SOURCES = st.fixed_dictionaries(
    {
        "title": st.sampled_from(["A page", "<b>x</b>", ""]),
        "url": st.sampled_from(["https://example.com/a", "javascript:alert(1)", ""]),
    }
)
CITATIONS = st.builds(
    lambda number, source, cut: record.citation(number, source, "cited")[:cut],
    st.integers(min_value=1, max_value=4),
    SOURCES,
    st.integers(min_value=1, max_value=200),
)
CITED = st.builds(lambda words, cite, more: words + cite + more, INLINE, CITATIONS, INLINE)
SERVER = st.builds(
    lambda name, query, failed, cut: (
        record.opening("srvtoolu_1", name, server=True)
        + query
        + record.server_call_done()
        + record.server_result(
            {"tool_use_id": "srvtoolu_1", "type": f"{name}_tool_result"}
            | (
                {"error": "unavailable"}
                if failed
                else {"results": [{"title": "<i>T</i>", "url": "https://example.com/"}]}
            )
        )
    )[:cut],
    st.sampled_from(["web_search", "web_fetch"]),
    JSONISH,
    st.booleans(),
    st.integers(min_value=1, max_value=300),
)
WITH_TOOLS = st.one_of(BLOCKS, RECORDS, CITED, CITATIONS, SERVER)


@st.composite
def answers(draw: st.DrawFn, blocks: st.SearchStrategy[str] = WITH_TOOLS) -> tuple[str, list[int]]:
    parts = draw(st.lists(st.tuples(blocks, SEPARATORS), min_size=1, max_size=8))
    text = "".join(block + separator for block, separator in parts)
    cuts = draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=30))
    return text, cuts


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
def test_streamed_html_equals_the_reloaded_page_for_any_chunking(
    answer: tuple[str, list[int]],
) -> None:
    text, cuts = answer
    assert shown(stream(text, cuts)) == normalized(render_answer(text, MESSAGE))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers(BLOCKS))
def test_block_by_block_equals_rendering_the_whole_text(answer: tuple[str, list[int]]) -> None:
    text, _ = answer
    assert render_answer(text) == markdown.render(text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers(), st.data())
def test_a_listener_that_joins_midway_converges_too(
    answer: tuple[str, list[int]], data: st.DataObject
) -> None:
    """A page rendered mid-answer, then reset to the live renderer's state, ends the same."""
    text, cuts = answer
    middle = data.draw(st.integers(min_value=0, max_value=len(text)))
    page = Document(
        f'<div id="{anchors.content(MESSAGE)}">{render_streaming(MESSAGE, text[:middle])}</div>'
    )
    renderer = LiveMarkdown(MESSAGE)
    start = 0
    for end in sorted({c for c in cuts if c < middle} | {middle}):
        renderer.feed(text[start:end])
        start = end
    page.apply(renderer.reset())
    page.apply(renderer.feed(text[start:]))
    page.apply(renderer.finish())
    assert shown(page) == normalized(render_answer(text, MESSAGE))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
def test_the_plain_line_shortcut_renders_as_markdown_it_and_nh3_do(line: str) -> None:
    assert markdown.render(line) == markdown.sanitize(markdown.parser.render(line))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcé日 .,;:'\"?()-/%$@+={}^1", max_size=60))
def test_the_plain_line_shortcut_on_prose(line: str) -> None:
    assert markdown.render(line) == markdown.sanitize(markdown.parser.render(line))


def test_a_closed_code_block_is_finished_at_once() -> None:
    renderer = LiveMarkdown(MESSAGE)
    renderer.feed("```python\nx = 1\n```\n")
    assert len(renderer.blocks) == 1 and "highlight" in renderer.blocks[0]
    # The paragraph after it is rendered on its own, without the code block again.
    swaps = renderer.feed("Then a paragraph")
    assert "highlight" not in swaps and "<p>Then a paragraph</p>" in swaps


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
def test_every_step_shows_what_rendering_that_much_text_at_once_shows(
    answer: tuple[str, list[int]],
) -> None:
    """Not only the end: each frame leaves the page as a page rendered from that text would be."""
    text, cuts = answer
    renderer = LiveMarkdown(MESSAGE)
    start = 0
    for end in sorted(set(cuts)) + [len(text)]:
        if end > start:
            renderer.feed(text[start:end])
            start = end
            assert renderer.html() == render_streaming(MESSAGE, text[:end])


def test_a_tool_call_ends_the_prose_before_it_and_streams_in_place() -> None:
    renderer = LiveMarkdown(MESSAGE)
    renderer.feed("Let me check:\n\n```python\nx = 1\n")
    swaps = renderer.feed(record.opening("toolu_1", "calculator") + '{"expr')
    # The open fence is finished as it stands, the tail emptied, the tool's block appended.
    assert "beforebegin:#m-7-tail" in swaps and "innerHTML:#m-7-tail" in swaps
    assert 'id="m-7-tool-0"' in swaps and "Preparing…" in swaps
    swaps = renderer.feed('ession": "1+1"}' + record.input_done())
    assert swaps.startswith('<div class="tool tool--running" id="m-7-tool-0" hx-swap-oob="true">')
    swaps = renderer.feed(record.outcome("2", is_error=False, ms=1500) + "So: 2.")
    assert "1.5 s" in swaps and '<pre class="tool__result">2</pre>' in swaps
    assert "<p>So: 2.</p>" in swaps
    renderer.finish()
    whole = renderer.finished_html()
    assert whole.index("highlight") < whole.index("m-7-tool-0") < whole.index("So: 2.")


def test_a_tool_call_left_open_when_the_answer_ends_says_so() -> None:
    text = "Wait.\n\n" + record.opening("toolu_1", "wait") + "{}" + record.input_done()
    assert "Running…" in render_streaming(MESSAGE, text)
    assert "Did not finish" in render_answer(text, MESSAGE)


PROSE = st.text(alphabet="ab *_`[]()!<>&\\~:;#.\n", max_size=50)


@settings(max_examples=500, deadline=None)
@given(PROSE, PROSE)
def test_a_settled_start_renders_the_same_alone(first: str, more: str) -> None:
    html, settled = markdown.inline(first)
    if settled:
        # What comes from the point on is plain text: the settled part's HTML is what is
        # left of the whole's when its escaped self is taken off the end.
        after = escapeHtml(first[settled:])
        assert html.endswith(after) and html[: -len(after)] == markdown.inline(first[:settled])[0]
        text = first + more
        alone = markdown.inline(first[:settled])[0] + markdown.inline(text[settled:])[0]
        assert alone == markdown.inline(text)[0]


def test_the_code_stylesheet_is_what_the_generator_writes() -> None:
    """static/code.css is generated; regenerate it with `python -m chatapp.render.code`."""
    from pathlib import Path

    from chatapp.render import code

    stylesheet = Path(__file__).parent.parent / "chatapp" / "static" / "code.css"
    assert stylesheet.read_text() == code.stylesheet()
    assert "@media (prefers-color-scheme: dark)" in code.stylesheet()


def test_a_worker_keeps_the_html_of_answers_it_showed_last_within_a_budget() -> None:
    from chatapp.render.kept import KeptAnswers

    kept = KeptAnswers(budget=30)
    kept.keep(1, "aaaa", "<p>aaaa</p>")  # 4 + 11 characters
    kept.keep(2, "bb", "<p>bb</p>")  # 2 + 9: 26 in all
    assert kept.get(1, "aaaa") == "<p>aaaa</p>"  # shown again: now the most recent
    assert kept.get(1, "aaab") is None  # the text changed (edited, written again)
    kept.keep(3, "c", "<p>c</p>")  # 1 + 8: over 30, so the least recently shown goes
    assert kept.get(2, "bb") is None
    assert kept.get(1, "aaaa") == "<p>aaaa</p>" and kept.get(3, "c") == "<p>c</p>"
    kept.keep(4, "d" * 40, "<p>…</p>")  # bigger than the whole budget: not kept
    assert kept.get(4, "d" * 40) is None and kept.get(3, "c") == "<p>c</p>"


def test_an_answer_shown_again_is_not_rendered_again() -> None:
    text = "A *kept* answer.\n\n- one\n- two\n"
    first = render_answer(text, 4242)
    assert render_answer(text, 4242) is first
