"""Projects: who may do what on every project route, the request a conversation in a project
sends (its instructions, its files, the cache breakpoints), moving conversations in and out,
pins, and what deleting an account does to the projects it owns."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx2
import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import select, update

from chatapp.auth import accounts
from chatapp.extensions import db
from chatapp.llm.catalogue import catalogue
from chatapp.llm.demo import FakeUpstream, Scenario, ToolUse
from chatapp.models import AuditEvent, Conversation, Pin, Project
from chatapp.projects import store as projects

from .conftest import html, user_id
from .helpers import answer_id, wait_finished
from .test_attachments import pdf, png

HX = {"HX-Request": "true"}
CACHE = {"type": "ephemeral"}


def new_project(client: FlaskClient, name: str = "Launch", instructions: str = "") -> int:
    created = client.post("/projects", data={"name": name})
    assert created.status_code == 303, created.data
    project = int(created.location.rsplit("/", 1)[-1])
    if instructions:
        saved = client.post(
            f"/projects/{project}/settings", data={"name": name, "instructions": instructions}
        )
        assert saved.status_code == 303
    return project


def add_file(client: FlaskClient, project: int, name: str, data: bytes) -> Any:
    return client.post(f"/projects/{project}/files", data={"files": (io.BytesIO(data), name)})


def share(client: FlaskClient, project: int, sharing: str) -> None:
    assert client.post(f"/projects/{project}/sharing", data={"sharing": sharing}).status_code == 303


def start_in(client: FlaskClient, project: int, prompt: str, **settings: Any) -> int:
    """Start a chat in the project as its New chat page does; the answer's id."""
    response = client.post(
        "/messages",
        data={"content": prompt, "conversation_id": "", "project_id": project, **settings},
        headers=HX,
    )
    assert response.status_code == 200, response.data
    return answer_id(html(response.data))


def sidebar_names(client: FlaskClient, selector: str) -> list[str]:
    return [a.get_text() for a in html(client.get("/").data).select(selector)]


# -- who may do what -------------------------------------------------------------------------

# What each project route needs: to see the project (use), to change it (edit), to own it.
NEEDS = {
    "projects.show": "use",
    "projects.file": "use",
    "projects.pin_project": "use",
    "projects.unpin_project": "use",
    "conversations.new_in_project": "use",
    "projects.settings": "edit",
    "projects.add_files": "edit",
    "projects.remove_file": "edit",
    "projects.sharing": "own",
    "projects.delete": "own",
}
# Forms that change nothing when sent by someone allowed (refused for what they hold, 422, or
# a confirmation asked again), so the walk leaves the project as it was.
HARMLESS = {
    "projects.settings": {"name": ""},
    "projects.add_files": {},
    "projects.sharing": {"sharing": "everyone"},
    "projects.delete": {},
}


def expected(role: str, need: str) -> int | None:
    """The status `role` gets on a route that needs `need`; None where it is allowed."""
    if role in ("signed out", "disabled"):
        return 302
    if role == "non-member":
        return 404
    allowed = {
        "owner": {"use", "edit", "own"},
        "can use": {"use"},
        "can edit": {"use", "edit"},
    }[role]
    return None if need in allowed else 403


