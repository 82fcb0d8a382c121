"""The nginx sample (`deploy/nginx/chatapp.conf`) in front of the real app, in Chromium over HTTPS.

Debian's nginx runs the sample as shipped, with only what a sysadmin changes (tests/nginx.py):
the upstream's port, the listen ports and the certificate paths (a self-signed certificate).
The page is on a port other than 443, as internal tools often are. gunicorn (gevent worker)
serves the app with the fake upstream of this process. Chromium signs in with a password, as a
person does: nobody is signed in by a proxy's header here.

Two Chromiums take the path: one as people use it, on HTTP/2, and one on HTTP/1.1 only, as is a
browser behind an office proxy that inspects TLS. Through nginx: the page comes over HTTP/2;
signing in works (the CSRF check's strict referrer test passes only if nginx passes the port
on); an answer grows on screen in many steps, not in one burst; an answer whose stream carries
no byte at all for longer than nginx's default `proxy_read_timeout` (60 s) is not cut; Stop
works; the connection check says nothing on the way buffers or cuts streams. The quiet answers
run beside the other checks, so the test takes a little over its quiet minute.

Two copies of the sample show that the test fails when it should. With buffering forced on
(`proxy_buffering on`, the app's `X-Accel-Buffering: no` ignored), the browser on HTTP/1.1 sees
the answer grow in a few bursts, and the connection check says "Buffering". (Over HTTP/2, nginx
1.22 passes each chunk of gunicorn's chunked answer on at once even then, so that browser sees
every step.) With `Host $host`, signing in fails.
"""

from __future__ import annotations

import http.client
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .browser import BrowserError, RemoteBrowser, missing_browser
from .nginx import (
    Nginx,
    buffering_forced_on,
    check_configuration,
    configure,
    host_without_port,
    missing_nginx,
    nginx_in_front,
)
from .server import AppServer, app_server
from .test_browser_live import (
    CHECK_VERDICT,
    answer_text,
    eventually,
    message_number,
    new_answer,
    page_failures,
    seen,
    shown,
    stored,
    streaming_lengths,
    wait_for_answer,
)

# ~60 tokens/s: an answer of ~900 characters takes about 4 s, in dozens of frames.
PACE = Pace(first_token_seconds=(0.3, 0.3), tokens_per_second=(60.0, 60.0), ping_seconds=1.0)
QUICK = Pace(first_token_seconds=(0.1, 0.1), tokens_per_second=(400.0, 400.0), ping_seconds=1.0)
SLOW = Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(25.0, 25.0), ping_seconds=1.0)

# The quiet answer: some text, then nothing at all from the upstream for longer than nginx's
# default proxy_read_timeout (60 s), then the rest.
QUIET_AFTER = 200
QUIET_SECONDS = 65.0
# The app's heartbeat (a comment on every idle stream, 10 s by default) would keep the stream
# busy; above the quiet time, the stream carries no byte at all while the upstream is quiet,
# so only nginx's own settings keep it open.
HEARTBEAT_SECONDS = 120

# The fewest steps in which an answer of this test may grow on screen: it is written in about 70
# frames, and each shows on its own when nothing on the way holds the stream back. (Through
# nginx with buffering on, a browser on HTTP/1.1 saw it grow in 3.)
MANY_STEPS = 15

PERSON = "sam"
PASSWORD = "a long enough password"

SIGNED_IN = """
() => {
  if (document.getElementById("message-input")) return "signed in";
  const error = document.querySelector("main.error-page, .account-page__error");
  return error ? error.textContent.replace(/\\s+/g, " ").trim() : null;
}
"""

PROTOCOL = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"

# Counts, for each answer, the animation frames in which its text on screen changed: the steps
# a reader saw. Events that arrive together are handled in one task and show in one frame.
PAINTS = """
() => {
  if (window.__paints) return;
  const paints = window.__paints = {};
  const last = {};
  const tick = () => {
    for (const article of document.querySelectorAll('article[data-role="assistant"]')) {
      const content = article.querySelector("[data-content]");
      if (!content || !article.id) continue;
      const length = content.textContent.length;
      if (length !== last[article.id]) {
        last[article.id] = length;
        paints[article.id] = (paints[article.id] || 0) + 1;
      }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}
"""

ANSWER_STREAMS = """
() => window.__sseOpened.filter((url) => /^\\/messages\\/\\d+\\/stream(\\?|$)/.test(url))
"""


