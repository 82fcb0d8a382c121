"""A deploy mid-answer: gunicorn is reloaded (SIGHUP) or stopped (SIGTERM) while Claude writes.

The answer ends `complete` if it finishes within the grace period, else `interrupted`, and every
character a reader was shown is stored.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .conftest import parse_events
from .dom import rendered
from .server import app_server
from .test_gunicorn import Browser, assert_shown_is_kept, read_answer, stored_messages

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

LONG = "".join(f"Sentence {i} of an answer that outlives the deploy. " for i in range(150))


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(40.0, 40.0)))
    fake.start()
    yield fake
    fake.stop()


@pytest.mark.parametrize("sent", [signal.SIGHUP, signal.SIGTERM], ids=["reload", "stop"])
def test_a_deploy_mid_answer_keeps_what_was_shown(
    tmp_path: Path, upstream: FakeUpstream, sent: signal.Signals
) -> None:
    upstream.push(Scenario(text=LONG), Scenario(text="After the deploy."))
    env = {"GUNICORN_CMD_ARGS": "--graceful-timeout 5"}
    with app_server(tmp_path, upstream=upstream, env=env) as server:
        browser = Browser(server.url)
        browser.open_page()
        answer_id, url = browser.send("Keep talking")
        reader = gevent.spawn(browser.read_stream, url)
        gevent.sleep(1.5)
        assert server.process is not None
        server.process.send_signal(sent)
        raw = reader.get(timeout=30)

        status, content = stored_messages(server)[answer_id][1:]
        assert status == "interrupted" and LONG.startswith(content)
        shown = assert_shown_is_kept(answer_id, raw, content)
        assert shown, "the reader saw text before the deploy"
        assert 'data-status="interrupted"' in parse_events(raw)[-1]["data"]
        assert "Traceback" not in server.output()

        if sent == signal.SIGHUP:
            # The new worker serves the next answer, and the old one's end is there on reload.
            deadline = time.monotonic() + 20
            while True:
                try:
                    browser.open_page()
                    break
                except OSError:
                    assert time.monotonic() < deadline
                    gevent.sleep(0.2)
            _, screen, events = read_answer(answer_id, browser.read_stream(url))
            assert 'data-status="interrupted"' in events[-1]["data"]
            assert screen.html == rendered(content)
            next_id, next_url = browser.send("And now?")
            screen = read_answer(next_id, browser.read_stream(next_url))[1]
            assert screen.html == rendered("After the deploy.")
