"""One rule for caches: every HTML response says `Vary: HX-Request` (a fragment for htmx, a
page otherwise); other responses do not."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from .conftest import send
from .helpers import answer_id, wait_finished


def test_every_html_response_varies_on_htmx(app: Flask, client: FlaskClient) -> None:
    answer = wait_finished(app, answer_id(send(client, "Hello")))
    question, conversation = answer.id - 1, answer.conversation_id
    hx = {"HX-Request": "true"}
    varying = [
        client.get(f"/messages/{question}/edit", headers=hx),  # the edit form
        client.get(f"/messages/{question}/edit"),  # the page, without htmx
        client.post(f"/messages/{question}/edit", data={"content": ""}, headers=hx),
        client.post(f"/conversations/{conversation}/settings", data={"model": "x"}, headers=hx),
        client.post(f"/conversations/{conversation}/title", data={"title": "T"}, headers=hx),
        client.post(f"/conversations/{conversation}/title", data={"title": "T"}),
        client.get("/search?q=Hello", headers=hx),
        client.get("/conversations/999999", headers=hx),  # an error, in the page's notice
    ]
    for response in varying:
        assert "HX-Request" in response.headers.get("Vary", ""), response.request.path
    assert "HX-Request" not in client.get("/healthz").headers.get("Vary", "")  # JSON
    export = client.get(f"/conversations/{conversation}/export.json")
    assert "HX-Request" not in export.headers.get("Vary", "")