@dataclass
class Window:
    """A browser window (a page of its own) on the nginx in front of the app."""

    browser: RemoteBrowser
    page: str
    protocol: str  # what its browser speaks to nginx: "h2", or "http/1.1"

    def problem(self, check: str, sentence: str) -> dict[str, str]:
        return {f"{check} ({self.protocol})": sentence}


@pytest.fixture(scope="module", autouse=True)
def nginx_installed() -> None:
    reason = missing_nginx()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(PACE, seed=5)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream) -> Iterator[AppServer]:
    env = {
        # nginx relays from loopback: nobody may be signed in by a header here.
        "CHATAPP_TRUSTED_USER_HEADER": "null",
        "CHATAPP_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "CHATAPP_UPSTREAM_MAX_RETRIES": "0",
    }
    with app_server(tmp_path_factory.mktemp("nginx-app"), upstream=fake, env=env) as running:
        running.flask("users", "create", PERSON, stdin=PASSWORD + "\n")
        yield running


def _browser(tmp_path_factory: pytest.TempPathFactory, *args: str) -> RemoteBrowser:
    reason = missing_browser()
    if reason:
        pytest.fail(reason)
    log = tmp_path_factory.mktemp("nginx-browser") / "browser.log"
    return RemoteBrowser(log, chromium_args=args)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, server: AppServer) -> Iterator[RemoteBrowser]:
    """Chromium as people use it: HTTP/2 wherever the server offers it."""
    remote = _browser(tmp_path_factory)
    yield remote
    remote.close()


@pytest.fixture(scope="module")
def browser_h1(
    tmp_path_factory: pytest.TempPathFactory, server: AppServer
) -> Iterator[RemoteBrowser]:
    """Chromium on HTTP/1.1 only, as a browser behind an office proxy that inspects TLS is."""
    remote = _browser(tmp_path_factory, "--disable-http2")
    yield remote
    remote.close()


@pytest.fixture
def windows() -> Iterator[list[Window]]:
    """The windows a test opened; they are closed after it, with their streams."""
    opened: list[Window] = []
    yield opened
    for window in opened:
        window.browser.close_page(window.page)


# -- the checks: each returns what went wrong, in a sentence, by the name of the check ------------


def sign_in(window: Window, nginx: Nginx) -> dict[str, str]:
    """Open the sign-in page over HTTPS and sign in with the password."""
    browser, page = window.browser, window.page
    problems = {}
    browser.open(page, nginx.url + "/login", by_header=False, ignore_https_errors=True)
    protocol = browser.evaluate(page, PROTOCOL)
    if protocol != window.protocol:
        problems |= window.problem("protocol", f"the page came over {protocol!r}")
    browser.fill(page, "Username", PERSON)
    browser.fill(page, "Password", PASSWORD)
    browser.click(page, 'button:text-is("Sign in")')
    outcome = browser.wait_for(page, SIGNED_IN)
    if outcome != "signed in":
        problems |= window.problem("sign in", f"signing in on {nginx.url} failed: {outcome}")
    return problems


def start_quiet_answer(window: Window, fake: FakeUpstream) -> tuple[str, str]:
    """Ask for an answer that goes quiet after its first part; (its DOM id, its text)."""
    text = answer_text("Quiet", 3)
    asked = len(fake.requests)
    fake.push(Scenario(text=text, pace=QUICK, stall_after=QUIET_AFTER, stall_seconds=QUIET_SECONDS))
    window.browser.send(window.page, "Think about it for a while")
    answer = new_answer(window.browser, window.page)
    # The page shows the first part: the stream is open, and the upstream has gone quiet.
    shown_first = len(shown(text[:QUIET_AFTER]).rstrip())
    wait_for_answer(window.browser, window.page, answer, length=shown_first)
    assert len(fake.requests) == asked + 1
    return answer, text


