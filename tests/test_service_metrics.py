"""How many workers gunicorn starts, and /metrics reporting all of them in one scrape.

With several workers, a scrape reaches one of them at random: the counters must be the whole
service's (prometheus_client's multiprocess mode, set up by chatapp/gunicorn_conf.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

from .conftest import REDIS_URL
from .helpers import metric_values
from .server import ROOT, app_server
from .test_gunicorn import Browser

COMPLETE = 'chatapp_answers_total{status="complete"}'


def gunicorn_settings(**env: str) -> tuple[int, str]:
    """(workers, why) of chatapp/gunicorn_conf.py under `env`, read by a fresh interpreter."""
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "WEB_CONCURRENCY")}
    code = "import chatapp.gunicorn_conf as c; print(c.workers); print(c._why)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return int(out[0]), out[1]


def test_one_worker_per_core_with_redis_and_one_without(tmp_path: Path) -> None:
    metrics = str(tmp_path)  # so that reading the settings makes no directory of its own
    cores = len(os.sched_getaffinity(0))
    workers, why = gunicorn_settings(REDIS_URL=REDIS_URL, PROMETHEUS_MULTIPROC_DIR=metrics)
    assert workers == cores and "one per core" in why
    workers, why = gunicorn_settings(
        REDIS_URL=REDIS_URL, WEB_CONCURRENCY="3", PROMETHEUS_MULTIPROC_DIR=metrics
    )
    assert (workers, why) == (3, "WEB_CONCURRENCY")
    workers, why = gunicorn_settings(PROMETHEUS_MULTIPROC_DIR=metrics)
    assert workers == 1 and "without REDIS_URL" in why


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(Pace(first_token_seconds=(0.1, 0.2), tokens_per_second=(200.0, 200.0)))
    fake.start()
    yield fake
    fake.stop()


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        return metric_values(response.read().decode())


def answers_by_worker(directory: Path) -> dict[int, float]:
    """pid -> complete answers counted by that worker alone, from its own counter file."""
    found = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        alone = directory / f"worker-{pid}"
        alone.mkdir(exist_ok=True)
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        found[pid] = (
            registry.get_sample_value("chatapp_answers_total", {"status": "complete"}) or 0.0
        )
        shutil.rmtree(alone)
    return found


@pytest.mark.slow
def test_one_scrape_counts_the_answers_of_both_workers(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_999999.db").write_bytes(b"left by a server before")  # emptied at start
    env = {
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": REDIS_URL,
        "CHATAPP_REDIS_PREFIX": f"chatapp-test-{uuid.uuid4().hex[:8]}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    (tmp_path / "server").mkdir()
    with app_server(tmp_path / "server", upstream=upstream, env=env) as server:
        assert "chatapp: 2 workers: WEB_CONCURRENCY" in server.output()
        sent = 0

        def answer(n: int) -> None:
            browser = Browser(server.url, f"person-{n}")
            browser.open_page()
            _answer_id, url = browser.send(f"Question {n}")
            assert "event: done" in browser.read_stream(url)

        # Side by side, on connections of their own, the answers land on both workers.
        for _batch in range(6):
            upstream.push(*(Scenario(text=f"Answer {n}.") for n in range(sent, sent + 8)))
            gevent.joinall(
                [gevent.spawn(answer, n) for n in range(sent, sent + 8)], raise_error=True
            )
            sent += 8
            by_worker = answers_by_worker(metrics)
            if len([n for n in by_worker.values() if n]) == 2:
                break
        assert len([n for n in by_worker.values() if n]) == 2, by_worker
        assert sum(by_worker.values()) == sent
        for _scrape in range(4):  # whichever worker answers
            assert scrape(server.url)[COMPLETE] == sent

        # A worker dies: gunicorn starts another; its answers stay counted, its gauges go.
        gone = max(by_worker, key=lambda pid: by_worker[pid])
        os.kill(gone, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (metrics / f"gauge_livesum_{gone}.db").exists():
            assert time.monotonic() < deadline, "the dead worker's gauges stayed"
            gevent.sleep(0.2)
        assert (metrics / f"counter_{gone}.db").exists()
        deadline = time.monotonic() + 20
        while True:
            try:
                values = scrape(server.url)
                break
            except OSError:
                assert time.monotonic() < deadline, "no worker answered after one died"
                gevent.sleep(0.2)
        assert values[COMPLETE] == sent
        assert values["chatapp_answers_live"] == 0
    assert not (metrics / "counter_999999.db").exists()
