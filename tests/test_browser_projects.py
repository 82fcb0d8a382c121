"""In Chromium, two people: one makes a project with instructions and a PDF and shares it
"Can use"; the other starts a chat in it, and the upstream request carries both. Screenshots
of the project page and the sidebar at 1280 and 390 pixels wide."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chatapp.llm.demo import FakeUpstream, Pace

from .browser import ARTIFACTS, RemoteBrowser, started_browser
from .server import app_server
from .test_attachments import pdf

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

PACE = Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(300.0, 300.0), ping_seconds=1.0)
INSTRUCTIONS = "You help the Acme launch team. Answer in two sentences."
WIDE, PHONE = (1280, 900), (390, 844)

ANSWERED = """() => {
  const articles = document.querySelectorAll('article[data-role="assistant"]');
  const last = articles[articles.length - 1];
  return last && last.dataset.status === "complete"
    ? last.querySelector("[data-content]").textContent : null;
}"""
PAGE_PATH = "() => location.pathname"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path) as remote:
        yield remote


def shot(browser: RemoteBrowser, page: str, name: str) -> None:
    """A screenshot, once the drawer's slide (0.2 s) after a resize or a tap has ended."""
    browser.evaluate(page, "() => new Promise((done) => setTimeout(done, 400))")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(page, str(ARTIFACTS / f"projects-{name}.png"))


def test_a_shared_projects_instructions_and_pdf_reach_claude_for_a_teammate(
    tmp_path: Path, browser: RemoteBrowser
) -> None:
    upstream = FakeUpstream(PACE)
    upstream.start()
    brief = tmp_path / "launch-brief.pdf"
    brief.write_bytes(pdf(2))
    try:
        with app_server(tmp_path, upstream=upstream) as server:
            # Alice makes the project, gives it instructions and a PDF, and shares it.
            browser.open("alice", server.url + "/projects", user="alice", viewport=WIDE)
            browser.fill("alice", "Project name", "Acme launch")
            browser.click("alice", "text=Create project")
            browser.wait_for("alice", "() => !!document.getElementById('project-instructions')")
            browser.fill("alice", "Instructions", INSTRUCTIONS)
            browser.click("alice", "button:text-is('Save')")
            browser.wait_for("alice", "() => location.search.includes('saved=settings')")
            browser.choose_files("alice", "input[aria-label='Add files']", [str(brief)])
            browser.click("alice", "text=Add files")
            browser.wait_for(
                "alice",
                "() => Array.from(document.querySelectorAll('.project__files a'),"
                " (a) => a.textContent).join() === 'launch-brief.pdf'",
            )
            browser.evaluate(
                "alice", "() => { document.getElementById('project-sharing').value = 'use'; }"
            )
            browser.click("alice", "text=Save sharing")
            browser.wait_for("alice", "() => location.search.includes('saved=sharing')")
            shown = browser.evaluate(
                "alice",
                "() => [document.getElementById('project-name').textContent,"
                " document.querySelector('.project__role').textContent]",
            )
            assert shown == ["Acme launch", "Shared: Can use"]
            shot(browser, "alice", "page-1280")
            browser.resize("alice", *PHONE)
            shot(browser, "alice", "page-390")

            # Bob sees it in his sidebar, opens it, and starts a chat there.
            browser.open("bob", server.url + "/", user="bob", viewport=WIDE)
            browser.click("bob", ".sidebar__project-name")
            browser.wait_for("bob", PAGE_PATH + ".startsWith('/projects/') ? true : null")
            role = browser.evaluate(
                "bob", "() => document.querySelector('.project__role').textContent"
            )
            assert role == "alice’s · you can use"
            # Bob can use it, not change it: no forms for its instructions, files or sharing.
            editable = browser.evaluate(
                "bob",
                "() => ['project-instructions', 'project-sharing']"
                ".filter((id) => document.getElementById(id))",
            )
            assert editable == []
            browser.click("bob", "text=New chat in this project")
            browser.send("bob", "What should the launch email say?")
            reply = browser.wait_for("bob", ANSWERED)
            assert "launch-brief.pdf (PDF, 2 pages)" in reply  # the demo read the project's PDF
            browser.wait_for("bob", PAGE_PATH + ".startsWith('/conversations/') ? true : null")
            # Pin the project: it moves to the top of his sidebar, with his chat under it.
            browser.click("bob", ".chat__project")
            browser.wait_for("bob", PAGE_PATH + ".startsWith('/projects/') ? true : null")
            browser.click("bob", ".pin button")
            pinned = browser.wait_for(
                "bob",
                "() => { const p = document.querySelectorAll('.sidebar__pinned a');"
                " return p.length ? Array.from(p, (a) => a.textContent) : null; }",
            )
            assert pinned == ["Acme launch", "What should the launch email say?"]
            shot(browser, "bob", "sidebar-1280")
            browser.resize("bob", *PHONE)
            browser.click("bob", "#drawer-button")
            browser.wait_for(
                "bob", "() => document.getElementById('layout').hasAttribute('data-open')"
            )
            shot(browser, "bob", "sidebar-390")
            for page in ("alice", "bob"):
                errors = browser.errors(page)
                assert errors == [], "\n".join(e["text"] for e in errors)

        [request] = upstream.requests
        assert request["system"][0] == {
            "type": "text",
            "text": INSTRUCTIONS,
            "cache_control": {"type": "ephemeral"},
        }
        document, question = request["messages"][0]["content"]
        assert document["type"] == "document" and document["title"] == "launch-brief.pdf"
        assert document["cache_control"] == {"type": "ephemeral"}
        assert question["text"] == "What should the launch email say?"
    finally:
        upstream.stop()
