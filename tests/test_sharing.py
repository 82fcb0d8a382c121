"""Sharing a conversation: the snapshot and what it shows, updating and stopping it, public
links, Continue in my chats, the admins' part, and who may reach which route."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select

from chatapp.auth import accounts
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.llm.demo.scenario import Cited, Found, SearchResults, ServerToolUse, ToolUse
from chatapp.models import Attachment, AuditEvent, Conversation, Message, Share, User
from chatapp.streaming import streams

from .conftest import html, read_events, send, stream_url, user_id
from .helpers import answer_id, answer_under_way, wait_finished
from .test_attachments import png, uploaded

HX = {"HX-Request": "true"}
THOUGHT = "First I weigh the question."


def converse(client: FlaskClient, upstream: FakeUpstream) -> tuple[int, dict[str, bytes]]:
    """Alice's conversation: a question with a text file and an image, answered with thinking,
    markdown and a calculator call. Its id, and the files' bytes by name."""
    files = {"notes.txt": b"Alice's notes\n", "dot.png": png()}
    ids = [uploaded(client, name, data) for name, data in files.items()]
    upstream.push(
        Scenario(
            thinking=THOUGHT,
            text="Let me compute.",
            tool_uses=[ToolUse("calculator", {"expression": "6 * 7"})],
        ),
        Scenario(text="It is **forty-two**, see the `notes`."),
    )
    response = client.post(
        "/messages",
        data={
            "content": "What is six times seven?",
            "conversation_id": "",
            "attachment": ids,
            "tools": ["calculator"],
            "thinking": "on",
            "thinking_budget": "2048",
        },
        headers=HX,
    )
    assert response.status_code == 200, response.data
    fragment = html(response.data)
    read_events(client, stream_url(fragment))
    return int(fragment.select_one("#conversation-id")["value"]), files


def share(client: FlaskClient, conversation_id: int) -> tuple[int, str]:
    """Share as the header's Share does; the share's id and its link's path."""
    response = client.post(f"/conversations/{conversation_id}/share", headers=HX)
    assert response.status_code == 204, response.data
    manage = response.headers["HX-Redirect"]
    page = html(client.get(manage).data)
    link = str(page.select_one("#share-link")["value"])
    return int(manage.rsplit("/", 1)[1]), urlsplit(link).path


def make_account(app: Flask, name: str, *, admin: bool = False) -> None:
    with app.app_context():
        accounts.create(name, None, admin=admin)


def forms(page: Any) -> list[str]:
    return [form.get("action", "") for form in page.select("form")]


