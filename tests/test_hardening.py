"""Hardening (issue 16): what a stranger can make the server hold, addresses behind a proxy,
sessions that end, limits on every field, ids that are no ids, /metrics, admins named by the
proxy, names whatever their case, the first admin made once, and private files."""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import threading
import uuid
from pathlib import Path
from typing import Any

import gevent
import pytest
import redis
from flask import Flask, url_for
from flask.testing import FlaskClient
from gevent.threadpool import ThreadPool
from sqlalchemy import text

from chatapp import config as defaults
from chatapp import create_app
from chatapp.auth import accounts
from chatapp.auth.throttle import SharedThrottle, Throttle
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Scenario

from .conftest import Configure, html, read_events, send, stream_url, user_id

PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parent.parent


def anonymous(app: Flask, address: str = "127.0.0.1") -> FlaskClient:
    client = app.test_client(user=None)
    client.environ_base["REMOTE_ADDR"] = address
    return client


def make_account(app: Flask, name: str, *, admin: bool = False) -> None:
    with app.app_context():
        accounts.create(name, PASSWORD, admin=admin)


def sign_in(client: FlaskClient, name: str, password: str = PASSWORD, **headers: str) -> Any:
    return client.post("/login", data={"username": name, "password": password}, headers=headers)


def failures_kept(app: Flask) -> int:
    """How many keys the app's sign-in throttles hold (none before the first is made)."""
    throttles: tuple[Throttle, ...] = app.extensions.get("chatapp.login_throttles", ())
    return sum(len(throttle) for throttle in throttles)


# -- 1. Memory from the sign-in form ----------------------------------------------------------


def test_a_name_that_breaks_the_username_rule_is_refused_and_nothing_is_kept(app: Flask) -> None:
    make_account(app, "bob")
    client = anonymous(app)
    for name in ("x" * 100_000, "bob smith", "bøb", ""):
        refused = sign_in(client, name, "guess")
        assert refused.status_code == 422, name[:20]
        page = html(refused.data)
        assert "A username is 1 to 80 letters" in page.get_text()
        assert len(page.select_one("#username")["value"]) <= 80  # shown back, never megabytes
    assert failures_kept(app) == 0
    assert sign_in(client, "bob").status_code == 302  # nothing was counted against anyone


def test_a_request_over_the_size_limit_is_refused_with_a_sentence(configured: Configure) -> None:
    # A send may carry files: with at most one of 1 MB, it takes no more than the default.
    app = configured(MAX_FILE_MB=1, MAX_FILES=1)
    make_account(app, "bob")
    assert app.config["MAX_CONTENT_LENGTH"] == 4 * 1024 * 1024  # the default, a few MB
    refused = sign_in(anonymous(app), "x" * (5 * 1024 * 1024), "guess")
    assert refused.status_code == 413
    assert "more than the server takes in one request (4 MB)" in html(refused.data).get_text()
    # From the page, the same is said in the notice, and nothing is stored.
    client = app.test_client()
    posted = client.post(
        "/messages", data={"content": "x" * (5 * 1024 * 1024)}, headers={"HX-Request": "true"}
    )
    assert posted.status_code == 413 and posted.headers["HX-Retarget"] == "#notice"
    assert "nothing was saved" in html(posted.data).get_text()
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM message")).scalar() == 0


def test_the_throttle_holds_few_keys_and_forgets_old_ones() -> None:
    throttle = Throttle(2, 60.0, max_keys=3)
    for n in range(100):
        throttle.failed(f"key-{n}")
    assert len(throttle) == 3  # the ones that failed last
    throttle.failed("key-99")
    assert throttle.blocked_for("key-99") > 59 and throttle.blocked_for("key-0") == 0
    for _ in range(10):
        throttle.failed("busy")
    assert len(throttle) == 3  # and a key holds no more than its limit of failures

    quick = Throttle(2, 0.05)
    quick.failed("a")
    quick.failed("a")
    assert quick.blocked_for("a") > 0
    gevent.sleep(0.1)
    quick.failed("b")  # a failure sweeps out the keys whose failures have all left the window
    assert len(quick) == 1 and quick.blocked_for("a") == 0


