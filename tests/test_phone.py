"""The page on a phone (390 x 844) and on a desktop (1280 x 800), in a real Chromium.

On a phone the sidebar is a drawer behind the menu button, the header folds its actions into a
menu, nothing in the header overlaps, and the composer stays in view, also when a keyboard
takes half the screen. The same checks hold with a few more controls than today's (a Share
button, an Attach files button), so that adding them cannot quietly break the layout. The
pictures are saved in test-artifacts/ (phone-*.png, desktop-*.png), to look at.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .browser import ARTIFACTS, RemoteBrowser, started_browser
from .server import AppServer, app_server

pytestmark = pytest.mark.slow

QUICK = Pace(first_token_seconds=(0.1, 0.1), tokens_per_second=(400.0, 400.0), ping_seconds=1.0)
PHONE = (390, 844)
DESKTOP = (1280, 800)
LONG_TITLE = (
    "Why does the answer stream arrive in lumps behind the office proxy, and what to tell "
    "the people who run it"
)
ANSWER = "Proxies that buffer hold events back.\n\n" + "Turn buffering off for the stream. " * 30

# What the page looks like: the boxes of everything shown in the conversation header (and of
# the actions menu, the composer and the sidebar), in viewport pixels.
LAYOUT = """
() => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
  };
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    return el.checkVisibility({ visibilityProperty: true }) && r.width > 0 && r.height > 0;
  };
  const named = (el) => ({
    name: (el.textContent || el.getAttribute("aria-label") || el.tagName).trim()
      .replace(/\\s+/g, " ") || el.className,
    ...box(el),
  });
  const all = (selector) =>
    Array.from(document.querySelectorAll(selector)).filter(shown).map(named);
  const sidebar = document.getElementById("sidebar");
  const drawer = document.getElementById("drawer-button");
  const composer = document.getElementById("composer");
  const focused = document.activeElement;
  return {
    width: window.innerWidth,
    height: window.innerHeight,
    page_width: document.documentElement.scrollWidth,
    header: all(".chat__header :is(a, button, summary, h1, .chat__cost)"),
    menu: all("#chat-actions > :is(a, button), #chat-actions > form > button"),
    composer: composer ? box(composer) : null,
    composer_parts: all("#composer :is(#message-input, .composer__attach, .composer__send)"),
    title: document.getElementById("chat-title").textContent,
    sidebar: shown(sidebar) ? box(sidebar) : null,
    sidebar_links: all("#sidebar .sidebar__list a").length,
    drawer_button: shown(drawer) ? drawer.getAttribute("aria-expanded") : null,
    focused: focused && (focused.id || focused.className),
    focus_in_sidebar: sidebar.contains(document.activeElement),
    page_inert: document.querySelector("main").inert,
    scroller_height: document.getElementById("scroller").getBoundingClientRect().height,
    path: location.pathname,
  };
}
"""

# The page has taken the viewport's new height (app.js follows the visual viewport).
FITTED = "() => getComputedStyle(document.body).height === window.innerHeight + 'px'"
# Two frames later: whatever the last step set off (a scroll into view, a resize) is done.
SETTLED = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"

# Controls that other parts of chatapp will add: Share in the header's actions and beside the
# total. (The composer has its Attach button already.)
MORE_CONTROLS = """
() => {
  const button = (text, cls) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    if (cls) b.className = cls;
    return b;
  };
  document.getElementById("chat-actions").append(button("Share"), button("Stop sharing"));
  const header = document.querySelector(".chat__header");
  const cost = document.getElementById("conversation-cost");
  header.insertBefore(button("Share this", "chat__share"), cost);
}
"""


def overlapping(boxes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of boxes whose areas intersect (touching edges do not count)."""
    return [
        (a["name"], b["name"])
        for a, b in itertools.combinations(boxes, 2)
        if min(a["right"], b["right"]) - max(a["left"], b["left"]) > 0.5
        and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 0.5
    ]


def outside(boxes: list[dict[str, Any]], width: float, height: float) -> list[str]:
    """Names of the boxes that are not wholly inside the viewport."""
    return [
        b["name"]
        for b in boxes
        if b["left"] < -0.5
        or b["top"] < -0.5
        or b["right"] > width + 0.5
        or b["bottom"] > height + 0.5
    ]


def assert_tidy(layout: dict[str, Any]) -> None:
    """Nothing in the header overlaps or leaves the screen; the composer is wholly in view."""
    width, height = layout["width"], layout["height"]
    assert layout["page_width"] <= width, layout
    assert overlapping(layout["header"]) == [], layout["header"]
    assert outside(layout["header"], width, height) == [], layout["header"]
    assert layout["composer"] is not None
    assert outside([{"name": "composer", **layout["composer"]}], width, height) == [], layout
    assert overlapping(layout["composer_parts"]) == [], layout["composer_parts"]
    assert outside(layout["composer_parts"], width, height) == [], layout["composer_parts"]
    names = [part["name"] for part in layout["composer_parts"]]
    assert names[0] == "TEXTAREA" and names[-1] == "Send", names  # the message box, then Send


