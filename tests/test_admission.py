"""Admission: a saturated worker takes new answers in turn, or says it is busy."""

from __future__ import annotations

import time
from pathlib import Path

import gevent
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from chatapp.extensions import db
from chatapp.models import Message
from chatapp.streaming import streams
from chatapp.streaming.admission import Admission, Limits

from .browser import started_browser
from .conftest import Configure, html
from .server import app_server


def test_sends_wait_in_turn_while_the_worker_is_busy_and_the_queue_is_bounded() -> None:
    admission = Admission(Limits(busy_lag=0.05, queue=2, wait=5.0))
    admission.lag = 1.0  # busy, as the probe would find it
    admitted: list[int] = []

    def send(n: int) -> bool:
        if admission.admit():
            admitted.append(n)
            return True
        return False

    waiting = [gevent.spawn(send, n) for n in range(2)]
    gevent.sleep(0.1)
    assert admission.waiting == 2 and not admitted
    assert send(2) is False  # the queue is full: refused at once, not queued
    admission.ensure_running()  # the probe finds a worker that keeps up, and lets them in
    try:
        gevent.joinall(waiting, timeout=5, raise_error=True)
        assert admitted == [0, 1] and admission.waiting == 0
        assert admission.admit() is True  # nobody waiting, not busy: at once
    finally:
        admission.stop()


def test_a_send_that_waits_too_long_is_refused() -> None:
    admission = Admission(Limits(busy_lag=0.05, queue=10, wait=0.1))
    admission.lag = 1.0
    assert admission.admit() is False and admission.waiting == 0


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "form"])
def test_a_busy_worker_says_so_and_stores_nothing(
    configured: Configure, monkeypatch: pytest.MonkeyPatch, htmx: bool
) -> None:
    app = configured(SEND_WAIT=0.1)
    client: FlaskClient = app.test_client()
    client.get("/")  # the worker's background greenlets start
    monkeypatch.setattr(Admission, "busy", property(lambda self: True))
    response = client.post(
        "/messages",
        data={"content": "Are you there?", "conversation_id": ""},
        headers={"HX-Request": "true"} if htmx else {},
    )
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    page = html(response.data)
    error = page.select_one("#composer-error")
    assert error is not None and "busy" in error.get_text()
    if htmx:
        assert response.headers["HX-Retarget"] == "#composer-error"
    else:  # the page again, with what was typed
        assert page.select_one("textarea[name=content]").get_text() == "Are you there?"
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id))) == 0
    assert streams(app).admission.waiting == 0


@pytest.mark.slow
def test_the_page_says_busy_and_sends_the_message_again(tmp_path: Path) -> None:
    """A worker that stays busy: the page shows the notice, keeps what was typed, and sends it
    again by itself after Retry-After."""
    env = {"CHATAPP_BUSY_LAG_MS": "-1", "CHATAPP_SEND_WAIT": "0.2"}  # busy whatever the lag
    with app_server(tmp_path, env=env) as server, started_browser(tmp_path) as browser:
        browser.open("page", server.url + "/")
        browser.send("page", "Are you there?")
        notice = browser.wait_for(
            "page",
            "() => { const e = document.getElementById('composer-error');"
            " return e && e.textContent.includes('busy') && e.textContent; }",
        )
        assert "sent again in a moment" in notice
        deadline = time.monotonic() + 10
        while server.output().count('"POST /messages HTTP/1.1" 503') < 3:
            assert time.monotonic() < deadline, "the page did not send it again"
            gevent.sleep(0.2)
        typed = browser.evaluate("page", "() => document.getElementById('message-input').value")
        assert typed == "Are you there?"
        browser.screenshot("page", str(tmp_path / "busy.png"))
    assert not server.rows("SELECT id FROM message")
