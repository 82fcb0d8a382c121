"""Backups: `flask --app wsgi backup PATH` while the app serves, `restore PATH` when stopped.

A backup is a new directory:

    database.sqlite   the SQLite database as it was at one instant, copied with SQLite's
                      online backup API while the app goes on writing; everything chatapp
                      keeps is in it, attachments (their bytes) included
    backup.json       the format, when it was made, the schema's revision, and how many
                      attachments the copy holds (and their bytes)

The copy reads one snapshot (a read transaction held from the first page to the last: in
WAL mode the app's writers carry on meanwhile, and SQLite does not restart the copy when they
commit), a few hundred pages a step, letting other greenlets run between steps.

Restore refuses while chatapp serves the database. Every gunicorn worker holds a shared lock
on `<database>.lock` from its start (`hold_serving_lock`, called from gunicorn.conf.py); the
operating system drops it with the process, even after kill -9, so it never goes stale. Any
other program that has the database open (an older server, `flask shell`) is noticed by
SQLite itself. Restore checks the backup (its format, integrity, and a schema revision this
chatapp knows: the same or older, which it then upgrades) and keeps the database it replaces
beside it. A format 1 backup may hold `files/`, a copy of the CHATAPP_FILES_DIR that chatapp
had before attachments were kept in the database; nothing ever wrote there, so restore
leaves it alone and says so.

PostgreSQL databases are copied with pg_dump and put back with pg_restore; both commands
say how.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import click
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy.engine import URL, make_url

from . import audit
from .cooperate import let_streams_run
from .extensions import db

DATABASE = "database.sqlite"
MANIFEST = "backup.json"
# 2: no files directory; the manifest counts attachments. 1: a copy of CHATAPP_FILES_DIR
# in files/, and a count of its files.
FORMAT = 2
OLD_FILES = "files"  # format 1's copy of CHATAPP_FILES_DIR, never put back
PAGES_PER_STEP = 256  # 1 MB of 4 KB pages between two turns of the worker's other greenlets


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Backup:
    """What a backup holds."""

    path: Path
    revision: str
    size: int  # bytes of the database
    attachments: int
    attachment_bytes: int  # the attachments' own sizes, added up


# -- the database file ----------------------------------------------------------------------


def copy_database(
    source: Path, target: Path, *, pause: Callable[[], None] = let_streams_run
) -> None:
    """Copy the SQLite database `source` to the new file `target`, consistently, while others
    write to it; check the copy and leave it as one self-contained file (mode 0600)."""
    if not source.is_file():
        raise BackupError(f"There is no database at {source}.")
    reader = sqlite3.connect(source, isolation_level=None, timeout=5.0)
    try:
        # The snapshot starts at the first read and lasts until COMMIT: every step copies
        # pages of this one instant, and commits by others do not restart the copy.
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        _create_private(target)
        writer = sqlite3.connect(target, isolation_level=None)
        try:
            reader.backup(
                writer, pages=PAGES_PER_STEP, progress=lambda *_status: pause(), sleep=0.01
            )
            reader.execute("COMMIT")
            writer.execute("PRAGMA journal_mode=DELETE")  # no -wal file beside the copy
            problems = [row[0] for row in writer.execute("PRAGMA integrity_check")]
        finally:
            writer.close()
    finally:
        reader.close()
    if problems != ["ok"]:
        raise BackupError(f"The copy of {source} fails SQLite's integrity check: {problems[:3]}")


def revision_of(database: Path, *, check: bool = True) -> str:
    """The schema revision (Alembic's) of a chatapp SQLite database; with `check`, after
    SQLite's integrity check."""
    try:
        connection = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{database} cannot be opened: {exc}.") from exc
    try:
        try:
            checked = connection.execute("PRAGMA integrity_check" if check else "SELECT 'ok'")
            problems = [row[0] for row in checked]
        except sqlite3.DatabaseError as exc:
            raise BackupError(
                f"{database} is not an SQLite database, or it is damaged ({exc})."
            ) from exc
        if problems != ["ok"]:
            raise BackupError(
                f"{database} is damaged: SQLite's integrity check says {problems[:3]}."
            )
        try:
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{database} is not a chatapp database ({exc}).") from exc
    finally:
        connection.close()
    if len(rows) != 1:
        raise BackupError(f"{database} is not a chatapp database: it has no schema revision.")
    return str(rows[0][0])


def attachments_in(database: Path) -> tuple[int, int]:
    """How many attachments the chatapp SQLite database `database` holds, and their bytes
    (none in a schema from before attachments)."""
    connection = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        count, size = connection.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM attachment"
        ).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        count, size = 0, 0
    finally:
        connection.close()
    return int(count), int(size)


