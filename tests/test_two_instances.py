"""Two gunicorn instances, as on two hosts, sharing one database and one Redis.

Post on A, stream from B, press Stop on B; a file uploaded on A is served by B; and when A dies
under kill -9 mid-answer, B's sweeper ends the answer as `interrupted` with every character B's
reader saw stored.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import psycopg
import pytest
from bs4 import BeautifulSoup
from sqlalchemy import create_engine, text

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .dom import rendered
from .server import AppServer, app_server
from .test_gunicorn import Browser, assert_shown_is_kept, read_answer

pytestmark = pytest.mark.slow  # real servers, browsers or Redis: not in `make test-fast`

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
STALE_AFTER = 3.0
SLOW = Pace(first_token_seconds=(0.2, 0.2), tokens_per_second=(40.0, 40.0))
LONG = "".join(f"Sentence {i} of an answer that takes a while. " for i in range(120))


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(SLOW)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def shared_database(tmp_path: Path) -> Iterator[str]:
    """A database for both instances: a fresh PostgreSQL database on the PostgreSQL pass."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'shared.sqlite'}"
        return
    name = f"chatapp_two_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def pair(
    tmp_path: Path, upstream: FakeUpstream, shared_database: str
) -> Iterator[tuple[AppServer, AppServer]]:
    env = {
        "REDIS_URL": REDIS_URL,
        "CHATAPP_REDIS_PREFIX": f"chatapp-test-{uuid.uuid4().hex[:8]}",
        "CHATAPP_STALE_AFTER": str(STALE_AFTER),
        "CHATAPP_SWEEP_INTERVAL": "0.5",
        "CHATAPP_HEARTBEAT_SECONDS": "1",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with app_server(tmp_path / "a", upstream=upstream, database_url=shared_database, env=env) as a:
        with app_server(
            tmp_path / "b", upstream=upstream, database_url=shared_database, env=env
        ) as b:
            yield a, b


def stored(database_url: str, message_id: int) -> tuple[str, str]:
    """(status, content) of a message, read straight from the shared database."""
    status, content = read(database_url, message_id, "status, content")
    return status, content


def read(database_url: str, message_id: int, columns: str) -> tuple[Any, ...]:
    """Columns of a message, read straight from the shared database."""
    url = database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text(f"SELECT {columns} FROM message WHERE id = :id"), {"id": message_id}
            ).one()
    finally:
        engine.dispose()
    return tuple(row)


def press_stop(browser: Browser, message_id: int) -> int:
    request = urllib.request.Request(
        f"{browser.base_url}/messages/{message_id}/stop",
        data=b"",
        headers={"HX-Request": "true", "X-CSRFToken": browser.csrf_token},
        method="POST",
    )
    with browser.opener.open(request, timeout=10) as response:
        return int(response.status)


def final_status(raw: str) -> str:
    from .conftest import parse_events

    done = [e for e in parse_events(raw) if e.get("event") == "done"]
    assert len(done) == 1
    article = BeautifulSoup(done[0]["data"], "html.parser").find("article")
    assert article is not None
    return str(article["data-status"])


def test_post_on_one_instance_stream_and_stop_on_the_other(
    pair: tuple[AppServer, AppServer], upstream: FakeUpstream, shared_database: str
) -> None:
    a, b = pair
    on_a, on_b = Browser(a.url), Browser(b.url)
    on_a.open_page()
    on_b.open_page()

    upstream.push(Scenario(text="Written on A, read on B: naïve <b>&</b> 🌍."))
    answer_id, url = on_a.send("Hello from A")
    _, screen, events = read_answer(answer_id, on_b.read_stream(url))
    written = "Written on A, read on B: naïve <b>&</b> 🌍."
    assert screen.html == rendered(written) and events[-1]["id"] == f"{answer_id}:{len(written)}"
    assert stored(shared_database, answer_id) == ("complete", written)

    upstream.push(Scenario(text=LONG))
    answer_id, url = on_a.send("A long one")
    reader = gevent.spawn(on_b.read_stream, url)
    gevent.sleep(1.5)
    pressed = time.monotonic()
    assert press_stop(on_b, answer_id) == 204
    raw = reader.get(timeout=10)
    assert final_status(raw) == "cancelled"
    status, content = stored(shared_database, answer_id)
    assert status == "cancelled" and LONG.startswith(content) and len(content) < len(LONG)
    assert_shown_is_kept(answer_id, raw, content)
    assert upstream.disconnects and upstream.disconnects[-1] - pressed < 1.0
    assert len(upstream.requests) == 2


def test_kill_9_mid_answer_leaves_it_interrupted_with_every_shown_character(
    pair: tuple[AppServer, AppServer], upstream: FakeUpstream, shared_database: str
) -> None:
    a, b = pair
    on_a, on_b = Browser(a.url), Browser(b.url)
    on_a.open_page()
    on_b.open_page()  # B's sweeper runs from its first request

    upstream.push(Scenario(text=LONG))
    answer_id, url = on_a.send("A will die")
    reader = gevent.spawn(on_b.read_stream, url)
    gevent.sleep(2.0)
    a.kill()
    killed = time.monotonic()
    raw = reader.get(timeout=STALE_AFTER + 20)
    ended_after = time.monotonic() - killed

    assert final_status(raw) == "interrupted"
    status, content = stored(shared_database, answer_id)
    assert status == "interrupted" and LONG.startswith(content)
    shown = assert_shown_is_kept(answer_id, raw, content)  # nothing a reader saw is lost
    assert shown, "B's reader saw text before A died"
    assert ended_after < STALE_AFTER + 15, f"the sweeper took {ended_after:.1f}s"
    # A's group commits stored the prompt's tokens; B counts what the answer wrote, just after
    # its listeners got its end.
    deadline = time.monotonic() + 10
    while (tokens := read(shared_database, answer_id, "input_tokens, output_tokens"))[1] is None:
        assert time.monotonic() < deadline, "the output tokens were never counted"
        gevent.sleep(0.1)
    assert tokens[0] > 0 and tokens[1] == -(-len(content) // 4)
    print(
        json.dumps({"shown": shown, "stored": len(content), "ended_after_s": round(ended_after, 1)})
    )


def test_a_file_uploaded_through_one_instance_is_served_by_the_other(
    pair: tuple[AppServer, AppServer],
) -> None:
    a, b = pair
    on_a, on_b = Browser(a.url), Browser(b.url)
    on_a.open_page()
    data = b"name,count\nfoo,3\n" * 100
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="notes.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    upload = urllib.request.Request(
        a.url + "/attachments",
        data=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "HX-Request": "true",
            "X-CSRFToken": on_a.csrf_token,
        },
        method="POST",
    )
    with on_a.opener.open(upload, timeout=10) as response:
        chip = BeautifulSoup(response.read(), "html.parser")
    attachment = chip.select_one("input[name=attachment]")
    assert attachment is not None
    with on_b.opener.open(f"{b.url}/attachments/{attachment['value']}", timeout=10) as served:
        assert served.read() == data
        assert served.headers["X-Content-Type-Options"] == "nosniff"
