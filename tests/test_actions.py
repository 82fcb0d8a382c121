"""Actions on a conversation: Retry, Continue, Regenerate, Edit; rename, export and delete."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.models import Conversation, Message
from chatapp.render import anchors

from .conftest import asked, html, send
from .helpers import answer_id, stored, wait_finished


def test_retry_replaces_a_failed_answer_in_place(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(status=529), Scenario(text="Better now."))
    fragment = send(client, "Try me")
    message_id = answer_id(fragment)
    assert wait_finished(app, message_id).status == "failed"
    page = html(client.get(f"/conversations/{stored(app, message_id).conversation_id}").data)
    assert (
        page.select_one(f"#{anchors.article(message_id)}").find("button", string="Retry")
        is not None
    )

    response = client.post(f"/messages/{message_id}/retry", headers={"HX-Request": "true"})
    assert response.status_code == 200
    article = html(response.data).find("article")
    assert article["id"] == anchors.article(message_id) and article["data-status"] == "streaming"
    message = wait_finished(app, message_id)
    assert (
        message.status == "complete" and message.content == "Better now." and message.error is None
    )
    # The failed attempt is not part of the history Claude sees.
    assert [m["role"] for m in upstream.requests[-1]["messages"]] == ["user"]


def test_continue_asks_for_the_rest_in_a_new_turn(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="The first half", cut_after=8), Scenario(text=" and the rest."))
    fragment = send(client, "Tell me")
    message_id = answer_id(fragment)
    assert wait_finished(app, message_id).status == "failed"
    response = client.post(f"/messages/{message_id}/continue", headers={"HX-Request": "true"})
    assert response.status_code == 200
    new_id = answer_id(html(response.data))
    assert wait_finished(app, new_id).content == " and the rest."
    sent = upstream.requests[-1]["messages"]
    assert sent[1] == {"role": "assistant", "content": "The firs"}
    assert sent[2]["role"] == "user" and "continue" in sent[2]["content"][0]["text"]
    # Only the last answer can be retried or continued, and only once it has ended.
    response = client.post(f"/messages/{message_id}/retry", headers={"HX-Request": "true"})
    assert response.status_code == 409 and "last answer" in html(response.data).get_text()


def test_regenerate_writes_the_last_complete_answer_again(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="First try."), Scenario(text="Second try."))
    fragment = send(client, "Once more")
    message_id = answer_id(fragment)
    wait_finished(app, message_id)
    conversation_id = stored(app, message_id).conversation_id
    page = html(client.get(f"/conversations/{conversation_id}").data)
    assert (
        page.select_one(f"#{anchors.article(message_id)}").find("button", string="Regenerate")
        is not None
    )
    response = client.post(f"/messages/{message_id}/retry", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert wait_finished(app, message_id).content == "Second try."
    assert [m["role"] for m in upstream.requests[-1]["messages"]] == ["user"]


def test_edit_the_last_question_and_send_it_again(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="About cats."), Scenario(text="About dogs."))
    fragment = send(client, "Tell me about cats")
    question = anchors.message_of(fragment.select_one('article[data-role="user"]')["id"])
    answer = answer_id(fragment)
    assert (
        fragment.select_one(f"#{anchors.article(question)}").find("button", string="Edit")
        is not None
    )
    wait_finished(app, answer)

    form = html(client.get(f"/messages/{question}/edit", headers={"HX-Request": "true"}).data)
    assert form.select_one("textarea").get_text() == "Tell me about cats"
    empty = client.post(f"/messages/{question}/edit", data={"content": " "})
    assert empty.status_code == 422 and "Type a message first" in html(empty.data).get_text()

    response = client.post(
        f"/messages/{question}/edit",
        data={"content": "Tell me about dogs"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    page = html(response.data)
    assert (
        page.select_one(f"#{anchors.article(question)} [data-content]").get_text()
        == "Tell me about dogs"
    )
    assert page.select_one(f"#{anchors.article(answer)}")["data-status"] == "streaming"
    assert wait_finished(app, answer).content == "About dogs."
    assert stored(app, question).content == "Tell me about dogs"
    assert asked(upstream.requests[-1]) == "Tell me about dogs"
    with app.app_context():
        assert (
            db.session.get(Conversation, stored(app, answer).conversation_id).messages[-1].id
            == answer
        )

    # Only the last question can be edited.
    upstream.push(Scenario(text="More."))
    conversation_id = stored(app, answer).conversation_id
    wait_finished(app, answer_id(send(client, "Another", conversation_id)))
    refused = client.post(f"/messages/{question}/edit", data={"content": "Cats again"})
    assert refused.status_code == 422 and "Only the last question" in html(refused.data).get_text()


def test_rename_export_and_delete_a_conversation(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="An *answer* with\n\n- a list"))
    fragment = send(client, "A question")
    conversation_id = int(fragment.select_one("#conversation-id")["value"])
    wait_finished(app, answer_id(fragment))
    base = f"/conversations/{conversation_id}"

    field = html(client.get(f"{base}/title", headers={"HX-Request": "true"}).data)
    assert field.select_one("input#title-input")["value"] == "A question"
    empty = client.post(f"{base}/title", data={"title": "  "}, headers={"HX-Request": "true"})
    assert empty.status_code == 422 and "can't be empty" in html(empty.data).get_text()
    renamed = html(
        client.post(
            f"{base}/title", data={"title": " Renamed  chat "}, headers={"HX-Request": "true"}
        ).data
    )
    assert renamed.select_one("#chat-title").get_text() == "Renamed chat"
    assert [a.get_text() for a in renamed.select("#sidebar .sidebar__list a")] == ["Renamed chat"]

    markdown = client.get(f"{base}/export.md")
    assert markdown.headers["Content-Disposition"].startswith("attachment;")
    assert markdown.get_data(as_text=True) == (
        "# Renamed chat\n\nModel: claude-sonnet-4-6\n\n## You\n\nA question\n\n"
        "## Claude\n\nAn *answer* with\n\n- a list\n"
    )
    exported = client.get(f"{base}/export.json").get_json()
    assert exported["title"] == "Renamed chat"
    assert [(m["role"], m["content"]) for m in exported["messages"]] == [
        ("user", "A question"),
        ("assistant", "An *answer* with\n\n- a list"),
    ]
    assert exported["messages"][1]["usage"]["output_tokens"] > 0
    assert exported["messages"][1]["cost_usd"] is not None

    deleted = client.post(f"{base}/delete", headers={"HX-Request": "true"})
    assert deleted.status_code == 204 and deleted.headers["HX-Redirect"] == "/"
    assert client.get(base).status_code == 404
    with app.app_context():
        assert db.session.get(Message, answer_id(fragment)) is None