@pytest.mark.parametrize(
    "role", ["owner", "can use", "can edit", "non-member", "signed out", "disabled"]
)
def test_every_project_route_answers_each_role_as_it_should(app: Flask, role: str) -> None:
    alice = app.test_client()
    project = new_project(alice, "Roles", "Be exact.")
    assert add_file(alice, project, "spec.txt", b"The spec").status_code == 303
    sharing = {"can use": "use", "can edit": "edit", "disabled": "edit"}.get(role, "private")
    share(alice, project, sharing)
    if role == "disabled":
        user_id(app, "dave")
        with app.app_context():
            accounts.set_disabled(accounts.find("dave"), True)  # type: ignore[arg-type]
    visitor = {
        "owner": alice,
        "signed out": app.test_client(user=None),
        "disabled": app.test_client(user="dave"),
    }.get(role) or app.test_client(user="bob")

    walked = []
    for rule in app.url_map.iter_rules():
        if "project_id" not in rule.arguments:
            continue
        need = NEEDS.get(rule.endpoint)
        assert need is not None, f"{rule} is not in NEEDS: say what it needs"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            with app.app_context():
                file_id = projects.files_of(project)[0].id
            values = {"project_id": project, "attachment_id": file_id}
            with app.test_request_context():
                url = url_for(rule.endpoint, **{k: values[k] for k in rule.arguments})
            data = HARMLESS.get(rule.endpoint, {}) if method == "POST" else None
            response = visitor.open(url, method=method, data=data)
            status = expected(role, need)
            if status is None:
                assert response.status_code in (200, 303, 422), f"{method} {url}"
            else:
                assert response.status_code == status, f"{method} {url}: {response.status_code}"
                if status == 302:
                    assert response.location.endswith("/login")
            if rule.endpoint == "projects.remove_file" and response.status_code == 303:
                add_file(alice, project, "spec.txt", b"The spec")  # put it back
            walked.append(f"{method} {rule.rule}")
    assert len(walked) == len(NEEDS) + 1, walked  # delete has GET and POST
    with app.app_context():
        kept = db.session.get(Project, project)
        assert kept is not None and kept.name == "Roles" and kept.instructions == "Be exact."
        assert kept.sharing == sharing
        assert [f.name for f in projects.files_of(project)] == ["spec.txt"]


def test_a_project_is_listed_and_started_in_only_by_those_who_may_use_it(
    app: Flask, upstream: FakeUpstream
) -> None:
    alice, bob = app.test_client(), app.test_client(user="bob")
    private = new_project(alice, "Alice alone")
    shared = new_project(alice, "Team launch")
    share(alice, shared, "use")
    assert sidebar_names(bob, ".sidebar__project-name") == ["Team launch"]
    assert [a.get_text() for a in html(bob.get("/projects").data).select(".project__chats a")] == [
        "Team launch"
    ]
    refused = bob.post("/messages", data={"content": "hi", "project_id": private}, headers=HX)
    assert refused.status_code == 404
    # The New chat page of a shared project starts there.
    page = html(bob.get(f"/projects/{shared}/chat").data)
    assert page.select_one("#composer input[name=project_id]")["value"] == str(shared)
    wait_finished(app, start_in(bob, shared, "Bob's question"))
    # Bob's conversation is his: in his sidebar under the project, not in Alice's, and a 404
    # to her; her project page lists only her own conversations.
    assert sidebar_names(bob, ".sidebar__in-project a") == ["Bob's question"]
    assert sidebar_names(alice, ".sidebar__in-project a") == []
    with app.app_context():
        bobs = db.session.scalars(select(Conversation.id)).one()
    assert alice.get(f"/conversations/{bobs}").status_code == 404
    assert not html(alice.get(f"/projects/{shared}").data).select(".project__chats a")


def test_making_a_project_private_moves_everyone_elses_conversations_out(
    app: Flask, upstream: FakeUpstream
) -> None:
    alice, bob = app.test_client(), app.test_client(user="bob")
    project = new_project(alice, "Shared for a while", "Answer in French.")
    share(alice, project, "use")
    wait_finished(app, start_in(bob, project, "Bob's"))
    wait_finished(app, start_in(alice, project, "Alice's"))
    bob.post(f"/projects/{project}/pin")
    share(alice, project, "private")
    with app.app_context():
        where = dict(db.session.execute(select(Conversation.title, Conversation.project_id)).all())
    assert where == {"Bob's": None, "Alice's": project}
    # Bob's conversation is still his, outside any project; the project and his pin of it are
    # gone from his sidebar, and his next question goes without the project.
    assert sidebar_names(bob, ".sidebar__list a") == ["Bob's"]
    assert sidebar_names(bob, ".sidebar__group a") == []
    assert bob.get(f"/projects/{project}").status_code == 404


