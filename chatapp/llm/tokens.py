"""How many output tokens an answer cut short wrote.

Claude reports a round's output tokens in its last `message_delta`. A round that ends before
it (Stop, a dropped connection, an error mid-stream, the worker going away) never gets that
report, yet what it wrote is billed. `OutputCounter.count` asks the Messages API's token
counter (`/v1/messages/count_tokens`, which costs nothing) how many tokens that text is, so
a stopped answer costs what it showed, not the 1 token `message_start` announces.

The counter counts a whole request, so the text goes in as one user message and the tokens
that wrapping adds are taken off: they are measured once per model, on a message of one
character. Should the counter fail, the count falls back to an estimate of one token per
`CHARS_PER_TOKEN` characters, and the log says so.
"""

from __future__ import annotations

import logging
import math

import anthropic
import httpx2

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3.5  # a usual rule of thumb for English text and Claude's tokenizer
ONE_TOKEN = "."  # a text of one token, to measure what the wrapping adds
COUNT_TIMEOUT = 5.0  # seconds; a count must not hold up an answer's end for long


class OutputCounter:
    """Counts the tokens of text Claude wrote, with the client this worker uses."""

    def __init__(self, client: anthropic.Anthropic) -> None:
        self._client = client.with_options(max_retries=0, timeout=COUNT_TIMEOUT)
        self._wrapping: dict[str, int] = {}  # by model: tokens the counter adds around a text

    def count(self, model: str, text: str) -> int:
        """Output tokens of `text`, written by `model` (at least 1)."""
        try:
            wrapping = self._wrapping.get(model)
            if wrapping is None:
                wrapping = self._wrapping[model] = self._request(model, ONE_TOKEN) - 1
            return max(1, self._request(model, text) - wrapping)
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            estimate = estimate_tokens(text)
            log.warning(
                "could not count the tokens of a cut answer (%r); estimating %d", exc, estimate
            )
            return estimate

    def _request(self, model: str, text: str) -> int:
        counted = self._client.messages.count_tokens(
            model=model, messages=[{"role": "user", "content": text}]
        )
        return counted.input_tokens


def estimate_tokens(text: str) -> int:
    """Tokens of `text` by the rule of thumb, when the counter cannot say (at least 1)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))
