"""Backups: `flask backup PATH` copies the SQLite database (and CHATAPP_FILES_DIR) while the
app serves; `flask restore PATH` checks a backup and puts it back on a stopped instance,
upgrading an older schema, and refuses while chatapp runs. PostgreSQL: both commands say
what to run instead. The last test backs up a real gunicorn under live streaming load and
restores it into a fresh instance."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import select

from chatapp import backup, create_app
from chatapp.extensions import db
from chatapp.llm.demo import FakeUpstream, Scenario
from chatapp.models import AuditEvent, Message
from chatapp.streaming import streams

from .conftest import SignedInClient, app_config, html, read_events, send, stream_url
from .server import _INHERITED_SETTINGS, BIN, ROOT, USER, app_server
from .test_gunicorn import Browser

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgresql")
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="copies SQLite files; see the pg_dump test")
HEAD = ScriptDirectory(str(ROOT / "migrations")).get_current_head()
FILES = {"a.txt": b"first file\n", "2026/12/b.bin": bytes(range(256)) * 40, "2026/c.txt": b""}


def put_files(root: Path) -> None:
    for name, body in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)


def files_in(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def messages(app: Flask) -> dict[int, tuple[str, str, str]]:
    with app.app_context():
        return {m.id: (m.role, m.status, m.content) for m in db.session.scalars(select(Message))}


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
def test_a_backup_restores_into_a_fresh_instance(
    configured: Any, unmigrated: Any, tmp_path: Path, upstream: FakeUpstream
) -> None:
    put_files(tmp_path / "files")
    app = configured(FILES_DIR=str(tmp_path / "files"))
    chat(app.test_client(), upstream, "One <b>answer</b> — naïve 🌍.", "Another answer.")
    target = tmp_path / "backups" / "monday"
    target.parent.mkdir()

    made = app.test_cli_runner().invoke(args=["backup", str(target)])
    assert made.exit_code == 0, made.output
    assert f"schema {HEAD}) and 3 files to {target}." in made.output
    assert sorted(p.name for p in target.iterdir()) == ["backup.json", "database.sqlite", "files"]
    assert stat.S_IMODE((target / "database.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    manifest = json.loads((target / "backup.json").read_text())
    assert (manifest["revision"], manifest["files"], manifest["format"]) == (HEAD, 3, 1)
    assert files_in(target / "files") == FILES
    assert audit_kinds(app)[-1] == "admin_backup"
    assert list(target.parent.iterdir()) == [target]  # nothing half-made left beside it

    fresh = unmigrated("fresh", FILES_DIR=str(tmp_path / "fresh" / "files"))
    restored = fresh.test_cli_runner().invoke(args=["restore", str(target)])
    assert restored.exit_code == 0, restored.output
    assert f"Restored {target} (schema {HEAD})" in restored.output
    assert "Put back 3 files" in restored.output and "kept at" not in restored.output
    assert messages(fresh) == messages(app) and len(messages(app)) == 4
    assert files_in(tmp_path / "fresh" / "files") == FILES
    assert audit_kinds(fresh)[-1] == "admin_restore"
    assert "admin_backup" not in audit_kinds(fresh)  # recorded once the copy was made
    page = html(fresh.test_client().get("/").data)
    assert len(page.select(".sidebar__list a")) == 2

    # Restored again over it: what it replaces is kept beside it.
    (tmp_path / "fresh" / "files" / "new.txt").write_text("added since")
    again = fresh.test_cli_runner().invoke(args=["restore", str(target)])
    assert again.exit_code == 0, again.output
    beside = sorted(p.name for p in (tmp_path / "fresh").iterdir())
    assert any(name.startswith("chatapp.sqlite.before-restore-") for name in beside), beside
    assert any(name.startswith("files.before-restore-") for name in beside), beside
    assert files_in(tmp_path / "fresh" / "files") == FILES
    assert messages(fresh) == messages(app)


@sqlite_only
def test_restore_checks_the_backup_and_refuses_a_running_instance(
    configured: Any, unmigrated: Any, tmp_path: Path, upstream: FakeUpstream
) -> None:
    put_files(tmp_path / "files")
    app = configured(FILES_DIR=str(tmp_path / "files"))
    chat(app.test_client(), upstream, "Kept through every refusal.")
    good = tmp_path / "good"
    runner = app.test_cli_runner()
    assert runner.invoke(args=["backup", str(good)]).exit_code == 0

    existing = runner.invoke(args=["backup", str(good)])
    assert existing.exit_code != 0 and "exists already" in existing.output
    nowhere = runner.invoke(args=["backup", str(tmp_path / "missing" / "b")])
    assert nowhere.exit_code != 0 and "is not a directory" in nowhere.output

    other = unmigrated("other", FILES_DIR=str(tmp_path / "other-files"))
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

    no_files = unmigrated("no-files")  # no CHATAPP_FILES_DIR for the backup's files
    result = no_files.test_cli_runner().invoke(args=["restore", str(good)])
    assert result.exit_code != 0 and "CHATAPP_FILES_DIR is not set" in result.output

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
    backup.write_backup(database, None, tmp_path / "old-backup")

    app = configured()
    result = app.test_cli_runner().invoke(args=["restore", str(tmp_path / "old-backup")])
    assert result.exit_code == 0, result.output
    assert "(schema c3e8b6d2a5f1)" in result.output
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
    app = create_app(
        app_config(tmp_path, upstream, SQLALCHEMY_DATABASE_URI=url, FILES_DIR="/srv/chat/files")
    )
    try:
        runner = app.test_cli_runner()
        made = runner.invoke(args=["backup", "/backups/monday.dump"])
        assert made.exit_code != 0
        assert (
            "pg_dump --format=custom --file=/backups/monday.dump "
            "postgresql://chat@db.example:5433/chatapp" in made.output
        )
        assert "Copy the files directory (/srv/chat/files)" in made.output
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


def command_env(database: Path, files: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _INHERITED_SETTINGS and not key.startswith("CHATAPP_")
    }
    env.update(
        DATABASE_URL=f"sqlite:///{database}",
        SECRET_KEY="test-secret-key",
        CHATAPP_FILES_DIR=str(files),
    )
    return env


def stored(database: Path) -> dict[int, tuple[str, str]]:
    """id -> (status, content) of every message, read in a connection of its own."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT id, status, content FROM message").fetchall()
    connection.close()
    return {row[0]: (row[1], row[2]) for row in rows}


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


