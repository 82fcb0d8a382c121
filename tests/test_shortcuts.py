"""Keyboard shortcuts in a real Chromium: New chat, the message box, Stop with Esc while an
answer is written, and `?` for the dialog that lists them (never while typing in a field)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.render import anchors

from .browser import ARTIFACTS, RemoteBrowser, started_browser
from .conftest import asked
from .server import AppServer, app_server

pytestmark = pytest.mark.slow

QUICK = Pace(first_token_seconds=(0.1, 0.1), tokens_per_second=(400.0, 400.0), ping_seconds=1.0)
# Slow enough that Esc always lands mid-answer: ~100 characters a second.
SLOW = Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(25.0, 25.0), ping_seconds=1.0)
LONG = "A long answer that takes a while to write. " * 60

COMPLETE = """() => {
  const a = document.querySelector('article[data-role="assistant"]');
  return a && a.dataset.status === "complete" && location.pathname !== "/";
}"""
# Whether the shortcuts dialog is open, and what it lists: [keys, what they do] a line.
DIALOG = """() => {
  const dialog = document.getElementById("shortcuts");
  const text = (el) => el.textContent.replace(/\\s+/g, " ").trim();
  const lines = Array.from(dialog.querySelectorAll("dt"), (dt) => [
    text(dt), text(dt.nextElementSibling),
  ]);
  return { open: dialog.open, lines };
}"""
FOCUSED = "() => document.activeElement && document.activeElement.id"
BOX = "() => document.getElementById('message-input').value"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(QUICK, seed=6)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[AppServer]:
    env = {"CHATAPP_HEARTBEAT_SECONDS": "1"}
    with app_server(tmp_path_factory.mktemp("keys"), upstream=fake, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, server: AppServer) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path_factory.mktemp("browser")) as remote:
        yield remote


def test_question_mark_lists_the_shortcuts_but_types_in_a_field(
    browser: RemoteBrowser, server: AppServer
) -> None:
    browser.open("help", server.url + "/")
    browser.wait_for("help", "() => document.activeElement.id === 'message-input'")

    # In the message box `?` is a character like any other.
    browser.press("help", "?")
    assert browser.evaluate("help", BOX) == "?"
    assert browser.evaluate("help", DIALOG)["open"] is False

    # Elsewhere it opens the list; Esc closes it and leaves the text alone.
    browser.evaluate("help", "() => document.activeElement.blur()")
    browser.press("help", "?")
    shown = browser.evaluate("help", DIALOG)
    assert shown["open"] is True
    assert shown["lines"] == [
        ["Ctrl Shift O", "New chat"],
        ["/", "Go to the message box"],
        ["Enter", "Send"],
        ["Shift Enter", "New line"],
        ["Esc", "Stop the answer being written"],
        ["?", "This list"],
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot("help", str(ARTIFACTS / "shortcuts-dialog.png"))
    browser.press("help", "Escape")
    assert browser.evaluate("help", DIALOG)["open"] is False
    assert browser.evaluate("help", BOX) == "?"

    # The sidebar's button opens it too, and Close closes it.
    browser.click("help", "button.sidebar__shortcuts")
    assert browser.evaluate("help", DIALOG)["open"] is True
    browser.click("help", "#shortcuts button:text-is('Close')")
    assert browser.evaluate("help", DIALOG)["open"] is False

    # In the search field `?` and `/` are typed, not shortcuts.
    browser.click("help", "#search-input")
    browser.press("help", "?")
    browser.press("help", "/")
    assert browser.evaluate("help", "() => document.getElementById('search-input').value") == "?/"
    assert browser.evaluate("help", DIALOG)["open"] is False
    assert browser.evaluate("help", FOCUSED) == "search-input"
    assert browser.errors("help") == []
    browser.close_page("help")


def test_new_chat_and_the_message_box_from_the_keyboard(
    browser: RemoteBrowser, server: AppServer, fake: FakeUpstream
) -> None:
    browser.open("keys", server.url + "/")
    fake.push(Scenario(text="Here you are."))
    browser.send("keys", "Something to start a conversation with")
    browser.wait_for("keys", COMPLETE)
    conversation = browser.evaluate("keys", "() => location.pathname")

    # `/` away from any field: to the message box.
    browser.evaluate("keys", "() => document.activeElement.blur()")
    browser.press("keys", "/")
    assert browser.evaluate("keys", FOCUSED) == "message-input"
    assert browser.evaluate("keys", BOX) == ""  # the key itself was not typed

    # Ctrl+Shift+O, even from the message box: a new chat.
    browser.press("keys", "Control+Shift+O")
    browser.wait_for(
        "keys", "() => location.pathname === '/' && document.readyState === 'complete'"
    )
    assert browser.evaluate("keys", "() => document.getElementById('chat-title').textContent") == (
        "New chat"
    )
    # Cmd+Shift+O, as on a Mac, from another conversation page.
    browser.open("keys", server.url + conversation)
    browser.press("keys", "Meta+Shift+O")
    browser.wait_for("keys", "() => location.pathname === '/'")
    assert browser.errors("keys") == []
    browser.close_page("keys")


def test_escape_stops_the_answer_being_written(
    browser: RemoteBrowser, server: AppServer, fake: FakeUpstream
) -> None:
    browser.open("stop", server.url + "/")
    # Esc with nothing being written does nothing.
    browser.press("stop", "Escape")
    fake.push(Scenario(text=LONG, pace=SLOW))
    browser.send("stop", "Write at length")
    answer = browser.wait_for(
        "stop",
        """() => {
          const a = document.querySelector('article[data-status="streaming"]');
          const text = a && a.querySelector("[data-content]").textContent;
          return text && text.length > 40 ? a.id : null;
        }""",
    )
    # The cursor is back in the message box, where the person typed; Esc there stops.
    browser.wait_for("stop", "() => document.activeElement.id === 'message-input'")
    browser.press("stop", "Escape")
    browser.wait_for(
        "stop",
        "(id) => document.getElementById(id).dataset.status === 'cancelled'",
        answer,
        timeout=15.0,
    )
    answer_id = anchors.message_of(answer)
    rows = server.rows("SELECT status, content FROM message WHERE id = :id", id=answer_id)
    assert rows[0][0] == "cancelled" and 0 < len(rows[0][1]) < len(LONG)
    assert [asked(request) for request in fake.requests][-1] == "Write at length"
    assert browser.errors("stop") == []
    browser.close_page("stop")
