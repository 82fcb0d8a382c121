"""Answers in a real Chromium when things go wrong around them: cut connections, a second page
on the same conversation, Stop, a reload mid-answer, Retry after a failure.

One gunicorn server (gevent worker) and one fake upstream serve the whole module; Chromium runs
in its own plain Python process (tests/browser.py) and is driven one step at a time, so the test
can act between steps: cut every connection through a `FaultProxy`, read what the fake upstream
was asked, look in the database. Each page records every text and status its answers showed
(tests/browser.py RECORDER), and the tests judge that record: an answer on screen only ever
grows, each step is a prefix of the final text (no gap, no duplicate), and the page ends with
exactly the rendering of what was stored. The answers here are plain paragraphs, whose text
on screen grows as a prefix of the final text while their markdown is rendered.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bs4 import BeautifulSoup

from chatapp.llm.demo import FakeUpstream, Pace, Scenario, ToolUse
from chatapp.render import anchors, render_answer

from .browser import RemoteBrowser, started_browser
from .fault_proxy import FaultProxy
from .server import AppServer, app_server

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

# ~60 tokens/s (~240 characters/s): an answer of ~1,300 characters takes about 5.5 s.
PACE = Pace(first_token_seconds=(0.3, 0.3), tokens_per_second=(60.0, 60.0), ping_seconds=1.0)
# For answers that only need to be there.
QUICK = Pace(first_token_seconds=(0.1, 0.1), tokens_per_second=(400.0, 400.0), ping_seconds=1.0)
# Slow enough that Stop always lands mid-answer.
SLOW = Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(25.0, 25.0), ping_seconds=1.0)


def answer_text(name: str, parts: int) -> str:
    """An answer of about 150 characters a part; every part differs, so a repeated or missing
    piece cannot go unnoticed. Markup that must stay text, non-ASCII, every kind of line end."""
    return "".join(
        f"{name}, part {n}: <b>not bold</b> & <i>stays text</i>; naïve café — 日本語 🌍 Ω≈ç√.\r\n"
        f"    Part {n} keeps its indent, and a lone CR\rcomes before this.\n\n"
        for n in range(1, parts + 1)
    )


def shown(markdown: str) -> str:
    """The text a page shows for an answer whose markdown is `markdown`."""
    return BeautifulSoup(render_answer(markdown), "html.parser").get_text()


# -- fixtures: one server, one upstream, one browser for the module ---------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(PACE, seed=3)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[AppServer]:
    # A short heartbeat lets the server notice closed pages quickly, so its stop is quick; no
    # SDK retries, so an upstream error fails the answer at once (the Retry test needs that).
    env = {"CHATAPP_HEARTBEAT_SECONDS": "1", "CHATAPP_UPSTREAM_MAX_RETRIES": "0"}
    with app_server(tmp_path_factory.mktemp("live"), upstream=fake, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, server: AppServer) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path_factory.mktemp("browser")) as remote:
        yield remote


@pytest.fixture
def pages(browser: RemoteBrowser) -> Iterator[list[str]]:
    """Names of the pages a test opened; they are closed after it, with their streams."""
    opened: list[str] = []
    yield opened
    for name in opened:
        browser.close_page(name)


# -- what the page shows ------------------------------------------------------------------------

# The DOM id of the page's newest answer, once it is not `before`.
NEWEST_ANSWER = """
(before) => {
  const articles = document.querySelectorAll('article[data-role="assistant"]');
  const article = articles[articles.length - 1];
  return article && article.id !== before ? article.id : null;
}
"""

# The answer `id` once it has at least `length` characters (and `status`, if given).
ANSWER_STATE = """
([id, length, status]) => {
  const article = document.getElementById(id);
  const content = article && article.querySelector("[data-content]");
  if (!content) return null;
  if (status && article.dataset.status !== status) return null;
  if (content.textContent.length < length) return null;
  return { status: article.dataset.status, text: content.textContent };
}
"""

MESSAGES = """
() => Array.from(document.querySelectorAll("#messages article"), (article) => ({
  id: article.id,
  role: article.dataset.role,
  status: article.dataset.status,
  text: article.querySelector("[data-content]").textContent,
}))
"""


def wait_for_answer(
    browser: RemoteBrowser,
    page: str,
    answer: str,
    *,
    length: int = 0,
    status: str | None = None,
    timeout: float = 20.0,
) -> dict[str, str]:
    """Wait until the page shows the answer with `length` characters (and `status`)."""
    state: dict[str, str] = browser.wait_for(
        page, ANSWER_STATE, [answer, length, status], timeout=timeout
    )
    return state


def new_answer(browser: RemoteBrowser, page: str, before: str | None = None) -> str:
    """The DOM id of the newest answer on the page, once it is not `before`."""
    answer: str = browser.wait_for(page, NEWEST_ANSWER, before)
    return answer


def seen(browser: RemoteBrowser, page: str, answer: str) -> list[dict[str, str]]:
    """Every distinct (text, status) the page showed for the answer since its document loaded."""
    samples: list[dict[str, str]] = browser.evaluate(
        page, "(id) => (window.__answers || {})[id] || []", answer
    )
    return samples


def assert_grew_to(samples: list[dict[str, str]], final: str) -> None:
    """Every text shown was a prefix of the final text, each one longer than the last.

    (Trailing white space aside: the block being written ends a line the next block starts.)
    """
    assert samples, "the page never showed the answer"
    lengths = [len(s["text"].rstrip()) for s in samples]
    assert lengths == sorted(lengths), f"the text on screen shrank: {lengths}"
    for sample in samples:
        if not final.startswith(sample["text"].rstrip()):
            pytest.fail(
                "the page showed a text that is not a prefix of the answer (a gap or a "
                f"repeated piece): {_first_difference(sample['text'], final)}"
            )


def _first_difference(shown: str, final: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(shown, final, strict=False)) if a != b), len(final))
    around = slice(max(at - 40, 0), at + 40)
    return f"at {at}: shown {shown[around]!r}, answer {final[around]!r}"


def streaming_lengths(samples: list[dict[str, str]]) -> set[int]:
    return {len(s["text"]) for s in samples if s["status"] == "streaming" and s["text"]}


# A failed EventSource as reported on the console: by Chromium, and by htmx (which logs the
# `htmx:sseError` of the SSE extension, whose error is the EventSource's plain `error` Event).
_CUT_CONNECTION = re.compile(r"net::ERR_|^\[object Event\]$")


def page_failures(browser: RemoteBrowser, page: str, *, cuts_expected: bool = False) -> list[str]:
    """Uncaught errors and console errors; with `cuts_expected`, less the reports of event
    streams whose connection failed, which a test that cuts connections causes on purpose."""
    return [
        e["text"]
        for e in browser.errors(page)
        if not (cuts_expected and e["kind"] == "console" and _CUT_CONNECTION.search(e["text"]))
    ]


def message_number(dom_id: str) -> int:
    return anchors.message_of(dom_id)


def stored(server: AppServer, message_id: int) -> tuple[str, str, str | None]:
    """(status, content, error) of a message as the server stored it."""
    rows = server.rows("SELECT status, content, error FROM message WHERE id = :id", id=message_id)
    assert rows, f"message {message_id} is not stored"
    return rows[0][0], rows[0][1], rows[0][2]


def stored_conversation(server: AppServer, conversation_id: int) -> list[dict[str, str]]:
    """The conversation's messages as a page lists them."""
    rows = server.rows(
        "SELECT id, role, status, content FROM message WHERE conversation_id = :id ORDER BY id",
        id=conversation_id,
    )
    return [
        {
            "id": anchors.article(r[0]),
            "role": r[1],
            "status": r[2],
            "text": shown(r[3]) if r[1] == "assistant" else r[3],
        }
        for r in rows
    ]


