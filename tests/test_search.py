"""Search finds your own conversations by title and text."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from chatapp.llm.demo import FakeUpstream, Scenario

from .conftest import html, send
from .helpers import answer_id, wait_finished


def test_search_finds_your_conversations_by_title_and_text(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(
        Scenario(text="The zebra has stripes."),
        Scenario(text="Nothing to see."),
        Scenario(text="Another zebra, someone else's."),
    )
    first = send(client, "Striped animals")
    wait_finished(app, answer_id(first))
    second = send(client, "Zebra crossings")
    wait_finished(app, answer_id(second))
    bob = app.test_client(user="bob")
    wait_finished(app, answer_id(send(bob, "Bob asks about a zebra")))

    found = html(client.get("/search?q=zebra", headers={"HX-Request": "true"}).data)
    # Both of Alice's (one by its answer's text, one by its title), newest first; not Bob's.
    assert [a.get_text() for a in found.select("#sidebar-results a")] == [
        "Zebra crossings",
        "Striped animals",
    ]
    none = html(client.get("/search?q=giraffe", headers={"HX-Request": "true"}).data)
    assert "No conversation matches “giraffe”" in none.get_text()
    # Without htmx, a page with the results in its sidebar.
    page = html(client.get("/search?q=stripes").data)
    assert [a.get_text() for a in page.select("#sidebar-results a")] == ["Striped animals"]
    assert page.select_one("#search-input")["value"] == "stripes"
    # An empty search gives the recent list back.
    recent = html(client.get("/search?q=", headers={"HX-Request": "true"}).data)
    assert len(recent.select("#sidebar-results a")) == 2