def test_the_shared_page_shows_the_snapshot_read_only(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    conversation_id, files = converse(client, upstream)
    share_id, link = share(client, conversation_id)
    bob = app.test_client(user="bob")
    response = bob.get(link)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    page = html(response.data)
    assert page.select_one("#shared-title").get_text() == "What is six times seven?"
    byline = page.select_one(".shared__byline").get_text(" ", strip=True)
    assert "Shared by alice" in byline and "UTC" in byline
    question, answer = page.select("#messages article")
    assert question["data-role"] == "user" and answer["data-role"] == "assistant"
    assert answer["data-status"] == "complete"
    content = answer.select_one("[data-content]")
    assert content.select_one("strong").get_text() == "forty-two"  # markdown, rendered
    assert content.select_one(".tool__name").get_text() == "calculator"  # the tool block
    thinking = answer.select_one("details.thinking")
    assert THOUGHT in thinking.get_text() and not thinking.has_attr("open")  # folded
    # The files, served from the snapshot to the team.
    image = question.select_one(".attachments__image img")["src"]
    chip = question.select_one(".chip a")
    assert chip.get_text() == "notes.txt"
    assert bob.get(image).data == files["dot.png"]
    served = bob.get(chip["href"])
    assert (
        served.data == files["notes.txt"] and served.headers["Cache-Control"] == "private, no-store"
    )
    assert served.headers["Content-Disposition"].startswith("attachment")
    # Read-only: no action but Continue, no stream, nothing that leads into Alice's conversation.
    assert forms(page) == [f"{link}/continue"]
    assert not page.select("[hx-post], [hx-get], [sse-connect]")
    hrefs = [a["href"] for a in page.select("a[href]")] + [i["src"] for i in page.select("img")]
    assert not [h for h in hrefs if "/conversations/" in h or "/attachments/" in h]
    assert f"/conversations/{conversation_id}" not in response.get_data(as_text=True)

    # Alice's later changes do not reach the snapshot: a new exchange, a rename, deletion.
    upstream.push(Scenario(text="A later answer."))
    read_events(client, stream_url(send(client, "And then?", conversation_id)))
    client.post(f"/conversations/{conversation_id}/title", data={"title": "Renamed"})
    again = html(bob.get(link).data)
    assert len(again.select("#messages article")) == 2
    assert again.select_one("#shared-title").get_text() == "What is six times seven?"
    client.post(f"/conversations/{conversation_id}/delete")
    after = bob.get(link)
    assert after.status_code == 200
    assert html(after.data).select_one("article strong").get_text() == "forty-two"
    assert bob.get(image).data == files["dot.png"]
    # There is nothing to update it from now; Alice is told so and can still stop it.
    refused = client.post(f"/shares/{share_id}/update")
    assert refused.status_code == 409 and "deleted" in html(refused.data).get_text()
    listed = html(client.get("/shares").data).get_text(" ", strip=True)
    assert "What is six times seven? (conversation deleted)" in listed
    assert client.post(f"/shares/{share_id}/stop").status_code == 303
    assert bob.get(link).status_code == 404
    assert bob.get(image).status_code == 404


def test_updating_takes_the_snapshot_again_and_stopping_makes_the_link_404(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="The first answer."), Scenario(text="The second answer."))
    conversation_id = int(
        send(client, "First question").select_one("#conversation-id")["value"]  # type: ignore[index]
    )
    wait_finished(app, answer_id(html(client.get(f"/conversations/{conversation_id}").data)))
    share_id, link = share(client, conversation_id)
    # Share again: the same share, the same snapshot.
    assert share(client, conversation_id) == (share_id, link)
    read_events(client, stream_url(send(client, "Second question", conversation_id)))
    bob = app.test_client(user="bob")
    assert len(html(bob.get(link).data).select("#messages article")) == 2
    assert client.post(f"/shares/{share_id}/update").status_code == 303
    updated = html(bob.get(link).data)
    assert [a.get_text(strip=True) for a in updated.select("[data-content]")] == [
        "First question",
        "The first answer.",
        "Second question",
        "The second answer.",
    ]
    # Stop sharing from the conversation's own page of its share: the link is gone for good.
    stopped = client.post(f"/shares/{share_id}/stop")
    assert stopped.headers["Location"] == f"/conversations/{conversation_id}"
    assert bob.get(link).status_code == 404
    assert client.get(link).status_code == 404  # the owner's too
    assert client.post(f"{link}/continue").status_code == 404
    # Sharing again makes a new link; the old one stays dead.
    _, new_link = share(client, conversation_id)
    assert new_link != link and bob.get(new_link).status_code == 200
    assert bob.get(link).status_code == 404
    with app.app_context():
        kinds = db.session.scalars(select(AuditEvent.kind).order_by(AuditEvent.id)).all()
    assert kinds.count("conversation_shared") == 2 and kinds.count("share_ended") == 1