@sqlite_only
def test_a_backup_under_live_streaming_load_restores_every_finished_message_and_file(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    files = tmp_path / "files"
    put_files(files)
    served = tmp_path / "x.sqlite"  # where app_server keeps its database
    env = command_env(served, files)
    target = tmp_path / "backup"
    finished_texts = [f"Finished answer {n}, naïve <b>café</b> 🌍." for n in range(4)]
    upstream.push(*(Scenario(text=text) for text in finished_texts))
    settings = {"CHATAPP_FILES_DIR": str(files), "CHATAPP_UPSTREAM_IDLE_TIMEOUT": "900"}

    with app_server(tmp_path, upstream=upstream, env=settings) as server:
        assert server.database_url == f"sqlite:///{served}"
        browser = Browser(server.url)
        browser.open_page()
        for n in range(4):
            _, url = browser.send(f"Question {n}")
            browser.read_stream(url)
        add_history(served, USER, conversations=40, answers=50)  # about 6 MB

        upstream.push(*(held_answer(n) for n in range(HELD)))
        held = [browser.send(f"Held question {n}") for n in range(HELD)]
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

        # Load while the backup runs: a new answer every 0.2 s (the fake's demo reply).
        backing_up = True

        def load() -> None:
            visitor = Browser(server.url, user="loader")
            visitor.open_page()
            n = 0
            while backing_up:
                visitor.send(f"Load {n}")
                n += 1
                gevent.sleep(0.2)

        loader = gevent.spawn(load)
        finished_before = {i: v for i, v in stored(served).items() if v[0] == "complete"}
        made = command(env, "backup", str(target))
        assert made.returncode == 0, made.stderr
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

    fresh = tmp_path / "fresh"
    restore = command(
        command_env(fresh / "chatapp.sqlite", fresh / "files"), "restore", str(target)
    )
    assert restore.returncode == 0, restore.stderr
    restored = stored(fresh / "chatapp.sqlite")

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
    assert files_in(fresh / "files") == FILES
    texts = {content for status, content in restored.values() if status == "complete"}
    assert set(finished_texts) <= texts
