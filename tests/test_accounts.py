"""Accounts: the first admin, signing in and out, limits, admins, the CLI, the trusted proxy
header, CSRF, and that nobody reaches anyone else's conversations."""

from __future__ import annotations

import io
import re

import pytest
import redis
from flask import Flask, url_for
from flask.testing import FlaskClient
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.test import TestResponse

from chatapp.auth import accounts, usage
from chatapp.auth.throttle import SharedThrottle
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.models import Conversation, Share
from chatapp.projects import store as store_of_projects
from chatapp.render import anchors

from .conftest import Configure, html, read_events, send, stream_url, user_id

PASSWORD = "correct horse battery"


def anonymous(app: Flask) -> FlaskClient:
    return app.test_client(user=None)


def make_account(app: Flask, name: str, *, admin: bool = False) -> None:
    with app.app_context():
        accounts.create(name, PASSWORD, admin=admin)


def sign_in(client: FlaskClient, name: str, password: str = PASSWORD, **extra: str) -> TestResponse:
    return client.post("/login", data={"username": name, "password": password, **extra})


def test_the_first_visit_creates_the_first_admin_who_gets_the_old_conversations(
    app: Flask,
) -> None:
    with app.app_context():
        db.session.add(Conversation(model="claude-sonnet-4-6", title="From before accounts"))
        db.session.commit()
    client = anonymous(app)
    response = client.get("/")
    assert response.status_code == 302 and response.location.endswith("/setup")
    assert client.get("/login").location.endswith("/setup")
    page = html(client.get("/setup").data)
    assert page.select_one('label[for="username"]').get_text() == "Username"

    refused = client.post("/setup", data={"username": "ann", "password": "short"})
    assert refused.status_code == 422 and "at least 8" in html(refused.data).get_text()
    created = client.post("/setup", data={"username": "ann", "password": PASSWORD})
    assert created.status_code == 302
    home = html(client.get("/").data)
    assert [a.get_text() for a in home.select(".sidebar__list a")] == ["From before accounts"]
    assert home.select_one('a[href="/admin/users"]') is not None
    # Once there is an account, setup is closed.
    assert client.get("/setup").location.endswith("/login")


def test_sign_in_and_out(app: Flask) -> None:
    make_account(app, "bob")
    client = anonymous(app)
    assert client.get("/").location.endswith("/login")
    page = html(client.get("/login").data)
    assert page.select_one('label[for="username"]').get_text() == "Username"
    assert page.select_one('label[for="password"]').get_text() == "Password"
    assert page.find("button", string="Sign in") is not None

    wrong = sign_in(client, "bob", "not the password")
    assert wrong.status_code == 401
    assert "Wrong username or password" in html(wrong.data).get_text()
    assert html(wrong.data).select_one("#username")["value"] == "bob"  # nothing typed is lost

    right = sign_in(client, "bob", next="/conversations/1")
    assert right.status_code == 302 and right.location.endswith("/conversations/1")
    cookie = right.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/").status_code == 200

    assert client.post("/logout").location.endswith("/login")
    assert client.get("/").status_code == 302


def test_sign_in_never_sends_you_to_another_site(app: Flask) -> None:
    make_account(app, "bob")
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
        response = sign_in(anonymous(app), "bob", next=target)
        assert response.location == "/", target


def test_the_session_cookie_is_secure_behind_https(app: Flask) -> None:
    make_account(app, "bob")
    response = sign_in(anonymous(app), "bob", **{})
    assert "Secure" not in response.headers["Set-Cookie"]
    client = anonymous(app)
    response = client.post(
        "/login",
        data={"username": "bob", "password": PASSWORD},
        headers={"X-Forwarded-Proto": "https"},
    )
    assert "Secure" in response.headers["Set-Cookie"]


def test_sign_in_attempts_are_limited(app: Flask) -> None:
    make_account(app, "bob")
    client = anonymous(app)
    for _ in range(5):
        assert sign_in(client, "bob", "guess").status_code == 401
    limited = sign_in(client, "bob")  # even the right password waits now
    assert limited.status_code == 429
    assert re.search(r"Too many attempts\. Wait \d+ seconds", html(limited.data).get_text())
    # Another account from the same address is not held up by bob's failures.
    make_account(app, "carol")
    assert sign_in(anonymous(app), "carol").status_code == 302


def test_sign_in_limits_without_redis_count_in_the_worker() -> None:
    # Nothing listens there.
    unreachable = redis.Redis(port=1, retry=Retry(NoBackoff(), 0))
    throttle = SharedThrottle(unreachable, "chatapp-test", limit=2, window=60.0)
    assert throttle.blocked_for("bob") == 0
    throttle.failed("bob")
    throttle.failed("bob")
    assert 59 < throttle.blocked_for("bob") <= 60  # still limited, in this worker's memory
    throttle.succeeded("bob")
    assert throttle.blocked_for("bob") == 0


