"""Backups: `flask backup PATH` copies the SQLite database, attachments included, while the
app serves; `flask restore PATH` checks a backup and puts it back on a stopped instance,
upgrading an older schema, and refuses while chatapp runs; an old backup's files directory is
ignored, and restore says so. PostgreSQL: both commands say what to run instead. The last test
backs up a real gunicorn under live streaming load (questions with files among them), restores
it into a fresh instance and serves every file from there."""

from __future__ import annotations

import io
import json
import os
import random
import sqlite3
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from alembic.script import ScriptDirectory
from bs4 import BeautifulSoup
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from PIL import Image
from pypdf import PdfWriter
from sqlalchemy import select

from chatapp import backup, create_app
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.models import Attachment, AuditEvent, Message
from chatapp.render import anchors
from chatapp.streaming import streams

from .conftest import SignedInClient, app_config, html, read_events, send, stream_url
from .helpers import answer_id, wait_finished
from .server import _INHERITED_SETTINGS, BIN, ROOT, USER, app_server
from .test_attachments import ask, uploaded
from .test_gunicorn import SOCKET_TIMEOUT, Browser

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgresql")
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="copies SQLite files; see the pg_dump test")
HEAD = ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def png(seed: int, width: int = 320, height: int = 240) -> bytes:
    """A PNG of noise (which does not compress): `seed` makes each one different."""
    pixels = random.Random(seed).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, "PNG")
    return buffer.getvalue()