def test_a_conversation_that_lands_in_a_project_just_made_private_gets_nothing_of_it(
    app: Flask, upstream: FakeUpstream
) -> None:
    """Bob starts a chat in a shared project as Alice makes it private: the check that he may
    use it passed, then her update moved everyone else's out, then his conversation was
    written in it. His requests still go without her instructions, and his sidebar still
    lists the conversation."""
    alice, bob = app.test_client(), app.test_client(user="bob")
    project = new_project(alice, "Secret", "The code word is swordfish.")
    share(alice, project, "use")
    first = wait_finished(app, start_in(bob, project, "Bob's"))
    share(alice, project, "private")
    with app.app_context():  # his write, after hers
        db.session.execute(
            update(Conversation)
            .where(Conversation.id == first.conversation_id)
            .values(project_id=project)
        )
        db.session.commit()
    assert sidebar_names(bob, ".sidebar__list a") == ["Bob's"]
    bob.post(
        "/messages",
        data={"content": "What is the code word?", "conversation_id": first.conversation_id},
        headers=HX,
    )
    wait_finished(app, answer_id_of_last(app, first.conversation_id))
    assert "swordfish" not in json.dumps(upstream.requests[-1])
    page = html(bob.get(f"/conversations/{first.conversation_id}").data)
    assert page.select_one(".chat__project") is None


# -- the request -----------------------------------------------------------------------------


def test_a_conversation_in_a_project_sends_its_instructions_and_files_for_the_cache(
    app: Flask, upstream: FakeUpstream
) -> None:
    alice = app.test_client()
    project = new_project(alice, "Contracts", "You review contracts for Acme.")
    assert add_file(alice, project, "terms.pdf", pdf(5)).status_code == 303  # ~10,000 tokens
    assert add_file(alice, project, "logo.png", png()).status_code == 303
    page = html(alice.get(f"/projects/{project}").data)
    assert [a.get_text() for a in page.select(".project__files a")] == ["terms.pdf", "logo.png"]

    first = wait_finished(
        app, start_in(alice, project, "Is clause 4 fair?", system_prompt="Be brief.")
    )
    assert first.status == "complete", first.error
    request = upstream.requests[-1]
    # The project's instructions first, then the conversation's own; one breakpoint after.
    assert request["system"] == [
        {"type": "text", "text": "You review contracts for Acme."},
        {"type": "text", "text": "Be brief.", "cache_control": CACHE},
    ]
    # The project's files open the first question, a breakpoint after them, then the question.
    document, image, question = request["messages"][0]["content"]
    assert document["type"] == "document" and document["title"] == "terms.pdf"
    assert document["source"]["type"] == "file" and "cache_control" not in document
    assert image["type"] == "image" and image["source"]["type"] == "file"
    assert image["cache_control"] == CACHE
    assert question == {"type": "text", "text": "Is clause 4 fair?", "cache_control": CACHE}
    assert "terms.pdf (PDF, 5 pages)" in first.content  # the demo read it
    # Their tokens count like any other: written to the cache on the first turn...
    assert first.cache_creation_tokens and first.cache_creation_tokens >= 10_000

    # ... and read from it on the next, the files still first, uploaded once.
    alice.post(
        "/messages",
        data={"content": "And clause 5?", "conversation_id": first.conversation_id},
        headers=HX,
    )
    second = wait_finished(app, first.id + 2)
    later = upstream.requests[-1]
    assert later["messages"][0]["content"][0]["source"] == document["source"]
    assert later["messages"][0]["content"][1]["cache_control"] == CACHE
    assert second.cache_read_tokens and second.cache_read_tokens >= 10_000
    assert len(upstream.files.files) == 2
    page = html(alice.get(f"/conversations/{first.conversation_id}").data)
    assert page.select_one(".chat__project").get_text() == "Contracts"
    assert page.select_one("#context-meter") is not None


def test_a_tool_loop_in_a_project_stays_within_four_cache_breakpoints(
    app: Flask, upstream: FakeUpstream
) -> None:
    alice = app.test_client()
    project = new_project(alice, "Sums", "Use the calculator.")
    add_file(alice, project, "numbers.txt", b"6 and 7")
    upstream.push(
        Scenario(text="", tool_uses=[ToolUse("calculator", {"expression": "6 * 7"})]),
        Scenario(text="42."),
    )
    answer = wait_finished(
        app,
        start_in(alice, project, "Multiply them", system_prompt="Be brief.", tools="calculator"),
    )
    assert answer.status == "complete" and "42." in answer.content, answer.error
    following = upstream.requests[-1]
    marked = json.dumps(following).count('"cache_control"')
    assert marked == 4  # system, the project's files, the question, the tool results
    # The demo upstream refuses a fifth, as the API does.
    following["messages"][-2]["content"][0]["cache_control"] = CACHE
    with httpx2.Client() as http:
        refused = http.post(f"{upstream.url}/v1/messages", json=following)
    assert refused.status_code == 400 and "maximum of 4" in refused.text