def finish_quiet_answer(
    window: Window, server: AppServer, answer: str, text: str
) -> dict[str, str]:
    """The quiet answer ends complete, on the stream it started on (none was opened again)."""
    browser, page = window.browser, window.page
    try:
        final = wait_for_answer(
            browser, page, answer, status="complete", timeout=QUIET_SECONDS + 30
        )
    except BrowserError as error:
        return window.problem("quiet", f"the quiet answer did not complete on the page: {error}")
    streams = browser.evaluate(page, ANSWER_STREAMS)
    failures = page_failures(browser, page)
    if len(streams) != 1 or failures:
        return window.problem(
            "quiet",
            f"the answer's stream was cut while it was quiet for {QUIET_SECONDS:.0f} s: the "
            f"page opened it {len(streams)} times ({streams}); errors on the page: {failures}",
        )
    if final["text"] != shown(text) or stored(server, message_number(answer))[:2] != (
        "complete",
        text,
    ):
        return window.problem("quiet", "the quiet answer is not the whole text in the end")
    return {}


def stream_an_answer(
    window: Window, server: AppServer, fake: FakeUpstream, before: str | None = None
) -> tuple[str, dict[str, str]]:
    """An answer reaches the page in many steps as it is written; (its DOM id, problems)."""
    browser, page = window.browser, window.page
    text = answer_text("Steps", 6)
    fake.push(Scenario(text=text, pace=PACE))
    browser.evaluate(page, PAINTS)
    browser.send(page, "Write it out")
    answer = new_answer(browser, page, before)
    final = wait_for_answer(browser, page, answer, status="complete", timeout=30)
    events = len(streaming_lengths(seen(browser, page, answer)))
    paints: int = browser.evaluate(page, "(id) => window.__paints[id]", answer)
    problems = {}
    if final["text"] != shown(text) or stored(server, message_number(answer))[:2] != (
        "complete",
        text,
    ):
        problems |= window.problem("answer", "the answer on the page is not the answer written")
    if paints < MANY_STEPS:
        problems |= window.problem(
            "streaming",
            f"the answer grew on screen in {paints} steps, not in many (at least {MANY_STEPS}; "
            f"it came in {events} events): something on the way holds the stream back and "
            "lets it through in bursts",
        )
    failures = page_failures(browser, page)
    if failures:
        problems |= window.problem("page errors", f"errors on the page: {failures}")
    return answer, problems


def stop_an_answer(
    window: Window, server: AppServer, fake: FakeUpstream, before: str
) -> dict[str, str]:
    """Stop keeps the text so far and closes the request to the API."""
    browser, page = window.browser, window.page
    text = answer_text("Long", 30)  # ~45 s at SLOW, never reached
    closed = len(fake.disconnects)
    fake.push(Scenario(text=text, pace=SLOW))
    browser.send(page, "Say a lot, slowly")
    answer = new_answer(browser, page, before)
    number = message_number(answer)
    # Stop once some text is written (whether the page shows it yet is the streaming check's).
    if not eventually(lambda: stored(server, number)[1], timeout=15):
        return window.problem("stop", "the answer to stop never started")
    browser.click(page, f'#{answer} button:text-is("Stop")')
    try:
        final = wait_for_answer(browser, page, answer, status="cancelled", timeout=15)
    except BrowserError as error:
        return window.problem("stop", f"the page did not show the answer stopped: {error}")
    status, kept, _ = stored(server, number)
    if status != "cancelled" or not text.startswith(kept) or len(kept) >= len(text):
        return window.problem("stop", f"Stop left the answer {status}, {len(kept)} characters")
    if final["text"] != shown(kept):
        return window.problem("stop", "the stopped answer on the page is not the text kept")
    if not eventually(lambda: len(fake.disconnects) > closed):
        return window.problem("stop", "Stop did not close the request to the API")
    return {}


def check_the_connection(window: Window, nginx: Nginx) -> dict[str, str]:
    """The connection check's quick run says nothing on the way buffers or cuts streams."""
    browser, page = window.browser, window.page
    browser.goto(page, nginx.url + "/connection-check")
    browser.click(page, 'button[data-check="quick"]')
    verdict: str = browser.wait_for(page, CHECK_VERDICT, timeout=40)
    if "Nothing on the way buffers or cuts streams" not in verdict:
        return window.problem("connection check", f"the connection check says: {verdict}")
    return {}


def redirect_from_plain_http(nginx: Nginx) -> tuple[int, str | None]:
    """What the plain HTTP server answers to a request for the sign-in page: (status, Location)."""
    connection = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=10)
    try:
        connection.request("GET", "/login", headers={"Host": f"localhost:{nginx.http_port}"})
        response = connection.getresponse()
        return response.status, response.getheader("Location")
    finally:
        connection.close()


