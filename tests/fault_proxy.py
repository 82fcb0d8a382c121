"""A TCP proxy for tests that can cut connections the way a flaky network does.

`FaultProxy(server.url).start()` gives a URL to use instead of the server's. Every connection
to it is relayed byte for byte to the server (one greenlet per direction, in the test
process's hub). `sever()` resets every connection open through it at once, both sides, as a
dropped Wi-Fi or a restarted office proxy would: the client sees ECONNRESET, the server sees
its next write fail. New connections keep working. `sever_one()` and `sever_client(port)`
cut a single connection, for tests that choose their victims; `sever_mid_write(port)` cuts one
in the middle of the next piece the server sends, so the client gets half an event.

It also stands between the app and its database or Redis (`FaultProxy("tcp://127.0.0.1:5432")`)
for outages: `cut()` resets every connection and refuses new ones, as a stopped server does;
`black_hole()` keeps every connection open but passes nothing on, and accepts new ones that
never get an answer, as a hung server or a silent network does; `delay(seconds)` passes what
the client sends on that much later, as a slow server does; `restore()` ends any of them.

The proxy never prints: a relay that fails because its pair was severed (or because either
side went away) ends quietly.
"""

from __future__ import annotations

import random
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
from typing import Any

import gevent
import gevent.socket
from gevent.event import Event
from gevent.pool import Group, Pool
from gevent.queue import Queue
from gevent.server import StreamServer

HOST = "127.0.0.1"
_CHUNK = 65536
_PART_DELIVERY = 0.02  # seconds between the part of a piece and the cut after it
# close() after SO_LINGER (on, 0 s) sends RST instead of FIN: an abrupt cut, not a clean end.
_RESET = struct.pack("ii", 1, 0)