def test_a_shared_throttle_keeps_only_the_newest_failures_in_redis() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    prefix = f"chatapp-test-{uuid.uuid4().hex}"
    throttle = SharedThrottle(client, prefix, limit=5, window=60.0)
    try:
        for _ in range(40):
            throttle.failed("bob")
        keys = client.keys(f"{prefix}:*")
        assert len(keys) == 1 and client.zcard(keys[0]) == 5
        assert 0 < client.ttl(keys[0]) <= 61
        assert throttle.blocked_for("bob") > 59
    finally:
        for key in client.keys(f"{prefix}:*"):
            client.delete(key)
        client.close()


# -- 2. Behind a proxy --------------------------------------------------------------------------


@pytest.fixture
def behind_nginx(configured: Configure) -> Flask:
    """The app behind one proxy (CHATAPP_PROXY_COUNT=1), made before caplog starts capturing
    (the migrations set logging up anew)."""
    return configured(PROXY_COUNT=1)


def test_behind_a_proxy_each_client_has_its_own_sign_in_limits(
    behind_nginx: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    app = behind_nginx
    make_account(app, "bob")
    through_nginx = anonymous(app)  # every request comes from the proxy on loopback
    guesser = {"X-Forwarded-For": "198.51.100.7"}
    with caplog.at_level(logging.INFO, logger="chatapp.auth.views"):
        for _ in range(5):
            assert sign_in(through_nginx, "bob", "guess", **guesser).status_code == 401
    assert sign_in(through_nginx, "bob", **guesser).status_code == 429
    # Bob himself, from his own address through the same proxy, is not held up.
    assert sign_in(through_nginx, "bob", **{"X-Forwarded-For": "203.0.113.20"}).status_code == 302
    # The log says where the failures came from: the client, not the proxy.
    failures = [r for r in caplog.records if r.getMessage() == "sign-in failed"]
    assert len(failures) == 5
    assert {r.fields["address"] for r in failures} == {"198.51.100.7"}  # type: ignore[attr-defined]


def test_without_a_proxy_count_a_forwarded_address_is_not_believed(app: Flask) -> None:
    make_account(app, "bob")
    client = anonymous(app)
    for n in range(5):
        sign_in(client, "bob", "guess", **{"X-Forwarded-For": f"198.51.100.{n}"})
    # The header names another address each time; the limit still holds for the real one.
    assert sign_in(client, "bob", **{"X-Forwarded-For": "198.51.100.99"}).status_code == 429


def test_only_the_real_peer_may_name_the_user(configured: Configure) -> None:
    # The proxy on loopback is trusted; a client cannot borrow that trust by a forwarded header.
    trusting = configured(PROXY_COUNT=1, TRUSTED_PROXIES="127.0.0.1")
    client = trusting.test_client(user="erin")
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"
    assert client.get("/").status_code == 200
    claiming = configured(PROXY_COUNT=1, TRUSTED_PROXIES="203.0.113.9")
    client = claiming.test_client(user="erin")
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"  # says it is the trusted one
    assert client.get("/").status_code == 302


# -- 3. Sessions that end -----------------------------------------------------------------------


def copy_of_session(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser with a copy of `client`'s session cookie."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief = anonymous(app, "192.0.2.66")
    thief.set_cookie("session", cookie.value)
    return thief


def test_a_copied_session_cookie_stops_working_at_sign_out(app: Flask) -> None:
    make_account(app, "bob")
    client = anonymous(app)
    assert sign_in(client, "bob").status_code == 302
    thief = copy_of_session(app, client)
    assert thief.get("/").status_code == 200
    assert client.post("/logout").status_code == 302
    assert thief.get("/").status_code == 302  # signed out everywhere
    assert client.get("/").status_code == 302


def test_a_new_password_and_disabling_end_every_session(app: Flask) -> None:
    make_account(app, "bob")
    runner = app.test_cli_runner()
    client = anonymous(app)
    sign_in(client, "bob")
    thief = copy_of_session(app, client)
    reset = runner.invoke(args=["users", "reset-password", "bob"], input="another password\n")
    assert reset.exit_code == 0
    assert thief.get("/").status_code == 302 and client.get("/").status_code == 302

    sign_in(client, "bob", "another password")
    thief = copy_of_session(app, client)
    assert runner.invoke(args=["users", "disable", "bob"]).exit_code == 0
    assert runner.invoke(args=["users", "enable", "bob"]).exit_code == 0
    assert thief.get("/").status_code == 302 and client.get("/").status_code == 302
    assert sign_in(client, "bob", "another password").status_code == 302


def conversation_of(app: Flask, client: FlaskClient, upstream: FakeUpstream) -> int:
    upstream.push(Scenario(text="Done."))
    fragment = send(client, "Hello")
    read_events(client, stream_url(fragment))
    return int(fragment.select_one("#conversation-id")["value"])


@pytest.mark.parametrize("how", ["disabled", "signed out elsewhere"])
def test_an_open_stream_ends_when_its_session_does(
    configured: Configure, upstream: FakeUpstream, how: str
) -> None:
    app = configured(SESSION_CHECK_SECONDS=0.1, HEARTBEAT_SECONDS=0.2)
    make_account(app, "bob")
    client = anonymous(app)
    sign_in(client, "bob")
    conversation = conversation_of(app, client, upstream)
    response = client.get(f"/conversations/{conversation}/events", buffered=False)
    assert response.status_code == 200
    chunks: list[bytes] = []

    def end_session() -> None:
        if how == "disabled":
            with app.app_context():
                accounts.set_disabled(accounts.find("bob"), True)  # type: ignore[arg-type]
        else:
            other = anonymous(app, "192.0.2.10")
            sign_in(other, "bob")
            other.post("/logout")

    ender = gevent.spawn_later(1.0, end_session)
    try:
        with gevent.Timeout(6):
            for chunk in response.response:
                chunks.append(chunk)
    except gevent.Timeout:
        pytest.fail("the stream went on after its session ended")
    finally:
        response.close()
    assert ender.dead and ender.successful()
    assert sum(b"keep-alive" in c for c in chunks) >= 2  # it ran until then
    assert client.get(f"/conversations/{conversation}/events").status_code == 401


def test_the_csrf_token_changes_at_sign_in_and_sign_out(configured: Configure) -> None:
    app = configured(WTF_CSRF_ENABLED=True)
    make_account(app, "bob")
    client = anonymous(app)

    def token(path: str) -> str:
        page = html(client.get(path).data)
        return str(page.select_one('input[name="csrf_token"]')["value"])

    before = token("/login")
    signed = client.post(
        "/login", data={"username": "bob", "password": PASSWORD, "csrf_token": before}
    )
    assert signed.status_code == 302
    during = token("/")
    assert during != before
    stale = client.post("/messages", data={"content": "hi"}, headers={"X-CSRFToken": before})
    assert stale.status_code == 400
    assert client.post("/logout", data={"csrf_token": during}).status_code == 302
    after = token("/login")
    assert after != during
    refused = client.post(
        "/login", data={"username": "bob", "password": PASSWORD, "csrf_token": during}
    )
    assert refused.status_code == 400


# -- 4. Every field has a limit --------------------------------------------------------------


def test_a_system_prompt_over_the_limit_is_refused_and_nothing_is_stored(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    assert app.config["MAX_SYSTEM_PROMPT_CHARS"] == 50_000
    long = "Answer as a pirate. " * 3000  # 60,000 characters
    refused = client.post(
        "/messages",
        data={"content": "Hi", "system_prompt": long},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 422
    assert "The system prompt is 59,999 characters long; the limit is 50,000" in (
        html(refused.data).get_text()
    )
    assert upstream.requests == []
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM conversation")).scalar() == 0

    conversation = conversation_of(app, client, upstream)
    saved = client.post(
        f"/conversations/{conversation}/settings",
        data={"model": "claude-sonnet-4-6", "system_prompt": long},
        headers={"HX-Request": "true"},
    )
    assert saved.status_code == 422
    form = html(saved.data)
    assert "the limit is 50,000" in form.select_one(".settings__error").get_text()
    assert form.select_one("textarea[name=system_prompt]").get_text() == long  # kept to edit
    with app.app_context():
        stored = db.session.execute(text("SELECT system_prompt FROM conversation")).scalar()
    assert stored == ""


def test_a_title_over_the_limit_is_refused_not_cut(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    conversation = conversation_of(app, client, upstream)
    long = "A title that goes on " * 10  # 210 characters
    refused = client.post(f"/conversations/{conversation}/title", data={"title": long})
    assert refused.status_code == 422
    form = html(refused.data)
    assert "the limit is 200" in form.select_one(".rename__error").get_text()
    assert form.select_one("#title-input")["value"] == long
    with app.app_context():
        title = db.session.execute(text("SELECT title FROM conversation")).scalar()
    assert title == "Hello"


def test_account_fields_have_limits(app: Flask) -> None:
    make_account(app, "root", admin=True)
    admin = anonymous(app)
    sign_in(admin, "root")
    for data, sentence in (
        ({"username": "a" * 81, "password": PASSWORD}, "A username is 1 to 80"),
        ({"username": "dave", "password": "p" * 1025}, "at most 1,024 characters"),
    ):
        refused = admin.post("/admin/users", data=data)
        assert refused.status_code == 422 and sentence in html(refused.data).get_text()
    assert [u.username for u in _users(app)] == ["root"]
    refused = sign_in(anonymous(app), "root", "p" * 1025)
    assert refused.status_code == 422 and "at most 1,024" in html(refused.data).get_text()


def test_sign_in_goes_nowhere_else_by_a_backslash_or_a_long_next(app: Flask) -> None:
    make_account(app, "bob")
    # Browsers read "/\\evil.example" as "//evil.example", another site.
    for target in ("/\\evil.example/", "/\\/evil.example", "/" + "a" * 3000):
        client = anonymous(app)
        response = client.post(
            "/login", data={"username": "bob", "password": PASSWORD, "next": target}
        )
        assert response.location == "/", target[:20]


def _users(app: Flask) -> list[Any]:
    with app.app_context():
        return accounts.all_users()


def test_search_model_and_tool_fields_have_limits(app: Flask, client: FlaskClient) -> None:
    searched = client.get("/search", query_string={"q": "x" * 201}, headers={"HX-Request": "true"})
    assert "A search is at most 200 characters" in html(searched.data).get_text()
    refused = client.post(
        "/messages",
        data={"content": "Hi", "model": "m" * 100_000},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 422 and len(refused.data) < 2000  # not echoed whole
    assert "There is no model called" in html(refused.data).get_text()
    refused = client.post(
        "/messages",
        data={"content": "Hi", "tools": "t" * 100_000},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 422 and len(refused.data) < 2000


def test_a_nul_character_anywhere_is_refused_with_a_sentence_and_nothing_is_stored(
    app: Flask, client: FlaskClient
) -> None:
    """PostgreSQL cannot store U+0000 in text: every route refuses it before reading on."""
    said = "holds a NUL character"
    for posted in (
        client.post("/messages", data={"content": "Hi\x00there"}, headers={"HX-Request": "true"}),
        client.post("/messages", data={"content": "Hi", "system_prompt": "be\x00brief"}),
        client.post("/projects", data={"name": "Acme\x00"}),
        client.post(
            "/attachments",
            data={"file": (io.BytesIO(b"notes"), "notes\x00.txt")},
            headers={"HX-Request": "true"},
        ),
    ):
        assert posted.status_code == 400 and said in html(posted.data).get_text()
    searched = client.get("/search", query_string={"q": "x\x00"})
    assert searched.status_code == 400 and said in html(searched.data).get_text()
    with app.app_context():
        for table in ("message", "conversation", "project", "attachment"):
            assert db.session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0
    assert client.post("/messages", data={"content": "Hi there"}).status_code in (200, 303)


# -- 6. Small ones --------------------------------------------------------------------------------


def test_unknown_and_password_less_names_cost_a_hash_too(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_account(app, "bob")
    user_id(app, "proxy-only")  # made without a password
    checked: list[str] = []
    real = accounts.check_password_hash

    def counting(pwhash: str, password: str) -> bool:
        checked.append(password)
        return real(pwhash, password)

    monkeypatch.setattr(accounts, "check_password_hash", counting)
    with app.app_context():
        for name in ("nobody", "proxy-only", "bob"):
            assert accounts.check(name, "guess") is None
    assert checked == ["guess", "guess", "guess"]


BAD_IDS = ["1" + "0" * 24, "²", "١٢", "-1", "1.0", "0x10", "9" * 11, str(2**31)]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_ids_that_are_no_ids_answer_404_on_every_route(
    app: Flask, client: FlaskClient, bad: str
) -> None:
    walked = 0
    for rule in app.url_map.iter_rules():
        if not rule.arguments or rule.endpoint == "static":
            continue
        with app.test_request_context():
            url = url_for(rule.endpoint, **{name: 1 for name in rule.arguments})
        url = re.sub(r"/1(?=/|$|\.)", "/" + bad, url, count=1)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method, data={"content": "x"})
            assert response.status_code == 404, f"{method} {url}: {response.status_code}"
            walked += 1
    assert walked >= 14


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_form_id_that_is_no_id_answers_400(client: FlaskClient, bad: str) -> None:
    response = client.post(
        "/messages", data={"content": "Hi", "conversation_id": bad}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize("bad", ["²", "1" + "0" * 24, "-5", "abc"])
def test_bad_stream_positions_answer_400_before_the_stream_starts(
    app: Flask, client: FlaskClient, upstream: FakeUpstream, bad: str
) -> None:
    upstream.push(Scenario(text="Done."))
    fragment = send(client, "Hello")
    answer = stream_url(fragment).split("?")[0]
    read_events(client, stream_url(fragment))
    conversation = int(fragment.select_one("#conversation-id")["value"])
    message = int(answer.split("/")[2])
    events = f"/conversations/{conversation}/events"
    for url, headers in (
        (f"{events}?after={bad}", {}),
        (events, {"Last-Event-ID": bad}),
        (f"{events}?last_event_id={bad}", {}),
        (f"{answer}?from={bad}", {}),
        (answer, {"Last-Event-ID": f"{message}:{bad}"}),
        (answer, {"Last-Event-ID": f"{bad}:5"}),
        (f"{answer}?last_event_id={message}:{bad}", {}),
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 400, f"{url} {headers}: {response.status_code}"
    # Good values still stream: another message's id is passed over, as before.
    assert read_events(client, answer, {"Last-Event-ID": "999:5"})[-1]["event"] == "done"


def test_metrics_only_for_the_allowed_addresses(configured: Configure) -> None:
    app = configured()
    assert app.test_client().get("/metrics").status_code == 200  # loopback
    outside = app.test_client(user=None)
    outside.environ_base["REMOTE_ADDR"] = "203.0.113.5"
    assert outside.get("/metrics").status_code == 404
    behind_proxy = configured(PROXY_COUNT=1, METRICS_ALLOW="10.0.0.0/8")
    through = behind_proxy.test_client(user=None)
    through.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.5"
    assert through.get("/metrics").status_code == 404  # from outside, through the proxy
    through.environ_base["HTTP_X_FORWARDED_FOR"] = "10.1.2.3"
    assert through.get("/metrics").status_code == 200


def nginx_blocks(conf: str) -> list[tuple[str, str]]:
    """(head, body) of each `location` block of the nginx sample."""
    found = []
    for match in re.finditer(r"location\s+([^{]+)\{", conf):
        depth, start = 1, match.end()
        end = start
        while depth:
            end += 1
            depth += {"{": 1, "}": -1}.get(conf[end - 1], 0)
        found.append((match.group(1).strip(), conf[start : end - 1]))
    return found


def test_the_nginx_sample_hides_metrics_and_clears_the_user_header() -> None:
    conf = re.sub(r"#[^\n]*", "", (ROOT / "deploy/nginx/chatapp.conf").read_text())
    locations = dict(nginx_blocks(conf))
    assert re.search(r"return\s+404\s*;", locations["= /metrics"])
    # Set once for the server: every location inherits it, as none sets proxy_set_header itself
    # (one that did would inherit none of the server's).
    assert re.search(r'proxy_set_header\s+X-Remote-User\s+""\s*;', conf)
    for head, body in locations.items():
        if "proxy_set_header" in body:
            assert re.search(r'proxy_set_header\s+X-Remote-User\s+""', body), head
    assert sum("proxy_pass" in body for body in locations.values()) >= 3


def test_the_proxy_names_the_admins(configured: Configure) -> None:
    app = configured(ADMINS="Root, ops")
    assert app.test_client(user="root").get("/admin/users").status_code == 200
    assert app.test_client(user="erin").get("/admin/users").status_code == 404
    with app.app_context():
        erin = accounts.find("erin")
        assert erin is not None
        accounts.set_admin(erin, True)  # made admin by hand, but not on the list
    assert app.test_client(user="erin").get("/admin/users").status_code == 404
    without_list = configured()
    assert without_list.test_client(user="erin").get("/admin/users").status_code == 404


def test_names_are_unique_whatever_their_case(app: Flask) -> None:
    make_account(app, "ann")
    with app.app_context(), pytest.raises(accounts.AccountError, match="already an account"):
        accounts.create("ANN", PASSWORD)
    assert sign_in(anonymous(app), "Ann").status_code == 302  # signs in as ann
    assert app.test_client(user="ANN").get("/").status_code == 200  # and is ann by proxy too
    assert [u.username for u in _users(app)] == ["ann"]


def test_two_first_visits_at_once_make_one_admin(app: Flask) -> None:
    """Worker A is making the first admin (its row written, not yet committed) when worker B
    starts making another: B waits for A, then is told there is an account now."""
    pool = ThreadPool(1)  # B runs in a real thread: SQLite's wait for a lock blocks its thread
    with app.app_context():
        a = db.engine.connect()
        transaction = a.begin()
        if db.engine.dialect.name == "postgresql":
            a.execute(text("LOCK TABLE user_account IN SHARE ROW EXCLUSIVE MODE"))
        a.execute(
            text(
                "INSERT INTO user_account (username, username_lower, password_hash, is_admin, "
                "disabled, created_at, session_version) "
                "VALUES ('ann', 'ann', '!', true, false, CURRENT_TIMESTAMP, 0)"
            )
        )
        started = threading.Event()

        def second_visit() -> str:
            with app.app_context():
                started.set()
                try:
                    accounts.create_first_admin("bob", PASSWORD)
                except accounts.AccountError as exc:
                    return str(exc)
                return "bob was made too"

        b = pool.spawn(second_visit)
        started.wait(5)
        gevent.sleep(0.3)
        transaction.commit()
        a.close()
        outcome = b.get(timeout=10)
    pool.kill()
    assert "first admin was created meanwhile" in outcome
    assert [u.username for u in _users(app)] == ["ann"]


def test_the_sqlite_file_and_instance_are_their_owners_only(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    config = dict(defaults.DEFAULTS)  # no database URL, no secret key: both made in instance/
    defaults.normalise(config, str(instance))
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert stat.S_IMODE((instance / "secret_key").stat().st_mode) == 0o600

    path = tmp_path / "data" / "chat.sqlite"
    app = create_app(
        {"SECRET_KEY": "test", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "TESTING": True}
    )
    with app.app_context():
        from flask_migrate import upgrade

        upgrade()
        db.engine.dispose()
    for made in (path, Path(f"{path}-wal")):
        if made.exists():
            assert stat.S_IMODE(made.stat().st_mode) == 0o600, made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
