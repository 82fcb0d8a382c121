"""Real Chromium for the tests, driven from a plain (not gevent-patched) Python process.

The test process is gevent-patched (tests/run.sh) and serves the fake upstream from its hub.
Playwright's sync API runs an asyncio loop in greenlets of its own; gevent does not support
asyncio in the same thread, and a blocked loop there would also stall the fake upstream that the
server is streaming from. So Playwright always runs in a separate Python process.

`test_browser.py` hands that process one whole script. `RemoteBrowser` instead keeps the process
running and sends it one step at a time (open a page, click, wait for something on the page,
read what the page recorded), so a test can act between steps: cut connections, read what the
fake upstream saw, look in the database. The process is this module run as
`python -m tests.browser`; it reads one JSON command a line and answers one JSON line each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None if they can."""
    import importlib.util

    if not Path(CHROMIUM).is_file():
        return (
            f"Chromium is not installed at {CHROMIUM}; the browser tests need it. "
            "Install it with `make browser` (`make test` does this)."
        )
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed: `.venv/bin/pip install -e '.[test]'`."
    return None


# -- the test's side (gevent-patched process) -------------------------------------------------


@contextmanager
def started_browser(folder: Path, *chromium_args: str) -> Iterator[RemoteBrowser]:
    """A RemoteBrowser logging into `folder`, closed afterwards; the test fails (never skips)
    where Chromium or Playwright is missing."""
    reason = missing_browser()
    if reason:
        pytest.fail(reason)
    remote = RemoteBrowser(folder / "browser.log", chromium_args=chromium_args)
    try:
        yield remote
    finally:
        remote.close()


class BrowserError(AssertionError):
    """A step failed in the browser (a wait timed out, an element was missing, ...)."""