def eventually(check: Any, timeout: float = 5.0) -> Any:
    """Poll `check()` until it returns something truthy (cooperatively: the hub keeps serving)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


# -- the tests ----------------------------------------------------------------------------------


def test_an_answer_resumes_exactly_after_every_connection_is_cut(
    server: AppServer, fake: FakeUpstream, browser: RemoteBrowser, pages: list[str]
) -> None:
    text = answer_text("Resume", 9)  # ~1,350 characters: ~5.5 s at PACE
    asked = len(fake.requests)
    fake.push(Scenario(text=text, pace=PACE))
    proxy = FaultProxy(server.url)
    url = proxy.start()
    try:
        pages.append("cut")
        browser.open("cut", url + "/")
        browser.send("cut", "Keep going through the cuts")
        answer = new_answer(browser, "cut")
        cuts = []
        # Cut everything (the answer's stream, the conversation's stream, idle keep-alives)
        # three times while the answer is written; each cut waits for the page to have caught up
        # past the last one, so every cut hits a live, resumed stream.
        for share in (0.2, 0.4, 0.6):
            now = wait_for_answer(browser, "cut", answer, length=int(len(text) * share))
            cuts.append((now["status"], proxy.sever()))
        final = wait_for_answer(browser, "cut", answer, status="complete", timeout=30)
        samples = seen(browser, "cut", answer)
        opened = browser.evaluate("cut", "() => window.__sseOpened")
        failures = page_failures(browser, "cut", cuts_expected=True)
    finally:
        proxy.stop()

    # Each cut came mid-answer and took down at least the answer's own stream.
    assert [status for status, _ in cuts] == ["streaming"] * 3, cuts
    assert all(count >= 1 for _, count in cuts), cuts
    # ... which the browser opened again after each one (native reconnect or a new EventSource).
    stream_opens = [u for u in opened if re.fullmatch(r"/messages/\d+/stream(\?.*)?", u)]
    assert len(stream_opens) >= 4, opened

    # The page ends with exactly the answer, as stored, and showed no gap and no duplicate on
    # the way: every text it showed was a prefix of the answer, each longer than the last.
    assert final == {"status": "complete", "text": shown(text)}
    assert stored(server, message_number(answer)) == ("complete", text, None)
    assert_grew_to(samples, shown(text))
    assert len(streaming_lengths(samples)) >= 5, samples

    # Resuming never asked the model again.
    assert len(fake.requests) - asked == 1
    assert failures == []


def test_a_second_page_of_the_conversation_shows_the_new_answer_live(
    server: AppServer, fake: FakeUpstream, browser: RemoteBrowser, pages: list[str]
) -> None:
    first, second = answer_text("First", 2), answer_text("Second", 8)
    asked = len(fake.requests)
    fake.push(Scenario(text=first, pace=QUICK), Scenario(text=second, pace=PACE))

    pages.extend(["a", "b"])
    browser.open("a", server.url + "/")
    browser.send("a", "The first question")
    first_answer = new_answer(browser, "a")
    wait_for_answer(browser, "a", first_answer, status="complete")
    path = browser.evaluate("a", "() => location.pathname")
    assert re.fullmatch(r"/conversations/\d+", path), path

    # Page B opens the conversation and is listening on it before A asks again.
    browser.open("b", server.url + path)
    browser.wait_for(
        "b", '(url) => window.__sseOpened.some((u) => u.split("?")[0] === url)', path + "/events"
    )
    browser.send("a", "The second question")
    second_answer = new_answer(browser, "a", before=first_answer)

    # B shows the new exchange without a reload and streams the answer into it.
    on_b = wait_for_answer(browser, "b", second_answer, status="complete", timeout=30)
    on_a = wait_for_answer(browser, "a", second_answer, status="complete", timeout=30)
    b_samples = seen(browser, "b", second_answer)
    a_samples = seen(browser, "a", second_answer)

    assert on_a == on_b == {"status": "complete", "text": shown(second)}
    a_messages = browser.evaluate("a", MESSAGES)
    b_messages = browser.evaluate("b", MESSAGES)
    assert a_messages == b_messages
    assert [(m["role"], m["status"], m["text"]) for m in b_messages] == [
        ("user", "complete", "The first question"),
        ("assistant", "complete", shown(first)),
        ("user", "complete", "The second question"),
        ("assistant", "complete", shown(second)),
    ]
    conversation_id = int(path.rsplit("/", 1)[1])
    assert b_messages == stored_conversation(server, conversation_id)

    # B watched it being written, not just its end.
    assert_grew_to(b_samples, shown(second))
    assert len(streaming_lengths(b_samples)) >= 5, b_samples
    assert_grew_to(a_samples, shown(second))

    assert len(fake.requests) - asked == 2
    assert page_failures(browser, "a") == []
    assert page_failures(browser, "b") == []


def test_stop_keeps_the_text_so_far_and_closes_the_upstream_request(
    server: AppServer, fake: FakeUpstream, browser: RemoteBrowser, pages: list[str]
) -> None:
    text = answer_text("Long", 30)  # ~4,500 characters: ~45 s at SLOW, never reached
    asked, closed = len(fake.requests), len(fake.disconnects)
    fake.push(Scenario(text=text, pace=SLOW))

    pages.append("stop")
    browser.open("stop", server.url + "/")
    browser.send("stop", "Say a lot, slowly")
    answer = new_answer(browser, "stop")
    wait_for_answer(browser, "stop", answer, length=120, status="streaming")
    browser.click("stop", f'#{answer} button:text-is("Stop")')
    final = wait_for_answer(browser, "stop", answer, status="cancelled", timeout=10)

    # The text so far stays: what was written, as stored, and only that.
    status, kept, error = stored(server, message_number(answer))
    assert (status, error) == ("cancelled", None)
    assert kept, "the text written before Stop is gone"
    assert text.startswith(kept) and len(kept) < len(text)
    assert final["text"] == shown(kept)
    assert_grew_to(seen(browser, "stop", answer), shown(kept))
    # A stopped last answer offers Retry; the Stop button is gone.
    buttons = browser.evaluate(
        "stop",
        "(id) => Array.from(document.querySelectorAll(`#${id} button`),"
        " (b) => b.textContent.trim())",
        answer,
    )
    assert "Retry" in buttons and "Stop" not in buttons, buttons

    # Stop closed the request to the API (so billing stops), and asked nothing more.
    assert eventually(lambda: len(fake.disconnects) > closed), "the upstream request stayed open"
    assert len(fake.requests) - asked == 1
    assert page_failures(browser, "stop") == []


def test_a_reload_mid_answer_shows_the_text_so_far_and_goes_on_live(
    server: AppServer, fake: FakeUpstream, browser: RemoteBrowser, pages: list[str]
) -> None:
    text = answer_text("Reload", 9)
    asked = len(fake.requests)
    fake.push(Scenario(text=text, pace=PACE))

    pages.append("reload")
    browser.open("reload", server.url + "/")
    browser.send("reload", "Survive a reload")
    answer = new_answer(browser, "reload")
    before = wait_for_answer(browser, "reload", answer, length=len(text) // 3)
    assert before["status"] == "streaming"
    browser.reload("reload")
    # The page records from the start of each document: these are what it showed after the reload.
    final = wait_for_answer(browser, "reload", answer, status="complete", timeout=30)
    samples = seen(browser, "reload", answer)

    # The reloaded page came with the text so far (at least what it showed before), still
    # being written, and then went on growing live to the exact end.
    loaded = browser.evaluate("reload", "(id) => window.__loaded[id]", answer)
    assert loaded["status"] == "streaming", loaded
    assert loaded["text"].startswith(before["text"].rstrip()), (loaded["text"], before["text"])
    assert final == {"status": "complete", "text": shown(text)}
    assert_grew_to(samples, shown(text))
    live = {len(s["text"]) for s in samples if len(s["text"]) > len(loaded["text"])}
    assert len(live) >= 3, samples
    assert stored(server, message_number(answer)) == ("complete", text, None)
    assert len(fake.requests) - asked == 1
    assert page_failures(browser, "reload") == []


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(Scenario(status=529), id="overloaded"),
        pytest.param(
            Scenario(text=answer_text("Broken", 4), error_after=300, pace=QUICK),
            id="error-mid-answer",
        ),
    ],
)
def test_retry_writes_a_failed_answer_again_in_place(
    server: AppServer,
    fake: FakeUpstream,
    browser: RemoteBrowser,
    pages: list[str],
    failure: Scenario,
) -> None:
    text = answer_text("Retried", 5)
    asked = len(fake.requests)
    fake.push(failure, Scenario(text=text, pace=PACE))

    pages.append("retry")
    browser.open("retry", server.url + "/")
    browser.send("retry", "Try, then try again")
    answer = new_answer(browser, "retry")
    failed = wait_for_answer(browser, "retry", answer, status="failed")
    status, content, error = stored(server, message_number(answer))
    assert (status, shown(content)) == ("failed", failed["text"]) and error
    alert = browser.evaluate(
        "retry", "(id) => document.querySelector(`#${id} [role=alert]`)?.textContent", answer
    )
    assert alert, "a failed answer says what went wrong"
    shown_before = len(seen(browser, "retry", answer))

    browser.click("retry", f'#{answer} button:text-is("Retry")')
    final = wait_for_answer(browser, "retry", answer, status="complete", timeout=30)
    # Only what the page showed after Retry was pressed (the first sample may be the failed one).
    samples = seen(browser, "retry", answer)[shown_before:]

    # The same article, written again from the start: no trace of the failure, the new text.
    assert final == {"status": "complete", "text": shown(text)}
    assert stored(server, message_number(answer)) == ("complete", text, None)
    messages = browser.evaluate("retry", MESSAGES)
    assert [(m["id"], m["role"]) for m in messages][-1] == (answer, "assistant")
    assert len(messages) == 2
    assert (
        browser.evaluate("retry", "(id) => document.querySelector(`#${id} [role=alert]`)", answer)
        is None
    )
    assert_grew_to(samples, shown(text))
    assert len(streaming_lengths(samples)) >= 3, samples
    assert len(fake.requests) - asked == 2
    assert page_failures(browser, "retry") == []


# -- known gaps: each test says what a user should see, and fails until the app does it ---------


def test_a_page_whose_connection_was_cut_still_gets_news_sent_meanwhile(
    server: AppServer, fake: FakeUpstream, browser: RemoteBrowser, pages: list[str]
) -> None:
    first, second = answer_text("Before", 1), answer_text("Meanwhile", 2)
    fake.push(Scenario(text=first, pace=QUICK), Scenario(text=second, pace=QUICK))
    proxy = FaultProxy(server.url)
    url = proxy.start()
    try:
        pages.extend(["direct", "cut-off"])
        browser.open("direct", server.url + "/")
        browser.send("direct", "First")
        first_answer = new_answer(browser, "direct")
        wait_for_answer(browser, "direct", first_answer, status="complete")
        path = browser.evaluate("direct", "() => location.pathname")
        events = path + "/events"
        browser.open("cut-off", url + path)
        browser.wait_for(
            "cut-off", '(url) => window.__sseOpened.some((u) => u.split("?")[0] === url)', events
        )
        assert proxy.sever() >= 1
        # The other page asks while this one waits the `retry:` second to reconnect.
        browser.send("direct", "Second")
        second_answer = new_answer(browser, "direct", before=first_answer)
        reopened = browser.evaluate(
            "cut-off",
            '(url) => window.__sseOpened.filter((u) => u.split("?")[0] === url).length',
            events,
        )
        if reopened > 1:
            pytest.skip("the page reconnected before the other page's send; no news was missed")
        wait_for_answer(browser, "direct", second_answer, status="complete")
        on_cut_off = wait_for_answer(
            browser, "cut-off", second_answer, status="complete", timeout=5
        )
    finally:
        proxy.stop()
    assert on_cut_off["text"] == shown(second)


def test_the_page_that_started_a_conversation_gets_news_from_other_pages(
    server: AppServer, fake: FakeUpstream, browser: RemoteBrowser, pages: list[str]
) -> None:
    first, second = answer_text("Started", 1), answer_text("Elsewhere", 2)
    fake.push(Scenario(text=first, pace=QUICK), Scenario(text=second, pace=QUICK))
    pages.extend(["starter", "other"])
    browser.open("starter", server.url + "/")
    browser.send("starter", "First")
    first_answer = new_answer(browser, "starter")
    wait_for_answer(browser, "starter", first_answer, status="complete")
    path = browser.evaluate("starter", "() => location.pathname")
    browser.open("other", server.url + path)
    browser.wait_for(
        "other",
        '(url) => window.__sseOpened.some((u) => u.split("?")[0] === url)',
        path + "/events",
    )
    browser.send("other", "Second")
    second_answer = new_answer(browser, "other", before=first_answer)
    wait_for_answer(browser, "other", second_answer, status="complete")
    on_starter = wait_for_answer(browser, "starter", second_answer, status="complete", timeout=5)
    assert on_starter["text"] == shown(second)


# -- the connection check -------------------------------------------------------------------------

CHECK_VERDICT = """
() => {
  const text = document.getElementById("check-status").textContent;
  return text.startsWith("Running") || text.startsWith("Not run") ? null : text;
}
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [("direct", "on time"), ("buffering", "Buffering"), ("cut", "was cut")],
)
def test_the_connection_check_says_what_the_path_does_to_streams(
    server: AppServer, browser: RemoteBrowser, pages: list[str], path: str, expected: str
) -> None:
    proxy = None
    url = server.url
    if path != "direct":
        proxy = FaultProxy(server.url, buffer_seconds=4.0 if path == "buffering" else 0.0)
        url = proxy.start()
    try:
        pages.append("check")
        browser.open("check", url + "/connection-check")
        browser.click("check", 'button[data-check="quick"]')
        if proxy is not None and path == "cut":
            browser.wait_for(
                "check", "() => document.querySelectorAll('#check-log li').length >= 4"
            )
            proxy.sever()
        verdict = browser.wait_for("check", CHECK_VERDICT, timeout=40)
    finally:
        if proxy is not None:
            proxy.stop()
    assert expected in verdict