def shot(browser: RemoteBrowser, page: str, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(page, str(ARTIFACTS / f"{name}.png"))


# -- fixtures: one server, one upstream, one browser, two conversations ----------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(QUICK, seed=5)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[AppServer]:
    env = {"CHATAPP_HEARTBEAT_SECONDS": "1"}
    with app_server(tmp_path_factory.mktemp("phone"), upstream=fake, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, server: AppServer) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path_factory.mktemp("browser")) as remote:
        yield remote


def send_and_wait(browser: RemoteBrowser, page: str, prompt: str) -> str:
    """Send a prompt from the composer; the conversation's path once its answer is complete."""
    browser.send(page, prompt)
    browser.wait_for(
        page,
        """() => {
          const a = document.querySelector('article[data-role="assistant"]');
          const page = /^\\/conversations\\/\\d+$/.test(location.pathname);
          return page && a && a.dataset.status === "complete";
        }""",
    )
    path: str = browser.evaluate(page, "() => location.pathname")
    return path


@pytest.fixture(scope="module")
def conversations(
    browser: RemoteBrowser, server: AppServer, fake: FakeUpstream
) -> Iterator[tuple[str, str]]:
    """Two conversations sent from a phone: the first with a long title, the second short."""
    browser.open("setup", server.url + "/", viewport=PHONE)
    fake.push(Scenario(text=ANSWER))
    first = send_and_wait(browser, "setup", "Why do streams arrive in lumps?")
    # Rename it from the header's actions menu, as a phone does.
    browser.click("setup", ".chat__more-button")
    browser.click("setup", "#chat-actions button:text-is('Rename')")
    browser.wait_for("setup", "() => document.getElementById('title-input')")
    browser.evaluate(
        "setup",
        """(title) => {
          const input = document.getElementById("title-input");
          input.value = title;
          input.form.requestSubmit();
        }""",
        LONG_TITLE,
    )
    browser.wait_for(
        "setup", "(t) => document.getElementById('chat-title')?.textContent === t", LONG_TITLE
    )
    browser.open("setup", server.url + "/", viewport=PHONE)
    fake.push(Scenario(text="Short answer."))
    second = send_and_wait(browser, "setup", "And a short one")
    browser.close_page("setup")
    yield first, second


# -- the tests ----------------------------------------------------------------------------------


def test_on_a_phone_the_conversation_fills_the_screen_and_nothing_overlaps(
    browser: RemoteBrowser, server: AppServer, conversations: tuple[str, str]
) -> None:
    first, _ = conversations
    browser.open("phone", server.url + first, viewport=PHONE)
    browser.wait_for("phone", "() => document.querySelector('article[data-status=complete]')")
    layout = browser.evaluate("phone", LAYOUT)
    shot(browser, "phone", "phone-conversation")

    assert_tidy(layout)
    names = [control["name"] for control in layout["header"]]
    # The menu button, the title (cut short), the folded actions, the total and the settings.
    assert names[0] == "Conversations" and names[1] == LONG_TITLE and names[2] == "Actions"
    assert any(name.startswith("Total $") for name in names), names
    assert layout["menu"] == []  # folded
    # The sidebar is out of the way: the conversation has the screen, its end in view.
    assert layout["sidebar"] is None and layout["drawer_button"] == "false"
    assert layout["scroller_height"] > layout["height"] / 2, layout
    assert browser.evaluate("phone", "() => document.getElementById('message-input').value") == ""

    # The actions menu: every action shown, in view, none over another; Escape folds it.
    browser.click("phone", ".chat__more-button")
    opened = browser.evaluate("phone", LAYOUT)
    menu = ["Rename", "Share", "Markdown", "JSON", "Pin", "Delete"]
    assert [item["name"] for item in opened["menu"]] == menu
    assert overlapping(opened["menu"]) == [] and outside(opened["menu"], *PHONE) == []
    shot(browser, "phone", "phone-actions")
    browser.press("phone", "Escape")
    closed = browser.evaluate("phone", LAYOUT)
    assert closed["menu"] == [] and "chat__more-button" in closed["focused"]

    # A keyboard takes half the screen: the header and the composer both stay in view.
    browser.resize("phone", 390, 420)
    browser.wait_for("phone", FITTED)
    browser.evaluate("phone", "() => document.getElementById('message-input').focus()")
    browser.evaluate("phone", SETTLED)
    squeezed = browser.evaluate("phone", LAYOUT)
    assert_tidy(squeezed)
    shot(browser, "phone", "phone-keyboard")
    browser.resize("phone", *PHONE)

    assert browser.errors("phone") == []
    browser.close_page("phone")


