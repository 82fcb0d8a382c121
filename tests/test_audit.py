"""The audit log: sign-ins (failed ones with the name typed and the address), sign-outs,
account changes from the admin pages, /setup, the trusted proxy and `flask users`, deleted
and exported conversations; never a word of a conversation. Admins read it at /admin/audit
(filtered, paged) and `flask audit` prints it; nobody else sees it."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from chatapp import audit, retention
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.models import AuditEvent, utcnow

from .conftest import Configure, html, read_events, send, stream_url, user_id
from .test_accounts import PASSWORD, anonymous, make_account, sign_in

COLUMNS = ("kind", "user_id", "username", "target_id", "detail", "address")


def logged(app: Flask, **where: Any) -> list[dict[str, Any]]:
    """The audit log's rows, oldest first (those matching `where`), as dicts."""
    with app.app_context():
        query = select(AuditEvent).filter_by(**where).order_by(AuditEvent.id)
        return [{c: getattr(e, c) for c in ("id", *COLUMNS)} for e in db.session.scalars(query)]


def last(app: Flask, kind: str) -> dict[str, Any]:
    rows = logged(app, kind=kind)
    assert rows, f"no {kind} in the audit log"
    return rows[-1]


def admin_client(app: Flask, name: str = "root") -> FlaskClient:
    make_account(app, name, admin=True)
    return app.test_client(user=name)


def test_sign_ins_failed_ones_and_sign_outs_are_recorded_with_where_from(app: Flask) -> None:
    make_account(app, "bob")
    bob_id = user_id(app, "bob")
    client = anonymous(app)
    away = {"REMOTE_ADDR": "203.0.113.9"}

    client.post("/login", data={"username": " bob ", "password": "guess"}, environ_base=away)
    failed = last(app, "sign_in_failed")
    # The name typed, not the account: nobody proved to be bob.
    assert failed | {"id": 0} == {
        "id": 0,
        "kind": "sign_in_failed",
        "user_id": None,
        "username": "bob",
        "target_id": None,
        "detail": "",
        "address": "203.0.113.9",
    }
    # A name that breaks the username rule is refused before it is looked up: no attempt.
    refused = client.post("/login", data={"username": "x" * 5000, "password": "guess"})
    assert refused.status_code == 422
    assert last(app, "sign_in_failed")["username"] == "bob"

    assert sign_in(client, "bob").status_code == 302
    signed_in = last(app, "sign_in")
    assert (signed_in["user_id"], signed_in["username"], signed_in["address"]) == (
        bob_id,
        "bob",
        "127.0.0.1",
    )
    assert client.post("/logout").status_code == 302
    assert (last(app, "sign_out")["user_id"], last(app, "sign_out")["username"]) == (bob_id, "bob")
    assert [row["kind"] for row in logged(app, username="bob")] == [
        "sign_in_failed",
        "sign_in",
        "sign_out",
    ]


def test_account_changes_on_the_admin_pages_are_recorded(app: Flask) -> None:
    admin = admin_client(app)
    root_id = user_id(app, "root")
    admin.post("/admin/users", data={"username": "dave", "password": PASSWORD, "admin": "on"})
    refused = admin.post("/admin/users", data={"username": "dave", "password": PASSWORD})
    assert refused.status_code == 422
    dave_id = user_id(app, "dave")
    admin.post(f"/admin/users/{dave_id}/disable")
    admin.post(f"/admin/users/{dave_id}/enable")

    rows = [r for r in logged(app, user_id=root_id)]
    assert [(r["kind"], r["target_id"], r["detail"]) for r in rows] == [
        ("user_created", dave_id, "dave (admin)"),  # the refused duplicate is not
        ("user_disabled", dave_id, "dave"),
        ("user_enabled", dave_id, "dave"),
    ]
    assert {(r["username"], r["address"]) for r in rows} == {("root", "127.0.0.1")}


def test_the_first_admin_and_accounts_made_by_the_trusted_proxy_are_recorded(
    app: Flask,
) -> None:
    client = anonymous(app)
    client.post("/setup", data={"username": "ann", "password": PASSWORD})
    ann = last(app, "user_created")
    ann_id = user_id(app, "ann")
    assert (ann["user_id"], ann["username"], ann["target_id"]) == (ann_id, "ann", ann_id)
    assert ann["detail"] == "ann (admin)"

    app.test_client(user="erin").get("/")  # made on first sight
    app.test_client(user="erin").get("/")  # and only then
    erin = logged(app, kind="user_created", target_id=user_id(app, "erin"))
    assert len(erin) == 1
    assert erin[0]["username"] is None and erin[0]["address"] == "127.0.0.1"
    assert erin[0]["detail"] == "erin, named by the trusted proxy's X-Remote-User"