def test_admins_add_and_disable_accounts_and_nobody_else_can(app: Flask) -> None:
    make_account(app, "root", admin=True)
    make_account(app, "bob")
    admin = anonymous(app)
    sign_in(admin, "root")
    page = html(admin.get("/admin/users").data)
    assert [td.get_text() for td in page.select("tbody tr td:first-child")] == ["bob", "root"]

    added = admin.post("/admin/users", data={"username": "dave", "password": PASSWORD})
    assert added.status_code == 200 and "dave" in html(added.data).get_text()
    duplicate = admin.post("/admin/users", data={"username": "dave", "password": PASSWORD})
    assert duplicate.status_code == 422 and "already" in html(duplicate.data).get_text()

    bob_id = user_id(app, "bob")
    assert admin.post(f"/admin/users/{bob_id}/disable").status_code == 302
    assert sign_in(anonymous(app), "bob").status_code == 401
    assert admin.post(f"/admin/users/{bob_id}/enable").status_code == 302
    member = anonymous(app)
    assert sign_in(member, "bob").status_code == 302

    # A member sees no admin page and can't act on accounts: 404, as for anything not theirs.
    assert member.get("/admin/users").status_code == 404
    assert member.post(f"/admin/users/{user_id(app, 'root')}/disable").status_code == 404
    assert html(member.get("/").data).select_one('a[href="/admin/users"]') is None
    # An admin can't disable themselves.
    assert admin.post(f"/admin/users/{user_id(app, 'root')}/disable").status_code == 404


def test_a_disabled_account_is_signed_out_at_once(app: Flask) -> None:
    make_account(app, "bob")
    client = anonymous(app)
    sign_in(client, "bob")
    assert client.get("/").status_code == 200
    with app.app_context():
        user = accounts.find("bob")
        assert user is not None
        accounts.set_disabled(user, True)
    assert client.get("/").status_code == 302


def test_the_users_command(app: Flask) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(args=["users", "create", "carol", "--admin"], input=PASSWORD + "\n")
    assert created.exit_code == 0 and "Created admin carol" in created.output
    assert PASSWORD not in created.output
    short = runner.invoke(args=["users", "create", "dan"], input="short\n")
    assert short.exit_code != 0 and "at least 8" in short.output
    listed = runner.invoke(args=["users", "list"])
    assert listed.output.splitlines() == ["carol\tadmin"]
    assert runner.invoke(args=["users", "disable", "carol"]).exit_code == 0
    assert runner.invoke(args=["users", "list"]).output.splitlines() == ["carol\tadmin, disabled"]
    assert runner.invoke(args=["users", "enable", "carol"]).exit_code == 0
    reset = runner.invoke(args=["users", "reset-password", "carol"], input="another password\n")
    assert reset.exit_code == 0
    assert sign_in(anonymous(app), "carol", "another password").status_code == 302
    missing = runner.invoke(args=["users", "disable", "nobody"])
    assert missing.exit_code != 0 and "no account named nobody" in missing.output


def test_the_trusted_header_counts_only_from_a_trusted_proxy(configured: Configure) -> None:
    trusting = configured()
    assert trusting.test_client(user="erin").get("/").status_code == 200  # made on first sight
    distrusting = configured(TRUSTED_PROXIES="10.1.2.3")
    assert distrusting.test_client(user="erin").get("/").status_code == 302
    unset = configured(TRUSTED_USER_HEADER=None)
    assert unset.test_client(user="erin").get("/").status_code == 302


def test_signed_out_requests_from_htmx_and_streams_are_told_to_sign_in(app: Flask) -> None:
    make_account(app, "bob")
    client = anonymous(app)
    posted = client.post("/messages", data={"content": "hi"}, headers={"HX-Request": "true"})
    assert posted.status_code == 401 and posted.headers["HX-Redirect"] == "/login"
    assert client.get("/messages/1/stream").status_code == 401
    assert client.get("/conversations/1/events").status_code == 401
    assert client.get("/healthz").status_code == 200  # operations stay open