def test_an_answer_being_written_is_shared_as_it_stood(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    message_id, generation = answer_under_way(app, client, upstream, shown=40)
    with app.app_context():
        conversation_id = db.session.get(Message, message_id).conversation_id
    _, link = share(client, conversation_id)
    bob = app.test_client(user="bob")
    page = html(bob.get(link).data)
    answer = page.select_one('article[data-role="assistant"]')
    assert answer["data-status"] == "streaming"
    shown = answer.select_one("[data-content]").get_text()
    assert shown.count("word") >= 8  # the text published when shared (40 characters or more)
    assert "Unfinished" in page.select_one(".shared__unfinished").get_text()
    assert not answer.select("[sse-connect]")
    streams(app).stop(message_id)
    wait_finished(app, message_id)
    # The snapshot keeps what it had: the answer's end is not in it.
    later = html(bob.get(link).data).select_one('article[data-role="assistant"]')
    assert later["data-status"] == "streaming"
    assert later.select_one("[data-content]").get_text() == shown

    # Continued from, the unfinished answer is the viewer's interrupted one, to retry.
    continued = bob.post(f"{link}/continue")
    with app.app_context():
        copy = db.session.get(Conversation, int(continued.headers["Location"].rsplit("/", 1)[1]))
        answer_copy = copy.messages[-1]
        assert answer_copy.status == "interrupted" and "still being written" in answer_copy.error
    assert "Retry" in html(bob.get(continued.headers["Location"]).data).get_text()


def test_public_links_only_where_the_admin_allows_them(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    conversation_id, files = converse(client, upstream)
    share_id, link = share(client, conversation_id)
    anonymous = app.test_client(user=None)
    image = html(client.get(link).data).select_one(".attachments__image img")["src"]

    # Off (the default): nothing to switch on, and signed out, the link leads to signing in.
    assert app.config["PUBLIC_LINKS"] is False
    assert not html(client.get(f"/shares/{share_id}").data).select('form[action$="/public"]')
    refused = client.post(f"/shares/{share_id}/public", data={"public": "on"})
    assert refused.status_code == 409
    for path in (link, image):
        signed_out = anonymous.get(path)
        assert signed_out.status_code == 302
        assert signed_out.headers["Location"].startswith("/login")
    # ... exactly as for a link that does not exist.
    assert anonymous.get("/shared/no-such-link").status_code == 302

    app.config["PUBLIC_LINKS"] = True
    assert anonymous.get(link).status_code == 302  # the share is not public yet
    made = client.post(f"/shares/{share_id}/public", data={"public": "on"})
    assert made.status_code == 303
    opened = anonymous.get(link)
    assert opened.status_code == 200 and opened.headers["X-Robots-Tag"] == "noindex"
    page = html(opened.data)
    assert page.select_one("article strong").get_text() == "forty-two"
    assert not page.select("form")  # signed out: no Continue, a link to sign in instead
    assert page.select_one(".shared__continue a")["href"].startswith("/login?next=")
    assert anonymous.get(image).data == files["dot.png"]
    assert anonymous.post(f"{link}/continue").status_code == 302  # sign in first
    assert len(str(link).rsplit("/", 1)[1]) >= 43  # secrets.token_urlsafe(32)

    # The admin's setting off again: the public link stops at once, the team's still reads.
    app.config["PUBLIC_LINKS"] = False
    assert anonymous.get(link).status_code == 302
    assert anonymous.get(image).status_code == 302
    assert app.test_client(user="bob").get(link).status_code == 200
    # On again, and the owner makes it the team's only.
    app.config["PUBLIC_LINKS"] = True
    assert anonymous.get(link).status_code == 200
    client.post(f"/shares/{share_id}/public", data={"public": "off"})
    assert anonymous.get(link).status_code == 302
    with app.app_context():
        details = db.session.scalars(
            select(AuditEvent.detail).where(AuditEvent.kind == "share_public")
        ).all()
    assert details == ["public link on", "public link off"]


def test_continue_makes_an_independent_copy_whose_next_request_carries_the_history(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    conversation_id, files = converse(client, upstream)
    _, link = share(client, conversation_id)
    bob = app.test_client(user="bob")
    continued = bob.post(f"{link}/continue")
    assert continued.status_code == 303
    copy_id = int(continued.headers["Location"].rsplit("/", 1)[1])
    assert copy_id != conversation_id
    page = html(bob.get(f"/conversations/{copy_id}").data)
    assert page.select_one("#chat-title").get_text() == "What is six times seven?"
    assert [a["data-role"] for a in page.select("#messages article")] == ["user", "assistant"]
    with app.app_context():
        copy = db.session.get(Conversation, copy_id)
        assert copy.user_id == user_id(app, "bob")
        [question, _answer] = copy.messages
        copied = {a.name: (a.user_id, a.data, a.file_id) for a in question.attachments}
    assert copied == {name: (user_id(app, "bob"), data, None) for name, data in files.items()}
    # Bob's copy is his: its files are served to him, and Alice's deletion leaves it whole.
    image = page.select_one(".attachments__image img")["src"]
    assert bob.get(image).data == files["dot.png"]
    assert client.get(image).status_code == 404
    client.post(f"/conversations/{conversation_id}/delete")
    assert bob.get(image).data == files["dot.png"]

    # The next question in the copy sends the whole history: the files, the answer, the tool.
    upstream.requests.clear()
    upstream.push(Scenario(text="Yes, still forty-two."))
    fragment = send(bob, "Are you sure?", copy_id)
    read_events(bob, stream_url(fragment))
    request = upstream.requests[-1]
    messages = request["messages"]
    first = messages[0]["content"]
    assert [block["type"] for block in first[:2]] in (["document", "image"], ["image", "document"])
    assert first[-1]["text"] == "What is six times seven?"
    said = [m for m in messages if m["role"] == "assistant"]
    assert "Let me compute." in str(said) and "forty-two" in str(said)
    assert messages[-1]["content"][-1]["text"] == "Are you sure?"
    # Alice's conversation got nothing of Bob's.
    with app.app_context():
        assert db.session.get(Conversation, conversation_id) is None
        assert db.session.scalar(select(func.count(Share.id))) == 1


def test_admins_see_each_persons_shares_and_can_end_any(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="One."), Scenario(text="Two."))
    first = send(client, "First")
    second = send(client, "Second")
    for fragment in (first, second):
        read_events(client, stream_url(fragment))
    ids = [int(f.select_one("#conversation-id")["value"]) for f in (first, second)]
    share_ids = [share(client, conversation_id)[0] for conversation_id in ids]
    make_account(app, "root", admin=True)
    admin = app.test_client(user="root")
    page = html(admin.get("/admin/users").data)
    column = [th.get_text() for th in page.select("thead th")].index("Shares")
    counts = {
        row.select("td")[0].get_text(): row.select("td")[column].get_text()
        for row in page.select("tbody tr")
    }
    assert counts == {"alice": "2", "root": "0"}
    listed = html(admin.get("/admin/shares").data)
    assert len(listed.select("tbody tr")) == 2
    ended = admin.post(f"/admin/shares/{share_ids[0]}/end")
    assert ended.status_code == 303
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.kind == "share_ended")).one()
        assert (event.username, event.target_id) == ("root", ids[0])
        assert "owner alice" in event.detail
        assert db.session.scalars(select(Share.id)).all() == [share_ids[1]]
    assert admin.post(f"/admin/shares/{share_ids[0]}/end").status_code == 404


