"""Thinking streams into its own section, which folds away once the answer begins."""

from __future__ import annotations

import gevent
from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.demo import FakeUpstream, Pace, Scenario
from chatapp.render import anchors
from chatapp.streaming import streams

from .conftest import html, read_events, send, stream_url
from .dom import Screen, rendered
from .helpers import answer_id, stored

THOUGHT = "The user wants <tricky> things & more.\nFirst, list them; then answer briefly."


def test_thinking_streams_in_its_own_section_then_folds_away(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    text = "Here is the **answer**."
    upstream.push(
        Scenario(
            text=text,
            thinking=THOUGHT,
            pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(200.0, 200.0)),
        )
    )
    fragment = send(client, "Think first")
    message_id = answer_id(fragment)
    section = fragment.select_one(f"#{anchors.thinking(message_id)}")
    assert section is not None and section.has_attr("hidden")  # nothing to show yet
    events = read_events(client, stream_url(fragment))

    screen = Screen(message_id, str(fragment.find("article", id=anchors.article(message_id))))
    opened = []
    for event in events:
        screen.take([event])
        shown = screen.document.soup.find(id=anchors.thinking(message_id))
        if shown is not None and not shown.has_attr("hidden"):
            opened.append(shown.has_attr("open"))
    # Open while the model thinks, folded once the answer begins, and so it stays.
    assert opened[0] is True and opened[-1] is False
    assert opened == sorted(opened, reverse=True)
    final = screen.document.soup.find(id=anchors.thinking(message_id))
    assert final.get_text() == "Thinking…" + THOUGHT
    assert screen.html == rendered(text)
    assert events[-1]["id"] == f"{message_id}:{len(THOUGHT) + len(text)}"

    message = stored(app, message_id)
    assert (message.thinking, message.content) == (THOUGHT, text)
    reloaded = html(client.get(f"/conversations/{message.conversation_id}").data)
    assert str(reloaded.find(id=anchors.thinking(message_id))) == str(final)


def test_a_listener_joining_mid_thought_sees_the_thinking_so_far(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    thought = "".join(f"Step {i}: consider it. " for i in range(60))
    upstream.push(
        Scenario(
            text="Done.",
            thinking=thought,
            pace=Pace(first_token_seconds=(0.02, 0.02), tokens_per_second=(150.0, 150.0)),
        )
    )
    fragment = send(client, "Think long")
    message_id = answer_id(fragment)
    generation = streams(app).live[message_id]
    while generation.published < 40:
        gevent.sleep(0.02)
    page = html(client.get(f"/conversations/{generation.conversation_id}").data)
    section = page.find(id=anchors.thinking(message_id))
    assert section.has_attr("open") and section.get_text().startswith("Thinking…Step 0")
    events = read_events(client, stream_url(page))
    screen = Screen(message_id, str(page.find("article", id=anchors.article(message_id)))).take(
        events
    )
    final = screen.document.soup.find(id=anchors.thinking(message_id))
    assert final.get_text() == "Thinking…" + thought and not final.has_attr("open")
    assert screen.html == rendered("Done.")
    assert stored(app, message_id).thinking == thought
