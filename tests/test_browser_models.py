"""In Chromium: pick a model that takes only adaptive thinking, switch thinking on with an
effort level, and watch the thinking stream before the answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .browser import ARTIFACTS, RemoteBrowser, started_browser
from .server import app_server

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

# Slow enough that the page is seen thinking before the answer starts.
PACE = Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(40.0, 40.0), ping_seconds=1.0)
THOUGHT = "First I weigh the question. " * 12

CHOOSE = """
([selector, value]) => {
  const select = document.querySelector(selector);
  select.value = value;
  select.dispatchEvent(new Event("change", { bubbles: true }));
  return select.value;
}
"""

# The newest answer, once it thinks on screen while its text is still empty.
THINKING_SHOWN = """
() => {
  const articles = document.querySelectorAll('article[data-role="assistant"]');
  const article = articles[articles.length - 1];
  if (!article) return null;
  const thinking = article.querySelector(".thinking__text");
  const text = article.querySelector("[data-content]").textContent.trim();
  return thinking && thinking.textContent.length > 20 && !text
    ? { id: article.id, open: article.querySelector(".thinking").open }
    : null;
}
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path) as remote:
        yield remote


def test_think_with_an_adaptive_only_model_at_a_chosen_effort(
    tmp_path: Path, browser: RemoteBrowser
) -> None:
    upstream = FakeUpstream(PACE)
    upstream.start()
    upstream.push(Scenario(text="Here is the answer, after thinking.", thinking=THOUGHT))
    try:
        with app_server(tmp_path, upstream=upstream) as server:
            browser.open("chat", server.url + "/")
            browser.click("chat", "#new-chat-options summary")
            chosen = browser.evaluate("chat", CHOOSE, ["#new-model", "claude-opus-5-5"])
            assert chosen == "claude-opus-5-5"
            # htmx brings the thinking fields of Opus 5.5: its five effort levels.
            levels = browser.wait_for(
                "chat",
                """() => {
                  const options = document.querySelectorAll("#new-effort option");
                  return options.length === 6 ? Array.from(options, (o) => o.value) : null;
                }""",
            )
            assert levels == ["", "low", "medium", "high", "xhigh", "max"]
            browser.evaluate("chat", CHOOSE, ["#new-effort", "high"])
            browser.screenshot("chat", str(ARTIFACTS / "models-settings.png"))
            browser.send("chat", "How should I think about this?")

            seen = browser.wait_for("chat", THINKING_SHOWN)
            assert seen["open"]  # the section is open while Claude thinks
            browser.wait_for(
                "chat",
                """(id) => document.getElementById(id).dataset.status === "complete"
                    && document.getElementById(id).querySelector("[data-content]")
                       .textContent.includes("after thinking")""",
                seen["id"],
            )
            browser.screenshot("chat", str(ARTIFACTS / "models-answer.png"))
            assert browser.errors("chat") == []
        [request] = upstream.requests
        assert request["model"] == "claude-opus-5-5"
        assert request["thinking"] == {"type": "adaptive"}
        assert request["output_config"] == {"effort": "high"}
    finally:
        upstream.stop()
