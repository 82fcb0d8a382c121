"""`make bench`: the streaming budgets of docs/architecture.md, measured in one run here.

For each N it runs, one after the other and each on fresh processes:

- `relay`   the bare gevent relay (bench/relay.py): SDK stream -> SSE, nothing else;
- `fastapi` the FastAPI + uvicorn + AsyncAnthropic relay (bench/fastapi_relay.py);
- `gevent`  the app as shipped, one worker: `gunicorn --config gunicorn.conf.py wsgi:app`;
- `redis2`  the same app with two workers sharing Redis (`WEB_CONCURRENCY=2`, `REDIS_URL`);
- `gthread` (on request) the app as thread-per-stream: `... --worker-class gthread --threads 8`.

Then a capacity run: the app on one worker and on two opens conversations faster than one
worker can (`--capacity-rate`), to show how many answers a second each opens.

Every run has its own paced fake upstream (bench/upstream.py: first token after 0.5 s, 50
tokens/s in 20-character deltas), its own SQLite file in a temporary directory, and its own
load generator process (bench/load.py) that opens N conversations at --rate a second, signed
in to the app as one user through the trusted proxy header (`TRUSTED_PROXY`).
Meanwhile this process samples the gunicorn worker's /proc (CPU, RSS) and, for the app, its
/metrics (DB connections in use, live answers). Results go to bench/results/ as JSON and SVG.

    .venv/bin/python bench/run.py                 # N = 200 1000, then the capacity run
    .venv/bin/python bench/run.py --quick         # N = 50 100, short answers
    .venv/bin/python bench/run.py -n 200 --kinds relay gevent
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(BENCH))
from common import (  # noqa: E402
    CHARS_PER_SECOND,
    FIRST_TOKEN_SECONDS,
    PIECE_CHARS,
    TOKENS_PER_SECOND,
    UPSTREAM_GAP_SECONDS,
    USER,
    USER_HEADER,
)
from plot import write_svg  # noqa: E402

KINDS = ("relay", "fastapi", "gevent", "redis2", "gthread")
DEFAULT_KINDS = ("relay", "fastapi", "gevent", "redis2")
RELAYS = ("relay", "fastapi")  # no accounts, no database: they stream `GET /stream`
FULL_NS = (200, 1000)
QUICK_NS = (50, 100)
# How many gunicorn workers each kind of server runs (fastapi: uvicorn's one process).
WORKERS = {"redis2": 2}
# The app's access log format, given to the relay too so both write the same log lines.
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(B)s %(D)sus "%(a)s"'
BLOCKED = "appears to be blocked"
# The app lets in only who is signed in. The load generator signs in as a proxy would: it names
# its user in USER_HEADER, and the app believes that header from this address only.
TRUSTED_PROXY = {
    "CHATAPP_TRUSTED_USER_HEADER": USER_HEADER,
    "CHATAPP_TRUSTED_PROXIES": HOST,
    # The load measures answers; titles would add a short request per conversation.
    "CHATAPP_TITLE_MODEL": "",
}
# Variables of the caller's shell that would change what a server does.
INHERITED = (
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


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} after {timeout:g}s")


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer after {timeout:g}s")


def stop(process: subprocess.Popen[bytes], sig: int, timeout: float, group: bool = False) -> None:
    """Send `sig` to the process we started; SIGKILL it (and its group) if it lingers."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            pass
        if group:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            process.kill()
        process.wait()


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and int(stat[1]) == pid:
                found.append(int(entry))
    return found


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from `state` on


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process, in seconds."""
    stat = _stat(pid)
    if stat is None:
        return None
    return (int(stat[11]) + int(stat[12])) / CLOCK_TICKS


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    found[name] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return found


def total_cpu(pids: list[int]) -> float | None:
    """utime + stime of all the processes, in seconds; None if one is gone."""
    values = [cpu_seconds(pid) for pid in pids]
    return None if None in values else sum(v for v in values if v is not None)


def total_rss(pids: list[int], key: str = "VmRSS") -> int | None:
    """The processes' RSS (or peak RSS, `VmHWM`) added up, in bytes."""
    values = [memory(pid).get(key) for pid in pids]
    return None if None in values else sum(v for v in values if v is not None)


def clean_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key not in INHERITED and not key.startswith(("CHATAPP_", "GEVENT_"))
    }


# -- /metrics ---------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


def read_metrics(url: str, timeout: float = 2.0) -> dict[str, float] | None:
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def counter(values: dict[str, float] | None, prefix: str) -> float | None:
    """Sum of every sample whose name (with labels) starts with `prefix`."""
    if values is None:
        return None
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


