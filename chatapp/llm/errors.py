"""Say in one sentence a person understands why an answer failed."""

from __future__ import annotations

import re
from typing import Any

import anthropic
import httpx2

# Anthropic's error `type` values and what they mean to the reader.
_BY_TYPE = {
    "overloaded_error": "Claude is overloaded right now, try again in a moment.",
    "rate_limit_error": "Too many requests to Claude right now, try again in a moment.",
    "api_error": "Claude had an internal error, try again in a moment.",
    "authentication_error": (
        "Claude refused this server's API key. Ask whoever runs chatapp to check ANTHROPIC_API_KEY."
    ),
    "permission_error": "This server's API key is not allowed to use this model.",
    "not_found_error": "Claude does not know the model this conversation uses.",
    "request_too_large": "This conversation is too large to send to Claude.",
    "billing_error": "Claude refused the request because of a billing problem with the API key.",
}


def describe(exc: BaseException, *, idle_timeout: float | None = None) -> str:
    """Explain `exc`, raised while asking Claude, as a sentence for the page."""
    if isinstance(exc, anthropic.APIStatusError):
        return _describe_status(exc)
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        if idle_timeout:
            return f"Claude sent nothing for {idle_timeout:g} seconds, so the answer was stopped."
        return "Claude did not answer in time, try again in a moment."
    if isinstance(exc, anthropic.APIConnectionError | httpx2.ConnectError):
        return "Could not reach Claude: the connection failed. Try again in a moment."
    if isinstance(exc, httpx2.TransportError):
        return "The connection to Claude dropped partway through the answer."
    return "Something went wrong while asking Claude; the error is in the server log."


def kind(exc: BaseException) -> str:
    """A short label for what went wrong, for metrics: the API's error type, or the transport's."""
    if isinstance(exc, anthropic.APIStatusError):
        return _error_type(exc.body) or f"http_{exc.status_code}"
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return "timeout"
    if isinstance(exc, anthropic.APIConnectionError | httpx2.ConnectError):
        return "connection"
    if isinstance(exc, httpx2.TransportError):
        return "dropped"
    return type(exc).__name__


def cut_off() -> str:
    """The sentence for a stream that ended without Claude saying it was done."""
    return "The answer was cut off before Claude finished it."


def refused(explanation: str | None) -> str:
    """The sentence for an answer the API stopped with `stop_reason: "refusal"`."""
    sentence = "Claude declined to go on with this answer."
    if explanation and explanation.strip():
        sentence += " " + " ".join(explanation.split())
    return sentence + " Edit the question to ask differently: this exchange is not sent again."


def cut_short(stop_reason: str | None) -> str | None:
    """Why a complete answer stops where it does, when that is not its natural end."""
    if stop_reason == "max_tokens":
        return "Cut short: the answer reached the length allowed for one answer."
    if stop_reason == "model_context_window_exceeded":
        return "Cut short: the conversation filled the model's context window."
    return None


def too_many_tool_rounds(most: int) -> str:
    """The sentence for an answer that wanted more rounds of tools than allowed."""
    return (
        f"Claude wanted more than {most} rounds of tools, the most one answer may use "
        "(CHATAPP_MAX_TOOL_ROUNDS), so the answer stops here."
    )


def _describe_status(exc: anthropic.APIStatusError) -> str:
    kind = _error_type(exc.body)
    status = exc.status_code
    if status in (400, 403) and (switched_off := _server_tool_off(_error_message(exc.body))):
        return switched_off
    if status == 429 or kind == "rate_limit_error":
        wait = exc.response.headers.get("retry-after") if exc.response is not None else None
        if wait and wait.isdigit():
            return f"Too many requests to Claude right now, try again in {wait} seconds."
        return _BY_TYPE["rate_limit_error"]
    if status == 529:
        return _BY_TYPE["overloaded_error"]
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    if status == 401:
        return _BY_TYPE["authentication_error"]
    if status == 413:
        return _BY_TYPE["request_too_large"]
    if status == 400:
        detail = _error_message(exc.body)
        return (
            f"Claude rejected the request: {detail}" if detail else "Claude rejected the request."
        )
    if status >= 500:
        return _BY_TYPE["api_error"]
    return f"Claude answered with an error ({status}), try again in a moment."


# An organisation can have web search or web fetch switched off at Anthropic (its admins turn
# them on in the Claude Console); a request that names them then fails, with a message that
# names the tool and says it is not enabled.
_SERVER_TOOL = re.compile(r"\bweb[ _](search|fetch)\b", re.IGNORECASE)
_SWITCHED_OFF = re.compile(r"not (?:been )?enabled|disabled|not allowed|enable it", re.IGNORECASE)


def _server_tool_off(message: str | None) -> str | None:
    """The sentence for the API's refusal of a server tool the organisation has switched off;
    None if the message is about something else."""
    if not message or not _SWITCHED_OFF.search(message):
        return None
    found = _SERVER_TOOL.search(message)
    if found is None:
        return None
    name = f"Web {found.group(1).lower()}"
    return (
        f"{name} is switched off for this server's Anthropic organisation. An admin of the "
        f"organisation can switch it on in the Claude Console; until then, switch {name} off "
        "in this conversation's settings and retry (or ask whoever runs chatapp to set "
        "CHATAPP_SERVER_TOOLS)."
    )


def _error_type(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return error["type"]
    return None


def _error_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return None