class RemoteBrowser:
    """A Chromium in its own process, driven step by step.

    Pages are named; each lives in a browser context of its own, like a separate browser
    window with its own connections, signed in as its `user` (tests/server.py's USER unless
    `open` names another) by the trusted proxy's header on every request: page loads, htmx
    requests and event streams (unless `open` says `by_header=False`: then the page signs in
    as a person does). Every page records its answers as they change on screen (see
    RECORDER) from the moment each document starts, reloads included.
    """

    def __init__(
        self,
        log_path: Path,
        *,
        step_timeout: float = 30.0,
        chromium_args: tuple[str, ...] = (),
    ) -> None:
        """Start Chromium; `chromium_args` add to CHROMIUM_ARGS (e.g. `--disable-http2`)."""
        self.log_path = log_path
        self.step_timeout = step_timeout
        self._log = log_path.open("ab")
        # Under gevent the pipes are cooperative: the fake upstream keeps serving while we wait.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.browser", str(ARTIFACTS), *chromium_args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
        )
        try:
            self.call("hello", timeout=60.0)  # Chromium has started
        except BaseException:
            self.close()
            raise

    def call(self, op: str, *, timeout: float | None = None, **args: Any) -> Any:
        """Run one step in the browser and return its JSON value."""
        import gevent

        process = self._process
        assert process.stdin is not None and process.stdout is not None
        limit = (timeout or self.step_timeout) + 10.0
        try:
            with gevent.Timeout(limit):
                process.stdin.write(json.dumps({"op": op, **args}) + "\n")
                process.stdin.flush()
                line = process.stdout.readline()
        except gevent.Timeout:
            self.close()
            raise BrowserError(
                f"the browser did not answer {op!r} in {limit:.0f} s{self._output()}"
            ) from None
        if not line:
            raise BrowserError(f"the browser process ended during {op!r}{self._output()}")
        reply = json.loads(line)
        if "error" in reply:
            step = {key: value for key, value in args.items() if key != "script"}
            raise BrowserError(f"{op} {step!r} failed in the browser:\n{reply['error']}")
        return reply.get("value")

    # Steps on a named page ------------------------------------------------------------------

    def open(
        self,
        page: str,
        url: str,
        *,
        user: str | None = None,
        by_header: bool = True,
        ignore_https_errors: bool = False,
        viewport: tuple[int, int] = (1100, 900),
    ) -> None:
        """Open `url` in a new context; `by_header=False` sends no user header (the page signs
        in as a person does), `ignore_https_errors` accepts a self-signed certificate."""
        from .conftest import USER_HEADER
        from .server import USER

        headers = {USER_HEADER: user or USER} if by_header else {}
        self.call(
            "open",
            page=page,
            url=url,
            headers=headers,
            ignore_https_errors=ignore_https_errors,
            viewport=viewport,
        )

    def goto(self, page: str, url: str) -> None:
        """Load `url` in the page, as typing it in the address bar does."""
        self.call("goto", page=page, url=url)

    def fill(self, page: str, label: str, value: str) -> None:
        """Type `value` into the field labelled `label`."""
        self.call("fill", page=page, label=label, value=value)

    def close_page(self, page: str) -> None:
        self.call("close", page=page)

    def evaluate(self, page: str, script: str, arg: Any = None) -> Any:
        return self.call("evaluate", page=page, script=script, arg=arg)

    def wait_for(self, page: str, script: str, arg: Any = None, *, timeout: float = 20.0) -> Any:
        """Wait until `script` (a JS function of `arg`) returns something truthy; return it."""
        return self.call(
            "wait", page=page, script=script, arg=arg, ms=timeout * 1000, timeout=timeout
        )

    def click(self, page: str, selector: str) -> None:
        self.call("click", page=page, selector=selector)

    def choose_files(self, page: str, selector: str, paths: list[str]) -> None:
        """Choose files in the file input `selector`, as the file picker does."""
        self.call("choose_files", page=page, selector=selector, paths=paths)

    def click_at(self, page: str, x: float, y: float) -> None:
        """Click (or tap) the page at a point of the viewport, whatever is there."""
        self.call("click_at", page=page, x=x, y=y)

    def press(self, page: str, key: str) -> None:
        """Press a key, or a chord like "Control+Shift+O", in whatever has the focus."""
        self.call("press", page=page, key=key)

    def resize(self, page: str, width: int, height: int) -> None:
        """Give the page's viewport another size (as a phone's keyboard does, or a rotation)."""
        self.call("resize", page=page, width=width, height=height)

    def send(self, page: str, prompt: str) -> None:
        """Type a prompt in the composer and press Enter, as a user does."""
        self.call("send", page=page, prompt=prompt)

    def reload(self, page: str) -> None:
        self.call("reload", page=page)

    def screenshot(self, page: str, path: str) -> None:
        """Save a picture of the whole page at `path`, to look at."""
        self.call("screenshot", page=page, path=path)

    def errors(self, page: str) -> list[dict[str, str]]:
        """Uncaught exceptions and console errors of the page so far."""
        value: list[dict[str, str]] = self.call("errors", page=page)
        return value

    def close(self) -> None:
        """End the browser process (politely, then not)."""
        process = self._process
        if process.poll() is None:
            try:
                assert process.stdin is not None
                process.stdin.close()
                process.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        self._log.close()

    def _output(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"\nbrowser process output:\n{text}" if text else ""


# -- the browser's side (plain Python process, no gevent) -------------------------------------

# Runs at the start of every document of every page. It keeps, for each assistant article (by
# its DOM id), every distinct (text, status) the page showed, in order: after each batch of DOM
# changes and on every animation frame. Nothing is ever removed, so the test sees each step.
# It also keeps what each answer showed when the document was parsed, and notes each event stream
# the SSE extension opened.
RECORDER = """
(() => {
  const rec = window.__answers = {};
  const sample = () => {
    for (const article of document.querySelectorAll('article[data-role="assistant"]')) {
      const content = article.querySelector("[data-content]");
      if (!content || !article.id) continue;
      const text = content.textContent;
      const status = article.dataset.status;
      const seen = rec[article.id] || (rec[article.id] = []);
      const last = seen[seen.length - 1];
      if (!last || last.text !== text || last.status !== status) seen.push({ text, status });
    }
  };
  new MutationObserver(sample).observe(document, {
    subtree: true, childList: true, characterData: true, attributes: true,
  });
  const tick = () => { sample(); requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  // What the server rendered, before any event stream could add to it (this listener is
  // added before htmx's own, which opens the streams).
  document.addEventListener("DOMContentLoaded", () => {
    sample();
    window.__loaded = {};
    for (const [id, seen] of Object.entries(rec)) window.__loaded[id] = seen[seen.length - 1];
  });
  // Every event stream the SSE extension opened, by its sse-connect URL, in order.
  const opened = window.__sseOpened = [];
  document.addEventListener("htmx:sseOpen", (event) => {
    opened.push(event.detail.elt.getAttribute("sse-connect"));
  });
})();
"""


# Runs at the start of every document of every page: each Content-Security-Policy violation is
# kept in `window.__cspViolations` and reported as a console error, which the page's error list
# collects, so any test that asserts no errors also asserts that the pages broke no policy.
CSP_WATCH = """
(() => {
  const seen = window.__cspViolations = [];
  document.addEventListener("securitypolicyviolation", (event) => {
    const violation = {
      directive: event.effectiveDirective || event.violatedDirective,
      blocked: event.blockedURI || "inline",
      source: (event.sourceFile || "") + ":" + event.lineNumber,
      sample: event.sample || "",
    };
    seen.push(violation);
    console.error("CSP violation: " + JSON.stringify(violation));
  }, true);
})();
"""


class _Driver:
    def __init__(self, playwright: Any, artifacts: Path, chromium_args: list[str]) -> None:
        self.artifacts = artifacts
        self.browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS + chromium_args
        )
        self.pages: dict[str, Any] = {}
        self.page_errors: dict[str, list[dict[str, str]]] = {}

    def run(self, command: dict[str, Any]) -> Any:
        op = command.pop("op")
        if op == "hello":
            return "ready"
        name = command.pop("page")
        if op == "open":
            return self._open(
                name,
                command["url"],
                command["headers"],
                command["viewport"],
                command.get("ignore_https_errors", False),
            )
        page = self.pages[name]
        try:
            return getattr(self, f"_{op}")(name, page, **command)
        except Exception:
            self._shoot(page, f"failure-{name}")
            raise

    def _open(
        self,
        name: str,
        url: str,
        headers: dict[str, str],
        viewport: list[int],
        ignore_https_errors: bool = False,
    ) -> None:
        if name in self.pages:
            self.pages.pop(name).context.close()
        width, height = viewport
        context = self.browser.new_context(
            viewport={"width": width, "height": height},
            extra_http_headers=headers,
            ignore_https_errors=ignore_https_errors,
        )
        context.add_init_script(CSP_WATCH)
        context.add_init_script(RECORDER)
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors = self.page_errors[name] = []
        page.on("pageerror", lambda error: errors.append({"kind": "pageerror", "text": str(error)}))
        page.on(
            "console",
            lambda message: (
                errors.append({"kind": "console", "text": message.text})
                if message.type == "error"
                else None
            ),
        )
        self.pages[name] = page
        page.goto(url)

    def _close(self, name: str, page: Any) -> None:
        del self.pages[name]
        page.context.close()

    def _evaluate(self, name: str, page: Any, script: str, arg: Any) -> Any:
        return page.evaluate(script, arg)

    def _wait(self, name: str, page: Any, script: str, arg: Any, ms: float) -> Any:
        return page.wait_for_function(script, arg=arg, timeout=ms).json_value()

    def _click(self, name: str, page: Any, selector: str) -> None:
        page.locator(selector).click()

    def _goto(self, name: str, page: Any, url: str) -> None:
        page.goto(url)

    def _fill(self, name: str, page: Any, label: str, value: str) -> None:
        page.get_by_label(label, exact=True).fill(value)

    def _send(self, name: str, page: Any, prompt: str) -> None:
        box = page.get_by_label("Message")
        box.fill(prompt)
        box.press("Enter")

    def _choose_files(self, name: str, page: Any, selector: str, paths: list[str]) -> None:
        page.locator(selector).set_input_files(paths)

    def _click_at(self, name: str, page: Any, x: float, y: float) -> None:
        page.mouse.click(x, y)

    def _press(self, name: str, page: Any, key: str) -> None:
        page.keyboard.press(key)

    def _resize(self, name: str, page: Any, width: int, height: int) -> None:
        page.set_viewport_size({"width": width, "height": height})

    def _reload(self, name: str, page: Any) -> None:
        page.reload()

    def _screenshot(self, name: str, page: Any, path: str) -> None:
        # caret="initial": hiding the caret would leave style="" on every field, which htmx
        # then copies onto the fields it swaps in, against the Content-Security-Policy.
        page.screenshot(path=path, full_page=True, caret="initial")

    def _errors(self, name: str, page: Any) -> list[dict[str, str]]:
        return self.page_errors[name]

    def _shoot(self, page: Any, label: str) -> None:
        try:
            page.screenshot(path=str(self.artifacts / f"live-{label}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - a picture is a courtesy; the step's error matters
            traceback.print_exc()


def _serve(artifacts: Path, chromium_args: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    # Answers go out on the original stdout; anything else printed goes to stderr (the log).
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        driver = _Driver(playwright, artifacts, chromium_args)
        try:
            for line in sys.stdin:
                command = json.loads(line)
                try:
                    reply = {"value": driver.run(command)}
                except Exception as exc:  # noqa: BLE001 - reported to the test, which fails
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                replies.write(json.dumps(reply) + "\n")
                replies.flush()
        finally:
            driver.browser.close()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), sys.argv[2:])