@dataclass
class Sampler:
    """Samples the workers' /proc and (for the app) its /metrics while the load runs.

    CPU and RSS are the sums over the server's workers."""

    workers: list[int]
    url: str | None
    interval: float
    series: list[dict[str, Any]] = field(default_factory=list)
    metrics_missed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            point: dict[str, Any] = {
                "t": round(time.monotonic() - self._started, 2),
                "cpu": total_cpu(self.workers),
                "rss": total_rss(self.workers),
            }
            if self.url is not None:
                values = read_metrics(self.url, timeout=min(self.interval * 4, 2.0))
                if values is None:
                    self.metrics_missed += 1
                else:
                    for name in ("db_connections_in_use", "answers_live", "streams_open"):
                        point[name] = values.get(f"chatapp_{name}")
            self.series.append(point)

    def peak(self, name: str) -> float | None:
        values = [p[name] for p in self.series if p.get(name) is not None]
        return max(values) if values else None


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Options:
    rate: float
    reply_chars: int
    worker_connections: int | None
    hub_monitor: bool
    sample_interval: float
    deadline_factor: float
    grace: float
    keep_logs: bool
    page_events: bool = False
    redis_url: str = ""
    profile: Path | None = None  # profile the app's workers into this directory
    capacity: bool = False  # a capacity run: faster than one worker opens conversations


def deadline_for(n: int, options: Options) -> float:
    """How long the load may take: opening, one answer stretched by the factor, and a grace."""
    reply_seconds = options.reply_chars / CHARS_PER_SECOND
    return (
        n / options.rate
        + FIRST_TOKEN_SECONDS
        + reply_seconds * options.deadline_factor
        + options.grace
    )


