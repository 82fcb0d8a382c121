"""The tool registry, running a tool safely, and the three built-in tools."""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import pytest
from flask import Flask
from gevent import GreenletExit

from chatapp import tools
from chatapp.conversations import forms, store
from chatapp.extensions import db
from chatapp.models import Conversation, Status, User
from chatapp.tools import RESULT_LIMIT, Tool, ToolContext, ToolError, builtin
from chatapp.tools.record import input_done, opening, outcome

from .conftest import user_id

BUILTINS = ["calculator", "current_time", "search_conversations"]


@pytest.fixture
def context() -> ToolContext:
    """A context for tools that never open the app (the calculator, the clock)."""
    return ToolContext(Flask("tools-test"), user_id=1)


@pytest.fixture
def temporary() -> Iterator[list[str]]:
    """Names of tools a test registers; they are removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        tools.unregister(name)


def add_tool(temporary: list[str], name: str, run: Any, *, timeout: float = 10.0) -> Tool:
    temporary.append(name)
    return tools.register(
        Tool(
            name=name,
            title=name.title(),
            description=f"The {name} test tool.",
            input_schema={"type": "object", "properties": {}},
            run=run,
            timeout=timeout,
        )
    )


def calculate(context: ToolContext, expression: str) -> tools.Outcome:
    return tools.run("calculator", {"expression": expression}, context)


# -- the registry ---------------------------------------------------------------------------


def test_the_builtins_come_first_in_order() -> None:
    registered = tools.registered()
    assert list(registered)[:3] == BUILTINS
    assert [registered[name].title for name in BUILTINS] == [
        "Calculator",
        "Current time",
        "Search my conversations",
    ]
    for tool in registered.values():
        assert tool.input_schema["type"] == "object" and tool.description


def test_registered_is_a_copy_and_register_replaces_in_place(temporary: list[str]) -> None:
    tools.registered().clear()
    assert list(tools.registered())[:3] == BUILTINS
    first = add_tool(temporary, "echo", lambda tool_input, context: "one")
    add_tool(temporary, "other", lambda tool_input, context: "")
    second = add_tool(temporary, "echo", lambda tool_input, context: "two")
    names = list(tools.registered())
    assert names.count("echo") == 1 and names.index("echo") < names.index("other")
    assert tools.registered()["echo"] is second is not first
    tools.unregister("echo")
    tools.unregister("echo")  # already gone: nothing to do
    assert "echo" not in tools.registered()


def test_definitions_follow_the_registry_order_and_skip_unknown_names() -> None:
    found = tools.definitions(["search_conversations", "no_such_tool", "calculator"])
    assert [d["name"] for d in found] == ["calculator", "search_conversations"]
    for definition in found:
        assert set(definition) == {"name", "description", "input_schema"}
    assert found[0]["input_schema"]["required"] == ["expression"]
    assert tools.definitions([]) == []


def test_load_imports_modules_that_register_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temporary: list[str]
) -> None:
    (tmp_path / "extra_tools_for_test.py").write_text(
        "from chatapp.tools import Tool, register\n"
        "register(Tool('shout', 'Shout', 'Shout it.', {'type': 'object'},"
        " lambda tool_input, context: str(tool_input.get('text', '')).upper()))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    temporary.append("shout")
    try:
        tools.load(["extra_tools_for_test"])
    finally:
        sys.modules.pop("extra_tools_for_test", None)
    assert list(tools.registered())[-1] == "shout"


def test_load_names_the_module_that_cannot_be_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ImportError, match="'chatapp.no_such_module'"):
        tools.load(["chatapp.no_such_module"])
    (tmp_path / "broken_tools_for_test.py").write_text("raise RuntimeError('no key set')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="'broken_tools_for_test'.*RuntimeError: no key set"):
        tools.load(["broken_tools_for_test"])
    assert "broken_tools_for_test" not in sys.modules


# -- running a tool -------------------------------------------------------------------------


def test_an_unknown_tool_is_an_error(context: ToolContext) -> None:
    outcome = tools.run("nope", {}, context)
    assert (outcome.result, outcome.is_error) == ("There is no tool named nope.", True)


@pytest.mark.parametrize("tool_input", [None, ["1 + 1"], "1 + 1", 3])
def test_input_that_is_not_an_object_is_an_error(context: ToolContext, tool_input: Any) -> None:
    outcome = tools.run("calculator", tool_input, context)
    assert outcome.is_error and "JSON object" in outcome.result


def test_a_result_comes_back_with_how_long_it_took(
    context: ToolContext, temporary: list[str]
) -> None:
    seen: list[tuple[dict[str, Any], ToolContext]] = []

    def echo(tool_input: dict[str, Any], context: ToolContext) -> str:
        seen.append((tool_input, context))
        return str(tool_input["text"])

    add_tool(temporary, "echo", echo)
    outcome = tools.run("echo", {"text": "hello"}, context)
    assert (outcome.result, outcome.is_error) == ("hello", False)
    assert isinstance(outcome.ms, int) and outcome.ms >= 0
    assert seen == [({"text": "hello"}, context)]


def test_a_tool_error_is_told_as_it_is(context: ToolContext, temporary: list[str]) -> None:
    def refuse(tool_input: dict[str, Any], context: ToolContext) -> str:
        raise ToolError("The moon is not available today.")

    add_tool(temporary, "refuse", refuse)
    outcome = tools.run("refuse", {}, context)
    assert (outcome.result, outcome.is_error) == ("The moon is not available today.", True)


def test_any_other_exception_is_an_error_and_logged(
    context: ToolContext, temporary: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(tool_input: dict[str, Any], context: ToolContext) -> str:
        return str({}["missing"])

    add_tool(temporary, "broken", broken)
    with caplog.at_level(logging.ERROR, logger="chatapp.tools"):
        outcome = tools.run("broken", {}, context)
    assert (outcome.result, outcome.is_error) == ("broken failed: KeyError: 'missing'", True)
    [record] = caplog.records
    assert "broken" in record.getMessage() and record.exc_info is not None


def test_a_result_that_is_not_text_is_an_error(context: ToolContext, temporary: list[str]) -> None:
    add_tool(temporary, "number", lambda tool_input, context: 42)
    outcome = tools.run("number", {}, context)
    assert outcome.is_error and "TypeError" in outcome.result and "int" in outcome.result


def test_a_tool_that_takes_too_long_is_stopped(context: ToolContext, temporary: list[str]) -> None:
    def slow(tool_input: dict[str, Any], context: ToolContext) -> str:
        gevent.sleep(10)
        return "too late"

    add_tool(temporary, "slow", slow, timeout=0.05)
    outcome = tools.run("slow", {}, context)
    assert outcome.result == "slow took longer than 0.05 s and was stopped."
    assert outcome.is_error and outcome.ms >= 40


def test_someone_elses_timeout_goes_through(context: ToolContext, temporary: list[str]) -> None:
    def slow(tool_input: dict[str, Any], context: ToolContext) -> str:
        gevent.sleep(10)
        return "too late"

    add_tool(temporary, "slow", slow)
    deadline = gevent.Timeout(0.05)
    with pytest.raises(gevent.Timeout) as raised, deadline:
        tools.run("slow", {}, context)
    assert raised.value is deadline


class Stop(GreenletExit):
    """Like the Stop button's exception: a GreenletExit of its own kind."""


