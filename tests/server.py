"""Start the real app the way a user does: migrations, then gunicorn with its gevent worker.

`app_server(...)` is a context manager that gives a running server on a free loopback port, on
its own SQLite file, talking to the fake upstream of the test process (or to the built-in demo
upstream when no upstream is given). It believes the USER_HEADER of requests from loopback, as
behind a proxy that signs people in: a client is whoever it names there (USER, by default). The
server's output goes to a file, never to a pipe nobody reads (a full pipe would stall the
server); it is printed when the block fails, so pytest shows it under "Captured stderr".

The test process is gevent-patched (tests/run.sh), so `subprocess`, `time.sleep` and sockets here
all yield to the hub: the fake upstream keeps serving while we wait for the server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, text

from chatapp.llm.demo import FakeUpstream

from .conftest import USER_HEADER

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
HOST = "127.0.0.1"
# Who a client of a test server is, unless it names someone else in USER_HEADER.
USER = "tester"

# Variables of the developer's shell that would change what the server does.
_INHERITED_SETTINGS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "HOST",
    "PORT",
    "WEB_CONCURRENCY",
    "PROMETHEUS_MULTIPROC_DIR",
    "FLASK_APP",
    "GUNICORN_CMD_ARGS",
)


@dataclass
class AppServer:
    """A running server: where it answers, its database, and what it has printed."""

    url: str
    database_url: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    killed: bool = False
    # The environment gunicorn runs with, for commands that must see the same settings.
    environment: dict[str, str] = field(default_factory=dict)

    def rows(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        """Run a query against the server's database (SQLite or PostgreSQL)."""
        engine = create_engine(
            self.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(text(sql), params)]
        finally:
            engine.dispose()

    def flask(self, *args: str, stdin: str = "") -> str:
        """Run `flask --app wsgi ARGS` on the server's database and settings; return its output."""
        result = subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", *args],
            cwd=ROOT,
            env=self.environment,
            input=stdin.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        if result.returncode != 0:
            raise ServerError(f"flask {' '.join(args)} exited with {result.returncode}:\n{output}")
        return output

    def kill(self) -> None:
        """kill -9 the master and its workers at once: nothing of theirs runs any more."""
        assert self.process is not None
        self.killed = True
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def output(self) -> str:
        """Everything the migrations and the server have printed so far."""
        return self.log_path.read_text(errors="replace")


class ServerError(RuntimeError):
    """The server did not start (or the migrations failed); the message carries its output."""


@contextmanager
def app_server(
    tmp_path: Path,
    *,
    upstream: FakeUpstream | None = None,
    database_url: str | None = None,
    demo_first_token_seconds: float | tuple[float, float] | None = None,
    demo_tokens_per_second: float | tuple[float, float] | None = None,
    env: Mapping[str, str] | None = None,
    start_timeout: float = 30.0,
    stop_timeout: float = 15.0,
) -> Iterator[AppServer]:
    """Migrate a fresh database, run gunicorn on a free port, yield it, then stop it.

    With `upstream`, the app calls Claude's API at the fake's URL with a test key; without it
    there is no key, so the app runs in demo mode at the given demo pace. `env` adds or
    overrides variables (e.g. `CHATAPP_FRAME_INTERVAL`, or `CHATAPP_TRUSTED_USER_HEADER` to turn
    signing in by header off); values of `CHATAPP_*` are JSON.
    """
    with _database(tmp_path, database_url) as url:
        yield from _serve(
            tmp_path,
            url,
            upstream,
            demo_first_token_seconds,
            demo_tokens_per_second,
            env,
            start_timeout,
            stop_timeout,
        )