@contextmanager
def upstream(
    workdir: Path, n: int, options: Options
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = (workdir / "upstream.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "upstream.py"),
            "--host",
            HOST,
            "--port",
            str(port),
            "--first-token",
            str(FIRST_TOKEN_SECONDS),
            "--tokens-per-second",
            str(TOKENS_PER_SECOND),
            "--piece-chars",
            str(PIECE_CHARS),
            "--reply-chars",
            str(options.reply_chars),
            "--replies",
            str(n + 100),
        ],
        cwd=ROOT,
        env=clean_environment(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process, 30)
        yield f"http://{HOST}:{port}", process
    finally:
        stop(process, signal.SIGTERM, 5)
        log.close()


def server_command(kind: str, port: int, options: Options) -> list[str]:
    gunicorn = str(BIN / "gunicorn")
    if kind == "relay":
        # The app's gunicorn settings that matter for streaming, without its hooks (the relay
        # has no answers to wind down).
        command = [
            gunicorn,
            # Not the app's gunicorn.conf.py, which gunicorn reads from the working directory
            # unless told otherwise: its hooks are the app's.
            "--config",
            "/dev/null",
            "--no-control-socket",
            "--worker-class",
            "gevent",
            "--workers",
            "1",
            "--worker-connections",
            str(options.worker_connections or app_worker_connections()),
            "--timeout",
            "30",
            "--keep-alive",
            "5",
            "--access-logfile",
            "-",
            "--access-logformat",
            ACCESS_LOG_FORMAT,
            "--bind",
            f"{HOST}:{port}",
            "--pythonpath",
            str(BENCH),
            "relay:app",
        ]
        return command
    if kind == "fastapi":
        return [
            str(BIN / "uvicorn"),
            "--host",
            HOST,
            "--port",
            str(port),
            "--app-dir",
            str(BENCH),
            "--timeout-keep-alive",
            "5",
            "fastapi_relay:app",
        ]
    config = "gunicorn.conf.py" if options.profile is None else str(BENCH / "profiled.conf.py")
    command = [gunicorn, "--config", config]
    if kind in ("gthread", "gthread-literal"):
        command += ["--worker-class", "gthread", "--threads", "8"]
    if kind == "gthread":
        # wsgi.py patches with gevent when the app is imported, which in a gthread worker is after
        # the worker made its thread pool and selector: nothing is ever answered (see
        # `probe_literal_gthread`). Patched from the start, the pool's 8 threads are greenlets
        # and the app's own greenlets run: 8 requests at a time, one stream per thread.
        command = [sys.executable, "-m", "gevent.monkey"] + command
    if options.worker_connections:
        command += ["--worker-connections", str(options.worker_connections)]
    return command + ["wsgi:app"]


def app_worker_connections() -> int:
    """worker_connections of the app's gunicorn settings (chatapp/gunicorn_conf.py, which
    gunicorn.conf.py reads), so that the relay runs with the same limit."""
    text = (ROOT / "chatapp" / "gunicorn_conf.py").read_text()
    match = re.search(r"^worker_connections\s*=\s*(\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else 1000


def probe_literal_gthread(wait: float = 10.0) -> dict[str, Any]:
    """Does `gunicorn --config gunicorn.conf.py --worker-class gthread --threads 8 wsgi:app`
    answer GET /healthz at all? Boots it on an empty database and waits `wait` seconds."""
    with tempfile.TemporaryDirectory(prefix="chatapp-bench-gthread-literal-") as tmp:
        workdir = Path(tmp)
        env = clean_environment()
        env.update(
            HOST=HOST,
            ANTHROPIC_API_KEY="bench",
            ANTHROPIC_BASE_URL=f"http://{HOST}:9",
            DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite'}",
            SECRET_KEY="bench-secret-key",
            XDG_RUNTIME_DIR=str(workdir),
            PYTHONUNBUFFERED="1",
            **TRUSTED_PROXY,
        )
        log = (workdir / "server.log").open("wb")
        subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=True,
        )
        port = free_port()
        options = Options(100, 0, None, False, 1, 1, 0, False)
        server = subprocess.Popen(
            server_command("gthread-literal", port, options),
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port(port, server, 30)
            time.sleep(2)  # the worker boots after the master listens
            started = time.monotonic()
            try:
                with urllib.request.urlopen(
                    f"http://{HOST}:{port}/healthz", timeout=wait
                ) as response:
                    response.read()
                return {"answered": True, "seconds": time.monotonic() - started}
            except OSError as exc:
                return {
                    "answered": False,
                    "seconds": time.monotonic() - started,
                    "error": repr(exc),
                }
        finally:
            try:
                os.killpg(server.pid, signal.SIGKILL)  # the group we started: master and worker
            except ProcessLookupError:
                pass
            server.wait()
            log.close()


def run_one(kind: str, n: int, options: Options) -> dict[str, Any]:
    """Start upstream and server, run the load, and gather every figure of one run."""
    with tempfile.TemporaryDirectory(prefix=f"chatapp-bench-{kind}-{n}-") as tmp:
        workdir = Path(tmp)
        try:
            return _run_in(workdir, kind, n, options)
        finally:
            if options.keep_logs:
                keep = RESULTS / "logs" / f"{kind}-{n}"
                keep.mkdir(parents=True, exist_ok=True)
                for path in workdir.glob("*.log"):
                    (keep / path.name).write_bytes(path.read_bytes())


def _run_in(workdir: Path, kind: str, n: int, options: Options) -> dict[str, Any]:
    result: dict[str, Any] = {"kind": kind, "n": n}
    with upstream(workdir, n, options) as (upstream_url, upstream_process):
        env = clean_environment()
        env.update(
            HOST=HOST,
            ANTHROPIC_API_KEY="bench",
            ANTHROPIC_BASE_URL=upstream_url,
            DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite'}",
            SECRET_KEY="bench-secret-key",
            PYTHONUNBUFFERED="1",
            XDG_RUNTIME_DIR=str(workdir),
        )
        if kind not in RELAYS:
            env.update(TRUSTED_PROXY)
        if kind == "redis2":
            env.update(
                WEB_CONCURRENCY=str(WORKERS[kind]),
                REDIS_URL=options.redis_url,
                CHATAPP_REDIS_PREFIX=f"chatapp-bench-{os.getpid()}-{workdir.name}",
            )
        if options.profile is not None:
            env.update(BENCH_PROFILE_DIR=str(options.profile / f"{kind}-{n}"))
            (options.profile / f"{kind}-{n}").mkdir(parents=True, exist_ok=True)
        if options.hub_monitor and kind in ("relay", "gevent", "redis2"):
            # gevent's monitor thread reports every time the hub is not switched for 50 ms. Not
            # for gthread: there it also reports the real threads of gevent's thread pool, and
            # formatting those reports costs the worker more CPU than the streams do.
            env.update(GEVENT_MONITOR_THREAD_ENABLE="true", GEVENT_MAX_BLOCKING_TIME="0.05")
        server_log_path = workdir / "server.log"
        server_log = server_log_path.open("wb")
        if kind not in RELAYS:
            subprocess.run(
                [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=True,
            )
        port = free_port()
        url = f"http://{HOST}:{port}"
        server = subprocess.Popen(
            server_command(kind, port, options),
            cwd=ROOT,
            env={**env, "PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_http(url + ("/healthz" if kind not in RELAYS else "/"), server, 60)
            workers = server_workers(kind, server)
            result["workers"] = len(workers)
            result.update(
                _load(kind, n, url, workers, upstream_process.pid, server_log_path, options)
            )
            result["worker_survived"] = total_cpu(workers) is not None and (
                kind == "fastapi" or sorted(children(server.pid)) == workers
            )
        finally:
            stop(
                server, signal.SIGINT, 15, group=True
            )  # quick stop: live answers are stored at once
            server_log.close()
    return result


def server_workers(kind: str, server: subprocess.Popen[bytes]) -> list[int]:
    """The processes that serve: gunicorn's workers, or uvicorn itself."""
    if kind == "fastapi":
        return [server.pid]
    expected = WORKERS.get(kind, 1)
    deadline = time.monotonic() + 30
    while True:
        found = sorted(children(server.pid))
        if len(found) == expected:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"expected {expected} gunicorn workers, found {found}")
        time.sleep(0.2)


def _load(
    kind: str,
    n: int,
    url: str,
    workers: list[int],
    upstream_pid: int,
    server_log: Path,
    options: Options,
) -> dict[str, Any]:
    deadline = deadline_for(n, options)
    out = server_log.parent / "load.json"
    loader = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "load.py"),
            "--url",
            url,
            "--mode",
            "relay" if kind in RELAYS else "app",
            "-n",
            str(n),
            "--rate",
            str(options.rate),
            "--reply-chars",
            str(options.reply_chars),
            "--first-token",
            str(FIRST_TOKEN_SECONDS),
            "--deadline",
            f"{deadline:.1f}",
            "--out",
            str(out),
            "--handshake",
        ]
        + (["--page-events"] if options.page_events and kind not in RELAYS else []),
        cwd=ROOT,
        env=clean_environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(server_log.parent / "load.log").open("wb"),
    )
    assert loader.stdin is not None and loader.stdout is not None
    try:
        ready = loader.stdout.readline().decode().strip()  # after the warm-up
        metrics_url = url if kind not in RELAYS else None
        before = read_metrics(url) if metrics_url else None
        cpu0, upstream_cpu0 = total_cpu(workers), cpu_seconds(upstream_pid)
        log_offset = server_log.stat().st_size
        rss0 = total_rss(workers)
        sampler = Sampler(workers, metrics_url, options.sample_interval)
        sampler.start()
        started = time.monotonic()
        loader.stdin.write(b"go\n")
        loader.stdin.flush()
        try:
            loader.wait(deadline + 60)
        except subprocess.TimeoutExpired:
            stop(loader, signal.SIGKILL, 5)
        elapsed = time.monotonic() - started
        cpu1, upstream_cpu1 = total_cpu(workers), cpu_seconds(upstream_pid)
        sampler.stop()
        after = read_metrics(url, timeout=10) if metrics_url else None
        hwm = total_rss(workers, "VmHWM")
    finally:
        stop(loader, signal.SIGTERM, 5)
    load = (
        json.loads(out.read_text())
        if out.exists()
        else {"errors": n, "error_kinds": {"no report": n}}
    )
    with server_log.open("rb") as handle:
        handle.seek(log_offset)
        tail = handle.read().decode(errors="replace")

    delivered = load.get("chars_delivered", 0)
    cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    figures: dict[str, Any] = {
        "load": load,
        "warm_up": ready,
        "deadline_seconds": deadline,
        "elapsed_seconds": elapsed,
        "worker_cpu_seconds": cpu,
        "upstream_cpu_seconds": None
        if upstream_cpu0 is None or upstream_cpu1 is None
        else upstream_cpu1 - upstream_cpu0,
        "loader_cpu_seconds": load.get("loader_cpu_seconds"),
        "cpu_ms_per_1k_chars": (cpu * 1000 / (delivered / 1000))
        if cpu is not None and delivered
        else None,
        "rss_start_mb": rss0 / 2**20 if rss0 else None,
        "rss_peak_mb": max(filter(None, [sampler.peak("rss") or 0, rss0 or 0])) / 2**20,
        "rss_hwm_mb": hwm / 2**20 if hwm else None,
        "hub_blocked_reports": tail.count(BLOCKED),
        "hub_blocked_examples": blocked_examples(tail),
        "worker_cpu_util_opening": utilisation(sampler.series, 0, n / options.rate + 0.5),
        "worker_cpu_util_steady": utilisation(
            sampler.series, n / options.rate + 2, n / options.rate + 12
        ),
        "server_errors_logged": len(re.findall(r"\bERROR\b|Traceback", tail)),
        "worker_timeouts_logged": tail.count("WORKER TIMEOUT"),
        "samples": sampler.series,
    }
    if kind not in RELAYS:
        flushes = _delta(before, after, "chatapp_db_flushes_total")
        received = _delta(before, after, "chatapp_characters_total")
        deltas = math.ceil(received / PIECE_CHARS) if received else None
        answers = _delta(before, after, "chatapp_answers_total")
        first_count = _delta(before, after, "chatapp_first_token_seconds_count")
        first_sum = _delta(before, after, "chatapp_first_token_seconds_sum")
        flush_sum = _delta(before, after, "chatapp_db_flush_seconds_sum")
        flush_fast = _delta(before, after, 'chatapp_db_flush_seconds_bucket{le="0.05"}')
        flush_count = _delta(before, after, "chatapp_db_flush_seconds_count")
        figures.update(
            db_flush_mean_ms=(flush_sum / flush_count * 1000)
            if flush_count and flush_sum is not None
            else None,
            db_flushes_over_50ms=(flush_count - flush_fast)
            if flush_count is not None and flush_fast is not None
            else None,
            server_first_token_mean_ms=(first_sum / first_count * 1000)
            if first_count and first_sum is not None
            else None,
            metrics_missed=sampler.metrics_missed,
            db_flushes=flushes,
            app_chars_received=received,
            upstream_deltas=deltas,
            answers_ended=answers,
            answers_by_status={
                k.split('"')[1]: v - (before or {}).get(k, 0)
                for k, v in (after or {}).items()
                if k.startswith("chatapp_answers_total{")
            },
            db_writes_per_delta=(flushes / deltas) if flushes is not None and deltas else None,
            db_writes_per_delta_with_final=((flushes + (answers or 0)) / deltas)
            if flushes is not None and deltas
            else None,
            peak_db_connections=sampler.peak("db_connections_in_use"),
            peak_answers_live=sampler.peak("answers_live"),
            peak_streams_open=sampler.peak("streams_open"),
        )
        peak_db, peak_live = figures["peak_db_connections"], figures["peak_answers_live"]
        figures["db_connections_per_live_stream"] = (
            (peak_db / peak_live) if peak_db is not None and peak_live else None
        )
    return figures


def utilisation(series: list[dict[str, Any]], start: float, end: float) -> float | None:
    """Cores the worker used between `start` and `end` seconds of the run (from the samples)."""
    points = [p for p in series if p.get("cpu") is not None and start <= p["t"] <= end]
    if len(points) < 2 or points[-1]["t"] <= points[0]["t"]:
        return None
    return (points[-1]["cpu"] - points[0]["cpu"]) / (points[-1]["t"] - points[0]["t"])


def blocked_examples(log: str, keep: int = 3) -> list[str]:
    """The first few reports of gevent's monitor: the blocked greenlet and its innermost frames."""
    examples = []
    for match in re.finditer(r"^.*" + BLOCKED + r".*$", log, re.MULTILINE):
        lines = log[match.start() :].splitlines()[:60]
        stack = [line.strip() for line in lines if line.strip().startswith("File ")]
        ours = [line for line in stack if "/chatapp/" in line or "/bench/" in line]
        examples.append(lines[0][:300] + " | " + " <- ".join(reversed((ours or stack)[-4:])))
        if len(examples) == keep:
            break
    return examples


def _delta(
    before: dict[str, float] | None, after: dict[str, float] | None, name: str
) -> float | None:
    end = counter(after, name)
    if end is None:
        return None
    return end - (counter(before, name) or 0.0)


# -- report -----------------------------------------------------------------------------------


def _ms(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _name(run: dict[str, Any]) -> str:
    return run["kind"] + (" (capacity)" if run.get("capacity") else "")


def row(run: dict[str, Any], relay: dict[str, Any] | None) -> list[str]:
    load = run.get("load", {})
    if "failed" in run:
        return [_name(run), str(run["n"]), "-", "failed"] + ["-"] * (len(HEADER) - 4)
    n = run["n"]
    app = run["kind"] not in RELAYS
    delivered = load.get("chars_delivered", 0) / max(load.get("chars_expected", 1), 1)
    ratio = None
    if relay and relay.get("cpu_ms_per_1k_chars") and run.get("cpu_ms_per_1k_chars"):
        ratio = run["cpu_ms_per_1k_chars"] / relay["cpu_ms_per_1k_chars"]
    ttft = load.get("ttft_added_ms", {})
    gap = load.get("gap_ms", {})
    post = load.get("post_ms", {})
    return [
        _name(run),
        str(n),
        f"{run.get('rate', 0):g}",
        str(load.get("errors", "-")),
        f"{load.get('exact_answers', '-')}/{load.get('live_answers', '-')}",
        f"{delivered * 100:.1f}%",
        f"{_ms(ttft.get('p50'))}/{_ms(ttft.get('p99'))}",
        f"{_ms(gap.get('p50'))}/{_ms(gap.get('p99'))}",
        f"{_ms(post.get('p50'))}/{_ms(post.get('p99'))}" if app else "-",
        _ms(run.get("rss_peak_mb"), 0),
        _ms(run.get("cpu_ms_per_1k_chars"), 2),
        "-" if ratio is None else f"{ratio:.2f}x",
        _ms(load.get("opened_per_second"), 1),
        _ms(load.get("loader_cpu_seconds"), 1),
        _ms(run.get("db_writes_per_delta"), 4) if app else "-",
        _ms(run.get("peak_db_connections"), 0) if app else "-",
        str(run.get("hub_blocked_reports", "-")) if run.get("hub_monitor") else "off",
        _ms(run.get("db_flush_mean_ms"), 1) if app else "-",
        f"{_ms(load.get('loader_lag_ms', {}).get('p99'))}",
        f"{_ms(run.get('worker_cpu_util_opening'), 2)}/{_ms(run.get('worker_cpu_util_steady'), 2)}",
    ]


HEADER = [
    "kind",
    "N",
    "rate/s",
    "errors",
    "exact/live",
    "delivered",
    "+TTFT p50/p99 ms",
    "gap p50/p99 ms",
    "POST p50/p99 ms",
    "RSS MB",
    "CPU ms/1k ch",
    "vs relay",
    "opened/s",
    "load CPU s",
    "DB writes/delta",
    "peak DB conns",
    "hub blocks>50ms",
    "flush ms mean",
    "client lag p99 ms",
    "server cores open/steady",
]


def table(runs: list[dict[str, Any]]) -> str:
    relays = {
        r["n"]: r
        for r in runs
        if r["kind"] == "relay" and "failed" not in r and not r.get("capacity")
    }
    rows = [HEADER] + [row(r, None if r.get("capacity") else relays.get(r["n"])) for r in runs]
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(HEADER))]
    lines = []
    for index, r in enumerate(rows):
        lines.append(
            "  ".join(
                cell.rjust(widths[i]) if i > 0 else cell.ljust(widths[i])
                for i, cell in enumerate(r)
            )
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def budgets(runs: list[dict[str, Any]]) -> list[tuple[str, bool | None, str]]:
    """Each DESIGN budget: (what, passed or None when not measured, the numbers)."""
    checks: list[tuple[str, bool | None, str]] = []
    by = {(r["kind"], r["n"]): r for r in runs if "failed" not in r and not r.get("capacity")}
    app = sorted((r for r in by.values() if r["kind"] == "gevent"), key=lambda r: r["n"])

    for run in app:
        relay = by.get(("relay", run["n"]))
        if relay and relay.get("cpu_ms_per_1k_chars") and run.get("cpu_ms_per_1k_chars"):
            ratio = run["cpu_ms_per_1k_chars"] / relay["cpu_ms_per_1k_chars"]
            checks.append(
                (
                    f"N={run['n']}: CPU per 1,000 chars within 1.5x of the bare relay",
                    ratio <= 1.5,
                    f"{run['cpu_ms_per_1k_chars']:.2f} ms vs "
                    f"{relay['cpu_ms_per_1k_chars']:.2f} ms = {ratio:.2f}x",
                )
            )

    def clean(run: dict[str, Any]) -> tuple[bool, str]:
        load = run["load"]
        ok = load.get("errors") == 0 and load.get("exact_answers") == run["n"]
        return ok, (
            f"{load.get('errors')} errors, {load.get('exact_answers')}/{run['n']} answers exact, "
            f"{load.get('chars_delivered')}/{load.get('chars_expected')} chars"
        )

    run200 = by.get(("gevent", 200))
    if run200 is None:
        checks.append(
            (
                "N=200: 0 errors, all delivered, +TTFT p50 < 10 ms, p99 < 100 ms",
                None,
                "N=200 not run",
            )
        )
    else:
        ok, text = clean(run200)
        ttft = run200["load"].get("ttft_added_ms", {})
        p50, p99 = ttft.get("p50"), ttft.get("p99")
        checks.append(("N=200: 0 errors and every character delivered", ok, text))
        checks.append(
            (
                "N=200: added time to first token p50 < 10 ms",
                p50 is not None and p50 < 10,
                f"p50 {_ms(p50)} ms",
            )
        )
        checks.append(
            (
                "N=200: added time to first token p99 < 100 ms",
                p99 is not None and p99 < 100,
                f"p99 {_ms(p99)} ms",
            )
        )
    for n in (1000, 2000):
        run = by.get(("gevent", n))
        if run is None:
            checks.append(
                (f"N={n}: 0 errors, every character delivered, one worker", None, "not run")
            )
        else:
            ok, text = clean(run)
            survived = run.get("worker_survived", False)
            checks.append(
                (
                    f"N={n}: 0 errors, every character delivered, one worker",
                    ok and survived,
                    text + ("" if survived else "; the worker was replaced"),
                )
            )
    run, fastapi, relay = (
        by.get(("gevent", 1000)),
        by.get(("fastapi", 1000)),
        by.get(("relay", 1000)),
    )
    if run is None or fastapi is None:
        checks.append(
            ("N=1000: added first token p99 within 2x the FastAPI relay's", None, "not run")
        )
    else:
        own = run["load"].get("ttft_added_ms", {}).get("p99")
        theirs = fastapi["load"].get("ttft_added_ms", {}).get("p99")
        checks.append(
            (
                "N=1000: added first token p99 within 2x the FastAPI relay's",
                own is not None and theirs is not None and own <= 2 * max(theirs, 1.0),
                f"{_ms(own)} ms vs {_ms(theirs)} ms",
            )
        )
    if run is not None:
        gap = run["load"].get("gap_ms", {}).get("p99")
        checks.append(
            (
                "N=1000: frame gap p99 under 500 ms while answers open",
                gap is not None and gap < 500,
                f"p99 {_ms(gap)} ms",
            )
        )
    if run is None or relay is None:
        checks.append(("N=1000: peak RSS within 1.5x the bare relay's", None, "not run"))
    else:
        own, theirs = run.get("rss_peak_mb"), relay.get("rss_peak_mb")
        checks.append(
            (
                "N=1000: peak RSS within 1.5x the bare relay's",
                own is not None and theirs is not None and own <= 1.5 * theirs,
                f"{_ms(own, 0)} MB vs {_ms(theirs, 0)} MB",
            )
        )
    writes = [r.get("db_writes_per_delta") for r in app if r.get("db_writes_per_delta") is not None]
    if writes:
        checks.append(
            (
                "DB writes per delta <= 0.1 (group commits / upstream deltas)",
                max(writes) <= 0.1,
                ", ".join(
                    f"N={r['n']}: {r['db_writes_per_delta']:.4f}"
                    for r in app
                    if r.get("db_writes_per_delta") is not None
                ),
            )
        )
    conns = [r for r in app if r.get("db_connections_per_live_stream") is not None]
    if conns:
        checks.append(
            (
                "DB connections per live stream <= 0.02 (peak sampled)",
                max(r["db_connections_per_live_stream"] for r in conns) <= 0.02,
                ", ".join(
                    f"N={r['n']}: {r['peak_db_connections']:.0f}/{r['peak_answers_live']:.0f}"
                    for r in conns
                ),
            )
        )
    flushes = [r for r in app if r.get("db_flushes_over_50ms") is not None]
    if flushes:
        checks.append(
            (
                "no group commit holds the hub > 50 ms (chatapp_db_flush_seconds)",
                all(r["db_flushes_over_50ms"] == 0 for r in flushes),
                ", ".join(
                    f"N={r['n']}: {r['db_flushes_over_50ms']:.0f} of {r['db_flushes']:.0f} "
                    "over 50 ms, "
                    f"mean {r['db_flush_mean_ms']:.1f} ms"
                    for r in flushes
                ),
            )
        )
    monitored = [r for r in app if r.get("hub_monitor") and "hub_blocked_reports" in r]
    if monitored:
        checks.append(
            (
                "nothing holds the gevent hub > 50 ms (reports of gevent's monitor thread)",
                all(r["hub_blocked_reports"] == 0 for r in monitored),
                ", ".join(f"N={r['n']}: {r['hub_blocked_reports']}" for r in monitored),
            )
        )
    checks.append(render_budget())
    return checks


def more_cores(runs: list[dict[str, Any]]) -> str | None:
    """What a second worker adds: answers opened a second in the capacity runs, one worker
    against two, with the load generator's own CPU beside them (it shares the 2 cores)."""
    found = {r["kind"]: r for r in runs if r.get("capacity") and "failed" not in r}
    one, two = found.get("gevent"), found.get("redis2")
    if one is None or two is None:
        return None

    def said(run: dict[str, Any]) -> str:
        load = run["load"]
        return (
            f"{_ms(load.get('opened_per_second'))}/s opened "
            f"({load.get('ok')}/{run['n']} ok, load generator {_ms(load.get('loader_cpu_seconds'))}"
            f" s CPU over {_ms(load.get('wall_seconds'))} s)"
        )

    ratio = None
    if one["load"].get("opened_per_second") and two["load"].get("opened_per_second"):
        ratio = two["load"]["opened_per_second"] / one["load"]["opened_per_second"]
    return (
        f"asked {one['rate']:g}/s: one worker {said(one)}; two workers with Redis {said(two)}"
        + ("" if ratio is None else f"; {ratio:.2f}x")
    )


def render_budget() -> tuple[str, bool | None, str]:
    """The linearity budget, from the last `make bench-render` (bench/render.py) if any."""
    what = "markdown work linear in message length (make bench-render)"
    path = RESULTS / "render.json"
    try:
        meta = json.loads(path.read_text())["meta"]
        worst = max(meta["worst_ratio"].values())
    except (OSError, ValueError, KeyError):
        return what, None, "not measured: run `make bench-render`"
    return (
        what,
        bool(meta["linear"]),
        f"per-character cost at most {worst:.2f}x that of the smallest answer "
        f"(bench/results/render.json of {meta['started']})",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-n",
        type=int,
        nargs="+",
        help=f"concurrent conversations (default {' '.join(map(str, FULL_NS))})",
    )
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(DEFAULT_KINDS),
        help=f"servers to run (default {' '.join(DEFAULT_KINDS)})",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"N = {' '.join(map(str, QUICK_NS))}, 3 s answers"
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis of the redis2 runs (default $BENCH_REDIS_URL or %(default)s); each run "
        "uses keys of its own prefix",
    )
    parser.add_argument(
        "--capacity-rate",
        type=float,
        default=250.0,
        help="conversations opened a second in the capacity run (0: no capacity run)",
    )
    parser.add_argument(
        "--capacity-n", type=int, default=750, help="conversations of the capacity run"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="conversations opened a second")
    parser.add_argument(
        "--reply-chars", type=int, help="characters of every answer (default 1000: 5 s)"
    )
    parser.add_argument(
        "--worker-connections", type=int, help="override gunicorn's worker_connections (all kinds)"
    )
    parser.add_argument(
        "--no-hub-monitor", action="store_true", help="do not run gevent's blocking monitor"
    )
    parser.add_argument("--sample-interval", type=float, default=0.2)
    parser.add_argument(
        "--deadline-factor", type=float, default=1.5, help="how long an answer may stretch"
    )
    parser.add_argument(
        "--grace", type=float, default=30.0, help="seconds added to every run's deadline"
    )
    parser.add_argument(
        "--page-events",
        action="store_true",
        help="app runs also hold each page's conversation events stream open "
        "(2 connections a page)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="copy each run's logs to bench/results/logs/"
    )
    parser.add_argument("--out", help="JSON file (default bench/results/bench-<time>.json)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="sample the app's workers with pyinstrument (bench/profiled.conf.py) and write "
        "each worker's profile to PROFILE/<kind>-<N>/",
    )
    args = parser.parse_args(argv)

    ns = args.n or (QUICK_NS if args.quick else FULL_NS)
    options = Options(
        rate=args.rate,
        reply_chars=args.reply_chars or (600 if args.quick else 1000),
        worker_connections=args.worker_connections,
        hub_monitor=not args.no_hub_monitor,
        sample_interval=args.sample_interval,
        deadline_factor=args.deadline_factor,
        grace=args.grace,
        keep_logs=args.keep_logs,
        page_events=args.page_events,
        redis_url=args.redis_url,
        profile=args.profile.resolve() if args.profile else None,
    )
    capacity = replace(options, rate=args.capacity_rate, capacity=True)
    capacity_kinds = [k for k in ("gevent", "redis2") if k in args.kinds]
    if args.quick or not args.capacity_rate:
        capacity_kinds = []
    plan = [(kind, n, options) for n in ns for kind in args.kinds]
    plan += [(kind, args.capacity_n, capacity) for kind in capacity_kinds]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else RESULTS / f"bench-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    total = sum(deadline_for(n, opts) for _kind, n, opts in plan)
    print(
        f"chatapp bench: N={list(ns)} kinds={args.kinds}, answers of {options.reply_chars} "
        f"characters ({options.reply_chars / CHARS_PER_SECOND:.0f} s at {TOKENS_PER_SECOND:g} "
        f"tokens/s, first token {FIRST_TOKEN_SECONDS:g} s, {PIECE_CHARS}-char deltas, upstream "
        f"gap {UPSTREAM_GAP_SECONDS * 1000:.0f} ms), "
        f"opened at {options.rate:g}/s; at most {total / 60:.0f} min",
        flush=True,
    )
    runs: list[dict[str, Any]] = []
    meta = {
        "started": stamp,
        "cpus": os.cpu_count(),
        "reply_chars": options.reply_chars,
        "rate": options.rate,
        "first_token_seconds": FIRST_TOKEN_SECONDS,
        "tokens_per_second": TOKENS_PER_SECOND,
        "piece_chars": PIECE_CHARS,
        "upstream_gap_ms": UPSTREAM_GAP_SECONDS * 1000,
        "worker_connections": options.worker_connections or app_worker_connections(),
        "hub_monitor": options.hub_monitor,
        "page_events": options.page_events,
        "user": f"{USER} ({USER_HEADER} from a trusted proxy), one for every conversation",
        "definitions": {
            "ttft_added_ms": "first frame read by the client - moment the prompt was sent "
            "(before the POST; "
            "for the relay before its GET) - the upstream's 0.5 s",
            "gap_ms": "time between consecutive frame events of one answer at the client "
            "(upstream: 100 ms)",
            "cpu_ms_per_1k_chars": "gunicorn worker utime+stime over the run / characters "
            "delivered to clients",
            "db_writes_per_delta": "chatapp_db_flushes_total delta / upstream text deltas "
            "(characters received / 20)",
            "peak_db_connections": "max of chatapp_db_connections_in_use sampled every "
            "sample_interval",
            "worker_cpu_util_opening": "cores the worker used while the N conversations were "
            "being opened",
            "worker_cpu_util_steady": "cores the worker used from 2 s to 12 s after the last "
            "conversation opened",
        },
    }
    if "gthread" in args.kinds:
        probe = probe_literal_gthread()
        meta["gthread_literal_probe"] = probe
        print(
            "   literal `gunicorn --config gunicorn.conf.py --worker-class gthread --threads 8 "
            "wsgi:app`: "
            + (
                "answered GET /healthz"
                if probe["answered"]
                else f"no answer to GET /healthz in {probe['seconds']:.0f} s"
            )
            + "; the gthread runs below start it under `python -m gevent.monkey`",
            flush=True,
        )
    for kind, n, opts in plan:
        print(
            f"-- {kind} N={n} at {opts.rate:g}/s (deadline {deadline_for(n, opts):.0f} s)",
            flush=True,
        )
        began = time.monotonic()
        try:
            run = run_one(kind, n, opts)
        except Exception as exc:  # one failed run must not lose the others
            run = {"kind": kind, "n": n, "failed": f"{type(exc).__name__}: {exc}"}
        run["rate"] = opts.rate
        run["capacity"] = opts.capacity
        run["hub_monitor"] = opts.hub_monitor and kind in ("relay", "gevent", "redis2")
        run["run_seconds"] = time.monotonic() - began
        runs.append(run)
        load = run.get("load", {})
        print(
            f"   {run['run_seconds']:.0f} s; {load.get('ok', 0)}/{n} ok"
            + (f"; errors {load.get('error_kinds')}" if load.get("errors") else "")
            + (f"; {run['failed']}" if "failed" in run else ""),
            flush=True,
        )
        out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    svg = out.with_suffix(".svg")
    write_svg({"meta": meta, "runs": runs}, svg)
    print()
    print(table(runs))
    print()
    print("Budgets (docs/architecture.md):")
    for what, passed, numbers in budgets(runs):
        mark = "n/a " if passed is None else ("PASS" if passed else "FAIL")
        print(f"  [{mark}] {what}: {numbers}")
    if capacity_line := more_cores(runs):
        print(f"\nMore cores: {capacity_line}")
    for run in runs:
        if "failed" in run:
            print(f"{run['kind']} N={run['n']} failed: {run['failed']}")
    print(f"\nresults: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}, {svg.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