def test_a_model_that_cannot_read_a_projects_file_is_refused_with_a_sentence_on_every_path(
    app: Flask, upstream: FakeUpstream
) -> None:
    """An editor adds a PDF to the project after a chat in it started with a model that
    cannot read PDFs: sending, editing, retrying and continuing each say so before asking."""
    assert catalogue(app).refresh()
    old = "claude-3-haiku-20240307"  # the fake lists it without PDF input
    alice = app.test_client()
    project = new_project(alice, "Scans")
    upstream.push(Scenario(text="The first half", cut_after=8))
    cut = wait_finished(app, start_in(alice, project, "Read it", model=old))
    assert cut.status == "failed"
    assert add_file(alice, project, "scan.pdf", pdf(1)).status_code == 303
    asked = len(upstream.requests)
    sentence = "Claude Haiku 3 cannot read scan.pdf, one of this project's files"

    answers = {
        "edit": alice.post(f"/messages/{cut.id - 1}/edit", data={"content": "Read it all"}),
        "send": alice.post(
            "/messages",
            data={"content": "And now?", "conversation_id": cut.conversation_id},
            headers=HX,
        ),
        "retry": alice.post(f"/messages/{cut.id}/retry", headers=HX),
        "continue": alice.post(f"/messages/{cut.id}/continue", headers=HX),
        "new chat": alice.post(
            "/messages",
            data={"content": "Hi", "conversation_id": "", "project_id": project, "model": old},
            headers=HX,
        ),
    }
    for path, response in answers.items():
        assert response.status_code == 422, path
        assert sentence in html(response.data).get_text(), path
    assert len(upstream.requests) == asked
    with app.app_context():
        kept = db.session.get(Conversation, cut.conversation_id)
        assert kept is not None and [m.content for m in kept.messages] == [
            "Read it",
            "The firs",
        ]


def test_a_new_chat_in_a_project_too_big_for_the_models_window_is_refused_before_asking(
    app: Flask, upstream: FakeUpstream
) -> None:
    alice = app.test_client()
    project = new_project(alice, "Logs", "Find the failures.")
    # About 200,000 tokens (2,000 a page), and the instructions: more than Claude Haiku
    # 4.5's window.
    assert add_file(alice, project, "manual.pdf", pdf(100)).status_code == 303
    refused = alice.post(
        "/messages",
        data={
            "content": "Why?",
            "conversation_id": "",
            "project_id": project,
            "model": "claude-haiku-4-5",
        },
        headers=HX,
    )
    assert refused.status_code == 422
    assert "would not fit in Claude Haiku 4.5's context window" in html(refused.data).get_text()
    assert upstream.requests == []
    with app.app_context():
        assert db.session.scalars(select(Conversation)).all() == []
    # A model with a larger window takes it.
    wait_finished(app, start_in(alice, project, "Why?", model="claude-sonnet-5-5"))
    assert len(upstream.requests) == 1