def pdf(seed: int, pages: int = 2) -> bytes:
    """A small PDF whose title says `seed`, so that each one is different."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=300, height=400)
    writer.add_metadata({"/Title": f"Report {seed}"})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def text_file(seed: int) -> bytes:
    return f"Notes {seed}: naïve café — 日本語 🌍\r\nname,count\nfoo,{seed}\n".encode()


def three_files(seed: int) -> list[tuple[str, bytes]]:
    """An image, a PDF and a text file, as a person would attach them."""
    return [
        (f"chart-{seed}.png", png(seed)),
        (f"report-{seed}.pdf", pdf(seed)),
        (f"notes-{seed}.txt", text_file(seed)),
    ]


def messages(app: Flask) -> dict[int, tuple[str, str, str]]:
    with app.app_context():
        return {m.id: (m.role, m.status, m.content) for m in db.session.scalars(select(Message))}


def attachments(app: Flask) -> dict[int, tuple[int, int | None, str, str, bytes]]:
    """id -> (owner, message, name, media type, bytes) of every attachment."""
    with app.app_context():
        rows = db.session.execute(
            select(
                Attachment.id,
                Attachment.user_id,
                Attachment.message_id,
                Attachment.name,
                Attachment.media_type,
                Attachment.data,
            )
        )
        return {row[0]: tuple(row[1:]) for row in rows}  # type: ignore[misc]


def audit_kinds(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.kind).order_by(AuditEvent.id)))


@pytest.fixture
def unmigrated(tmp_path: Path, upstream: FakeUpstream) -> Iterator[Any]:
    """Make apps on an SQLite file of their own that nothing has created yet."""
    made: list[Flask] = []

    def make(name: str, **overrides: Any) -> Flask:
        home = tmp_path / name
        config = app_config(
            tmp_path, upstream, SQLALCHEMY_DATABASE_URI=f"sqlite:///{home / 'chatapp.sqlite'}"
        )
        config.update(overrides)
        made.append(create_app(config))
        made[-1].test_client_class = SignedInClient
        return made[-1]

    yield make
    for app in made:
        streams(app).shutdown()
        with app.app_context():
            db.engine.dispose()


def chat(client: FlaskClient, upstream: FakeUpstream, *answers: str) -> None:
    upstream.push(*(Scenario(text=text) for text in answers))
    for n, _ in enumerate(answers):
        read_events(client, stream_url(send(client, f"Question {n}")))


@sqlite_only
def test_a_backup_restores_into_a_fresh_instance_with_every_attachment(
    configured: Any, unmigrated: Any, tmp_path: Path, upstream: FakeUpstream
) -> None:
    app = configured()
    client = app.test_client()
    chat(client, upstream, "One <b>answer</b> — naïve 🌍.", "Another answer.")
    files = three_files(1)
    ids = [uploaded(client, name, data) for name, data in files]
    wait_finished(app, answer_id(html(ask(client, "What do these say?", ids).data)))
    pending = uploaded(client, "not-sent-yet.txt", b"chosen, not sent")  # kept too
    size = sum(len(data) for _, data in files) + len(b"chosen, not sent")
    target = tmp_path / "backups" / "monday"
    target.parent.mkdir()

    made = app.test_cli_runner().invoke(args=["backup", str(target)])
    assert made.exit_code == 0, made.output
    assert f"schema {HEAD}, 4 attachments of {size:,} bytes) to {target}." in made.output
    assert sorted(p.name for p in target.iterdir()) == ["backup.json", "database.sqlite"]
    assert stat.S_IMODE((target / "database.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    manifest = json.loads((target / "backup.json").read_text())
    assert {key: manifest[key] for key in ("format", "revision", "attachments")} == {
        "format": 2,
        "revision": HEAD,
        "attachments": 4,
    }
    assert manifest["attachment_bytes"] == size
    assert audit_kinds(app)[-1] == "admin_backup"
    assert list(target.parent.iterdir()) == [target]  # nothing half-made left beside it

    fresh = unmigrated("fresh")
    restored = fresh.test_cli_runner().invoke(args=["restore", str(target)])
    assert restored.exit_code == 0, restored.output
    assert f"Restored {target} (schema {HEAD}, 4 attachments of {size:,} bytes)" in restored.output
    assert "kept at" not in restored.output and "files directory" not in restored.output
    assert messages(fresh) == messages(app) and len(messages(app)) == 6
    assert attachments(fresh) == attachments(app) and len(attachments(app)) == 4
    assert audit_kinds(fresh)[-1] == "admin_restore"
    assert "admin_backup" not in audit_kinds(fresh)  # recorded once the copy was made
    page = html(fresh.test_client().get("/").data)
    assert len(page.select(".sidebar__list a")) == 3
    # The restored instance serves each file to its owner, and to nobody else.
    owner, stranger = fresh.test_client(), fresh.test_client(user="bob")
    sent = [*files, ("not-sent-yet.txt", b"chosen, not sent")]
    for file_id, (name, data) in zip([*ids, pending], sent, strict=True):
        served = owner.get(f"/attachments/{file_id}/download")
        assert served.status_code == 200 and served.data == data, name
        assert stranger.get(f"/attachments/{file_id}").status_code == 404

    # Restored again over it: what it replaces is kept beside it.
    again = fresh.test_cli_runner().invoke(args=["restore", str(target)])
    assert again.exit_code == 0, again.output
    beside = sorted(p.name for p in (tmp_path / "fresh").iterdir())
    assert any(name.startswith("chatapp.sqlite.before-restore-") for name in beside), beside
    assert messages(fresh) == messages(app)
    assert attachments(fresh) == attachments(app)


@sqlite_only
def test_a_backup_made_with_a_files_directory_restores_its_database_and_ignores_the_files(
    configured: Any, unmigrated: Any, tmp_path: Path, upstream: FakeUpstream
) -> None:
    app = configured()
    chat(app.test_client(), upstream, "From before attachments were kept in the database.")
    old = tmp_path / "old"
    assert app.test_cli_runner().invoke(args=["backup", str(old)]).exit_code == 0
    # As the previous chatapp wrote it: format 1, a copy of CHATAPP_FILES_DIR, its count.
    manifest = json.loads((old / "backup.json").read_text())
    for key in ("attachments", "attachment_bytes"):
        del manifest[key]
    manifest.update(format=1, files=2)
    (old / "backup.json").write_text(json.dumps(manifest))
    (old / "files" / "2026").mkdir(parents=True)
    (old / "files" / "a.txt").write_text("first file")
    (old / "files" / "2026" / "b.bin").write_bytes(bytes(range(256)))

    fresh = unmigrated("fresh")
    restored = fresh.test_cli_runner().invoke(args=["restore", str(old)])
    assert restored.exit_code == 0, restored.output
    assert f"Restored {old} (schema {HEAD}, 0 attachments of 0 bytes)" in restored.output
    assert (
        f"The backup's files directory ({old / 'files'}, 2 files) is ignored: chatapp keeps no "
        "files outside its database (attachments are in it), so nothing was put back from there."
    ) in " ".join(restored.output.split())
    assert messages(fresh) == messages(app)
    # Nothing was put anywhere but the database (and its lock and log).
    beside = [p.name for p in (tmp_path / "fresh").iterdir()]
    assert all(name.startswith("chatapp.sqlite") for name in beside), beside


@sqlite_only
def test_restore_checks_the_backup_and_refuses_a_running_instance(
    configured: Any, unmigrated: Any, tmp_path: Path, upstream: FakeUpstream
) -> None:
    app = configured()
    chat(app.test_client(), upstream, "Kept through every refusal.")
    good = tmp_path / "good"
    runner = app.test_cli_runner()
    assert runner.invoke(args=["backup", str(good)]).exit_code == 0

    existing = runner.invoke(args=["backup", str(good)])
    assert existing.exit_code != 0 and "exists already" in existing.output
    nowhere = runner.invoke(args=["backup", str(tmp_path / "missing" / "b")])
    assert nowhere.exit_code != 0 and "is not a directory" in nowhere.output

    other = unmigrated("other")
    (tmp_path / "other").mkdir(exist_ok=True)
    with other.app_context():
        upgrade()
    chat(other.test_client(), upstream, "The instance being restored onto.")
    before = messages(other)
    restore = other.test_cli_runner()

    def refused(path: Path, reason: str) -> None:
        result = restore.invoke(args=["restore", str(path)])
        assert result.exit_code != 0, result.output
        assert "Nothing was restored" in result.output and reason in result.output, result.output
        assert messages(other) == before

    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "holds no database.sqlite")
    (tmp_path / "notes.txt").write_text("not a database at all " * 100)
    refused(tmp_path / "notes.txt", "is not an SQLite database, or it is damaged")
    with sqlite3.connect(tmp_path / "another.db") as connection:
        connection.execute("CREATE TABLE recipes (name TEXT)")
    connection.close()
    refused(tmp_path / "another.db", "is not a chatapp database (no such table: alembic_version)")

    newer = tmp_path / "newer.sqlite"
    newer.write_bytes((good / "database.sqlite").read_bytes())
    with sqlite3.connect(newer) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'fe0fe0fe0fe0'")
    refused(newer, "newer than this chatapp's")

    damaged = tmp_path / "damaged.sqlite"
    body = bytearray((good / "database.sqlite").read_bytes())
    page = 4096
    body[3 * page : 5 * page] = b"\xa5" * (2 * page)  # the middle of some tables
    damaged.write_bytes(bytes(body))
    refused(damaged, "damaged (database disk image is malformed)")

    # A backup's manifest that says a newer format, or nothing this chatapp can read.
    manifest = json.loads((good / "backup.json").read_text())
    for name, said, reason in [
        (
            "future",
            json.dumps({**manifest, "format": 3}),
            "is a backup of format 3, made by a newer chatapp (this one reads formats 1 to 2)",
        ),
        ("garbled", '{"format": 2, "revi', "backup.json cannot be read (Unterminated string"),
        ("formatless", json.dumps({"revision": HEAD}), "does not say the backup's format"),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "database.sqlite").write_bytes((good / "database.sqlite").read_bytes())
        (tmp_path / name / "backup.json").write_text(said)
        refused(tmp_path / name, reason)
    refused(tmp_path / "garbled", f"give {tmp_path / 'garbled' / 'database.sqlite'}")

    # A server holds the lock from its start (gunicorn.conf.py); here, this process does.
    backup.hold_serving_lock(other)
    try:
        refused(good, "chatapp is running on")
    finally:
        other.extensions.pop("chatapp.serving_lock").close()
    # Any other program with the database open: SQLite notices.
    with other.app_context():
        database = backup.sqlite_file()
    assert database is not None
    holder = sqlite3.connect(database)
    holder.execute("SELECT count(*) FROM message").fetchall()
    try:
        refused(good, "Another program has")
    finally:
        holder.close()

    done = restore.invoke(args=["restore", str(good)])
    assert done.exit_code == 0, done.output
    assert messages(other) == messages(app)


@sqlite_only
def test_restore_upgrades_a_backup_of_an_older_schema(
    unmigrated: Any, configured: Any, tmp_path: Path
) -> None:
    older = unmigrated("older")
    (tmp_path / "older").mkdir(exist_ok=True)
    with older.app_context():
        upgrade(revision="c3e8b6d2a5f1")  # before the audit log
        database = backup.sqlite_file()
    assert database is not None
    with sqlite3.connect(database) as connection:
        connection.execute(
            "INSERT INTO user_account (id, username, password_hash, is_admin, disabled, "
            "created_at) VALUES (1, 'ann', '!', 1, 0, '2026-01-01 00:00:00')"
        )
        connection.execute(
            "INSERT INTO conversation (id, user_id, title, model, system_prompt, tools, thinking,"
            " thinking_budget, created_at, updated_at) VALUES (1, 1, 'Old', 'claude-sonnet-4-6',"
            " '', '', 0, 4096, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
        )
    with older.app_context():
        db.engine.dispose()
    made = backup.write_backup(database, tmp_path / "old-backup")
    assert (made.attachments, made.attachment_bytes) == (0, 0)  # no attachment table yet

    app = configured()
    result = app.test_cli_runner().invoke(args=["restore", str(tmp_path / "old-backup")])
    assert result.exit_code == 0, result.output
    assert "(schema c3e8b6d2a5f1, 0 attachments of 0 bytes)" in result.output
    with app.app_context():
        database = backup.sqlite_file()
    with sqlite3.connect(database) as connection:  # type: ignore[arg-type]
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert connection.execute("SELECT title FROM conversation").fetchall() == [("Old",)]
    connection.close()
    assert audit_kinds(app) == ["admin_restore"]

    # An older backup whose upgrade fails (here: a table in the way) leaves things as they were.
    blocked = tmp_path / "blocked.sqlite"
    blocked.write_bytes((tmp_path / "old-backup" / "database.sqlite").read_bytes())
    with sqlite3.connect(blocked) as connection:
        connection.execute("CREATE TABLE audit_event (id INTEGER PRIMARY KEY)")
    connection.close()
    failed = app.test_cli_runner().invoke(args=["restore", str(blocked)])
    assert failed.exit_code != 0
    assert "Nothing was restored: Upgrading the restored database failed" in failed.output
    assert audit_kinds(app) == ["admin_restore"]  # the same database as before
    with sqlite3.connect(database) as connection:  # type: ignore[arg-type]
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert connection.execute("SELECT title FROM conversation").fetchall() == [("Old",)]
    connection.close()
    assert not [p.name for p in database.parent.iterdir() if "restoring" in p.name]  # type: ignore[union-attr]


def test_the_copy_lets_the_workers_other_greenlets_run_between_its_steps(tmp_path: Path) -> None:
    source = tmp_path / "big.sqlite"
    with sqlite3.connect(source) as connection:
        connection.execute("CREATE TABLE t (x TEXT)")
        connection.executemany("INSERT INTO t VALUES (?)", [("x" * 4000,) for _ in range(2000)])
    connection.close()
    with sqlite3.connect(source) as connection:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.close()
    steps = -(-pages // backup.PAGES_PER_STEP)
    assert steps >= 5

    ticks = 0

    def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            gevent.sleep(0)

    ticker = gevent.spawn(tick)
    gevent.sleep(0)
    started = ticks
    try:
        backup.copy_database(source, tmp_path / "copy.sqlite")
        during = ticks - started  # the copy itself never leaves this greenlet
    finally:
        ticker.kill()
    assert during >= steps - 1
    with sqlite3.connect(tmp_path / "copy.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (2000,)
    connection.close()


def test_on_postgresql_the_commands_say_how_to_use_pg_dump(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    url = "postgresql://chat:s3cret@db.example:5433/chatapp"
    app = create_app(app_config(tmp_path, upstream, SQLALCHEMY_DATABASE_URI=url))
    try:
        runner = app.test_cli_runner()
        made = runner.invoke(args=["backup", "/backups/monday.dump"])
        assert made.exit_code != 0
        assert (
            "pg_dump --format=custom --file=/backups/monday.dump "
            "postgresql://chat@db.example:5433/chatapp" in made.output
        )
        assert "The dump holds everything chatapp keeps, attachments included." in " ".join(
            made.output.split()
        )
        dump = tmp_path / "monday.dump"
        dump.write_bytes(b"PGDMP")
        restored = runner.invoke(args=["restore", str(dump)])
        assert restored.exit_code != 0
        assert (
            "pg_restore --clean --if-exists --no-owner "
            f"--dbname=postgresql://chat@db.example:5433/chatapp {dump}" in restored.output
        )
        assert "s3cret" not in made.output + restored.output
    finally:
        streams(app).shutdown()


@pytest.mark.skipif(not ON_POSTGRES, reason="the PostgreSQL pass")
def test_the_postgresql_instance_under_test_gets_the_same_advice(app: Flask) -> None:
    made = app.test_cli_runner().invoke(args=["backup", "x.dump"])
    assert made.exit_code != 0 and "pg_dump --format=custom --file=x.dump" in made.output


# -- under live load ------------------------------------------------------------------------

HELD = 3


def held_answer(n: int) -> Scenario:
    """An answer that writes 300 characters, then waits (silently) until it is stopped: caught
    mid-way by the backup however long the machine takes to start the command."""
    text = f"Held answer {n}: " + " ".join(f"word{n}-{i}" for i in range(200)) + f" End {n}."
    return Scenario(text=text, stall_after=300, stall_seconds=600.0)


def post(browser: Browser, path: str) -> int:
    """POST `path` as the page's htmx would; return the status."""
    request = urllib.request.Request(
        browser.base_url + path,
        data=b"",
        headers={"HX-Request": "true", "X-CSRFToken": browser.csrf_token},
        method="POST",
    )
    with browser.opener.open(request, timeout=30) as response:
        return int(response.status)


