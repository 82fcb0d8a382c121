"""Turning the SDK's events into an answer, against real SDK events from the fake upstream."""

from __future__ import annotations

from types import SimpleNamespace

import anthropic
import httpx2
import pytest

from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.llm.reply import Reply

REQUEST = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Tell me about streams"}],
}


def collect(upstream: FakeUpstream) -> tuple[Reply, str, str]:
    """The reply, and the text and the thinking its pieces carried."""
    client = anthropic.Anthropic(api_key="test", base_url=upstream.url, max_retries=0)
    reply, pieces = Reply(), []
    try:
        with client.messages.create(stream=True, **REQUEST) as stream:
            for event in stream:
                pieces.append(reply.apply(event))
    finally:
        client.close()
    return reply, "".join(p.text for p in pieces), "".join(p.thinking for p in pieces)


def test_text_usage_and_stop_reason(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="Hello, <world> & 🌍 — naïve café\nbye"))
    reply, seen, _ = collect(upstream)
    assert seen == reply.text == "Hello, <world> & 🌍 — naïve café\nbye"
    assert reply.finished and reply.stop_reason == "end_turn"
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    assert reply.model == "claude-sonnet-4-6"
    assert reply.ttft_ms is not None and reply.ttft_ms >= 0


def test_thinking_block_first_is_kept_apart_from_the_text(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="The answer is 4.", thinking="2 + 2 is 4, say so."))
    reply, seen, thought = collect(upstream)
    assert seen == "The answer is 4."
    assert thought == reply.thinking == "2 + 2 is 4, say so."
    reply.end()
    [turn] = reply.transcript
    assert [block["type"] for block in turn["content"]] == ["thinking", "text"]
    assert turn["content"][0]["signature"]  # kept, to send back in later turns


def test_unknown_event_types_are_ignored(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="Still whole.", unknown_events=True))
    reply, seen, _ = collect(upstream)
    assert seen == "Still whole." and reply.finished


def test_unknown_event_object_adds_nothing() -> None:
    reply = Reply()
    assert not reply.apply(SimpleNamespace(type="brand_new_event", payload=1))
    assert not reply.apply(object())
    assert reply.text == ""


def test_stream_cut_before_message_stop_raises_nothing(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="This answer will be cut short.", cut_after=10))
    reply, seen, _ = collect(upstream)
    assert seen == "This answer will be cut short."[:10]
    assert not reply.finished and reply.stop_reason is None


def test_a_whole_round_has_its_output_tokens_reported(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="All of it.", thinking="Short thought."))
    reply, _, _ = collect(upstream)
    assert reply.unreported_output is None


def test_a_cut_round_leaves_what_it_wrote_to_be_counted(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="This answer will be cut short.", thinking="Hm.", cut_after=10))
    reply, _, _ = collect(upstream)
    assert reply.usage.output_tokens == 1  # all message_start says
    assert reply.unreported_output == "Hm.This answe"
    reply.count_output(4)
    assert reply.usage.output_tokens == 4 and reply.unreported_output is None


def test_a_round_the_api_never_took_has_nothing_to_count() -> None:
    assert Reply().unreported_output is None


def test_only_the_cut_round_is_counted(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="Second round, cut.", cut_after=6))
    reply = Reply()
    start = SimpleNamespace(
        type="message_start",
        message=SimpleNamespace(model="claude-sonnet-4-6", usage=SimpleNamespace(input_tokens=9)),
    )
    reply.apply(start)
    delta = SimpleNamespace(stop_reason="tool_use")
    reported = SimpleNamespace(output_tokens=30)
    reply.apply(SimpleNamespace(type="message_delta", delta=delta, usage=reported))
    reply.next_round()
    client = anthropic.Anthropic(api_key="test", base_url=upstream.url, max_retries=0)
    with client.messages.create(stream=True, **REQUEST) as stream:
        for event in stream:
            reply.apply(event)
    client.close()
    assert reply.unreported_output == "Second"
    reply.count_output(2)
    assert reply.usage.output_tokens == 32


def test_mid_stream_error_event_raises_status_200(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="Partial text then trouble.", error_after=7))
    client = anthropic.Anthropic(api_key="test", base_url=upstream.url, max_retries=0)
    reply = Reply()
    with pytest.raises(anthropic.APIStatusError) as caught:
        with client.messages.create(stream=True, **REQUEST) as stream:
            for event in stream:
                reply.apply(event)
    assert caught.value.status_code == 200
    assert reply.text == "Partial"


def test_dropped_connection_raises_protocol_error(upstream: FakeUpstream) -> None:
    upstream.push(Scenario(text="Dropped halfway through.", drop_after=8))
    client = anthropic.Anthropic(api_key="test", base_url=upstream.url, max_retries=0)
    reply = Reply()
    with pytest.raises(httpx2.RemoteProtocolError):
        with client.messages.create(stream=True, **REQUEST) as stream:
            for event in stream:
                reply.apply(event)
    assert reply.text == "Dropped "


def test_redacted_thinking_is_kept_for_claude_and_shows_nothing() -> None:
    def event(kind: str, **fields: object) -> SimpleNamespace:
        return SimpleNamespace(type=kind, **fields)

    reply = Reply()
    redacted = SimpleNamespace(type="redacted_thinking", data="opaque")
    pieces = [
        reply.apply(event("content_block_start", index=0, content_block=redacted)),
        reply.apply(event("content_block_stop", index=0)),
        reply.apply(
            event("content_block_start", index=1, content_block=SimpleNamespace(type="text"))
        ),
        reply.apply(
            event(
                "content_block_delta", index=1, delta=SimpleNamespace(type="text_delta", text="Hi")
            )
        ),
    ]
    reply.end()  # cut before the text block stopped: the text is whole as far as it goes
    assert [bool(p) for p in pieces] == [False, False, False, True] and reply.thinking == ""
    assert reply.transcript == [
        {
            "role": "assistant",
            "content": [
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "Hi"},
            ],
        }
    ]
