"""/healthz, /metrics and the connection check."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.demo import FakeUpstream, Scenario

from .conftest import Configure, html, parse_events, send
from .helpers import answer_id, metric_values, wait_finished


def test_health_and_metrics(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok", "database": "ok"}
    body = client.get("/metrics").data.decode()
    import re

    assert "# TYPE chatapp_answers_live gauge" in body
    assert re.search(r"^chatapp_db_connections_in_use \d+(\.\d+)?$", body, flags=re.MULTILINE)


def test_health_says_when_redis_is_unreachable(
    configured: Configure, upstream: FakeUpstream
) -> None:
    app = configured(REDIS_URL="redis://127.0.0.1:9/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503 and response.json["redis"] == "ConnectionError"


def test_metrics_count_frames_answers_errors_and_first_tokens(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="Counted."), Scenario(status=529))
    counted = wait_finished(app, answer_id(send(client, "One")))
    wait_finished(app, answer_id(send(client, "Two")))
    values = metric_values(client.get("/metrics").data.decode())
    # Only the answer the API took is billed: its tokens, by model and kind.
    for kind, count in [
        ("input", counted.input_tokens),
        ("output", counted.output_tokens),
        ("cache_read", 0),
    ]:
        assert values[f'chatapp_tokens_total{{kind="{kind}",model="{counted.model}"}}'] == count
    assert counted.output_tokens and counted.output_tokens > 0
    assert values['chatapp_answers_total{status="complete"}'] == 1
    assert values['chatapp_answers_total{status="failed"}'] == 1
    assert values['chatapp_upstream_errors_total{kind="overloaded_error"}'] == 1
    assert values["chatapp_characters_total"] == 8
    assert values['chatapp_first_token_seconds_bucket{le="+Inf"}'] == 1
    assert values["chatapp_frames_total"] >= 1 and values["chatapp_db_flush_seconds_count"] >= 0


def test_connection_check_streams_timed_events(client: FlaskClient) -> None:
    page = html(client.get("/connection-check").data)
    assert page.find("button", string=lambda s: s and "Quick check" in s) is not None
    response = client.get("/connection-check/stream?ticks=3&interval=0.05&quiet=0.1")
    assert response.headers["X-Accel-Buffering"] == "no"
    events = parse_events(response.data.decode())
    names = [e.get("event") for e in events if "event" in e]
    assert names == ["hello", "tick", "tick", "tick", "done"]
    assert [e["id"] for e in events if e.get("event") == "tick"] == ["0", "1", "2"]