# -- the tests ------------------------------------------------------------------------------------


def test_nginx_accepts_the_sample_without_a_warning(tmp_path: Path) -> None:
    nginx = configure(tmp_path / "nginx", "http://127.0.0.1:8000")
    output = check_configuration(nginx.directory)
    assert "test is successful" in output, output
    assert "[warn]" not in output, output


@pytest.mark.slow
def test_the_sample_serves_chat_over_https_on_another_port(
    tmp_path: Path,
    server: AppServer,
    fake: FakeUpstream,
    browser: RemoteBrowser,
    browser_h1: RemoteBrowser,
    windows: list[Window],
) -> None:
    with nginx_in_front(tmp_path, server.url) as nginx:
        assert "[warn]" not in nginx.test_output, nginx.test_output
        assert nginx.https_port != 443
        assert redirect_from_plain_http(nginx) == (301, nginx.url + "/login")
        quiet = Window(browser, "quiet", "h2")
        chat = Window(browser, "chat", "h2")
        quiet_h1 = Window(browser_h1, "quiet", "http/1.1")
        chat_h1 = Window(browser_h1, "chat", "http/1.1")
        windows.extend([quiet, chat, quiet_h1, chat_h1])
        problems: dict[str, str] = {}

        # The quiet answers go first, one over each protocol; the other checks run meanwhile.
        quiet_answers = []
        for window in (quiet, quiet_h1):
            problems |= sign_in(window, nginx)
            quiet_answers.append(start_quiet_answer(window, fake))

        problems |= sign_in(chat, nginx)
        answer, streamed = stream_an_answer(chat, server, fake)
        problems |= streamed
        problems |= stop_an_answer(chat, server, fake, answer)
        problems |= check_the_connection(chat, nginx)

        problems |= sign_in(chat_h1, nginx)
        problems |= stream_an_answer(chat_h1, server, fake)[1]
        problems |= check_the_connection(chat_h1, nginx)

        for window, (quiet_answer, quiet_text) in zip(
            (quiet, quiet_h1), quiet_answers, strict=True
        ):
            problems |= finish_quiet_answer(window, server, quiet_answer, quiet_text)
        access_log = nginx.access_log()

    assert problems == {}
    # The requests went through nginx, over both protocols.
    assert re.search(r'"POST /login HTTP/2\.0" 302 ', access_log), access_log
    assert re.search(r'"POST /login HTTP/1\.1" 302 ', access_log), access_log


@pytest.mark.slow
def test_buffering_forced_on_is_caught(
    tmp_path: Path,
    server: AppServer,
    fake: FakeUpstream,
    browser: RemoteBrowser,
    browser_h1: RemoteBrowser,
    windows: list[Window],
) -> None:
    with nginx_in_front(tmp_path, server.url, alter=buffering_forced_on) as nginx:
        chat = Window(browser, "buffered", "h2")
        chat_h1 = Window(browser_h1, "buffered", "http/1.1")
        windows.extend([chat, chat_h1])
        problems = sign_in(chat, nginx)
        answer, streamed = stream_an_answer(chat, server, fake)
        problems |= streamed
        problems |= stop_an_answer(chat, server, fake, answer)
        problems |= check_the_connection(chat, nginx)
        problems |= sign_in(chat_h1, nginx)
        problems |= stream_an_answer(chat_h1, server, fake)[1]
        problems |= check_the_connection(chat_h1, nginx)

    # The same checks (but the quiet minute): the two that watch for buffering say so, for the
    # browser on HTTP/1.1. (Over HTTP/2, nginx 1.22 passes each chunk of gunicorn's chunked
    # answer on at once, buffering or not: the browser on HTTP/2 sees every step.)
    assert set(problems) == {"streaming (http/1.1)", "connection check (http/1.1)"}, problems
    assert "Buffering" in problems["connection check (http/1.1)"]


@pytest.mark.slow
def test_host_without_its_port_fails_to_sign_in(
    tmp_path: Path, server: AppServer, browser: RemoteBrowser, windows: list[Window]
) -> None:
    with nginx_in_front(tmp_path, server.url, alter=host_without_port) as nginx:
        window = Window(browser, "host", "h2")
        windows.append(window)
        problems = sign_in(window, nginx)

    assert set(problems) == {"sign in (h2)"}, problems
    assert "The referrer does not match the host." in problems["sign in (h2)"]