def test_a_disabled_owners_links_stop_and_deleting_the_owner_deletes_their_shares(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="Shared."))
    fragment = send(client, "Share me")
    read_events(client, stream_url(fragment))
    _, link = share(client, int(fragment.select_one("#conversation-id")["value"]))
    bob = app.test_client(user="bob")
    assert bob.get(link).status_code == 200
    with app.app_context():
        alice = accounts.find("alice")
        accounts.set_disabled(alice, True)
    assert bob.get(link).status_code == 404
    with app.app_context():
        accounts.set_disabled(accounts.find("alice"), False)
    assert bob.get(link).status_code == 200
    with app.app_context():
        db.session.execute(delete(User).where(User.username == "alice"))
        db.session.commit()
        assert db.session.scalar(select(func.count(Share.id))) == 0
        assert db.session.scalar(select(func.count(Attachment.id))) == 0
    assert bob.get(link).status_code == 404


# -- who may reach which route ----------------------------------------------------------------

OWNER_ROUTES = [
    ("POST", "/conversations/{conversation}/share"),
    ("GET", "/shares/{share}"),
    ("POST", "/shares/{share}/update"),
    ("POST", "/shares/{share}/public"),
    ("POST", "/shares/{share}/stop"),
]
VIEWER_ROUTES = [
    ("GET", "{link}"),
    ("GET", "{file}"),
    ("GET", "{file}/download"),
    ("POST", "{link}/continue"),
]
ADMIN_ROUTES = [("GET", "/admin/shares"), ("POST", "/admin/shares/{share}/end")]

# What each role gets: owner, another signed-in person, signed out, disabled, an admin.
# 2xx/3xx is "reaches it", 404 "no such thing", "sign-in" a redirect to /login.
EXPECTED = {
    "alice": {"owner": "ok", "viewer": "ok", "admin": 404},
    "bob": {"owner": 404, "viewer": "ok", "admin": 404},
    None: {"owner": "sign-in", "viewer": "sign-in", "admin": "sign-in"},
    "carol": {"owner": "sign-in", "viewer": "sign-in", "admin": "sign-in"},  # disabled
    "root": {"owner": 404, "viewer": "ok", "admin": "ok"},
}


