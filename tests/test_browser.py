"""A real Chromium, driven by Playwright, against the real server (gunicorn, gevent worker).

The test process is gevent-patched (tests/run.sh) and serves the fake upstream from its hub.
Playwright's sync API runs an asyncio loop in greenlets of its own; gevent does not support
asyncio in the same thread, and a blocked loop there would also stall the fake upstream that
the server is streaming from. So the browser is driven from a separate, unpatched Python
process: this module run as `python -m tests.test_browser REQUEST.json`. That process does what
a user does, records what the page showed, and writes it as JSON; the test judges it, together
with what the fake upstream was asked and what the database stored.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.render import anchors

from .browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, CSP_WATCH, missing_browser
from .conftest import USER_HEADER, asked
from .server import ROOT, USER, AppServer, app_server
from .test_render_safety import HOSTILE

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

DRIVER_TIMEOUT = 60.0

PROMPT = "Tell me about streaming"
THOUGHT = "They ask about streaming. Explain the path of a frame, with a table and some code."
CODE = 'def stream(answer):\n    for piece in answer:\n        yield f"data: {piece}\\n\\n"\n'
# About 1,100 characters of markdown: every kind of block, markup that must stay text,
# non-ASCII, line ends of every kind.
ANSWER = (
    "## How streaming works\n\n"
    "Streaming answers arrive a few characters at a time, and the page shows each **piece** as "
    "it comes, *rendered* on the server.\n\n"
    "1. The browser posts the prompt and gets both messages back at once.\n"
    "2. An EventSource listens for frames: <b>this is not bold</b> & neither is &amp;this.\n"
    "3. When the answer ends, the last frame ~~replaces~~ finishes the message.\n\n"
    f"```python\n{CODE}```\n\n"
    "| Part | Where | Cost |\n|:-----|:-----:|-----:|\n"
    "| Render | server | linear |\n| Swap | browser | `O(1)` |\n\n"
    "> Unicode stays intact: naïve café — 日本語 🌍 Ω≈ç√.\r\n"
    "A Windows line end came just before this line, and a lone CR\rjust before this one.\n\n"
    "    Indented code keeps its spaces.   \n\n"
    "See [the spec](https://html.spec.whatwg.org/multipage/server-sent-events.html) and "
    "![a diagram](https://images.example/diagram.png).\n\n"
    "---\n\n"
    "If you reload the page, the same answer is read back from the database, and nothing is "
    "asked of the model again. That is the whole point of storing the answer as it streams."
)
# ~60 tokens/s (~240 characters/s): the answer takes about 2.5 s to write.
PACE = Pace(first_token_seconds=(0.3, 0.3), tokens_per_second=(60.0, 60.0), ping_seconds=1.0)


# -- the test (gevent-patched pytest process) -----------------------------------------------


def test_an_answer_streams_into_the_page_and_stays_after_reload(tmp_path: Path) -> None:
    reason = missing_browser()
    if reason:
        pytest.fail(reason)

    upstream = FakeUpstream(PACE, seed=1)
    upstream.start()
    upstream.push(Scenario(text=ANSWER, thinking=THOUGHT))
    try:
        # An open conversation page keeps an event stream; a closed one is noticed at the next
        # heartbeat, and gunicorn's graceful stop waits for it. A short heartbeat keeps the
        # stop after the browser has gone quick.
        with app_server(
            tmp_path, upstream=upstream, env={"CHATAPP_HEARTBEAT_SECONDS": "1"}
        ) as server:
            seen = drive_browser(tmp_path, server.url)
            stored = stored_answer(server, seen["answer_id"])
    finally:
        upstream.stop()

    # "New chat" leads to an empty chat.
    assert seen["new_chat"] == {"path": "/", "heading": "New chat", "articles": 0}

    # Enter sent the prompt, once, and the model was asked once.
    assert [asked(r) for r in upstream.requests] == [PROMPT]
    assert seen["posts"] == 1
    assert seen["user_text"] == PROMPT

    # The composer was disabled while the send was in flight, and is usable (and empty) after.
    assert seen["composer_in_flight"] == {"textarea": True, "button": True}
    assert seen["composer_after"] == {"textarea": False, "button": False, "value": ""}

    # The text grew on screen in steps before the answer was complete, marked busy meanwhile.
    streaming_lengths = {
        s["length"] for s in seen["samples"] if s["status"] == "streaming" and s["length"] > 0
    }
    assert len(streaming_lengths) >= 5, seen["samples"]
    statuses = [s["status"] for s in seen["samples"]]
    assert statuses[0] == "streaming" and statuses[-1] == "complete", statuses
    assert set(statuses[statuses.index("complete") :]) == {"complete"}, statuses
    assert {s["busy"] for s in seen["samples"] if s["status"] == "streaming"} == {"true"}
    assert {s["busy"] for s in seen["samples"] if s["status"] == "complete"} == {None}
    # The open code block was a code block while it was written, before it was highlighted.
    assert any(s["code"] == "open" for s in seen["samples"]), seen["samples"]
    assert seen["announced"] == "Answer complete."
    # The thinking streamed into an open "Thinking…" section that folded when the answer began.
    thinking = [s["thinking"] for s in seen["samples"] if s["thinking"] != "none"]
    assert thinking[0] == "open" and thinking[-1] == "closed", seen["samples"]
    assert thinking == sorted(thinking, key=["open", "closed"].index), seen["samples"]
    assert seen["thinking_text"] == "Thinking…" + THOUGHT

    # What the page shows is what was stored, rendered: every kind of block.
    assert stored == ("complete", ANSWER)
    assert seen["final_status"] == "complete"
    final = BeautifulSoup(seen["final_html"], "html.parser")
    assert final.h2 is not None and final.h2.get_text() == "How streaming works"
    assert final.select_one("ol li") and final.select_one("s") and final.select_one("blockquote")
    assert final.select_one("table th.align-center") is not None
    assert final.select_one("pre.highlight span.k") is not None  # highlighted
    assert "<b>this is not bold</b>" in final.get_text()
    link = final.select_one('a[href^="https://html.spec"]')
    assert link is not None and link["rel"] == ["noopener", "noreferrer", "nofollow"]
    assert final.select_one("img") is None and final.select_one("a.image-link") is not None
    assert seen["image_requests"] == []  # the image was never loaded

    # Converged: the streamed DOM is the DOM a reload renders, to the character.
    assert re.fullmatch(r"/conversations/\d+", seen["reloaded"]["path"])
    assert seen["reloaded"]["status"] == "complete"
    assert seen["reloaded"]["html"] == seen["final_html"]
    assert seen["reloaded"]["thinking_html"] == seen["thinking_html"]
    assert seen["reloaded"]["user_text"] == PROMPT

    # Copy buttons: a code block's code, and the whole answer's text.
    assert seen["copied_code"] == {"text": CODE, "label": "Copied"}
    assert seen["copied_answer"].startswith("How streaming works")

    # On a phone, nothing is wider than the screen: code and tables scroll inside themselves.
    assert seen["phone"]["page_width"] <= seen["phone"]["screen_width"], seen["phone"]
    assert seen["phone"]["code_scrolls"] and seen["phone"]["table_scrolls"], seen["phone"]

    # Shift+Enter puts a new line in the message and sends nothing.
    assert seen["shift_enter"] == {
        "value": "first line\nsecond line",
        "articles_before": 2,
        "articles_after": 2,
        "posts": 0,
    }
    assert len(upstream.requests) == 1

    assert seen["page_errors"] == []


def test_hostile_answers_stay_text_and_make_no_request(tmp_path: Path) -> None:
    """Every trick of the safety corpus, streamed in small pieces into a real page."""
    reason = missing_browser()
    if reason:
        pytest.fail(reason)
    hostile = "\n\n".join(HOSTILE)
    upstream = FakeUpstream(PACE, seed=2)
    upstream.start()
    upstream.push(
        Scenario(
            text=hostile,
            pace=Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(300.0, 300.0)),
        )
    )
    try:
        with app_server(
            tmp_path, upstream=upstream, env={"CHATAPP_HEARTBEAT_SECONDS": "1"}
        ) as server:
            seen = drive_browser(tmp_path, server.url, flow="hostile")
            stored = stored_answer(server, seen["answer_id"])
    finally:
        upstream.stop()

    assert stored == ("complete", hostile)
    assert seen["status"] == "complete"
    # Nothing ran: no dialog, no flag set by a script or a handler, no error.
    assert seen["dialogs"] == [] and seen["pwned"] is False
    assert seen["page_errors"] == []
    # No request left for anywhere but chatapp's own stream and news of this conversation.
    unexpected = [
        r
        for r in seen["requests"]
        if not re.fullmatch(
            r"POST /messages|GET /static/favicon\.svg"
            r"|GET /(messages/\d+/stream|conversations/\d+/events)(\?.*)?",
            r,
        )
    ]
    assert unexpected == [], seen["requests"]
    # No live markup in the answer: only our tags, no handler, style, htmx or SSE attribute.
    assert seen["live_markup"] == [], seen["live_markup"]
    assert "<script>alert(1)</script>" in seen["text"]  # shown as text


def drive_browser(tmp_path: Path, base_url: str, flow: str = "chat") -> dict[str, Any]:
    """Run the browser part in a plain Python process; return what it saw."""
    request_path = tmp_path / "browser-request.json"
    result_path = tmp_path / "browser-result.json"
    request_path.write_text(
        json.dumps(
            {
                "base_url": base_url,
                "result_path": str(result_path),
                "artifacts": str(ARTIFACTS),
                "prompt": PROMPT,
                "flow": flow,
                "headers": {USER_HEADER: USER},  # signed in, as a proxy in front says
            }
        )
    )
    try:
        # The patched subprocess module waits cooperatively: the fake upstream keeps serving.
        finished = subprocess.run(
            [sys.executable, "-m", "tests.test_browser", str(request_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"the browser driver did not finish in {DRIVER_TIMEOUT:.0f} s\n"
            f"stdout:\n{exc.stdout!r}\nstderr:\n{exc.stderr!r}"
        )
    if finished.returncode != 0 or not result_path.exists():
        pytest.fail(
            f"the browser driver failed (exit code {finished.returncode}); "
            f"screenshots are in {ARTIFACTS}\n"
            f"stdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"
        )
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def stored_answer(server: AppServer, answer_id: int) -> tuple[str, str]:
    """(status, content) of the answer as the server stored it."""
    rows = server.rows(
        "SELECT status, content FROM message WHERE id = :id AND role = 'assistant'", id=answer_id
    )
    assert rows, f"answer {answer_id} is not stored"
    return rows[0][0], rows[0][1]


# -- the browser driver (plain Python process, no gevent) ------------------------------------

# Installed in the page before sending: records the answer as it changes on screen (on every
# DOM change and every animation frame), and the composer's state as HTMX sends the form.
RECORDER = """
() => {
  const rec = window.__chatRecord = { samples: [], inFlight: null, posts: 0 };
  const form = document.getElementById("composer");
  const box = form.querySelector("textarea[name=content]");
  const button = form.querySelector("button[type=submit]");
  const sample = () => {
    const articles = document.querySelectorAll('article[data-role="assistant"]');
    const article = articles[articles.length - 1];
    if (!article) return;
    const content = article.querySelector("[data-content]");
    const length = content ? content.textContent.length : -1;
    const status = article.dataset.status;
    const busy = article.getAttribute("aria-busy");
    const code = !content || !content.querySelector(".code") ? "none"
      : content.querySelector(".tail .code code[id]") ? "open" : "done";
    const section = article.querySelector("details.thinking");
    const thinking = !section || section.hidden ? "none" : section.open ? "open" : "closed";
    const last = rec.samples[rec.samples.length - 1];
    if (!last || last.length !== length || last.status !== status || last.code !== code
        || last.thinking !== thinking) {
      rec.samples.push({ length, status, busy, code, thinking });
    }
  };
  new MutationObserver(sample).observe(document.getElementById("messages"), {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
  const tick = () => { sample(); requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  // htmx:beforeSend fires right before xhr.send(), after hx-disabled-elt has done its work.
  document.body.addEventListener("htmx:beforeSend", (event) => {
    if (event.detail.elt !== form) return;
    rec.posts += 1;
    rec.inFlight = { textarea: box.disabled, button: button.disabled };
  });
}
"""


def _driver_main(request_path: str) -> None:
    from playwright.sync_api import sync_playwright

    request = json.loads(Path(request_path).read_text())
    artifacts = Path(request["artifacts"])
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                viewport={"width": 1100, "height": 900}, extra_http_headers=request["headers"]
            )
            context.grant_permissions(["clipboard-read", "clipboard-write"])
            context.add_init_script(CSP_WATCH)  # a policy violation is a console error
            page = context.new_page()
            page.set_default_timeout(20_000)
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on(
                "console",
                lambda message: (
                    page_errors.append(message.text) if message.type == "error" else None
                ),
            )
            try:
                use = _use_the_page if request["flow"] == "chat" else _show_hostile_answer
                result = use(page, request["base_url"], request["prompt"], artifacts)
            except Exception:
                page.screenshot(path=str(artifacts / "browser-failure.png"), full_page=True)
                raise
            result["page_errors"] = page_errors
        finally:
            browser.close()
    Path(request["result_path"]).write_text(json.dumps(result))


def _use_the_page(page: Any, base_url: str, prompt: str, artifacts: Path) -> dict[str, Any]:
    from playwright.sync_api import expect

    result: dict[str, Any] = {}
    page.goto(base_url + "/")

    page.get_by_role("link", name="New chat").click()
    page.wait_for_load_state()
    result["new_chat"] = {
        "path": _path(page.url),
        "heading": page.get_by_role("heading", level=1).inner_text(),
        "articles": page.locator("article").count(),
    }

    page.evaluate(RECORDER)
    image_requests: list[str] = []
    page.on(
        "request", lambda r: image_requests.append(r.url) if "images.example" in r.url else None
    )
    box = page.get_by_label("Message")
    button = page.get_by_role("button", name="Send")
    box.fill(prompt)
    box.press("Enter")

    assistant = page.locator('article[data-role="assistant"]')
    expect(assistant).to_have_count(1)
    # A picture of the answer half written, for humans.
    page.wait_for_function(
        """() => {
          const el = document.querySelector('article[data-role="assistant"] [data-content]');
          return el && el.textContent.length > 150;
        }"""
    )
    page.screenshot(path=str(artifacts / "browser-streaming.png"))
    expect(assistant).to_have_attribute("data-status", "complete")
    expect(box).to_be_enabled()
    expect(button).to_be_enabled()

    record = page.evaluate("() => window.__chatRecord")
    result["samples"] = record["samples"]
    result["posts"] = record["posts"]
    result["composer_in_flight"] = record["inFlight"]
    result["composer_after"] = {
        "textarea": box.is_disabled(),
        "button": button.is_disabled(),
        "value": box.input_value(),
    }
    result["answer_id"] = anchors.message_of(assistant.get_attribute("id"))
    result["final_status"] = assistant.get_attribute("data-status")
    result["final_html"] = assistant.locator("[data-content]").inner_html()
    result["thinking_html"] = assistant.locator("details.thinking").evaluate("e => e.outerHTML")
    result["thinking_text"] = assistant.locator("details.thinking").text_content()
    result["announced"] = page.locator("#announcer").text_content()
    result["image_requests"] = image_requests
    result["user_text"] = page.locator('article[data-role="user"] [data-content]').text_content()

    assistant.locator(".code__copy").first.click()
    expect(assistant.locator(".code__copy").first).to_have_text("Copied")
    result["copied_code"] = {
        "text": page.evaluate("() => navigator.clipboard.readText()"),
        "label": assistant.locator(".code__copy").first.inner_text(),
    }
    assistant.locator(".message__copy").click()
    expect(assistant.locator(".message__copy")).to_have_text("Copied")
    result["copied_answer"] = page.evaluate("() => navigator.clipboard.readText()")

    page.reload()
    page.wait_for_load_state()
    reloaded = page.locator('article[data-role="assistant"]')
    result["reloaded"] = {
        "path": _path(page.url),
        "status": reloaded.get_attribute("data-status"),
        "html": reloaded.locator("[data-content]").inner_html(),
        "thinking_html": reloaded.locator("details.thinking").evaluate("e => e.outerHTML"),
        "user_text": page.locator('article[data-role="user"] [data-content]').text_content(),
    }

    # Shift+Enter: a new line, not a send.
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    box = page.get_by_label("Message")
    articles_before = page.locator("article").count()
    box.click()
    box.press_sequentially("first line")
    box.press("Shift+Enter")
    box.press_sequentially("second line")
    # Nothing should happen; give a wrongly sent form the time to show itself.
    page.wait_for_timeout(500)
    result["shift_enter"] = {
        "value": box.input_value(),
        "articles_before": articles_before,
        "articles_after": page.locator("article").count(),
        "posts": len(posts),
    }
    page.screenshot(path=str(artifacts / "browser-chat.png"), full_page=True)

    # The same conversation on a phone.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_load_state()
    result["phone"] = page.evaluate(
        """() => {
          const scrolls = (el) => el && getComputedStyle(el).overflowX === "auto";
          return {
            page_width: document.documentElement.scrollWidth,
            screen_width: window.innerWidth,
            code_scrolls: scrolls(document.querySelector("[data-content] pre")),
            table_scrolls: scrolls(document.querySelector("[data-content] table")),
          };
        }"""
    )
    page.screenshot(path=str(artifacts / "browser-phone.png"), full_page=True)
    return result


# Elements and attributes in an answer's content that would be live markup there.
LIVE_MARKUP = """
() => {
  const found = [];
  const allowed = new Set(["P", "BR", "HR", "H1", "H2", "H3", "H4", "H5", "H6", "BLOCKQUOTE",
    "UL", "OL", "LI", "EM", "STRONG", "S", "DEL", "CODE", "PRE", "A", "SPAN", "DIV", "BUTTON",
    "TABLE", "THEAD", "TBODY", "TR", "TH", "TD"]);
  for (const content of document.querySelectorAll("[data-content]")) {
    for (const el of content.querySelectorAll("*")) {
      if (!allowed.has(el.tagName)) found.push(el.tagName);
      for (const attr of el.attributes) {
        const name = attr.name.toLowerCase();
        if (name.startsWith("on") || name.startsWith("hx-") || name.startsWith("data-")
            || name.startsWith("sse-") || name === "style" || name === "src") {
          found.push(el.tagName + "[" + name + "]");
        }
        if (name === "href" && !/^(https?|mailto):/i.test(attr.value)) {
          found.push(el.tagName + "[href=" + attr.value + "]");
        }
      }
    }
  }
  return found;
}
"""


def _show_hostile_answer(page: Any, base_url: str, prompt: str, artifacts: Path) -> dict[str, Any]:
    from playwright.sync_api import expect

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(base_url + "/")
    page.evaluate(
        "() => { window.__pwned = false; window.alert = () => { window.__pwned = true; }; }"
    )
    requests: list[str] = []
    page.on("request", lambda r: requests.append(f"{r.method} {r.url.removeprefix(base_url)}"))
    box = page.get_by_label("Message")
    box.fill(prompt)
    box.press("Enter")
    assistant = page.locator('article[data-role="assistant"]')
    expect(assistant).to_have_attribute("data-status", "complete", timeout=30_000)
    page.wait_for_timeout(500)  # time for anything that would load or run late
    page.screenshot(path=str(artifacts / "browser-hostile.png"), full_page=True)
    return {
        "answer_id": anchors.message_of(assistant.get_attribute("id")),
        "status": assistant.get_attribute("data-status"),
        "dialogs": dialogs,
        "pwned": page.evaluate("() => window.__pwned"),
        "requests": requests,
        "live_markup": page.evaluate(LIVE_MARKUP),
        "text": assistant.locator("[data-content]").text_content(),
    }


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


if __name__ == "__main__":
    _driver_main(sys.argv[1])
