"""The browser's end of a stream: leaving is noticed at once, a stalled reader is cut."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import gevent

from chatapp.streaming.connection import Connection


def endless(chunk: str) -> Iterator[str]:
    while True:
        yield chunk


def test_a_closed_browser_is_noticed_without_writing() -> None:
    server, browser = socket.socketpair()
    connection = Connection(server, write_timeout=30.0, check_every=30.0)
    stream = connection.send(iter(["retry: 1000\n\n"]))
    next(stream)
    browser.close()
    assert connection.gone.wait(1.0)  # long before any heartbeat or write would have told
    stream.close()
    server.close()


def test_a_reader_that_stops_reading_is_cut_after_the_write_timeout() -> None:
    server, browser = socket.socketpair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    browser.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection = Connection(server, write_timeout=0.3, check_every=0.05)

    def write_like_the_server() -> int:
        written = 0
        try:
            for chunk in connection.send(endless("data: " + "x" * 4000 + "\n\n")):
                server.sendall(chunk.encode())
                written += len(chunk)
        except OSError:
            pass  # the cut: gunicorn treats this as the client going away
        return written

    writer = gevent.spawn(write_like_the_server)
    writer.join(3.0)
    assert writer.dead, "a stalled reader must not hold its stream forever"
    assert connection.gone.is_set()
    assert writer.value < 10_000_000  # it stopped early: nothing piles up for this reader
    browser.close()
    server.close()


def test_a_finished_stream_stops_watching() -> None:
    server, browser = socket.socketpair()
    connection = Connection(server, write_timeout=30.0)
    assert list(connection.send(iter(["a", "b"]))) == ["a", "b"]
    assert connection._watcher is None
    browser.close()
    server.close()