def _create_private(path: Path) -> None:
    """Create `path` empty, readable by its owner only: it will hold everyone's conversations."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# -- backup -----------------------------------------------------------------------------------


def write_backup(
    database: Path, path: Path, *, pause: Callable[[], None] = let_streams_run
) -> Backup:
    """Write a backup of `database` to the new directory `path`.

    It is made in a hidden directory beside `path` and renamed into place when complete, so
    `path` is either a whole backup or absent.
    """
    if path.exists():
        raise BackupError(f"{path} exists already; give a new path (nothing was written).")
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent} is not a directory; create it first.")
    partial = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        copy_database(database, partial / DATABASE, pause=pause)
        revision = revision_of(partial / DATABASE, check=False)  # checked as it was copied
        attachments, attachment_bytes = attachments_in(partial / DATABASE)
        manifest = {
            "format": FORMAT,
            "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "revision": revision,
            "attachments": attachments,
            "attachment_bytes": attachment_bytes,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = (path / DATABASE).stat().st_size
    return Backup(path, revision, size, attachments, attachment_bytes)


# -- restore ----------------------------------------------------------------------------------


def restore_backup(app: Flask, source: Path, database: Path) -> tuple[Backup, Path | None]:
    """Put the backup `source` (a backup directory, or an SQLite file) in place of `database`,
    upgrading its schema if it is older; return it, and where the replaced database was kept
    (None if there was none).

    Call with the app stopped: `serving_lock` says whether it is.
    """
    backup_file = source / DATABASE if source.is_dir() else source
    if not backup_file.is_file():
        raise BackupError(f"{source} holds no {DATABASE}: it is not a chatapp backup.")
    if source.is_dir():
        _check_format(source)
    revision = revision_of(backup_file)
    attachments, attachment_bytes = attachments_in(backup_file)
    known = {script.revision for script in _migrations(app).walk_revisions()}
    if revision not in known:
        raise BackupError(
            f"The backup's schema (revision {revision}) is newer than this chatapp's, or not "
            "chatapp's: upgrade chatapp to the version that made it, then restore."
        )
    with app.app_context():
        db.engine.dispose()  # this command's own connections are not another program's
    _refuse_if_open(database)

    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    incoming = database.with_name(f"{database.name}.restoring-{os.getpid()}")
    kept: Path | None = None
    try:
        copy_database(backup_file, incoming)
        if database.exists() and database.stat().st_size > 0:  # empty: made, never used
            kept = _unused(database.with_name(f"{database.name}.before-restore-{stamp}"))
            copy_database(database, kept)
        _forget_log(database)
        os.replace(incoming, database)
    finally:
        incoming.unlink(missing_ok=True)
    try:
        with app.app_context():
            db.engine.dispose()  # nothing of the replaced database stays in the pool
            upgrade()
    except Exception as exc:
        # Leave the instance as it was: the database from before, or none.
        with app.app_context():
            db.engine.dispose()
        _forget_log(database)
        if kept is not None:
            os.replace(kept, database)
        else:
            database.unlink()
        raise BackupError(f"Upgrading the restored database failed ({exc}).") from exc
    restored = Backup(source, revision, database.stat().st_size, attachments, attachment_bytes)
    return restored, kept


def _check_format(source: Path) -> None:
    """Refuse a backup directory whose manifest this chatapp cannot read or does not know
    (one without a manifest is judged by its database alone)."""
    manifest = source / MANIFEST
    if not manifest.is_file():
        return
    alone = f"to restore the database alone, give {source / DATABASE}"
    try:
        said = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{manifest} cannot be read ({exc}); {alone}.") from exc
    made = said.get("format") if isinstance(said, dict) else None
    if not isinstance(made, int):
        raise BackupError(f"{manifest} does not say the backup's format; {alone}.")
    if made > FORMAT:
        raise BackupError(
            f"{source} is a backup of format {made}, made by a newer chatapp (this one reads "
            f"formats 1 to {FORMAT}): upgrade chatapp to the version that made it, then restore."
        )


def old_files_directory(source: Path) -> tuple[Path, int] | None:
    """The files directory of a format 1 backup, and how many files it holds; None if there
    is none. chatapp keeps no files outside its database, so restore never puts it back."""
    folder = source / OLD_FILES
    if not folder.is_dir():
        return None
    return folder, sum(1 for path in folder.rglob("*") if path.is_file())


def _unused(path: Path) -> Path:
    """`path`, or `path-2`, `path-3`...: the first that does not exist."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _forget_log(database: Path) -> None:
    """Remove the WAL files beside `database` before another file takes its place: SQLite
    would read them as the new file's log. (Nothing has it open; what they held is copied.)"""
    for leftover in (Path(f"{database}-wal"), Path(f"{database}-shm")):
        leftover.unlink(missing_ok=True)


def _migrations(app: Flask) -> ScriptDirectory:
    return ScriptDirectory(app.extensions["migrate"].directory)