def test_the_users_command_is_recorded_as_the_command_line(app: Flask) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "create", "carol"], input=PASSWORD + "\n").exit_code == 0
    assert runner.invoke(args=["users", "disable", "carol"]).exit_code == 0
    assert runner.invoke(args=["users", "enable", "carol"]).exit_code == 0
    reset = runner.invoke(args=["users", "reset-password", "carol"], input="new password!\n")
    assert reset.exit_code == 0
    runner.invoke(args=["users", "reset-password", "carol"], input="short\n")  # refused

    carol = user_id(app, "carol")
    rows = logged(app, target_id=carol)
    assert [r["kind"] for r in rows] == [
        "user_created",
        "user_disabled",
        "user_enabled",
        "password_reset",
    ]
    assert {(r["user_id"], r["username"], r["address"]) for r in rows} == {
        (None, None, audit.command_line())
    }
    assert audit.command_line().startswith("cli:")
    assert PASSWORD not in str(rows) and "new password!" not in str(rows)


def test_deleted_and_exported_conversations_are_recorded_without_their_text(
    app: Flask, client: FlaskClient, upstream: FakeUpstream
) -> None:
    upstream.push(Scenario(text="The launch code is swordfish."))
    fragment = send(client, "Tell me the launch code for Project Bluebird")
    read_events(client, stream_url(fragment))
    conversation = int(fragment.select_one("#conversation-id")["value"])
    base = f"/conversations/{conversation}"
    assert client.get(f"{base}/export.md").status_code == 200
    assert client.get(f"{base}/export.json").status_code == 200
    assert client.post(f"{base}/delete").status_code == 303

    alice = user_id(app)
    rows = logged(app, user_id=alice)
    assert [(r["kind"], r["target_id"], r["detail"]) for r in rows] == [
        ("export", conversation, "Markdown"),
        ("export", conversation, "JSON"),
        ("conversation_deleted", conversation, ""),
    ]
    everything = str(logged(app)).lower()
    for word in ("swordfish", "launch", "bluebird"):
        assert word not in everything


def test_the_audit_page_is_for_admins_only(app: Flask, client: FlaskClient) -> None:
    admin = admin_client(app)
    page = html(admin.get("/admin/audit").data)
    assert page.select_one("h1").get_text() == "Audit log"
    # Linked from the other admin pages and the sidebar.
    for path in ("/admin/users", "/admin/usage", "/"):
        assert html(admin.get(path).data).select_one('a[href="/admin/audit"]') is not None, path

    assert client.get("/admin/audit").status_code == 404  # alice is no admin
    assert client.get("/admin/audit?kind=sign_in").status_code == 404
    assert html(client.get("/").data).select_one('a[href="/admin/audit"]') is None
    assert anonymous(app).get("/admin/audit").location.endswith("/login")


def test_the_audit_page_filters_by_person_and_kind_and_pages_through_everything(
    app: Flask,
) -> None:
    admin = admin_client(app)
    with app.app_context():
        for n in range(130):
            who = ("bob", "carol", "dave")[n % 3]
            kind = "sign_in" if n % 2 else "sign_in_failed"
            with app.test_request_context(environ_base={"REMOTE_ADDR": f"10.0.0.{n % 7}"}):
                audit.record(kind, actor=who)
    everyone = [row["id"] for row in logged(app)][::-1]

    def walk(query: str) -> list[int]:
        """Every event id the page shows, following Older to the end."""
        seen: list[int] = []
        url = f"/admin/audit?{query}"
        while url:
            response = admin.get(url)
            assert response.status_code == 200
            page = html(response.data)
            seen += [int(tr["id"].removeprefix("event-")) for tr in page.select("tbody tr")]
            older = page.select_one('a[rel="next"]')
            url = older["href"] if older else ""
        return seen

    assert walk("") == everyone
    with app.app_context():
        bobs = [
            e.id
            for e in db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.username == "bob")
                .order_by(AuditEvent.id.desc())
            )
        ]
    assert walk("user=bob") == bobs and len(bobs) == 44
    failed_carol = [r["id"] for r in logged(app, username="carol", kind="sign_in_failed")][::-1]
    assert walk("user=carol&kind=sign_in_failed") == failed_carol
    shown = html(admin.get("/admin/audit?user=carol&kind=sign_in_failed").data)
    assert {td.get_text() for td in shown.select("tbody td:nth-of-type(3)")} == {"Sign-in failed"}
    assert {td.get_text() for td in shown.select("tbody td:nth-of-type(2)")} == {"carol"}
    assert shown.select_one("#audit-kind option[selected]")["value"] == "sign_in_failed"

    unknown = admin.get("/admin/audit?kind=drop_tables")
    assert unknown.status_code == 400
    assert "no kind of event called 'drop_tables'" in html(unknown.data).get_text()
    for bad in ("before=abc", "after=-1", "before=" + "9" * 40, "before=²"):
        response = admin.get(f"/admin/audit?{bad}")
        assert response.status_code == 400, bad
        assert "must be an event number" in html(response.data).get_text()
    assert "No events match" in html(admin.get("/admin/audit?user=nobody").data).get_text()