def test_nobody_reaches_another_persons_conversation_by_any_route(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="Alice's answer."))
    uploaded = client.post(
        "/attachments",
        data={"file": (io.BytesIO(b"Alice's notes"), "notes.txt")},
        headers={"HX-Request": "true"},
    )
    attachment = int(html(uploaded.data).select_one("input[name=attachment]")["value"])
    response = client.post(
        "/messages",
        data={"content": "Alice's question", "conversation_id": "", "attachment": attachment},
        headers={"HX-Request": "true"},
    )
    fragment = html(response.data)
    answer = anchors.message_of(fragment.select_one('article[data-role="assistant"]')["id"])
    conversation = int(fragment.select_one("#conversation-id")["value"])
    read_events(client, f"/messages/{answer}/stream")  # ended
    # And a project of hers (private), with a file, the conversation in it.
    created = client.post("/projects", data={"name": "Alice's project"})
    project = int(created.location.rsplit("/", 1)[-1])
    client.post(
        f"/projects/{project}/files", data={"files": (io.BytesIO(b"Project notes"), "p.txt")}
    )
    with app.app_context():
        project_file = store_of_projects.files_of(project)[0].id
    client.post(f"/conversations/{conversation}/project", data={"project_id": project})
    # Alice shares it: its link (and the snapshot's file) is for the team, nothing else is.
    shared = client.post(f"/conversations/{conversation}/share")
    share_id = int(shared.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        found = db.session.get(Share, share_id)
        token, [file_id] = found.token, [f.id for m in found.messages for f in m.files]
    ids = {
        "conversation_id": conversation,
        "message_id": answer,
        "user_id": user_id(app),
        "attachment_id": attachment,
        "project_id": project,
        "share_id": share_id,
        "token": token,
        "file_id": file_id,
    }

    bob = app.test_client(user="bob")
    walked = []
    for rule in app.url_map.iter_rules():
        if not rule.arguments or rule.endpoint == "static":
            continue
        assert rule.arguments <= ids.keys(), f"{rule} takes an id this test does not know"
        values = {name: ids[name] for name in rule.arguments}
        if "project_id" in rule.arguments and "attachment_id" in rule.arguments:
            values["attachment_id"] = project_file  # the project's own file
        with app.test_request_context():
            url = url_for(rule.endpoint, **values)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = bob.open(url, method=method, data={"content": "x", "model": "x"})
            if rule.endpoint in SHARED_WITH_THE_TEAM:
                assert response.status_code in (200, 303), f"{method} {url}"
            else:
                assert response.status_code == 404, f"{method} {url}: {response.status_code}"
            walked.append(f"{method} {rule.rule}")
    assert len(walked) >= 8, walked
    assert "GET /projects/<id:project_id>/files/<id:attachment_id>" in walked
    # And Alice's conversation and project are not in Bob's sidebar (his copy from Continue in
    # my chats is), nor can Bob post into either.
    bobs = html(bob.get("/").data)
    listed = bobs.select(".sidebar__list a")
    assert [a["href"] for a in listed] != [f"/conversations/{conversation}"] and len(listed) == 1
    assert not bobs.select(".sidebar__group a")
    posted = bob.post(
        "/messages",
        data={"conversation_id": str(conversation), "content": "mine now?"},
        headers={"HX-Request": "true"},
    )
    assert posted.status_code == 404
    posted = bob.post(
        "/messages",
        data={"project_id": str(project), "content": "in hers?"},
        headers={"HX-Request": "true"},
    )
    assert posted.status_code == 404
    assert len(upstream.requests) == 1


# A shared conversation's page, its files and Continue in my chats: for any teammate.
SHARED_WITH_THE_TEAM = {"sharing.page", "sharing.file", "sharing.download", "sharing.continue_"}


@pytest.mark.parametrize("path", ["/messages", "/login", "/setup"])
def test_state_changing_requests_need_the_csrf_token(configured: Configure, path: str) -> None:
    app = configured(WTF_CSRF_ENABLED=True)
    client = app.test_client()
    refused = client.post(path, data={"content": "hi", "username": "x", "password": PASSWORD})
    assert refused.status_code == 400
    # The page carries the token for htmx in hx-headers; with it, the send goes through.
    page = html(client.get("/").data)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', str(page.body)).group(1)  # type: ignore[union-attr]
    accepted = client.post(
        "/messages",
        data={"content": "hi"},
        headers={"X-CSRFToken": token, "HX-Request": "true"},
    )
    assert accepted.status_code == 200


def test_admins_see_what_each_person_and_model_cost(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    from decimal import Decimal

    from chatapp import costs

    upstream.push(Scenario(text="Alice's answer."), Scenario(text="Bob's answer, longer."))
    alice_answer = send(client, "Alice asks")
    bob = app.test_client(user="bob")
    bob_answer = send(bob, "Bob asks")
    for fragment in (alice_answer, bob_answer):
        read_events(client if fragment is alice_answer else bob, stream_url(fragment))

    make_account(app, "root", admin=True)
    admin = anonymous(app)
    sign_in(admin, "root")
    page = html(admin.get("/admin/usage").data)
    people = {
        row.select("td")[0].get_text(): row.select("td")[-1].get_text().strip()  # its cost
        for row in page.select("caption:-soup-contains('By person') ~ tbody tr")
    }
    with app.app_context():
        spent = {}
        for name in ("alice", "bob"):
            rows = [r for r in usage.usage_by_person_and_model() if r.username == name]
            spent[name] = sum((costs.cost(r, app.config["PRICES"]) for r in rows), Decimal(0))
    assert people == {name: costs.dollars(amount) for name, amount in spent.items()}
    models = [
        row.select("td")[0].get_text()
        for row in page.select("caption:-soup-contains('By model') ~ tbody tr")
    ]
    assert models == ["claude-sonnet-4-6"]
    bars = page.select("svg.usage-chart g")
    assert [g.select("text")[0].get_text() for g in bars] == sorted(
        spent, key=lambda name: spent[name], reverse=True
    )
    assert anonymous(app).get("/admin/usage").status_code == 302
    assert client.get("/admin/usage").status_code == 404  # alice is no admin