def test_the_drawer_opens_closes_and_leads_to_a_conversation(
    browser: RemoteBrowser, server: AppServer, conversations: tuple[str, str]
) -> None:
    first, second = conversations
    browser.open("drawer", server.url + first, viewport=PHONE)
    sidebar_in_view = "() => document.getElementById('sidebar').getBoundingClientRect().left === 0"
    sidebar_gone = (
        "() => !document.getElementById('sidebar').checkVisibility({ visibilityProperty: true })"
    )

    # The menu button opens it over the page, focus inside; Escape closes it, focus back.
    browser.click("drawer", "#drawer-button")
    browser.wait_for("drawer", sidebar_in_view)
    opened = browser.evaluate("drawer", LAYOUT)
    assert opened["drawer_button"] == "true" and opened["focus_in_sidebar"], opened
    assert opened["page_inert"] is True  # a modal panel: the page under it is out of reach
    assert opened["sidebar"]["right"] <= PHONE[0] and opened["sidebar_links"] == 2
    shot(browser, "drawer", "phone-drawer")
    browser.press("drawer", "Escape")
    browser.wait_for("drawer", sidebar_gone)
    closed = browser.evaluate("drawer", LAYOUT)
    assert closed["drawer_button"] == "false" and closed["focused"] == "drawer-button"
    assert closed["page_inert"] is False

    # A tap on the dimmed page beside it closes it too.
    browser.click("drawer", "#drawer-button")
    browser.wait_for("drawer", sidebar_in_view)
    browser.click_at("drawer", PHONE[0] - 20, PHONE[1] / 2)
    browser.wait_for("drawer", sidebar_gone)

    # Choosing a conversation in it opens that conversation, with the drawer closed.
    browser.click("drawer", "#drawer-button")
    browser.wait_for("drawer", sidebar_in_view)
    browser.click("drawer", f'#sidebar a[href="{second}"]')
    browser.wait_for("drawer", "(path) => location.pathname === path", second)
    browser.wait_for("drawer", "() => document.readyState === 'complete'")
    arrived = browser.evaluate("drawer", LAYOUT)
    assert arrived["title"] != LONG_TITLE and arrived["sidebar"] is None
    assert arrived["drawer_button"] == "false"
    assert_tidy(arrived)

    # Back: the page the browser kept shows the drawer closed.
    browser.evaluate("drawer", "() => history.back()")
    browser.wait_for("drawer", "(path) => location.pathname === path", first)
    browser.wait_for("drawer", sidebar_gone)

    # Turned to a wide screen with the drawer open: the sidebar in its column, the page usable.
    browser.click("drawer", "#drawer-button")
    browser.wait_for("drawer", sidebar_in_view)
    browser.resize("drawer", *DESKTOP)
    browser.wait_for("drawer", "() => !document.querySelector('main').inert")
    wide = browser.evaluate("drawer", LAYOUT)
    assert wide["drawer_button"] is None and wide["sidebar"] is not None
    assert_tidy(wide)
    assert browser.errors("drawer") == []
    browser.close_page("drawer")


def test_on_a_desktop_the_sidebar_and_actions_show_and_nothing_overlaps(
    browser: RemoteBrowser, server: AppServer, conversations: tuple[str, str]
) -> None:
    first, _ = conversations
    browser.open("desktop", server.url + first, viewport=DESKTOP)
    browser.wait_for("desktop", "() => document.querySelector('article[data-status=complete]')")
    layout = browser.evaluate("desktop", LAYOUT)
    shot(browser, "desktop", "desktop-conversation")

    assert_tidy(layout)
    assert layout["drawer_button"] is None  # no menu button: the sidebar is there
    assert layout["sidebar"] is not None and layout["sidebar"]["left"] == 0
    assert layout["sidebar_links"] == 2
    names = [control["name"] for control in layout["header"]]
    assert names[:7] == [LONG_TITLE, "Rename", "Share", "Markdown", "JSON", "Pin", "Delete"], names
    # One row: the title and its actions, the total and the settings side by side.
    middles = {round((control["top"] + control["bottom"]) / 2) for control in layout["header"]}
    assert max(middles) - min(middles) <= 4, layout["header"]
    assert browser.errors("desktop") == []
    browser.close_page("desktop")


@pytest.mark.parametrize("size", [PHONE, (800, 700), DESKTOP], ids=["phone", "narrow", "desktop"])
def test_more_controls_still_fit(
    browser: RemoteBrowser,
    server: AppServer,
    conversations: tuple[str, str],
    size: tuple[int, int],
) -> None:
    first, _ = conversations
    browser.open("more", server.url + first, viewport=size)
    browser.wait_for("more", "() => document.querySelector('article[data-status=complete]')")
    browser.evaluate("more", MORE_CONTROLS)
    layout = browser.evaluate("more", LAYOUT)
    shot(browser, "more", f"more-controls-{size[0]}")
    assert_tidy(layout)
    assert any(c["name"] == "Share this" for c in layout["header"]), layout["header"]
    assert [p["name"] for p in layout["composer_parts"]][-2:] == ["Attach", "Send"]
    if layout["menu"] == []:  # folded: open it
        browser.click("more", ".chat__more-button")
        layout = browser.evaluate("more", LAYOUT)
    assert [item["name"] for item in layout["menu"]][-2:] == ["Share", "Stop sharing"]
    assert overlapping(layout["menu"]) == [] and outside(layout["menu"], *size) == []
    assert re.fullmatch(r"/conversations/\d+", layout["path"])
    browser.close_page("more")