def test_moving_a_conversation_into_and_out_of_a_project(
    app: Flask, upstream: FakeUpstream
) -> None:
    alice, bob = app.test_client(), app.test_client(user="bob")
    project = new_project(alice, "Docs", "Write for beginners.")
    bobs = new_project(bob, "Bob's own")
    response = alice.post(
        "/messages", data={"content": "Outside", "conversation_id": ""}, headers=HX
    )
    conversation = int(html(response.data).select_one("#conversation-id")["value"])
    wait_finished(app, answer_id(html(response.data)))
    assert "system" not in upstream.requests[-1]

    # Into a project you cannot see: a 404, nothing moves.
    moved = alice.post(f"/conversations/{conversation}/project", data={"project_id": bobs})
    assert moved.status_code == 404
    moved = alice.post(f"/conversations/{conversation}/project", data={"project_id": project})
    assert moved.status_code == 303
    assert sidebar_names(alice, ".sidebar__in-project a") == ["Outside"]
    assert sidebar_names(alice, ".sidebar__list a") == []
    page = html(alice.get(f"/conversations/{conversation}").data)
    assert page.select_one("#move-project option[selected]").get_text() == "Docs"
    alice.post("/messages", data={"content": "In", "conversation_id": conversation}, headers=HX)
    wait_finished(app, answer_id_of_last(app, conversation))
    assert upstream.requests[-1]["system"][0]["text"] == "Write for beginners."

    # Out again (with htmx: the page reloads).
    out = alice.post(f"/conversations/{conversation}/project", data={"project_id": ""}, headers=HX)
    assert out.status_code == 204 and out.headers["HX-Redirect"] == f"/conversations/{conversation}"
    alice.post("/messages", data={"content": "Out", "conversation_id": conversation}, headers=HX)
    wait_finished(app, answer_id_of_last(app, conversation))
    assert "system" not in upstream.requests[-1]
    assert sidebar_names(alice, ".sidebar__list a") == ["Outside"]


def answer_id_of_last(app: Flask, conversation: int) -> int:
    with app.app_context():
        found = db.session.get(Conversation, conversation)
        assert found is not None
        return found.messages[-1].id


def test_project_files_are_checked_like_a_questions_and_refused_with_a_sentence(
    app: Flask,
) -> None:
    alice = app.test_client()
    project = new_project(alice)
    refused = add_file(alice, project, "run.exe", b"MZ\x00\x00binary")
    assert refused.status_code == 422
    assert html(refused.data).select_one(".project__error").get_text()
    nothing = alice.post(f"/projects/{project}/files", data={})
    assert "Choose a file" in html(nothing.data).select_one(".project__error").get_text()
    with app.app_context():
        assert projects.files_of(project) == []
    # Not a pending file either: the sweeper's clean-up and /attachments leave them alone.
    add_file(alice, project, "a.txt", b"text")
    with app.app_context():
        [kept] = projects.files_of(project)
    assert alice.get(f"/attachments/{kept.id}").status_code == 404
    served = alice.get(f"/projects/{project}/files/{kept.id}")
    assert served.data == b"text" and served.headers["Content-Disposition"].startswith("attachment")
    served.close()
    long_name = alice.post(f"/projects/{project}/settings", data={"name": "x" * 201})
    assert long_name.status_code == 422
    assert "limit is 200" in html(long_name.data).select_one(".project__error").get_text()


def test_a_file_named_like_one_of_the_projects_is_refused_with_a_sentence(app: Flask) -> None:
    alice = app.test_client()
    project = new_project(alice)
    assert add_file(alice, project, "spec.txt", b"Version 1").status_code == 303
    again = add_file(alice, project, "Spec.txt", b"Version 2")
    assert again.status_code == 422
    said = html(again.data).select_one(".project__error").get_text()
    assert "The project has a file named Spec.txt already" in said
    # Chosen twice in one go: neither is added.
    twice = alice.post(
        f"/projects/{project}/files",
        data={"files": [(io.BytesIO(b"a"), "notes.md"), (io.BytesIO(b"b"), "notes.md")]},
    )
    assert twice.status_code == 422
    with app.app_context():
        assert [(f.name, f.size) for f in projects.files_of(project)] == [("spec.txt", 9)]


def test_deleting_a_project_keeps_its_conversations(app: Flask, upstream: FakeUpstream) -> None:
    alice, bob = app.test_client(), app.test_client(user="bob")
    project = new_project(alice, "Short-lived")
    share(alice, project, "edit")
    wait_finished(app, start_in(bob, project, "Bob's"))
    # An editor changes it, but may not delete it.
    assert bob.post(f"/projects/{project}/settings", data={"name": "Renamed"}).status_code == 303
    assert bob.post(f"/projects/{project}/delete", data={"confirm": "yes"}).status_code == 403
    confirm = html(alice.get(f"/projects/{project}/delete").data)
    assert "Renamed" in confirm.select_one("h1").get_text()
    gone = alice.post(f"/projects/{project}/delete", data={"confirm": "yes"})
    assert gone.status_code == 303
    assert sidebar_names(bob, ".sidebar__list a") == ["Bob's"]
    with app.app_context():
        assert db.session.get(Project, project) is None


