"""In Chromium: Alice shares a conversation, Bob opens the link, sees it read-only, continues it
in his own chats, and asks a question there whose request carries the history."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .browser import ARTIFACTS, RemoteBrowser, started_browser
from .server import app_server
from .test_attachments import png

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

PACE = Pace(first_token_seconds=(0.1, 0.1), tokens_per_second=(400.0, 400.0), ping_seconds=1.0)

# The text of the `count`th answer once it is complete.
ANSWERED = """(count) => {
  const articles = document.querySelectorAll('article[data-role="assistant"]');
  const last = articles[count - 1];
  return articles.length === count && last.dataset.status === "complete"
    ? last.querySelector("[data-content]").textContent : null;
}"""

ANSWER = (
    "Here is the plan:\n\n1. **Measure** the queue.\n2. Cut the batch size.\n\n"
    "```python\nbatch = 50\n```\n"
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path) as remote:
        yield remote


def test_a_shared_conversation_is_read_and_continued_by_a_teammate(
    tmp_path: Path, browser: RemoteBrowser
) -> None:
    upstream = FakeUpstream(PACE)
    upstream.start()
    picture = tmp_path / "queue.png"
    picture.write_bytes(png(120, 80, "teal"))
    upstream.push(Scenario(text=ANSWER, thinking="The queue is the bottleneck."))
    upstream.push(Scenario(text="Start with **25**, then measure again."))
    try:
        with app_server(tmp_path, upstream=upstream) as server:
            browser.open("alice", server.url + "/", user="alice")
            browser.choose_files("alice", "input[aria-label='Attach files']", [str(picture)])
            browser.wait_for(
                "alice", "() => document.querySelector('#attachments input[name=attachment]')"
            )
            browser.send("alice", "How do we drain the queue faster?")
            assert "Measure" in browser.wait_for("alice", ANSWERED, 1)
            browser.click("alice", "#chat-actions button:text-is('Share')")
            link = browser.wait_for(
                "alice", "() => document.getElementById('share-link')?.value || null"
            )
            assert "/shared/" in link

            browser.open("bob", link, user="bob", viewport=(1280, 900))
            seen = browser.wait_for(
                "bob",
                """() => {
                  const title = document.getElementById("shared-title");
                  return title && {
                    title: title.textContent,
                    byline: document.querySelector(".shared__byline").textContent,
                    answer: document.querySelector('article[data-role="assistant"] strong')
                      ?.textContent,
                    image: document.querySelector(".attachments img")?.naturalWidth,
                    thinkingOpen: document.querySelector("details.thinking").open,
                    composer: !!document.getElementById("message-input"),
                    buttons: Array.from(document.querySelectorAll("button"), (b) => b.textContent),
                  };
                }""",
            )
            assert seen["title"] == "How do we drain the queue faster?"
            assert "Shared by alice" in " ".join(seen["byline"].split())
            assert seen["answer"] == "Measure" and seen["image"] == 120
            assert seen["thinkingOpen"] is False and seen["composer"] is False
            assert "Continue in my chats" in seen["buttons"]
            assert not [b for b in seen["buttons"] if b in ("Stop", "Retry", "Delete", "Send")]
            browser.screenshot("bob", str(ARTIFACTS / "shared-1280.png"))
            browser.resize("bob", 390, 844)
            browser.screenshot("bob", str(ARTIFACTS / "shared-390.png"))
            overflow = browser.evaluate(
                "bob", "() => document.documentElement.scrollWidth > window.innerWidth"
            )
            assert overflow is False
            browser.resize("bob", 1280, 900)

            browser.click("bob", "button:text-is('Continue in my chats')")
            copied = browser.wait_for(
                "bob",
                """() => location.pathname.startsWith("/conversations/")
                      && document.readyState === "complete" && window.htmx
                      && document.getElementById("chat-title").textContent""",
            )
            assert copied == "How do we drain the queue faster?"
            browser.send("bob", "What batch size first?")
            assert "25" in browser.wait_for("bob", ANSWERED, 2)
            browser.screenshot("bob", str(ARTIFACTS / "shared-continued.png"))
            for page in ("alice", "bob"):
                errors = browser.errors(page)
                assert errors == [], "\n".join(e["text"] for e in errors)
        asked = upstream.requests[-1]["messages"]
        assert [m["role"] for m in asked] == ["user", "assistant", "user"]
        assert [b["type"] for b in asked[0]["content"]][0] == "image"
        assert "Measure" in str(asked[1]["content"])
        assert asked[2]["content"][-1]["text"] == "What batch size first?"
    finally:
        upstream.stop()
