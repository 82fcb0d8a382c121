"""SSE framing: the wire format every stream uses."""

from __future__ import annotations

from chatapp.streaming import sse


def test_single_line_event_with_name_and_id() -> None:
    assert sse.event("hello", name="frame", id="7:5") == "event: frame\nid: 7:5\ndata: hello\n\n"


def test_multi_line_data_becomes_one_data_line_per_line() -> None:
    framed = sse.event("one\ntwo\r\nthree\rfour", id="1:0")
    assert framed == "id: 1:0\ndata: one\ndata: two\ndata: three\ndata: four\n\n"


def test_only_sse_line_ends_split_data() -> None:
    # U+2028 and form feed are not line ends for EventSource; splitting on them would change text.
    framed = sse.event("a\u2028b\x0cc")
    assert framed == "data: a\u2028b\x0cc\n\n"


def test_empty_data_still_dispatches_an_event() -> None:
    assert sse.event("", name="done") == "event: done\ndata: \n\n"


def test_retry_and_heartbeat_comment() -> None:
    assert sse.retry(1500) == "retry: 1500\n\n"
    assert sse.retry(1500, id="4:20") == "id: 4:20\nretry: 1500\n\n"
    assert sse.comment("keep-alive") == ": keep-alive\n\n"
    assert sse.event("x", retry=250) == "retry: 250\ndata: x\n\n"


def test_event_ids_round_trip_and_reject_other_messages() -> None:
    assert sse.event_id(12, 345) == "12:345"
    assert sse.parse_event_id("12:345", 12) == 345
    assert sse.parse_event_id("13:345", 12) is None
    assert sse.parse_event_id("12:-1", 12) is None
    assert sse.parse_event_id("garbage", 12) is None
    assert sse.parse_event_id(None, 12) is None