@contextmanager
def _database(tmp_path: Path, database_url: str | None) -> Iterator[str]:
    """The given database; else, on the PostgreSQL pass, a fresh database; else SQLite."""
    base = os.environ.get("DATABASE_URL", "")
    if database_url or not base.startswith("postgresql"):
        yield database_url or f"sqlite:///{tmp_path / 'x.sqlite'}"
        return
    name = f"chatapp_server_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _serve(
    tmp_path: Path,
    database_url: str,
    upstream: FakeUpstream | None,
    demo_first_token_seconds: float | tuple[float, float] | None,
    demo_tokens_per_second: float | tuple[float, float] | None,
    env: Mapping[str, str] | None,
    start_timeout: float,
    stop_timeout: float,
) -> Iterator[AppServer]:
    log_path = tmp_path / "server.log"
    base_env = _environment(
        database_url, upstream, demo_first_token_seconds, demo_tokens_per_second, env
    )

    # gunicorn's control socket defaults to one path per user ($XDG_RUNTIME_DIR/gunicorn.ctl or
    # ~/.gunicorn/gunicorn.ctl): give this server its own, so that it neither replaces nor
    # removes the socket of a server the developer is running.
    with (
        tempfile.TemporaryDirectory(prefix="chatapp-run-") as runtime_dir,
        log_path.open("ab") as log,
    ):
        base_env["XDG_RUNTIME_DIR"] = runtime_dir
        _migrate(base_env, log, log_path)
        process, url = _start(base_env, log, log_path, start_timeout)
        server = AppServer(
            url=url,
            database_url=database_url,
            log_path=log_path,
            process=process,
            environment={**base_env, "PORT": url.rsplit(":", 1)[1]},
        )
        try:
            yield server
        except BaseException:
            _show_output(log_path, "server output (the test failed)")
            raise
        finally:
            code = _stop(process, stop_timeout)
            if code not in (0, -signal.SIGTERM) and not server.killed:
                _show_output(log_path, f"server output (gunicorn exited with {code})")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _environment(
    database_url: str,
    upstream: FakeUpstream | None,
    demo_first_token_seconds: float | tuple[float, float] | None,
    demo_tokens_per_second: float | tuple[float, float] | None,
    extra: Mapping[str, str] | None,
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _INHERITED_SETTINGS and not key.startswith("CHATAPP_")
    }
    env.update(
        HOST=HOST,
        DATABASE_URL=database_url,
        SECRET_KEY="test-secret-key",
        PYTHONUNBUFFERED="1",
        # Clients sign in by naming a user in this header; the fault proxy relays from loopback.
        CHATAPP_TRUSTED_USER_HEADER=USER_HEADER,
        CHATAPP_TRUSTED_PROXIES=HOST,
        # No title requests: they would take the fake upstream's scenarios (and be counted).
        CHATAPP_TITLE_MODEL="",
        # One worker unless the test asks for more: with REDIS_URL gunicorn would start one
        # per core.
        WEB_CONCURRENCY="1",
    )
    if upstream is not None:
        if not upstream.url:
            raise ValueError("start the fake upstream before the server")
        env.update(ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=upstream.url)
    if demo_first_token_seconds is not None:
        env["CHATAPP_DEMO_FIRST_TOKEN_SECONDS"] = _json_span(demo_first_token_seconds)
    if demo_tokens_per_second is not None:
        env["CHATAPP_DEMO_TOKENS_PER_SECOND"] = _json_span(demo_tokens_per_second)
    env.update(extra or {})
    return env


def _json_span(value: float | tuple[float, float]) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _migrate(env: dict[str, str], log: object, log_path: Path) -> None:
    """`flask --app wsgi db upgrade`, as `make run` does before serving."""
    _note(log, "$ flask --app wsgi db upgrade")
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,  # type: ignore[arg-type]
        stderr=subprocess.STDOUT,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(
            f"migrations failed with exit code {result.returncode}:\n{_read(log_path)}"
        )


def _start(
    env: dict[str, str], log: object, log_path: Path, timeout: float
) -> tuple[subprocess.Popen[bytes], str]:
    """Start gunicorn on a free port and wait until it answers HTTP; retry if the port was taken."""
    for attempt in range(3):
        port = free_port()
        _note(log, f"$ gunicorn --config gunicorn.conf.py wsgi:app  (PORT={port})")
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=log,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            # Its own process group, so that a last-resort kill also reaches the workers.
            start_new_session=True,
        )
        url = f"http://{HOST}:{port}"
        if _wait_until_answering(process, url, timeout):
            return process, url
        code = _stop(process, 5.0)
        output = _read(log_path)
        if "Address already in use" in output and attempt < 2:
            continue  # someone took the port between our probe and gunicorn's bind
        raise ServerError(f"gunicorn did not answer on {url} (exit code {code}):\n{output}")
    raise AssertionError("unreachable")


def _wait_until_answering(process: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    """True once a request gets an HTTP answer (the worker has booted); False if gunicorn died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/static/app.css", timeout=2.0) as response:
                response.read()
            return True
        except urllib.error.HTTPError as error:
            error.close()  # it holds the answer's socket
            return True  # it answered; what it answered is for the test to judge
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM (a graceful stop, as systemd does), wait, then kill the whole group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return process.wait()


def _note(log: object, line: str) -> None:
    log.write(f"{line}\n".encode())  # type: ignore[attr-defined]
    log.flush()  # type: ignore[attr-defined]


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _show_output(path: Path, title: str) -> None:
    print(
        f"----- {title}: {path} -----\n{_read(path)}\n----- end of server output -----",
        file=sys.stderr,
    )