@pytest.mark.parametrize("exception", [GreenletExit, Stop])
def test_killing_the_greenlet_kills_the_tool(
    context: ToolContext, temporary: list[str], exception: type[GreenletExit]
) -> None:
    finished: list[bool] = []

    def slow(tool_input: dict[str, Any], context: ToolContext) -> str:
        try:
            gevent.sleep(10)
        finally:
            finished.append(True)
        return "too late"

    add_tool(temporary, "slow", slow)
    running = gevent.spawn(tools.run, "slow", {}, context)
    gevent.sleep(0.01)
    running.kill(exception, block=True, timeout=5)
    assert running.dead and finished == [True]
    # gevent keeps a GreenletExit as the greenlet's value: the run gave no Outcome.
    assert type(running.value) is exception


def test_a_long_result_is_cut_saying_so(context: ToolContext, temporary: list[str]) -> None:
    add_tool(temporary, "long", lambda tool_input, context: "x" * tool_input["n"])
    exact = tools.run("long", {"n": RESULT_LIMIT}, context)
    assert exact.result == "x" * RESULT_LIMIT and not exact.is_error
    cut = tools.run("long", {"n": RESULT_LIMIT + 500}, context)
    kept, note = cut.result[:RESULT_LIMIT], cut.result[RESULT_LIMIT:]
    assert kept == "x" * RESULT_LIMIT and "x" not in note
    assert "Cut" in note and f"{RESULT_LIMIT + 500:,}" in note and not cut.is_error


