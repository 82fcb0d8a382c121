"""In Chromium: a screenshot pasted, a PDF chosen with Attach and a text file dropped go with
the question; the page shows them, the reply names them, and the request carries them."""

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

# Paste a 64 × 48 PNG drawn on a canvas into the message box, as a screenshot from the
# clipboard arrives.
PASTE_SCREENSHOT = """
async () => {
  const canvas = document.createElement("canvas");
  canvas.width = 64; canvas.height = 48;
  const context = canvas.getContext("2d");
  context.fillStyle = "#c33"; context.fillRect(0, 0, 64, 48);
  const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
  const data = new DataTransfer();
  data.items.add(new File([blob], "image.png", { type: "image/png" }));
  const box = document.getElementById("message-input");
  box.focus();
  const options = { clipboardData: data, bubbles: true, cancelable: true };
  box.dispatchEvent(new ClipboardEvent("paste", options));
  return true;
}
"""

# Drop a text file on the conversation.
DROP_NOTES = """
() => {
  const data = new DataTransfer();
  data.items.add(new File(["step 1\\nstep 2\\n"], "notes.txt", { type: "text/plain" }));
  const target = document.querySelector("main");
  for (const kind of ["dragenter", "dragover", "drop"]) {
    const options = { dataTransfer: data, bubbles: true, cancelable: true };
    target.dispatchEvent(new DragEvent(kind, options));
  }
  return true;
}
"""

CHIPS = """
(count) => {
  const chips = document.querySelectorAll("#attachments .chip");
  const done = Array.from(chips).filter((chip) => chip.querySelector("input[name=attachment]"));
  const name = (chip) => chip.querySelector(".chip__name").textContent;
  return done.length === count ? Array.from(done, name) : null;
}
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[RemoteBrowser]:
    with started_browser(tmp_path) as remote:
        yield remote


def test_paste_attach_and_drop_files_then_send(tmp_path: Path, browser: RemoteBrowser) -> None:
    upstream = FakeUpstream(PACE)
    upstream.start()
    contract = tmp_path / "contract.pdf"
    contract.write_bytes(pdf(2))
    try:
        with app_server(tmp_path, upstream=upstream) as server:
            browser.open("chat", server.url + "/")
            browser.evaluate("chat", PASTE_SCREENSHOT)
            browser.choose_files("chat", "input[aria-label='Attach files']", [str(contract)])
            browser.evaluate("chat", DROP_NOTES)
            names = browser.wait_for("chat", CHIPS, 3)
            assert sorted(names) == ["contract.pdf", "image.png", "notes.txt"]
            browser.screenshot("chat", str(ARTIFACTS / "attachments-chips.png"))
            browser.send("chat", "What are these?")
            reply = browser.wait_for(
                "chat",
                """() => {
                  const articles = document.querySelectorAll('article[data-role="assistant"]');
                  const last = articles[articles.length - 1];
                  return last && last.dataset.status === "complete"
                    ? last.querySelector("[data-content]").textContent : null;
                }""",
            )
            assert "image.png (PNG image, 64 × 48)" in reply
            assert "contract.pdf (PDF, 2 pages)" in reply
            assert "notes.txt" in reply
            question = browser.evaluate(
                "chat",
                """() => {
                  const article = document.querySelector('article[data-role="user"]');
                  return {
                    images: Array.from(article.querySelectorAll(".attachments img"), (i) => i.alt),
                    files: Array.from(
                      article.querySelectorAll(".attachments .chip a"), (a) => a.textContent
                    ),
                    chipsLeft: document.querySelectorAll("#attachments .chip").length,
                  };
                }""",
            )
            assert question["images"] == ["image.png"]
            assert sorted(question["files"]) == ["contract.pdf", "notes.txt"]
            assert question["chipsLeft"] == 0
            browser.screenshot("chat", str(ARTIFACTS / "attachments-sent.png"))
            errors = browser.errors("chat")
            assert errors == [], "\n".join(e["text"] for e in errors)
        [request] = upstream.requests
        kinds = [block["type"] for block in request["messages"][0]["content"]]
        assert sorted(kinds[:3]) == ["document", "document", "image"] and kinds[3] == "text"
    finally:
        upstream.stop()