# -- pins ------------------------------------------------------------------------------------


def test_pins_keep_conversations_and_projects_at_the_top(
    app: Flask, upstream: FakeUpstream
) -> None:
    alice, bob = app.test_client(), app.test_client(user="bob")
    ids = []
    for prompt in ("First", "Second"):
        response = alice.post("/messages", data={"content": prompt}, headers=HX)
        ids.append(int(html(response.data).select_one("#conversation-id")["value"]))
        wait_finished(app, answer_id(html(response.data)))
    project = new_project(alice, "Pinned project")
    assert sidebar_names(alice, ".sidebar__list a") == ["Second", "First"]

    # Without JavaScript: a form, then back to the conversation.
    pinned = alice.post(f"/conversations/{ids[0]}/pin")
    assert pinned.status_code == 303 and pinned.location == f"/conversations/{ids[0]}"
    assert sidebar_names(alice, ".sidebar__pinned a") == ["First"]
    assert sidebar_names(alice, ".sidebar__list a") == ["Second"]
    page = html(alice.get(f"/conversations/{ids[0]}").data)
    assert page.select_one(".pin button").get_text() == "Unpin"
    # With htmx: the button again, and the sidebar out of band.
    fragment = html(alice.post(f"/projects/{project}/pin", headers=HX).data)
    assert fragment.select_one(".pin button").get_text() == "Unpin"
    assert [a.get_text() for a in fragment.select("#sidebar .sidebar__pinned a")] == [
        "Pinned project",
        "First",
    ]
    alice.post(f"/projects/{project}/pin", headers=HX)  # twice: still one pin
    with app.app_context():
        assert len(db.session.scalars(select(Pin)).all()) == 2
    # A pin is one person's.
    share(alice, project, "use")
    assert sidebar_names(bob, ".sidebar__pinned a") == []
    assert bob.post(f"/conversations/{ids[0]}/pin").status_code == 404

    fragment = html(alice.post(f"/conversations/{ids[0]}/unpin", headers=HX).data)
    assert fragment.select_one(".pin button").get_text() == "Pin"
    assert sidebar_names(alice, ".sidebar__list a") == ["Second", "First"]
    alice.post(f"/projects/{project}/unpin")
    assert sidebar_names(alice, ".sidebar__pinned a") == []


# -- admins ----------------------------------------------------------------------------------