# -- calculator -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("6 * 7", "42"),
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("2 ** 3 ** 2", "512"),
        ("-2 ** 2", "-4"),
        ("+-+3", "-3"),
        ("7 / 2", "3.5"),
        ("6 / 3", "2.0"),
        ("7 // 2", "3"),
        ("-7 // 2", "-4"),
        ("7 % 3", "1"),
        ("2 ** -1", "0.5"),
        ("0.1 + 0.2", "0.30000000000000004"),
        ("1.5e3", "1500.0"),
        ("2 ** 64", "18446744073709551616"),
        ("  1 + 1  ", "2"),
        ("pi", repr(math.pi)),
        ("tau / 2 - pi", "0.0"),
        ("log(e)", "1.0"),
        ("cos(pi)", "-1.0"),
        ("sqrt(16)", "4.0"),
        ("log(8, 2)", "3.0"),
        ("log10(1000)", "3.0"),
        ("degrees(atan2(1, 1))", "45.0"),
        ("hypot(3, 4)", "5.0"),
        ("floor(-2.5)", "-3"),
        ("ceil(2.1)", "3"),
        ("abs(-3)", "3"),
        ("round(2.567, 2)", "2.57"),
        ("round(1234, -2)", "1200"),
        ("round(2.7)", "3"),
        ("factorial(20)", "2432902008176640000"),
        ("gcd(12, 18)", "6"),
        ("max(1, 5.5, 3)", "5.5"),
        ("min(4, -1)", "-1"),
        ("1 ** (10 ** 100)", "1"),
    ],
)
def test_the_calculator_works_things_out(context: ToolContext, expression: str, value: str) -> None:
    outcome = calculate(context, expression)
    assert (outcome.result, outcome.is_error) == (value, False)