@pytest.mark.parametrize("who", list(EXPECTED), ids=[str(w) for w in EXPECTED])
def test_every_share_route_for_every_role(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, who: str | None
) -> None:
    conversation_id, _files = converse(client, upstream)
    share_id, link = share(client, conversation_id)
    file = html(client.get(link).data).select_one(".attachments__image img")["src"]
    make_account(app, "root", admin=True)
    make_account(app, "carol")
    with app.app_context():
        accounts.set_disabled(accounts.find("carol"), True)
    values = {"conversation": conversation_id, "share": share_id, "link": link, "file": file}
    visitor = client if who == "alice" else app.test_client(user=who)
    # The viewer's routes first (Update takes the snapshot, and its files, anew), then Stop
    # and End last: they end the share the other routes read.
    kinds = [("viewer", VIEWER_ROUTES), ("owner", OWNER_ROUTES), ("admin", ADMIN_ROUTES)]
    routes = [(kind, method, path) for kind, group in kinds for method, path in group]
    routes.sort(key=lambda route: route[2].endswith(("/stop", "/end")))
    for kind, method, pattern in routes:
        path = pattern.format(**values)
        response = visitor.open(path, method=method, data={"public": "off"})
        got: Any = response.status_code
        if got in (200, 204, 303):
            got = "ok"
        elif got == 302 and response.headers["Location"].startswith("/login"):
            got = "sign-in"
        assert got == EXPECTED[who][kind], f"{who} {method} {path}: {response.status_code}"
    # Only the owner's Stop or an admin's End ended it.
    with app.app_context():
        left = db.session.scalar(select(func.count(Share.id)))
    assert left == (0 if who in ("alice", "root") else 1)
    if who == "bob":
        # Bob's Continue made him a copy; nothing else of his came from it.
        with app.app_context():
            owners = db.session.scalars(select(Conversation.user_id)).all()
        assert sorted(owners) == sorted([user_id(app, "alice"), user_id(app, "bob")])


def test_continue_is_the_shared_pages_one_action_and_it_needs_the_csrf_token(
    configured: Any, upstream: FakeUpstream
) -> None:
    app = configured(WTF_CSRF_ENABLED=True)
    alice = app.test_client()
    page = html(alice.get("/").data)
    token = str(page.select_one('input[name="csrf_token"]')["value"])
    upstream.push(Scenario(text="Shared."))
    fragment = html(
        alice.post(
            "/messages",
            data={"content": "Share me", "csrf_token": token},
            headers=HX,
        ).data
    )
    read_events(alice, stream_url(fragment))
    conversation_id = int(fragment.select_one("#conversation-id")["value"])
    shared = alice.post(f"/conversations/{conversation_id}/share", data={"csrf_token": token})
    link = str(html(alice.get(shared.headers["Location"]).data).select_one("#share-link")["value"])
    path = urlsplit(link).path

    bob = app.test_client(user="bob")
    shown = html(bob.get(path).data)
    [form] = shown.select("form")
    assert form["method"] == "post" and form["action"] == f"{path}/continue"
    assert bob.post(f"{path}/continue").status_code == 400  # no token: refused
    with app.app_context():
        assert db.session.scalar(select(func.count(Conversation.id))) == 1
    fields = {i["name"]: i["value"] for i in form.select("input[type=hidden]")}
    assert bob.post(f"{path}/continue", data=fields).status_code == 303
    with app.app_context():
        assert db.session.scalar(select(func.count(Conversation.id))) == 2


def test_a_snapshot_shows_web_searches_and_citations(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    found = [Found("Queue theory", "https://queues.example/theory")]
    search = ServerToolUse("web_search", {"query": "queue draining"})
    upstream.push(
        Scenario(
            blocks=[
                search,
                SearchResults(search.id, found),
                Cited("Drain it in batches", [found[0].cite("batches drain queues")]),
            ]
        )
    )
    response = client.post(
        "/messages",
        data={"content": "How?", "conversation_id": "", "server_tools": ["web_search"]},
        headers=HX,
    )
    fragment = html(response.data)
    read_events(client, stream_url(fragment))
    _, link = share(client, int(fragment.select_one("#conversation-id")["value"]))
    answer = html(app.test_client(user="bob").get(link).data).select_one(
        'article[data-role="assistant"]'
    )
    assert "queue draining" in answer.select_one(".tool").get_text()  # the search's block
    assert answer.select_one(".cite")  # the citation's marker
    [source] = answer.select(".sources__list li")
    assert source.select_one("a")["href"] == "https://queues.example/theory"
