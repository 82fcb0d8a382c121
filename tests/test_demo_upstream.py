"""The demo upstream speaks Anthropic's Messages protocol well enough for the official SDK.

Each test drives the real `anthropic.Anthropic` client (or plain httpx2, to see the wire)
against a `FakeUpstream` serving in this gevent hub.
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import gevent
import httpx2
import pytest

from chatapp.llm.demo import FakeUpstream, Pace, Scenario

FAST = Pace(first_token_seconds=(0.01, 0.02), tokens_per_second=(2000.0, 2000.0))
# Slow enough that a reply is still streaming when a test closes it.
SLOW = Pace(first_token_seconds=(0.01, 0.01), tokens_per_second=(20.0, 20.0))
MODEL = "claude-sonnet-4-6"
UNICODE_TEXT = 'Ünïcødé → 東京 🚀🎉 naïve café <b>bold</b> & "quotes" \\ back\nslash\ttab'


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    upstream = FakeUpstream(FAST, seed=7)
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture
def sdk(fake: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    client = anthropic.Anthropic(api_key="test", base_url=fake.url, max_retries=0)
    yield client
    client.close()


def request(prompt: str = "How do greenlets share one hub?", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": prompt}],
    }
    body.update(extra)
    return body


@dataclass
class Streamed:
    """What the SDK yielded for one streamed reply."""

    events: list[Any]
    text: str
    deltas: list[str]
    final: Any = None


def stream(sdk: anthropic.Anthropic, body: dict[str, Any]) -> Streamed:
    """Stream one reply to the end with the SDK."""
    seen = Streamed(events=[], text="", deltas=[])
    with sdk.messages.stream(**body) as reply:
        for event in reply:
            seen.events.append(event)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                seen.deltas.append(event.delta.text)
                seen.text += event.delta.text
        seen.final = reply.get_final_message()
    return seen


def stream_until_error(sdk: anthropic.Anthropic, body: dict[str, Any]) -> tuple[str, Exception]:
    """Stream a reply that must fail; return the text seen before the failure and the error."""
    return stream_until_error_after(sdk, body, lambda: None)


def stream_until_error_after(
    sdk: anthropic.Anthropic, body: dict[str, Any], on_text: Callable[[], None]
) -> tuple[str, Exception]:
    """Like `stream_until_error`, calling `on_text` after each piece of text."""
    text = ""
    try:
        with sdk.messages.stream(**body) as reply:
            for chunk in reply.text_stream:
                text += chunk
                on_text()
    except Exception as error:  # noqa: BLE001 - the caller asserts the class
        return text, error
    raise AssertionError(f"the reply did not fail; it said {text!r}")


@dataclass
class WireEvent:
    at: float
    name: str | None
    data: Any


def wire_events(url: str, body: dict[str, Any]) -> list[WireEvent]:
    """Read a streamed reply off the wire, noting when each event arrived."""
    events: list[WireEvent] = []
    name: str | None = None
    data: Any = None
    with (
        httpx2.Client() as http,
        http.stream("POST", f"{url}/v1/messages", json={**body, "stream": True}) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["request-id"]
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
            elif line == "":
                events.append(WireEvent(time.monotonic(), name, data))
                name, data = None, None
            else:
                raise AssertionError(f"unexpected line {line!r}")
    return events


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.005)
    return True


# -- complete replies -------------------------------------------------------------------------


def test_demo_reply_streams_in_small_deltas(fake: FakeUpstream, sdk: anthropic.Anthropic) -> None:
    body = request()
    seen = stream(sdk, body)

    assert seen.text == fake.reply_text(body)
    assert seen.final.content[0].text == seen.text
    assert seen.final.stop_reason == "end_turn"
    assert seen.final.model == MODEL
    assert seen.final.usage.input_tokens > 0
    assert seen.final.usage.output_tokens == pytest.approx(len(seen.text) / 4, abs=1)
    assert len(seen.deltas) > len(seen.text.split())
    assert all(1 <= len(delta) <= 6 for delta in seen.deltas)
    kinds = [event.type for event in seen.events]
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "message_delta" in kinds


def test_demo_replies_are_markdown_and_follow_the_prompt(fake: FakeUpstream) -> None:
    prompts = [f"Question number {n} about caching and queues" for n in range(40)]
    replies = [fake.reply_text(request(prompt)) for prompt in prompts]

    assert fake.reply_text(request(prompts[0])) == replies[0]
    assert len(set(replies)) == len(replies)
    assert len({reply.splitlines()[0] for reply in replies}) >= 4
    for reply in replies:
        assert 600 <= len(reply) <= 1500
        assert reply.startswith("#")
        assert "```" in reply
        assert "**" in reply
        assert "\n- " in reply or "\n1. " in reply
        assert "Question number" in reply
        assert "not from Claude" in reply
    assert any(not reply.isascii() for reply in replies)


def test_max_tokens_cuts_the_demo_reply(fake: FakeUpstream, sdk: anthropic.Anthropic) -> None:
    body = request(max_tokens=10)
    seen = stream(sdk, body)

    assert seen.text == fake.reply_text(body)
    assert len(seen.text) == 40
    assert seen.final.stop_reason == "max_tokens"


def test_exact_text_round_trips(fake: FakeUpstream, sdk: anthropic.Anthropic) -> None:
    fake.push(Scenario(text=UNICODE_TEXT, stop_reason="stop_sequence"))
    seen = stream(sdk, request())

    assert seen.text == UNICODE_TEXT
    assert seen.final.stop_reason == "stop_sequence"


def test_thinking_block_comes_before_the_text(fake: FakeUpstream, sdk: anthropic.Anthropic) -> None:
    fake.push(Scenario(text="The answer is 4.", thinking="2 + 2 is 4; say so briefly."))
    seen = stream(sdk, request())

    thinking, text = seen.final.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "2 + 2 is 4; say so briefly."
    assert thinking.signature
    assert text.type == "text"
    assert text.text == "The answer is 4."
    starts = [e.content_block.type for e in seen.events if e.type == "content_block_start"]
    assert starts == ["thinking", "text"]
    kinds = [e.delta.type for e in seen.events if e.type == "content_block_delta"]
    assert kinds.index("signature_delta") < kinds.index("text_delta")


def test_unknown_events_pass_through_the_sdk(fake: FakeUpstream, sdk: anthropic.Anthropic) -> None:
    body = request()
    fake.push(Scenario(unknown_events=True))
    seen = stream(sdk, body)

    unknown = [event for event in seen.events if event.type == "future_thing"]
    assert len(unknown) > 3
    # The SDK does not drop them: it builds them as the first model of its event union.
    assert all(isinstance(event, anthropic.types.RawMessageStartEvent) for event in unknown)
    assert seen.text == fake.reply_text(body)
    assert seen.final.stop_reason == "end_turn"


def test_non_streaming_request_returns_a_message(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    body = request("Title for: gevent hubs")
    message = sdk.messages.create(**body)

    assert isinstance(message, anthropic.types.Message)
    assert message.content[0].type == "text"
    assert message.content[0].text == fake.reply_text(body)
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 1
    assert fake.requests[-1] == body


def test_requests_are_recorded_and_scenarios_taken_in_order(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    fake.push(Scenario(text="first"), Scenario(text="second"))
    system = "You are terse."
    texts = [stream(sdk, request(f"prompt {n}", system=system)).text for n in range(3)]

    assert texts[:2] == ["first", "second"]
    assert texts[2] == fake.reply_text(request("prompt 2"))
    assert [body["messages"][0]["content"] for body in fake.requests] == [
        "prompt 0",
        "prompt 1",
        "prompt 2",
    ]
    assert all(body["stream"] is True and body["system"] == system for body in fake.requests)


def test_input_tokens_estimate_the_prompt(sdk: anthropic.Anthropic) -> None:
    body = request(
        "x" * 400,
        system=[{"type": "text", "text": "y" * 200}],
    )
    body["messages"] = [
        {"role": "user", "content": [{"type": "text", "text": "z" * 100}]},
        {"role": "assistant", "content": "w" * 100},
        *body["messages"],
    ]
    seen = stream(sdk, body)

    assert seen.final.usage.input_tokens == 200


# -- HTTP errors before the stream ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_error_status_raises_the_sdk_error(
    fake: FakeUpstream,
    sdk: anthropic.Anthropic,
    status: int,
    error_class: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    fake.push(Scenario(status=status))
    with pytest.raises(anthropic.APIStatusError) as caught:
        stream(sdk, request())

    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert caught.value.type == error_type
    assert caught.value.request_id
    assert len(fake.requests) == 1


def test_rate_limit_carries_retry_after(fake: FakeUpstream, sdk: anthropic.Anthropic) -> None:
    fake.push(Scenario(status=429, retry_after=7))
    with pytest.raises(anthropic.RateLimitError) as caught:
        stream(sdk, request())

    assert caught.value.response.headers["retry-after"] == "7"


def test_sdk_retries_take_the_next_scenario(fake: FakeUpstream) -> None:
    fake.push(Scenario(status=529, retry_after=0), Scenario(text="after a retry"))
    with anthropic.Anthropic(api_key="test", base_url=fake.url, max_retries=1) as sdk:
        seen = stream(sdk, request())

    assert seen.text == "after a retry"
    assert len(fake.requests) == 2


def test_unknown_path_answers_a_json_404(fake: FakeUpstream) -> None:
    with httpx2.Client() as http:
        resp = http.get(f"{fake.url}/v1/nothing")

    assert resp.status_code == 404
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "not_found_error"


# -- faults mid-stream ------------------------------------------------------------------------


def test_error_event_mid_stream_raises_status_200(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    fake.push(Scenario(text=UNICODE_TEXT, error_after=12))
    text, error = stream_until_error(sdk, request())

    assert text == UNICODE_TEXT[:12]
    assert type(error) is anthropic.APIStatusError
    assert error.status_code == 200
    assert error.type == "overloaded_error"


def test_dropped_connection_raises_httpx_protocol_error(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    fake.push(Scenario(text=UNICODE_TEXT, drop_after=20))
    text, error = stream_until_error(sdk, request())

    assert text == UNICODE_TEXT[:20]
    # The SDK does not wrap errors raised while reading the body: no APIConnectionError here.
    assert type(error) is httpx2.RemoteProtocolError
    assert not isinstance(error, anthropic.APIError)
    assert fake.disconnects == []


def test_body_cut_short_ends_without_a_stop_reason(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    fake.push(Scenario(text=UNICODE_TEXT, cut_after=15))
    seen = stream(sdk, request())

    assert seen.text == UNICODE_TEXT[:15]
    assert seen.final.stop_reason is None
    kinds = {event.type for event in seen.events}
    assert not kinds & {"content_block_stop", "message_delta", "message_stop"}


def test_fault_past_the_end_happens_after_the_last_character(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    fake.push(Scenario(text="short", error_after=1000))
    text, error = stream_until_error(sdk, request())

    assert text == "short"
    assert isinstance(error, anthropic.APIStatusError)


def test_stall_sends_nothing_then_continues(fake: FakeUpstream) -> None:
    pace = Pace(
        first_token_seconds=(0.01, 0.01), tokens_per_second=(2000.0, 2000.0), ping_seconds=0.05
    )
    fake.push(Scenario(text=UNICODE_TEXT, stall_after=10, stall_seconds=0.5, pace=pace))
    events = wire_events(fake.url, request())

    gaps = [(b.at - a.at, i) for i, (a, b) in enumerate(itertools.pairwise(events))]
    longest, at = max(gaps)
    assert 0.45 <= longest < 1.0
    assert sorted(gaps)[-2][0] < 0.1
    before = "".join(
        e.data["delta"]["text"] for e in events[: at + 1] if e.name == "content_block_delta"
    )
    assert before == UNICODE_TEXT[:10]
    assert events[-1].name == "message_stop"


# -- the wire ---------------------------------------------------------------------------------


def test_every_event_is_named_and_pings_fill_the_wait(fake: FakeUpstream) -> None:
    pace = Pace(
        first_token_seconds=(0.35, 0.35), tokens_per_second=(2000.0, 2000.0), ping_seconds=0.1
    )
    fake.push(Scenario(text="Hello there, pinged world.", pace=pace))
    events = wire_events(fake.url, request())

    assert all(event.name and event.data["type"] == event.name for event in events)
    names = [event.name for event in events]
    first_block = names.index("content_block_start")
    assert names[0] == "message_start"
    assert names[1:first_block].count("ping") >= 3
    assert names[first_block:] == (
        ["content_block_start"]
        + ["content_block_delta"] * (len(names) - first_block - 4)
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    message = events[0].data["message"]
    assert message["role"] == "assistant"
    assert message["content"] == []
    assert message["stop_reason"] is None
    assert message["model"] == MODEL
    assert set(message["usage"]) >= {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    assert events[-2].data["usage"]["output_tokens"] > 0


def test_pace_spreads_deltas_over_time(fake: FakeUpstream) -> None:
    pace = Pace(first_token_seconds=(0.0, 0.0), tokens_per_second=(100.0, 100.0))
    text = "x" * 200  # 200 characters at 400 characters a second
    fake.push(Scenario(text=text, pace=pace))
    events = wire_events(fake.url, request())

    deltas = [e for e in events if e.name == "content_block_delta"]
    assert 0.4 <= deltas[-1].at - deltas[0].at < 0.7


# -- the client leaving -----------------------------------------------------------------------


def test_closing_the_stream_records_a_disconnect(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    fake.push(Scenario(pace=SLOW))
    with sdk.messages.stream(**request()) as reply:
        for chunk in reply.text_stream:
            assert chunk
            break
        closed = time.monotonic()

    assert wait_for(lambda: fake.disconnects, 0.5)
    assert 0 <= fake.disconnects[0] - closed < 0.5


def test_closing_during_the_first_token_wait_records_a_disconnect(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    fake.push(Scenario(pace=Pace(first_token_seconds=(5.0, 5.0), ping_seconds=5.0)))
    with sdk.messages.stream(**request()):
        closed = time.monotonic()

    assert wait_for(lambda: fake.disconnects, 0.5)
    assert fake.disconnects[0] - closed < 0.5


def test_closing_during_a_stall_records_a_disconnect(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    fake.push(Scenario(text=UNICODE_TEXT, stall_after=5, stall_seconds=5.0))
    with sdk.messages.stream(**request()) as reply:
        text = ""
        for chunk in reply.text_stream:
            text += chunk
            if len(text) == 5:
                break
        closed = time.monotonic()

    assert wait_for(lambda: fake.disconnects, 0.5)
    assert fake.disconnects[0] - closed < 0.5


def test_finished_replies_record_no_disconnect(
    fake: FakeUpstream, sdk: anthropic.Anthropic
) -> None:
    stream(sdk, request())
    fake.push(Scenario(text="cut", cut_after=1), Scenario(text="err", error_after=1))
    stream(sdk, request())
    with pytest.raises(anthropic.APIStatusError):
        stream(sdk, request())
    gevent.sleep(0.05)

    assert fake.disconnects == []


def test_stop_ends_streaming_replies(fake: FakeUpstream, sdk: anthropic.Anthropic) -> None:
    fake.push(Scenario(pace=SLOW))
    text, error = stream_until_error_after(sdk, request(), fake.stop)

    assert text
    assert type(error) is httpx2.RemoteProtocolError


# -- standalone -------------------------------------------------------------------------------


def test_module_serves_standalone() -> None:
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(
        [
            sys.executable,
            "-W",
            "error",
            "-m",
            "chatapp.llm.demo",
            "--port",
            "0",
            "--first-token",
            "0.01",
            "--tokens-per-second",
            "2000",
        ],
        cwd=root,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        url = banner.split(" on ")[1].split(" ")[0]
        with (
            anthropic.Anthropic(api_key="demo", base_url=url, max_retries=0) as sdk,
            sdk.messages.stream(**request("Hello from the standalone test")) as reply,
        ):
            text = reply.get_final_text()
        assert "Hello from the standalone" in text
    finally:
        server.terminate()
        server.wait(timeout=5)
        if server.stderr is not None:
            server.stderr.close()


def test_events_leave_at_once_on_a_kept_alive_connection() -> None:
    """TCP_NODELAY on every connection it accepts: without it, Nagle's algorithm held the
    first events of a reply on a reused connection until the SDK's delayed ACK (40 ms)."""
    from gevent.pywsgi import WSGIServer

    from chatapp.llm.demo.upstream import Handler

    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, address = listener.accept()
        with client, accepted:
            Handler(accepted, address, WSGIServer(listener, lambda *_: []))
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