def test_the_calculator_is_exact_with_big_whole_numbers(context: ToolContext) -> None:
    assert calculate(context, "factorial(1000)").result == str(math.factorial(1000))
    assert calculate(context, "2 ** 9999 - 1").result == str(2**9999 - 1)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("__import__('os')", "no function '__import__'"),
        ("__import__", "Unknown name '__import__'"),
        ("().__class__", "attributes"),
        ("(1).real", "attributes"),
        ("math.sqrt(4)", "by name"),
        ("[1]", "lists"),
        ("(1, 2)", "tuples"),
        ("{1: 2}", "dictionaries"),
        ("[1][0]", "indexing"),
        ("pi[0]", "indexing"),
        ("'a'", "text strings"),
        ("b'a'", "text strings"),
        ("f'{1}'", "text strings"),
        ("lambda: 1", "lambda"),
        ("[x for x in (1,)]", "comprehensions"),
        ("sum(x for x in (1,))", "no function 'sum'"),
        ("x", "Unknown name 'x'"),
        ("True", "constant True"),
        ("None", "constant None"),
        ("1j", "complex numbers"),
        ("1 < 2", "comparisons"),
        ("1 and 2", "and/or"),
        ("1 if 2 else 3", "if/else"),
        ("(y := 2)", "assignments"),
        ("1 ^ 2", "use ** for powers"),
        ("1 << 2", "<<"),
        ("~1", "~"),
        ("not 1", "not"),
        ("sqrt(x=4)", "keyword arguments"),
        ("max(*(1, 2))", "starred"),
        ("pow(2, 3)", "no function 'pow'"),
        ("eval('1')", "no function 'eval'"),
        ("1 +", "not a valid expression"),
        ("import os", "not a valid expression"),
        ("1; 2", "not a valid expression"),
        ("", "empty"),
    ],
)
def test_the_calculator_refuses_everything_but_arithmetic(
    context: ToolContext, expression: str, says: str
) -> None:
    outcome = calculate(context, expression)
    assert outcome.is_error and says in outcome.result, outcome.result


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("1 / 0", "divides by zero"),
        ("1 // 0", "divides by zero"),
        ("5 % 0", "divides by zero"),
        ("0 ** -1", "divides by zero"),
        ("sqrt(-1)", "sqrt() is undefined"),
        ("log(0)", "log() is undefined"),
        ("acos(2)", "acos() is undefined"),
        ("factorial(-1)", "factorial() is undefined"),
        ("factorial(2.5)", "whole number"),
        ("min()", "min() can't take those arguments"),
        ("log(1, 2, 3)", "log() can't take those arguments"),
        ("(-8) ** 0.5", "complex number"),
        ("exp(1000)", "too large"),
        ("1e308 * 10", "too large"),
        ("1e999", "too large"),
        ("10.0 ** 400", "too large"),
        ("sin(10 ** 400)", "too large"),
    ],
)
def test_the_calculator_says_what_went_wrong(
    context: ToolContext, expression: str, says: str
) -> None:
    outcome = calculate(context, expression)
    assert outcome.is_error and says in outcome.result, outcome.result


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("2 ** 100000000", "too large"),
        ("9 ** 9 ** 9", "too large"),
        ("(10 ** 1000) ** (10 ** 1000)", "too large"),
        ("2 ** (10 ** 400)", "too large"),
        ("2 ** 9000 * 2 ** 9000", "too large"),
        ("factorial(10 ** 6)", "factorial() goes up to 1,000"),
        ("factorial(factorial(1000))", "factorial() goes up to 1,000"),
        ("round(1, -10 ** 9)", "round() takes at most"),
        ("1+" * 300 + "1", "nested"),
        ("-" * 999 + "1", "nested"),
        ("(" * 300 + "1" + ")" * 300, "not a valid expression"),
        ("1" * 1001, "at most 1,000"),
    ],
)
def test_the_calculator_refuses_work_that_would_take_long(
    context: ToolContext, expression: str, says: str
) -> None:
    outcome = calculate(context, expression)
    assert outcome.is_error and says in outcome.result, outcome.result


@pytest.mark.parametrize("tool_input", [{}, {"expression": 42}, {"expr": "1 + 1"}])
def test_the_calculator_needs_an_expression(context: ToolContext, tool_input: Any) -> None:
    outcome = tools.run("calculator", tool_input, context)
    assert outcome.is_error and "Give the expression" in outcome.result


# -- current time ---------------------------------------------------------------------------

NOW = datetime(2026, 11, 24, 8, 15, 3, 123456, tzinfo=UTC)


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtin, "_now", lambda: NOW)


