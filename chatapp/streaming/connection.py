"""The browser's end of one stream.

A stream mostly waits, so a browser that leaves would only be noticed at the next write, up to
a heartbeat later. `Connection` watches the socket and says at once when the browser is gone,
so its subscription and greenlet are released straight away. It also cuts a reader that has
stopped reading: a write that makes no progress for `write_timeout` seconds ends the stream,
and the browser reconnects later and catches up from its last event id.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import gevent
from gevent.event import Event
from gevent.socket import wait_read

log = logging.getLogger(__name__)


class Connection:
    """Watches one client socket while a stream is written to it."""

    def __init__(
        self, sock: socket.socket | None, *, write_timeout: float, check_every: float = 5.0
    ) -> None:
        self.gone = Event()
        self._sock = sock
        self._write_timeout = write_timeout
        self._check_every = min(check_every, write_timeout)
        self._writing_since: float | None = None
        self._watcher: gevent.Greenlet | None = None

    def send(self, body: Iterator[str]) -> Iterator[str]:
        """Pass `body` on, timing each write; always release the watch and the body at the end."""
        if self._sock is not None:
            self._watcher = gevent.spawn(self._watch)
        try:
            for chunk in body:
                self._writing_since = time.monotonic()
                yield chunk
                self._writing_since = None
        finally:
            self.close()
            close = getattr(body, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.kill(block=False)
            self._watcher = None

    def _watch(self) -> None:
        assert self._sock is not None
        fileno = self._sock.fileno()
        while True:
            try:
                wait_read(fileno, timeout=self._check_every)
            except TimeoutError:
                if self._write_stalled():
                    log.info("a reader stopped reading for %gs; dropping it", self._write_timeout)
                    self._cut()
                    return
                continue
            except OSError:
                self.gone.set()
                return
            try:
                data = self._sock.recv(1, socket.MSG_PEEK)
            except OSError:
                data = b""
            if not data:
                self.gone.set()  # the browser closed the connection
            return  # bytes from the client: not ours to read; stop watching

    def _write_stalled(self) -> bool:
        since = self._writing_since
        return since is not None and time.monotonic() - since > self._write_timeout

    def _cut(self) -> None:
        self.gone.set()
        try:
            # A blocked send fails at once; gunicorn treats that as the client going away.
            self._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        except OSError:
            pass