# -- staying with the newest text -------------------------------------------------------------

OVERFLOWING = """
() => {
  const el = document.getElementById("scroller");
  return el.scrollHeight > el.clientHeight + 200 ? true : null;
}
"""

AT_BOTTOM = """
() => {
  const el = document.getElementById("scroller");
  return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
}
"""


def test_the_view_follows_the_answer_unless_the_reader_scrolled_up(
    server: AppServer, fake: FakeUpstream, browser: RemoteBrowser, pages: list[str]
) -> None:
    text = "\n\n".join(answer_text("Tall", 1) for _ in range(30))  # taller than the window
    fake.push(
        Scenario(text=text, pace=Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(150, 150)))
    )
    pages.append("scroll")
    browser.open("scroll", server.url + "/")
    browser.send("scroll", "Write something tall")
    answer = new_answer(browser, "scroll")
    # Once it streams past the bottom of the window, the view stays pinned to the end.
    browser.wait_for("scroll", OVERFLOWING)
    wait_for_answer(browser, "scroll", answer, length=len(text) // 3)
    assert browser.evaluate("scroll", AT_BOTTOM)
    # A reader who scrolls up to read stays where they are while the text goes on growing.
    browser.evaluate(
        "scroll",
        "() => { const el = document.getElementById('scroller'); el.scrollTop = 0;"
        " el.dispatchEvent(new Event('scroll')); }",
    )
    wait_for_answer(browser, "scroll", answer, length=2 * len(text) // 3)
    assert browser.evaluate("scroll", "() => document.getElementById('scroller').scrollTop") == 0
    wait_for_answer(browser, "scroll", answer, status="complete", timeout=40)
    assert page_failures(browser, "scroll") == []


def test_a_send_that_cannot_reach_the_server_says_so_and_keeps_the_text(
    server: AppServer, browser: RemoteBrowser, pages: list[str]
) -> None:
    proxy = FaultProxy(server.url)
    url = proxy.start()
    pages.append("offline")
    browser.open("offline", url + "/")
    proxy.stop()  # the network goes away after the page has loaded
    browser.send("offline", "Will this arrive?")
    notice = browser.wait_for(
        "offline",
        "() => { const t = document.getElementById('notice').textContent; return t || null; }",
    )
    assert "Could not reach chatapp" in notice
    box = browser.evaluate("offline", "() => document.getElementById('message-input').value")
    assert box == "Will this arrive?"


TOOL_BLOCK = """
(id) => {
  const article = document.getElementById(id);
  const block = article && article.querySelector(".tool");
  if (!block || article.dataset.status !== "complete") return null;
  if (article.querySelector(".htmx-added, .htmx-settling")) return null;  // htmx still settling
  const part = (name) => { const e = block.querySelector(name); return e && e.textContent; };
  return {
    classes: block.className, name: part(".tool__name"), status: part(".tool__status"),
    input: part(".tool__input"), result: part(".tool__result"),
    content: article.querySelector("[data-content]").innerHTML,
  };
}
"""


def test_a_tool_call_shows_as_a_block_between_the_prose(
    server: AppServer,
    fake: FakeUpstream,
    browser: RemoteBrowser,
    pages: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    fake.push(
        Scenario(
            text="Let me work that out.",
            tool_uses=[ToolUse("calculator", pieces=['{"expression"', ': "6 * 7"}'])],
            pace=QUICK,
        ),
        Scenario(text="Six times seven is **42**.", pace=QUICK),
    )
    pages.append("tools")
    browser.open("tools", server.url + "/")
    browser.click("tools", "#new-chat-options summary")
    browser.click("tools", 'input[name="tools"][value="calculator"]')
    browser.send("tools", "What is six times seven?")
    answer = new_answer(browser, "tools")
    block = browser.wait_for("tools", TOOL_BLOCK, answer)
    assert block["classes"] == "tool tool--done"
    assert block["name"] == "calculator" and block["input"] == '{"expression": "6 * 7"}'
    assert block["result"] == "42" and block["status"].endswith("ms")
    content = block["content"]
    assert content.index("Let me work that out.") < content.index("tool--done")
    assert content.index("tool--done") < content.index("<strong>42</strong>")
    browser.screenshot("tools", str(tmp_path_factory.mktemp("shots") / "tool-block.png"))

    browser.reload("tools")
    reloaded = browser.wait_for("tools", TOOL_BLOCK, answer)
    assert reloaded["content"] == content
    assert page_failures(browser, "tools") == []