@pytest.mark.parametrize(
    ("tool_input", "result"),
    [
        (
            {},
            "2026-11-24 08:15:03 UTC (UTC+00:00), Tuesday. ISO 8601: 2026-11-24T08:15:03+00:00",
        ),
        (
            {"timezone": "Europe/Paris"},
            "2026-11-24 09:15:03 CET (UTC+01:00), Tuesday. ISO 8601: 2026-11-24T09:15:03+01:00",
        ),
        (
            {"timezone": "Asia/Kolkata"},
            "2026-11-24 13:45:03 IST (UTC+05:30), Tuesday. ISO 8601: 2026-11-24T13:45:03+05:30",
        ),
        (
            {"timezone": "America/St_Johns"},
            "2026-11-24 04:45:03 NST (UTC-03:30), Tuesday. ISO 8601: 2026-11-24T04:45:03-03:30",
        ),
        (
            {"timezone": "Pacific/Kiritimati"},
            "2026-11-24 22:15:03 +14 (UTC+14:00), Tuesday. ISO 8601: 2026-11-24T22:15:03+14:00",
        ),
        (
            {"timezone": "Pacific/Pago_Pago"},
            "2026-11-23 21:15:03 SST (UTC-11:00), Monday. ISO 8601: 2026-11-23T21:15:03-11:00",
        ),
    ],
)
def test_current_time_in_a_time_zone(
    context: ToolContext, fixed_now: None, tool_input: dict[str, Any], result: str
) -> None:
    outcome = tools.run("current_time", tool_input, context)
    assert (outcome.result, outcome.is_error) == (result, False)


def test_current_time_in_summer_time(context: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(builtin, "_now", lambda: datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    outcome = tools.run("current_time", {"timezone": "Europe/Paris"}, context)
    assert outcome.result.startswith("2026-07-01 14:00:00 CEST (UTC+02:00), Wednesday.")


def test_current_time_is_now_without_a_fixed_clock(context: ToolContext) -> None:
    outcome = tools.run("current_time", {}, context)
    assert not outcome.is_error
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(UTC\+00:00\), \w+\. .*", outcome.result
    )


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus", "europe/paris", "Europe", "../../etc/passwd", "/etc/passwd", "zone.tab"],
)
def test_an_unknown_time_zone_is_an_error(context: ToolContext, zone: str) -> None:
    outcome = tools.run("current_time", {"timezone": zone}, context)
    assert outcome.is_error
    assert outcome.result == f"Unknown time zone {zone!r}. Use an IANA name such as Europe/Paris."


def test_a_time_zone_that_is_not_text_is_an_error(context: ToolContext) -> None:
    outcome = tools.run("current_time", {"timezone": 1}, context)
    assert outcome.is_error and "IANA" in outcome.result


# -- search of one's own conversations ------------------------------------------------------


def converse(app: Flask, username: str, question: str, answer: str = "") -> int:
    """A conversation of `username`'s with one question and its finished answer; its id."""
    owner_id = user_id(app, username)
    with app.app_context():
        owner = db.session.get(User, owner_id)
        assert owner is not None
        conversation = store.create_conversation(owner, forms.Settings(model="claude-sonnet-4-6"))
        _, reply = store.add_exchange(conversation, question)
        reply.content, reply.status = answer, Status.COMPLETE.value
        db.session.commit()
        return conversation.id


def search(app: Flask, username: str, **tool_input: Any) -> tools.Outcome:
    return tools.run("search_conversations", tool_input, ToolContext(app, user_id(app, username)))


def test_search_sees_only_ones_own_conversations(app: Flask) -> None:
    mine = converse(app, "alice", "Planning a trip to Lisbon", "Lisbon has trams.")
    converse(app, "bob", "Bob's secret Lisbon plans", "Bob's Lisbon answer.")
    converse(app, "alice", "Something else entirely")
    outcome = search(app, "alice", query="lisbon")
    assert not outcome.is_error
    lines = outcome.result.splitlines()
    assert lines[0] == "Conversations matching 'lisbon', most recent first:"
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert lines[1] == f"1. Planning a trip to Lisbon (conversation {mine}, {today})"
    assert lines[2] == "   Planning a trip to Lisbon"
    assert len(lines) == 3 and "Bob" not in outcome.result
    theirs = search(app, "bob", query="lisbon")
    assert "Bob's secret Lisbon plans" in theirs.result and "Planning" not in theirs.result


