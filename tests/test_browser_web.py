"""In Chromium, in demo mode: switch on Web search, ask, watch the search block and then the
cited answer stream in, follow a citation marker to its source, reload and see the same answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chatapp.render import anchors

from .browser import ARTIFACTS, RemoteBrowser, started_browser
from .server import app_server

pytestmark = pytest.mark.slow  # a real server and a browser: not in `make test-fast`

NEWEST = """
() => {
  const articles = document.querySelectorAll('article[data-role="assistant"]');
  return articles[articles.length - 1] || null;
}
"""

# The search block while Claude searches: the answer still streams, the results not in yet.
SEARCHING = (
    "() => { const a = ("
    + NEWEST
    + """)();
  const block = a && a.dataset.status === "streaming" && a.querySelector(".tool--server");
  return block && block.classList.contains("tool--running")
    ? { id: a.id, said: block.querySelector(".tool__what").textContent } : null;
}"""
)

FINISHED = """
(id) => {
  const article = document.getElementById(id);
  if (!article || article.dataset.status !== "complete") return null;
  if (article.querySelector(".htmx-added, .htmx-settling")) return null;  // htmx still settling
  const content = article.querySelector("[data-content]");
  return {
    html: content.innerHTML,
    results: Array.from(article.querySelectorAll(".tool__results a"), (a) => a.href),
    markers: Array.from(article.querySelectorAll("sup.cite a"), (a) => a.getAttribute("href")),
    sources: Array.from(article.querySelectorAll(".sources__list li"), (li) => li.id),
  };
}
"""

# What the page showed of the answer while it streamed (tests/browser.py records it).
SEEN = "(id) => window.__answers[id] || []"

FOLLOWED = """
() => {
  const target = document.querySelector(":target");
  const link = target && target.querySelector("a");
  return target && link ? {
    hash: location.hash, id: target.id, href: link.href, rel: link.rel,
    text: link.textContent,
  } : null;
}
"""


LISTED = """
async () => (await (await fetch("/")).text()).includes("claude-3-haiku-20240307")
"""

CHOOSE = """
([selector, value]) => {
  const select = document.querySelector(selector);
  select.value = value;
  select.dispatchEvent(new Event("change", { bubbles: true }));
  return select.value;
}
"""

SERVER_TOOLS_NOTE = """
() => {
  const fields = document.getElementById("new-server-tools");
  const note = fields && fields.querySelector(".settings__note");
  return note && !fields.querySelector("input") ? note.textContent.trim() : null;
}
"""

SERVER_TOOLS_OFFERED = """
() => {
  const labels = document.querySelectorAll("#new-server-tools label");
  return labels.length ? Array.from(labels, (label) => label.textContent.trim()) : null;
}
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path) as remote:
        yield remote


def test_search_stream_cite_follow_and_reload(tmp_path: Path, browser: RemoteBrowser) -> None:
    with app_server(tmp_path, demo_first_token_seconds=0.3, demo_tokens_per_second=60.0) as server:
        browser.open("chat", server.url + "/")
        # The models come from the (demo) Models API in the background: wait for its list,
        # which has an old model without web search.
        browser.wait_for("chat", LISTED)
        browser.reload("chat")
        browser.click("chat", "#new-chat-options summary")
        # Choosing a model brings its server tools: none for the old one, both again after.
        browser.evaluate("chat", CHOOSE, ["#new-model", "claude-3-haiku-20240307"])
        note = browser.wait_for("chat", SERVER_TOOLS_NOTE)
        assert note == "Claude Haiku 3 cannot search or read the web."
        browser.evaluate("chat", CHOOSE, ["#new-model", "claude-sonnet-5-5"])
        offered = browser.wait_for("chat", SERVER_TOOLS_OFFERED)
        assert offered == ["Web search", "Web fetch"]
        browser.click("chat", '#new-server-tools label:has-text("Web search")')
        assert browser.evaluate(
            "chat",
            "() => document.querySelector('#new-server-tools input[value=web_search]').checked",
        )
        browser.send("chat", "What changed in the newest release?")

        searching = browser.wait_for("chat", SEARCHING)
        assert searching["said"].startswith("Searching the web for “What changed in")
        done = browser.wait_for("chat", FINISHED, searching["id"])
        browser.screenshot("chat", str(ARTIFACTS / "web-answer.png"))
        answer_id = anchors.message_of(searching["id"])
        assert len(done["results"]) == 3
        assert all("example.com/demo/" in url for url in done["results"])
        assert done["sources"] == [anchors.source(answer_id, n) for n in (1, 2, 3)]
        assert done["markers"][:3] == [f"#{anchors.source(answer_id, n)}" for n in (1, 2, 3)]

        # The cited answer streamed in after the search, in several steps.
        seen = browser.evaluate("chat", SEEN, searching["id"])
        cited = [s["text"] for s in seen if "Here is what the search found" in s["text"]]
        assert len(cited) >= 3 and any(s["status"] == "streaming" for s in seen)

        # A marker leads to its source in the list, and the source to its page.
        browser.click("chat", f"#{searching['id']} sup.cite a >> nth=1")
        followed = browser.wait_for("chat", FOLLOWED)
        assert followed["hash"] == f"#{anchors.source(answer_id, 2)}"
        assert followed["id"] == anchors.source(answer_id, 2)
        assert followed["href"] == done["results"][1]
        assert followed["rel"] == "noopener noreferrer nofollow"
        browser.screenshot("chat", str(ARTIFACTS / "web-source.png"))

        # Copy writes the answer as markdown with footnotes: [^n] after the cited text, the
        # sources under it.
        browser.evaluate(
            "chat",
            """() => { navigator.clipboard.writeText = (text) => {
                 window.__copied = text; return Promise.resolve(); }; }""",
        )
        browser.click("chat", f"#{searching['id']} .message__copy")
        copied = browser.wait_for("chat", "() => window.__copied || null")
        assert "in a few short paragraphs[^1], and the news page" in copied
        assert "Every one of these pages is a made-up example.com address[^1][^3]" in copied
        notes = copied.split("\n\n")[-1].split("\n")
        assert notes[1] == f"[^2]: {followed['text']}, <{done['results'][1]}>"
        assert [note[:5] for note in notes] == ["[^1]:", "[^2]:", "[^3]:"]
        assert "Searched the web" not in copied  # the search block is not prose

        # Reloaded, the page shows the same answer, markers and sources to the character.
        browser.reload("chat")
        again = browser.wait_for("chat", FINISHED, searching["id"])
        assert again["html"] == done["html"]
        assert browser.errors("chat") == []