def test_deleting_an_account_asks_what_happens_to_its_shared_projects(
    app: Flask, upstream: FakeUpstream
) -> None:
    root = app.test_client(user="root")
    user_id(app, "root")
    with app.app_context():
        accounts.set_admin(accounts.find("root"), True)  # type: ignore[arg-type]
    bob, carol = app.test_client(user="bob"), app.test_client(user="carol")
    handed = new_project(bob, "Handed over", "Keep it short.")
    add_file(bob, handed, "brief.txt", b"The brief")
    dropped = new_project(bob, "Dropped")
    private = new_project(bob, "Bob's private")
    for project in (handed, dropped):
        share(bob, project, "use")
    wait_finished(app, start_in(carol, handed, "Carol's in handed"))
    wait_finished(app, start_in(carol, dropped, "Carol's in dropped"))
    wait_finished(app, start_in(bob, handed, "Bob's own"))
    bob_id, carol_id = user_id(app, "bob"), user_id(app, "carol")

    page = html(root.get("/admin/users").data)
    counts = {
        row.select("td")[0].get_text(): row.select("td")[3].get_text()
        for row in page.select("tbody tr")
    }
    assert counts == {"bob": "3", "carol": "0", "root": "0"}

    asked = html(root.get(f"/admin/users/{bob_id}/delete").data)
    assert "2 shared projects" in asked.select_one("legend").get_text()
    assert [o.get_text() for o in asked.select("#hand-over-to option")] == ["carol", "root"]
    # Without a choice nothing happens.
    undecided = root.post(f"/admin/users/{bob_id}/delete", data={"confirm": "yes"})
    assert undecided.status_code == 422
    assert "choose whether" in html(undecided.data).select_one(".account-page__error").get_text()
    assert accounts_named(app) == ["bob", "carol", "root"]
    # A member may not.
    assert carol.post(f"/admin/users/{bob_id}/delete", data={"confirm": "yes"}).status_code == 404

    # Hand over the one, delete the other: in two steps, as an admin could also do.
    with app.app_context():
        projects.delete_projects([dropped], by=None)
    done = root.post(
        f"/admin/users/{bob_id}/delete",
        data={"confirm": "yes", "shared": "hand_over", "to": carol_id},
    )
    assert done.status_code == 303
    assert accounts_named(app) == ["carol", "root"]
    with app.app_context():
        kept = db.session.get(Project, handed)
        assert (
            kept is not None and kept.user_id == carol_id and kept.instructions == "Keep it short."
        )
        assert [f.name for f in projects.files_of(handed)] == ["brief.txt"]
        assert db.session.get(Project, private) is None
        titles = sorted(db.session.scalars(select(Conversation.title)))
        assert titles == ["Carol's in dropped", "Carol's in handed"]
        kinds = [e.kind for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert "project_handed_over" in kinds and kinds[-1] == "user_deleted"
    # Carol now owns it: she may change its sharing; her conversation in it goes on with it.
    share(carol, handed, "private")
    assert html(carol.get(f"/projects/{handed}").data).select_one("#project-sharing") is not None


def test_deleting_an_account_can_delete_its_shared_projects(
    app: Flask, upstream: FakeUpstream
) -> None:
    root = app.test_client(user="root")
    user_id(app, "root")
    with app.app_context():
        accounts.set_admin(accounts.find("root"), True)  # type: ignore[arg-type]
    bob, carol = app.test_client(user="bob"), app.test_client(user="carol")
    project = new_project(bob, "Team")
    add_file(bob, project, "team.png", png())
    share(bob, project, "edit")
    wait_finished(app, start_in(carol, project, "Carol's"))
    bob_id = user_id(app, "bob")
    done = root.post(f"/admin/users/{bob_id}/delete", data={"confirm": "yes", "shared": "delete"})
    assert done.status_code == 303
    with app.app_context():
        assert db.session.get(Project, project) is None
        [kept] = db.session.scalars(select(Conversation)).all()
        assert kept.title == "Carol's" and kept.project_id is None
    # Carol's conversation goes on, outside any project.
    assert carol.get(f"/conversations/{kept.id}").status_code == 200
    # And an admin cannot delete themselves.
    assert root.get(f"/admin/users/{user_id(app, 'root')}/delete").status_code == 404


def accounts_named(app: Flask) -> list[str]:
    with app.app_context():
        return [user.username for user in accounts.all_users()]


@pytest.mark.parametrize("to", ["themselves", "disabled", "nobody", "not an id"])
def test_shared_projects_are_handed_over_only_to_another_active_account(
    app: Flask, to: str
) -> None:
    root = app.test_client(user="root")
    root_id = user_id(app, "root")
    with app.app_context():
        accounts.set_admin(accounts.find("root"), True)  # type: ignore[arg-type]
    bob = app.test_client(user="bob")
    project = new_project(bob, "Team")
    share(bob, project, "use")
    bob_id, dave_id = user_id(app, "bob"), user_id(app, "dave")
    with app.app_context():
        accounts.set_disabled(accounts.find("dave"), True)  # type: ignore[arg-type]
    target = {"themselves": bob_id, "disabled": dave_id, "nobody": 999_999, "not an id": "x"}[to]
    refused = root.post(
        f"/admin/users/{bob_id}/delete",
        data={"confirm": "yes", "shared": "hand_over", "to": target},
    )
    assert refused.status_code == 422
    assert "active account" in html(refused.data).select_one(".account-page__error").get_text()
    assert accounts_named(app) == ["bob", "dave", "root"]
    with app.app_context():
        kept = db.session.get(Project, project)
        assert kept is not None and kept.user_id == bob_id
    # Nor may an admin delete their own account this way.
    assert root.post(f"/admin/users/{root_id}/delete", data={"confirm": "yes"}).status_code == 404