class _Pair:
    """One client connection and the connection to the server that relays it."""

    def __init__(self, client: socket.socket, server: socket.socket, client_port: int) -> None:
        self.client = client
        self.server = server
        self.client_port = client_port
        self.closed = False
        # Set to sever partway through the server's next piece: the share of it delivered first.
        self.cut_mid_write: float | None = None

    def close(self, *, reset: bool) -> None:
        """Close both sockets (with RST when `reset`); the relays waiting on them end."""
        if self.closed:
            return
        self.closed = True
        for sock in (self.client, self.server):
            if reset:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                except OSError:
                    pass  # already closed by its peer's failure
            try:
                sock.close()
            except OSError:
                pass

    def end_writing(self, sock: socket.socket) -> None:
        """Pass an end of stream on (half-close), keeping the other direction open."""
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class FaultProxy:
    """A loopback TCP relay to `target` ("http://127.0.0.1:PORT", or any scheme with a host and
    a port) that can sever connections, refuse them, black-hole them and slow them down."""

    def __init__(self, target: str, *, buffer_seconds: float = 0.0) -> None:
        """`buffer_seconds` > 0 makes it a buffering proxy: what the server sends is held back
        and passed on in lumps, at most once per that many seconds (and at the end)."""
        self._buffer_seconds = buffer_seconds
        parsed = urllib.parse.urlsplit(target)
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"target needs a host and a port: {target!r}")
        self.target = target
        self._address = (parsed.hostname, parsed.port)
        self._pairs: set[_Pair] = set()
        self._relays = Group()
        self._server: StreamServer | None = None
        self._stopping = False
        self.severed = 0
        self.severed_mid_write = 0  # of which partway through a piece from the server
        self.url = ""
        self.port = 0
        self._refusing = False  # cut(): new connections are reset at once
        self._passing = Event()  # cleared by black_hole(): nothing is passed on
        self._passing.set()
        self._delay = 0.0  # seconds what a client sends is held before it is passed on
        self.refused = 0  # connections reset on arrival while cut
        self.held = 0  # connections accepted into the black hole

    def start(self) -> str:
        """Listen on a free loopback port; return the URL that reaches the target through us."""
        if self._server is not None:
            raise RuntimeError("FaultProxy is already started")
        self._stopping = False
        server = StreamServer((HOST, 0), self._handle, backlog=2048, spawn=Pool())
        server.start()
        self._server = server
        self.port = int(server.server_port)
        self.url = f"http://{HOST}:{self.port}"
        return self.url

    def cut(self) -> int:
        """Go away as a stopped server does: reset every open connection, and every new one
        until `restore()`. Return how many were open."""
        self._refusing = True
        return self.sever()

    def black_hole(self) -> None:
        """Go silent as a hung server or a dead link does: open connections stay open but
        nothing more is passed on either way, and new connections are accepted but never
        answered, until `restore()`."""
        self._passing.clear()

    def delay(self, seconds: float) -> None:
        """Pass what clients send on `seconds` later (0: at once), each piece on its own
        clock, as a slow server answers every query late."""
        self._delay = max(seconds, 0.0)

    def restore(self) -> int:
        """End a cut or a black hole: new connections are relayed again. Connections that were
        in the black hole are reset (their clients have given up on them); return how many."""
        self._refusing = False
        if self._passing.is_set():
            return 0
        held = self.sever()
        self._passing.set()
        return held

    def sever(self) -> int:
        """Reset every open connection, both sides; return how many pairs were cut."""
        return self._sever(list(self._pairs))

    def sever_one(self, rng: random.Random | None = None) -> int:
        """Reset one open connection chosen at random; return 1, or 0 if none was open."""
        pairs = sorted(self._pairs, key=lambda pair: pair.client_port)
        if not pairs:
            return 0
        return self._sever([(rng or random).choice(pairs)])

    def sever_client(self, port: int) -> int:
        """Reset the connection(s) whose client side is local port `port`; return how many."""
        return self._sever([pair for pair in self._pairs if pair.client_port == port])

    def sever_mid_write(self, port: int, rng: random.Random | None = None) -> int:
        """Sever client `port`'s connection(s) partway through the next data from the server.

        Returns how many were armed. Each is cut (and counted in `severed`) when the server next
        writes to it; one that the server closes first ends normally and is not counted.
        """
        armed = 0
        for pair in self._pairs:
            if pair.client_port == port and not pair.closed:
                pair.cut_mid_write = (rng or random).random()
                armed += 1
        return armed

    def stop(self) -> None:
        """Stop listening and close every open connection (not counted as severed)."""
        self._stopping = True
        for pair in list(self._pairs):
            self._pairs.discard(pair)
            pair.close(reset=True)
        self._refusing = False
        self._passing.set()  # what waited in a black hole finds its pair closed and ends
        if self._server is not None:
            self._server.stop(timeout=1.0)
            self._server = None
        self._relays.kill(block=True, timeout=1.0)

    @property
    def live(self) -> int:
        """Pairs open right now."""
        return len(self._pairs)

    def _sever(self, pairs: list[_Pair]) -> int:
        count = 0
        for pair in pairs:
            if pair.closed or pair not in self._pairs:
                continue
            self._pairs.discard(pair)
            pair.close(reset=True)
            count += 1
        self.severed += count
        return count

    # -- relaying ---------------------------------------------------------------------------

    def _handle(self, client: socket.socket, address: Any) -> None:
        """Serve one accepted connection until both directions end or it is severed."""
        if self._refusing:
            self.refused += 1
            _reset(client)
            return
        if not self._passing.is_set():
            # Accepted, never answered: the client waits until its own timeout gives up.
            self.held += 1
            self._passing.wait()
            _reset(client)
            return
        try:
            server = gevent.socket.create_connection(self._address, timeout=10.0)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        client.settimeout(None)
        for sock in (client, server):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        pair = _Pair(client, server, int(address[1]))
        if self._stopping:
            pair.close(reset=True)
            return
        self._pairs.add(pair)
        try:
            upward = self._relays.spawn(self._relay, pair, client, server)
            downward = self._relays.spawn(self._relay, pair, server, client, downward=True)
            gevent.joinall([upward, downward])
        finally:
            self._pairs.discard(pair)
            pair.close(reset=False)

    def _relay(
        self, pair: _Pair, source: socket.socket, sink: socket.socket, *, downward: bool = False
    ) -> None:
        """Copy one direction until its end of stream (passed on) or any failure (ends both)."""
        held, released = b"", time.monotonic()
        late: Queue[tuple[float, bytes]] | None = None
        try:
            while True:
                data = source.recv(_CHUNK)
                self._passing.wait()  # a black hole holds everything, an end of stream too
                if pair.closed:
                    return
                if not downward and (self._delay > 0 or late is not None):
                    if late is None:
                        late = Queue()
                        self._relays.spawn(self._pass_late, pair, late, sink)
                    late.put((time.monotonic() + self._delay, data))
                    if not data:
                        return
                    continue
                if not data:
                    if held:
                        sink.sendall(held)
                    pair.end_writing(sink)
                    return
                if downward and self._buffer_seconds > 0:
                    held += data
                    if time.monotonic() - released >= self._buffer_seconds:
                        sink.sendall(held)
                        held, released = b"", time.monotonic()
                    continue
                if downward and pair.cut_mid_write is not None:
                    if len(data) > 1:
                        delivered = min(max(int(len(data) * pair.cut_mid_write), 1), len(data) - 1)
                        sink.sendall(data[:delivered])
                        # A reset discards what the peer has not read yet: let the part arrive.
                        gevent.sleep(_PART_DELIVERY)
                    self.severed_mid_write += self._sever([pair])
                    return
                sink.sendall(data)
        except OSError:
            # Severed (the socket was closed under us), or a side reset or went away: a relay
            # that cannot go on takes its pair down, as a real middlebox would.
            pair.close(reset=True)

    def _pass_late(
        self, pair: _Pair, late: Queue[tuple[float, bytes]], sink: socket.socket
    ) -> None:
        """Send each piece a client sent once its time has come, in order."""
        try:
            while True:
                due, data = late.get()
                wait = due - time.monotonic()
                if wait > 0:
                    gevent.sleep(wait)
                self._passing.wait()
                if pair.closed:
                    return
                if not data:
                    pair.end_writing(sink)
                    return
                sink.sendall(data)
        except OSError:
            pair.close(reset=True)


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        sock.close()
    except OSError:
        pass


