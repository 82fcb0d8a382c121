"""Counting the output tokens of an answer cut short, with the API's token counter."""

from __future__ import annotations

import json

import anthropic
import httpx2

from chatapp.llm.tokens import OutputCounter, estimate_tokens

WRAPPING = 7  # what this fake counter adds around every message


def counter_for(handler: httpx2.MockTransport) -> OutputCounter:
    client = anthropic.Anthropic(
        api_key="test", http_client=httpx2.Client(transport=handler), max_retries=0
    )
    return OutputCounter(client)


def test_the_count_leaves_out_what_wraps_the_text() -> None:
    asked: list[str] = []

    def count(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/messages/count_tokens"
        body = json.loads(request.content)
        [message] = body["messages"]
        asked.append(message["content"])
        tokens = WRAPPING + len(message["content"].split(" "))  # a word a token
        return httpx2.Response(200, json={"input_tokens": tokens})

    counter = counter_for(httpx2.MockTransport(count))
    assert counter.count("claude-sonnet-4-6", "five words of cut answer") == 5
    assert counter.count("claude-sonnet-4-6", "two words") == 2
    # The wrapping is measured once per model.
    assert asked == [".", "five words of cut answer", "two words"]


def test_a_counter_that_fails_gives_an_estimate() -> None:
    def overloaded(request: httpx2.Request) -> httpx2.Response:
        body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return httpx2.Response(529, json=body)

    counter = counter_for(httpx2.MockTransport(overloaded))
    text = "x" * 70
    assert counter.count("claude-sonnet-4-6", text) == estimate_tokens(text) == 20


def test_an_unreachable_counter_gives_an_estimate() -> None:
    def unreachable(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    assert counter_for(httpx2.MockTransport(unreachable)).count("claude-opus-4-6", "ab") == 1