def _refuse_if_open(database: Path) -> None:
    """Refuse if any program has the database open: SQLite cannot leave WAL mode then."""
    if not database.exists():
        return
    connection = sqlite3.connect(database, isolation_level=None, timeout=0)
    try:
        connection.execute("PRAGMA journal_mode=DELETE").fetchall()
    except sqlite3.OperationalError as exc:
        raise BackupError(
            f"Another program has {database} open ({exc}): stop chatapp (and anything else "
            "using the database), then restore."
        ) from exc
    finally:
        connection.close()


# -- the lock that says chatapp is serving ------------------------------------------------------


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def hold_serving_lock(app: Flask) -> None:
    """Hold a shared lock on the database's lock file for as long as this process lives, so
    that `restore` refuses while it serves (called in each gunicorn worker at its start)."""
    with app.app_context():
        database = sqlite_file()
    if database is None:
        return
    handle = _open_lock(database)
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        app.logger.warning("a restore is running on %s; waiting for it to finish", database)
        fcntl.flock(handle, fcntl.LOCK_SH)
    app.extensions["chatapp.serving_lock"] = handle  # kept open: closing it would unlock


@contextmanager
def serving_lock(database: Path) -> Iterator[None]:
    """Hold the lock file exclusively, or BackupError if a chatapp server holds it."""
    handle = _open_lock(database)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(
                f"chatapp is running on {database} (a server holds {lock_path(database)}): "
                "stop it first (for example `systemctl stop chatapp`), then restore."
            ) from None
        yield
    finally:
        handle.close()


def _open_lock(database: Path) -> IO[bytes]:
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
    return os.fdopen(fd, "rb+")


# -- where things are -------------------------------------------------------------------------


def sqlite_file() -> Path | None:
    """The app's SQLite database file; None for PostgreSQL (or an in-memory database)."""
    url = db.engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).resolve()


def _postgres_url() -> str:
    """The database's URL as libpq takes it, without the password."""
    url = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
    bare = URL.create("postgresql", url.username, None, url.host, url.port, url.database, url.query)
    return bare.render_as_string(hide_password=False)


def postgres_backup_advice(path: Path) -> str:
    url = shlex.quote(_postgres_url())
    lines = [
        "This instance keeps its data in PostgreSQL, which chatapp does not copy itself.",
        "pg_dump takes a consistent copy while the app serves:",
        "",
        f"  pg_dump --format=custom --file={shlex.quote(str(path))} {url}",
        "",
        "(the password comes from PGPASSWORD or ~/.pgpass). The dump holds everything chatapp",
        "keeps, attachments included.",
    ]
    return "\n".join(lines)


def postgres_restore_advice(path: Path) -> str:
    url = shlex.quote(_postgres_url())
    lines = [
        "This instance keeps its data in PostgreSQL: stop chatapp, then put a pg_dump copy back",
        "with pg_restore, and start chatapp (it upgrades an older schema as it starts):",
        "",
        f"  pg_restore --clean --if-exists --no-owner --dbname={url} {shlex.quote(str(path))}",
    ]
    return "\n".join(lines)


# -- flask --app wsgi backup / restore ----------------------------------------------------------


@click.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
@with_appcontext
def backup_command(path: Path) -> None:
    """Write a consistent copy of the database, attachments included, to PATH, a new
    directory, while chatapp serves."""
    database = sqlite_file()
    if database is None:
        raise click.ClickException(postgres_backup_advice(path))
    try:
        made = write_backup(database, path.resolve())
    except (BackupError, sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"No backup was written: {exc}") from exc
    audit.record("admin_backup", actor=None, detail=f"to {made.path}")
    click.echo(
        f"Backed up {database} ({made.size:,} bytes, schema {made.revision}, "
        f"{_attachments(made)}) to {made.path}."
    )


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@with_appcontext
def restore_command(path: Path) -> None:
    """Put the backup at PATH back in place of this instance's database, attachments
    included, on a stopped instance. The database it replaces is kept beside it."""
    database = sqlite_file()
    if database is None:
        raise click.ClickException(postgres_restore_advice(path))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with serving_lock(database):
            restored, kept = restore_backup(app, path.resolve(), database)
    except (BackupError, sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"Nothing was restored: {exc}") from exc
    audit.record("admin_restore", actor=None, detail=f"from {restored.path}")
    click.echo(
        f"Restored {restored.path} (schema {restored.revision}, {_attachments(restored)}) "
        f"to {database}."
    )
    if kept is not None:
        click.echo(f"The database it replaced is kept at {kept}.")
    old = old_files_directory(path.resolve())
    if old is not None:
        folder, count = old
        click.echo(
            f"The backup's files directory ({folder}, {count} files) is ignored: chatapp keeps "
            "no files outside its database (attachments are in it), so nothing was put back "
            "from there."
        )


def _attachments(backup: Backup) -> str:
    if backup.attachments == 1:
        return f"1 attachment of {backup.attachment_bytes:,} bytes"
    return f"{backup.attachments:,} attachments of {backup.attachment_bytes:,} bytes"