class FaultProxyProcess:
    """A `FaultProxy` in a process of its own, driven from this one.

    For the app's database and Redis connections: their timing must not depend on this
    process's hub, which the fake upstream and many stream readers keep busy (a proxy that
    waits its turn here would look like a slow database). `start()` gives the port; the other
    methods are the proxy's, and answer with the count the proxy's method returned.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gevent.monkey", __file__, self.target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.port = int(self._reply())
        return self.port

    def cut(self) -> int:
        return int(self._call("cut"))

    def black_hole(self) -> None:
        self._call("black_hole")

    def delay(self, seconds: float) -> None:
        self._call(f"delay {seconds}")

    def restore(self) -> int:
        return int(self._call("restore"))

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        assert process.stdin is not None
        try:
            process.stdin.close()  # the proxy stops at the end of its commands
            process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def _call(self, command: str) -> str:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(command.encode() + b"\n")
        self._process.stdin.flush()
        return self._reply()

    def _reply(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline().decode().strip()
        if not line:
            raise RuntimeError(f"the proxy to {self.target} ended")
        return line


def _serve_commands(target: str) -> None:
    """Run a proxy to `target`; print its port, then obey one command a line from stdin."""
    from gevent.fileobject import FileObjectPosix

    proxy = FaultProxy(target)
    proxy.start()
    out = FileObjectPosix(sys.stdout.fileno(), "wb", close=False)

    def say(value: object) -> None:
        out.write(f"{value}\n".encode())
        out.flush()

    say(proxy.port)
    commands = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
    for line in commands:
        name, _, argument = line.decode().strip().partition(" ")
        if name == "delay":
            proxy.delay(float(argument))
            say(0)
        elif name in ("cut", "black_hole", "restore"):
            say(getattr(proxy, name)() or 0)
    proxy.stop()


if __name__ == "__main__":
    _serve_commands(sys.argv[1])
