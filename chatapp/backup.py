"""Backups: `flask --app wsgi backup PATH` while the app serves, `restore PATH` when stopped.

A backup is a new directory:

    database.sqlite   the SQLite database as it was at one instant, copied with SQLite's
                      online backup API while the app goes on writing
    files/            a copy of CHATAPP_FILES_DIR, when that is set
    backup.json       when it was made, the schema's revision, how many files

The copy reads one snapshot (a read transaction held from the first page to the last: in
WAL mode the app's writers carry on meanwhile, and SQLite does not restart the copy when they
commit), a few hundred pages a step, letting other greenlets run between steps.

Restore refuses while chatapp serves the database. Every gunicorn worker holds a shared lock
on `<database>.lock` from its start (`hold_serving_lock`, called from gunicorn.conf.py); the
operating system drops it with the process, even after kill -9, so it never goes stale. Any
other program that has the database open (an older server, `flask shell`) is noticed by
SQLite itself. Restore checks the backup (integrity, and a schema revision this chatapp
knows: the same or older, which it then upgrades), keeps the database it replaces beside it,
and puts the files back.

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
FILES = "files"
MANIFEST = "backup.json"
FORMAT = 1
PAGES_PER_STEP = 256  # 1 MB of 4 KB pages between two turns of the worker's other greenlets


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Backup:
    """What a backup holds."""

    path: Path
    revision: str
    files: int | None  # None: no files directory in it
    size: int  # bytes of the database


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


def _create_private(path: Path) -> None:
    """Create `path` empty, readable by its owner only: it will hold everyone's conversations."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# -- backup -----------------------------------------------------------------------------------


def write_backup(
    database: Path,
    files_dir: Path | None,
    path: Path,
    *,
    pause: Callable[[], None] = let_streams_run,
) -> Backup:
    """Write a backup of `database` (and `files_dir`) to the new directory `path`.

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
        files = None
        if files_dir is not None and files_dir.is_dir():
            files = _copy_files(files_dir, partial / FILES, pause)
        made = datetime.now(UTC).isoformat(timespec="seconds")
        manifest = {"format": FORMAT, "made_at": made, "revision": revision, "files": files}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(path)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Backup(path, revision, files, (path / DATABASE).stat().st_size)


def _copy_files(source: Path, target: Path, pause: Callable[[], None]) -> int:
    """Copy the directory tree `source` to the new `target`; return how many files."""
    count = 0
    target.mkdir(mode=0o700)
    for folder, folders, names in os.walk(source):
        here = target / Path(folder).relative_to(source)
        for name in sorted(folders):
            (here / name).mkdir(mode=0o700)
        for name in sorted(names):
            shutil.copy2(Path(folder) / name, here / name)
            count += 1
            pause()
    return count


# -- restore ----------------------------------------------------------------------------------


def restore_backup(
    app: Flask, source: Path, database: Path, files_dir: Path | None
) -> tuple[Backup, Path | None]:
    """Put the backup `source` (a backup directory, or an SQLite file) in place of `database`
    and `files_dir`, upgrading its schema if it is older; return it, and where the replaced
    database was kept (None if there was none).

    Call with the app stopped: `serving_lock` says whether it is.
    """
    backup_file = source / DATABASE if source.is_dir() else source
    backup_files = source / FILES if source.is_dir() else None
    if not backup_file.is_file():
        raise BackupError(f"{source} holds no {DATABASE}: it is not a chatapp backup.")
    revision = revision_of(backup_file)
    known = {script.revision for script in _migrations(app).walk_revisions()}
    if revision not in known:
        raise BackupError(
            f"The backup's schema (revision {revision}) is newer than this chatapp's, or not "
            "chatapp's: upgrade chatapp to the version that made it, then restore."
        )
    if backup_files is not None and backup_files.is_dir() and files_dir is None:
        raise BackupError(
            f"The backup holds files ({backup_files}), but CHATAPP_FILES_DIR is not set: set "
            "it to where they belong, then restore again."
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
    files = None
    if files_dir is not None and backup_files is not None and backup_files.is_dir():
        if files_dir.exists():
            files_dir.rename(
                _unused(files_dir.with_name(f"{files_dir.name}.before-restore-{stamp}"))
            )
        files_dir.parent.mkdir(parents=True, exist_ok=True)
        files = _copy_files(backup_files, files_dir, lambda: None)
    return Backup(source, revision, files, database.stat().st_size), kept


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


def files_directory() -> Path | None:
    configured = current_app.config.get("FILES_DIR")
    return Path(configured).resolve() if configured else None


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
        "(the password comes from PGPASSWORD or ~/.pgpass).",
    ]
    return "\n".join(lines + _files_advice())


def postgres_restore_advice(path: Path) -> str:
    url = shlex.quote(_postgres_url())
    lines = [
        "This instance keeps its data in PostgreSQL: stop chatapp, then put a pg_dump copy back",
        "with pg_restore, and start chatapp (it upgrades an older schema as it starts):",
        "",
        f"  pg_restore --clean --if-exists --no-owner --dbname={url} {shlex.quote(str(path))}",
    ]
    return "\n".join(lines + _files_advice())


def _files_advice() -> list[str]:
    files = files_directory()
    if files is None:
        return []
    return ["", f"Copy the files directory ({files}) along with it."]


# -- flask --app wsgi backup / restore ----------------------------------------------------------


@click.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
@with_appcontext
def backup_command(path: Path) -> None:
    """Write a consistent copy of the database (and CHATAPP_FILES_DIR) to PATH, a new
    directory, while chatapp serves."""
    database = sqlite_file()
    if database is None:
        raise click.ClickException(postgres_backup_advice(path))
    try:
        made = write_backup(database, files_directory(), path.resolve())
    except (BackupError, sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"No backup was written: {exc}") from exc
    audit.record("admin_backup", actor=None, detail=f"to {made.path}")
    files = "no files directory" if made.files is None else f"{made.files} files"
    click.echo(
        f"Backed up {database} ({made.size:,} bytes, schema {made.revision}) and {files} "
        f"to {made.path}."
    )


@click.command("restore")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@with_appcontext
def restore_command(path: Path) -> None:
    """Put the backup at PATH back in place of this instance's database (and files), on a
    stopped instance. The database it replaces is kept beside it."""
    database = sqlite_file()
    if database is None:
        raise click.ClickException(postgres_restore_advice(path))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with serving_lock(database):
            restored, kept = restore_backup(app, path.resolve(), database, files_directory())
    except (BackupError, sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"Nothing was restored: {exc}") from exc
    audit.record("admin_restore", actor=None, detail=f"from {restored.path}")
    click.echo(f"Restored {restored.path} (schema {restored.revision}) to {database}.")
    if kept is not None:
        click.echo(f"The database it replaced is kept at {kept}.")
    if restored.files is not None:
        click.echo(f"Put back {restored.files} files in {files_directory()}.")