def command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app wsgi ARGS` in a process of its own, as a sysadmin runs it."""
    return subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def command_env(database: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _INHERITED_SETTINGS and not key.startswith("CHATAPP_")
    }
    env.update(DATABASE_URL=f"sqlite:///{database}", SECRET_KEY="test-secret-key")
    return env


def attach(browser: Browser, name: str, data: bytes) -> int:
    """Upload a file as the composer does (multipart, POST /attachments); its id."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    request = urllib.request.Request(
        browser.base_url + "/attachments",
        data=body,
        headers={
            "HX-Request": "true",
            "X-CSRFToken": browser.csrf_token,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
        method="POST",
    )
    with browser.opener.open(request, timeout=SOCKET_TIMEOUT) as response:
        chip = BeautifulSoup(response.read(), "html.parser")
    field = chip.select_one("input[name=attachment]")
    assert field is not None, chip
    return int(str(field["value"]))


def ask_with(browser: Browser, prompt: str, files: list[int]) -> tuple[int, str]:
    """Send a question with uploaded files in a new conversation, as HTMX posts it; return
    (answer id, stream URL)."""
    form = {"content": prompt, "conversation_id": "", "attachment": [str(i) for i in files]}
    request = urllib.request.Request(
        browser.base_url + "/messages",
        data=urllib.parse.urlencode(form, doseq=True).encode(),
        headers={"HX-Request": "true", "X-CSRFToken": browser.csrf_token},
        method="POST",
    )
    with browser.opener.open(request, timeout=SOCKET_TIMEOUT) as response:
        sent = BeautifulSoup(response.read(), "html.parser")
    assistant = sent.select_one('article[data-role="assistant"]')
    assert assistant is not None and assistant["data-status"] == "streaming"
    return anchors.message_of(str(assistant["id"])), str(assistant["sse-connect"])


def fetch(browser: Browser, path: str) -> tuple[int, str, bytes]:
    """GET `path`: (status, media type, body)."""
    try:
        with browser.opener.open(browser.base_url + path, timeout=SOCKET_TIMEOUT) as response:
            return int(response.status), response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, "", b""


def stored(database: Path) -> dict[int, tuple[str, str]]:
    """id -> (status, content) of every message, read in a connection of its own."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT id, status, content FROM message").fetchall()
    connection.close()
    return {row[0]: (row[1], row[2]) for row in rows}


def stored_files(database: Path) -> dict[int, tuple[int, int | None, str, str, bytes]]:
    """id -> (owner, message, name, media type, bytes) of every attachment."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT id, user_id, message_id, name, media_type, data FROM attachment"
        ).fetchall()
    connection.close()
    return {row[0]: tuple(row[1:]) for row in rows}


def usernames(database: Path) -> dict[int, str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT id, username FROM user_account").fetchall()
    connection.close()
    return dict(rows)


def add_history(database: Path, username: str, conversations: int, answers: int) -> None:
    """Old conversations of `username`'s, so that the copy takes many steps."""
    with sqlite3.connect(database, timeout=10) as connection:
        (owner,) = connection.execute(
            "SELECT id FROM user_account WHERE username = ?", (username,)
        ).fetchone()
        for c in range(conversations):
            cursor = connection.execute(
                "INSERT INTO conversation (user_id, title, model, system_prompt, tools, thinking,"
                " thinking_budget, created_at, updated_at) VALUES (?, ?, 'claude-sonnet-4-6',"
                " '', '', 0, 4096, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                (owner, f"History {c}"),
            )
            connection.executemany(
                "INSERT INTO message (conversation_id, role, content, thinking, status,"
                " created_at, updated_at) VALUES (?, ?, ?, '', 'complete', '2026-01-01 00:00:00',"
                " '2026-01-01 00:00:00')",
                [
                    (cursor.lastrowid, ("user", "assistant")[n % 2], f"{c}-{n} " * 700)
                    for n in range(answers)
                ],
            )
    connection.close()


@pytest.mark.slow  # two real servers
@sqlite_only
def test_a_backup_under_live_streaming_load_restores_every_finished_message_and_attachment(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    served = tmp_path / "x.sqlite"  # where app_server keeps its database
    env = command_env(served)
    target = tmp_path / "backup"
    finished_texts = [f"Finished answer {n}, naïve <b>café</b> 🌍." for n in range(4)]
    upstream.push(*(Scenario(text=text) for text in finished_texts))
    settings = {"CHATAPP_UPSTREAM_IDLE_TIMEOUT": "900"}

    with app_server(tmp_path, upstream=upstream, env=settings) as server:
        assert server.database_url == f"sqlite:///{served}"
        browser = Browser(server.url)
        browser.open_page()
        # Questions with files: an image, a PDF, a text file, then all three at once.
        for n, files in enumerate([[one] for one in three_files(0)] + [three_files(1)]):
            _, url = ask_with(browser, f"Question {n}", [attach(browser, *f) for f in files])
            browser.read_stream(url)
        attach(browser, "chosen-not-sent.png", png(2))  # uploaded, not sent yet
        add_history(served, USER, conversations=40, answers=50)  # about 6 MB

        upstream.push(*(held_answer(n) for n in range(HELD)))
        held = [
            ask_with(browser, f"Held question {n}", [attach(browser, *file)])
            for n, file in enumerate(three_files(3)[:HELD])
        ]
        readers = [gevent.spawn(Browser(server.url).read_stream, url) for _, url in held]
        held_ids = {answer_id for answer_id, _ in held}
        deadline = time.monotonic() + 60
        while not all(
            status == "streaming" and len(content) >= 300
            for i, (status, content) in stored(served).items()
            if i in held_ids
        ):
            assert time.monotonic() < deadline, "the held answers never got under way"
            gevent.sleep(0.1)

        # Load while the backup runs: every 0.2 s a file uploaded and a question sent with it
        # (answered by the fake's demo reply), as someone else.
        backing_up = True
        loaded: list[int] = []

        def load() -> None:
            visitor = Browser(server.url, user="loader")
            visitor.open_page()
            n = 0
            while backing_up:
                name, data = three_files(100 + n)[n % 3]
                loaded.append(attach(visitor, name, data))
                ask_with(visitor, f"Load {n}", loaded[-1:])
                n += 1
                gevent.sleep(0.2)

        loader = gevent.spawn(load)
        while not loaded:
            gevent.sleep(0.05)
        finished_before = {i: v for i, v in stored(served).items() if v[0] == "complete"}
        files_before = stored_files(served)
        loaded_before = len(loaded)
        started = time.monotonic()
        made = command(env, "backup", str(target))
        took = time.monotonic() - started
        assert made.returncode == 0, made.stderr
        loaded_during = len(loaded) - loaded_before
        # While it serves, restore refuses (each worker holds the lock from its start).
        running = command(env, "restore", str(target))
        assert running.returncode != 0 and "chatapp is running on" in running.stderr
        backing_up = False
        loader.get(timeout=30)

        for answer_id in held_ids:
            assert post(browser, f"/messages/{answer_id}/stop") == 204
        gevent.joinall(readers, timeout=60, raise_error=True)
        deadline = time.monotonic() + 60
        while any(status == "streaming" for status, _ in stored(served).values()):
            assert time.monotonic() < deadline, "answers still streaming"
            gevent.sleep(0.1)
        final = stored(served)
        final_files = stored_files(served)

    fresh = tmp_path / "fresh" / "chatapp.sqlite"
    restore = command(command_env(fresh), "restore", str(target))
    assert restore.returncode == 0, restore.stderr
    restored = stored(fresh)
    restored_files = stored_files(fresh)
    manifest = json.loads((target / "backup.json").read_text())
    assert manifest["attachments"] == len(restored_files)
    assert manifest["attachment_bytes"] == sum(len(row[4]) for row in restored_files.values())
    assert f"{len(restored_files)} attachments of" in made.stdout + restore.stdout

    # Every message finished when the backup began is there, exactly.
    assert {i: restored.get(i) for i in finished_before} == finished_before
    assert len(finished_before) >= 4 * 2 + 40 * 50 + HELD  # the held answers' questions too
    # Everything else as it stood at one instant: answers being written hold the start of
    # their final text, finished ones all of it.
    for i, (status, content) in restored.items():
        assert final[i][1].startswith(content), i
        assert status == "streaming" or (status, content) == final[i], i
    for i in held_ids:
        assert restored[i][0] == "streaming" and len(restored[i][1]) >= 300
        assert final[i][0] == "cancelled"
    texts = {content for status, content in restored.values() if status == "complete"}
    assert set(finished_texts) <= texts

    # Every file there when the backup began is there, byte for byte, with its owner; a file
    # sent already stays with its question.
    assert len(files_before) >= 3 + 3 + 1 + HELD + 1  # and the loader's first
    for i, (owner, message, name, media_type, data) in files_before.items():
        assert i in restored_files, name
        assert restored_files[i][0] == owner and restored_files[i][2:] == (name, media_type, data)
        assert message is None or restored_files[i][1] == message, name
    # The others (the loader's, uploaded while it ran) whole or not at all, each with its
    # question when it had been sent by then.
    for i, (owner, message, name, media_type, data) in restored_files.items():
        assert (owner, name, media_type, data) == final_files[i][:1] + final_files[i][2:], name
        assert message is None or (message == final_files[i][1] and message in restored), name
    assert {i - 1 for i in held_ids} <= {row[1] for row in restored_files.values()}

    # The restored instance serves each file to its owner, and to nobody else.
    owners = usernames(fresh)
    (tmp_path / "restored").mkdir()
    with app_server(
        tmp_path / "restored", upstream=upstream, database_url=f"sqlite:///{fresh}"
    ) as again:
        visitors = {user_id: Browser(again.url, user=name) for user_id, name in owners.items()}
        stranger = Browser(again.url, user="stranger")
        for i, (owner, _, name, media_type, data) in restored_files.items():
            assert fetch(visitors[owner], f"/attachments/{i}") == (200, media_type, data), name
            assert fetch(stranger, f"/attachments/{i}")[0] == 404, name

    kinds = sorted({row[3] for row in restored_files.values()})
    print(
        f"\nlive-load backup: {took:.1f} s for a {(target / 'database.sqlite').stat().st_size:,}"
        f"-byte database; in it {len(restored):,} messages ({len(finished_before):,} finished"
        f" before it began, {HELD} caught mid-way) and {len(restored_files)} attachments"
        f" ({manifest['attachment_bytes']:,} bytes; {', '.join(kinds)}), each served by the"
        f" restored instance; {loaded_during} files uploaded and sent while it ran,"
        f" {len(set(loaded) & set(restored_files)) - loaded_before} of them in it"
    )
