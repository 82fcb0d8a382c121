"""Browsers that leave: nothing they held stays behind, and the answers go on without them."""

from __future__ import annotations

import random
import re
import socket
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
from gevent.pool import Pool

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .conftest import USER_HEADER
from .server import AppServer, app_server
from .test_gunicorn import Browser, stored_messages

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

ANSWERS = 10
CLIENTS = 1000
# ~4,800 characters: about 20 s at this pace, so the answers still stream after a thousand
# clients came and went on a busy machine
TEXT = "Leaving early does not stop me. " * 150


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    first_token = getattr(request, "param", 0.2)
    fake = FakeUpstream(
        Pace(first_token_seconds=(first_token, first_token), tokens_per_second=(60.0, 60.0))
    )
    fake.start()
    yield fake
    fake.stop()


def metrics(server: AppServer) -> dict[str, float]:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        body = response.read().decode()
    return {
        name: float(value)
        for name, value in re.findall(r"^(chatapp_\w+) (\S+)$", body, flags=re.MULTILINE)
    }


def listen_then_vanish(
    server: AppServer, path: str, user: str, rng: random.Random, until: bytes
) -> bool:
    """Open a stream as `user`, read until `until` arrives, then vanish (half the time: a RST)."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    try:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
            f"{USER_HEADER}: {user}\r\n\r\n".encode()
        )
        received = b""
        while until not in received:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            received += chunk
        if rng.random() < 0.5:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return True
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("upstream", "until"),
    [
        (0.2, b"event: frame"),  # while text streams to them
        (12.0, b"retry:"),  # while the answer waits for its first token: no writes to fail
    ],
    indirect=["upstream"],
    ids=["while-streaming", "while-waiting"],
)
def test_a_thousand_clients_leave_mid_answer_and_nothing_leaks(
    tmp_path: Path, upstream: FakeUpstream, until: bytes
) -> None:
    upstream.push(*[Scenario(text=TEXT) for _ in range(ANSWERS)])
    with app_server(tmp_path, upstream=upstream, env={"CHATAPP_HEARTBEAT_SECONDS": "60"}) as server:
        browser = Browser(server.url)
        browser.open_page()
        answers = [browser.send(f"Question {n}") for n in range(ANSWERS)]

        rng = random.Random(3)
        pool = Pool(250)
        jobs = [
            pool.spawn(
                listen_then_vanish, server, answers[n % ANSWERS][1], browser.user, rng, until
            )
            for n in range(CLIENTS)
        ]
        pool.join(timeout=120, raise_error=True)
        assert all(job.value for job in jobs), "every client saw a frame before it left"

        # The heartbeat is 60 s, so only noticing the closed socket can release them this soon.
        # (The answers go on, so a group commit may hold a connection for a moment: a stream
        # that kept one would hold it for good.)
        deadline = time.monotonic() + 10
        during = metrics(server)
        while (
            during["chatapp_streams_open"] > 0 or during["chatapp_db_connections_in_use"] > 0
        ) and time.monotonic() < deadline:
            gevent.sleep(0.1)
            during = metrics(server)
        assert during["chatapp_streams_open"] == 0
        assert during["chatapp_answer_subscriptions"] == 0
        assert during["chatapp_db_connections_in_use"] == 0
        assert during["chatapp_answers_live"] > 0  # the answers go on without their readers

        deadline = time.monotonic() + 90
        while metrics(server)["chatapp_answers_live"] > 0 and time.monotonic() < deadline:
            gevent.sleep(0.2)
        after = metrics(server)
        assert after["chatapp_answers_live"] == 0 and after["chatapp_db_connections_in_use"] == 0
        stored = stored_messages(server)
        for answer_id, _url in answers:
            assert stored[answer_id][1:] == ("complete", TEXT)
        assert len(upstream.requests) == ANSWERS
        assert "Traceback" not in server.output()