def test_search_returns_at_most_the_limit_newest_first(app: Flask) -> None:
    ids = [converse(app, "alice", f"Recipe number {n}") for n in range(7)]
    default = search(app, "alice", query="recipe")
    assert re.findall(r"^(\d+)\. Recipe number (\d)", default.result, re.MULTILINE) == [
        ("1", "6"),
        ("2", "5"),
        ("3", "4"),
        ("4", "3"),
        ("5", "2"),
    ]
    two = search(app, "alice", query="RECIPE", limit=2)
    assert re.findall(r"\(conversation (\d+),", two.result) == [str(ids[6]), str(ids[5])]


@pytest.mark.parametrize("limit", [0, 21, -1, "5", 2.5, True])
def test_search_limit_must_be_a_whole_number_in_range(app: Flask, limit: Any) -> None:
    outcome = search(app, "alice", query="anything", limit=limit)
    assert outcome.is_error and "from 1 to 20" in outcome.result


@pytest.mark.parametrize("query", ["", "   ", None, 3])
def test_search_needs_a_query(app: Flask, query: Any) -> None:
    outcome = search(app, "alice", query=query)
    assert outcome.is_error and "query" in outcome.result


def test_search_says_when_nothing_matches(app: Flask) -> None:
    converse(app, "alice", "About cats")
    converse(app, "bob", "About zebras")
    outcome = search(app, "alice", query="  zebra  ")
    assert (outcome.result, outcome.is_error) == ("No conversations match 'zebra'.", False)


def test_search_snippets_show_the_match_without_tool_calls(app: Flask) -> None:
    call = (
        opening("toolu_1", "calculator")
        + '{"expression": "6 * 7"}'
        + input_done()
        + outcome("42", is_error=False, ms=3)
    )
    answer = (
        "Let me work it out. " + call + " " + "filler " * 40 + "So the weather in Oslo is cold."
    )
    converse(app, "alice", "A question about numbers", answer)
    result = search(app, "alice", query="oslo").result
    [entry, snippet] = result.splitlines()[1:]
    assert entry.startswith("1. A question about numbers (conversation ")
    assert snippet.startswith("   …") and snippet.endswith("the weather in Oslo is cold.")
    assert len(snippet.strip()) <= 200
    assert not re.search("[\ue000-\ue002]", result) and "toolu_1" not in result


def test_search_snippets_are_short_and_fall_back_to_the_first_message(app: Flask) -> None:
    converse(app, "alice", "Long " + "word " * 100, "Reply " * 100)
    [entry, snippet] = search(app, "alice", query="long word").result.splitlines()[1:]
    assert snippet.strip().startswith("Long word word") and len(snippet.strip()) == 200
    assert snippet.endswith("…")
    # A title match with no message matching shows the first message.
    conversation_id = converse(app, "alice", "Question", "Answer")
    with app.app_context():
        conversation = db.session.get(Conversation, conversation_id)
        assert conversation is not None
        store.rename(conversation, "Renamed to gazpacho")
    [entry, snippet] = search(app, "alice", query="gazpacho").result.splitlines()[1:]
    assert entry.startswith("1. Renamed to gazpacho") and snippet == "   Question"


def test_search_for_someone_who_no_longer_exists_is_an_error(app: Flask) -> None:
    outcome = tools.run("search_conversations", {"query": "x"}, ToolContext(app, 99999))
    assert outcome.is_error and "no account" in outcome.result


def test_search_leaves_out_the_conversation_that_asks(app: Flask) -> None:
    older = converse(app, "alice", "Notes on sourdough")
    asking = converse(app, "alice", "Search my conversations for sourdough")
    context = ToolContext(app, user_id(app, "alice"), asking)
    outcome = tools.run("search_conversations", {"query": "sourdough", "limit": 1}, context)
    assert re.findall(r"\(conversation (\d+),", outcome.result) == [str(older)]


def test_search_limit_may_be_left_out_or_null(app: Flask) -> None:
    for n in range(6):
        converse(app, "alice", f"Poem {n}")
    for tool_input in ({"query": "poem"}, {"query": "poem", "limit": None}):
        found = search(app, "alice", **tool_input).result
        assert len(re.findall(r"^\d+\. Poem", found, re.MULTILINE)) == 5