def test_paging_back_with_newer_shows_the_page_before(app: Flask) -> None:
    admin = admin_client(app)
    with app.app_context():
        for _ in range(120):
            audit.record("sign_in", actor="bob")
    ids = [row["id"] for row in logged(app, kind="sign_in")][::-1]

    def shown(url: str) -> tuple[list[int], Any]:
        page = html(admin.get(url).data)
        return [int(tr["id"].removeprefix("event-")) for tr in page.select("tbody tr")], page

    first, page = shown("/admin/audit?kind=sign_in")
    assert first == ids[:50] and page.select_one('a[rel="prev"]') is None
    second, page = shown(page.select_one('a[rel="next"]')["href"])
    assert second == ids[50:100]
    third, page = shown(page.select_one('a[rel="next"]')["href"])
    assert third == ids[100:] and page.select_one('a[rel="next"]') is None
    again, page = shown(page.select_one('a[rel="prev"]')["href"])
    assert again == second
    again, page = shown(page.select_one('a[rel="prev"]')["href"])
    assert again == first and page.select_one('a[rel="prev"]') is None


def test_the_audit_command_prints_the_log_with_filters(app: Flask) -> None:
    runner = app.test_cli_runner()
    runner.invoke(args=["users", "create", "bob"], input=PASSWORD + "\n")
    for password in ("guess", "again", PASSWORD):
        sign_in(anonymous(app), "bob", password)

    printed = runner.invoke(args=["audit", "--user", "bob"])
    assert printed.exit_code == 0, printed.output
    lines = [line.split("\t") for line in printed.output.splitlines()]
    assert [line[2] for line in lines] == ["sign_in", "sign_in_failed", "sign_in_failed"]
    assert {(line[3], line[5]) for line in lines} == {("bob", "127.0.0.1")}
    assert all(len(line) == 7 for line in lines)

    limited = runner.invoke(args=["audit", "--kind", "sign_in_failed", "--limit", "1"])
    assert [line.split("\t")[2] for line in limited.output.splitlines()] == ["sign_in_failed"]
    older = runner.invoke(args=["audit", "--user", "bob", "--before", lines[1][0]])
    assert [line.split("\t")[0] for line in older.output.splitlines()] == [lines[2][0]]

    created = runner.invoke(args=["audit", "--kind", "user_created"])
    bob = [line.split("\t") for line in created.output.splitlines()][0]
    made = ("-", f"account {user_id(app, 'bob')}", audit.command_line(), "bob")
    assert (bob[3], bob[4], bob[5], bob[6]) == made

    unknown = runner.invoke(args=["audit", "--kind", "nonsense"])
    assert unknown.exit_code != 0 and "there is no kind 'nonsense'" in unknown.output
    assert runner.invoke(args=["audit", "--limit", "0"]).exit_code != 0


def test_only_known_kinds_are_recorded(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError, match="add it to chatapp.audit.KINDS"):
        audit.record("sign_inn", actor=None)


def test_audit_events_older_than_their_retention_go_a_batch_at_a_time(
    configured: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    app = configured(AUDIT_RETAIN_DAYS=30)
    with app.app_context():
        old = utcnow() - timedelta(days=31)
        db.session.add_all(
            AuditEvent(kind="sign_in", username=f"old-{n}", created_at=old, detail="")
            for n in range(25)
        )
        db.session.commit()
        audit.record("sign_in", actor="recent")
    monkeypatch.setattr(retention, "AUDIT_EVENTS_PER_BATCH", 4)
    monkeypatch.setattr(retention, "BATCHES_PER_SWEEP", 3)
    assert retention.sweep(app) == (0, 12)
    assert retention.sweep(app) == (0, 12)
    assert retention.sweep(app) == (0, 1)
    assert retention.sweep(app) == (0, 0)
    assert [row["username"] for row in logged(app, kind="sign_in")] == ["recent"]


def test_retention_settings_must_be_days(configured: Configure) -> None:
    for bad in ("soon", -1, "nan"):
        with pytest.raises(ValueError, match="must be a number of days"):
            configured(RETAIN_DAYS=bad)
    assert configured(AUDIT_RETAIN_DAYS="365").config["AUDIT_RETAIN_DAYS"] == 365.0
