"""People's accounts: the queries, and the `flask users` commands that manage them."""

from __future__ import annotations

import re
import sys

import click
from flask.cli import with_appcontext
from sqlalchemy import bindparam, select, text, update
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..extensions import db
from ..models import Conversation, User

MAX_USERNAME = 80
USERNAME = re.compile(rf"[A-Za-z0-9._@+-]{{1,{MAX_USERNAME}}}")
USERNAME_RULE = "A username is 1 to 80 letters, digits or . _ @ + - (no spaces)."
MIN_PASSWORD = 8
# Long enough for any passphrase or password manager; hashing one costs the same whatever its
# length, but reading and echoing megabytes does not.
MAX_PASSWORD = 1024
NO_PASSWORD = "!"  # signs in only through a trusted proxy


class AccountError(ValueError):
    """A request about an account that cannot be done; the message says why."""


def valid_username(username: str) -> bool:
    """Whether `username` (as typed, spaces around it allowed) could name an account."""
    return USERNAME.fullmatch(username.strip()) is not None


def any_user() -> bool:
    return db.session.scalars(select(User.id).limit(1)).first() is not None


def get(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def active_user(user_id: int) -> User | None:
    user = get(user_id)
    return user if user is not None and not user.disabled else None


def session_user(session_id: str) -> User | None:
    """The active account a session cookie names, if the session was not ended since.

    The cookie holds `User.get_id()`: the account's id and its session version. Signing out,
    a new password and disabling bump the version, which ends every session made before.
    """
    user_id, _, version = session_id.partition(":")
    if not (
        user_id.isascii() and user_id.isdecimal() and version.isascii() and version.isdecimal()
    ):
        return None  # a cookie from before session versions, or not ours: sign in again
    if len(user_id) > 18 or len(version) > 18:
        return None
    user = active_user(int(user_id))
    return user if user is not None and user.session_version == int(version) else None


# Built once: a proxy's sign-in looks the user up on every request, streams included. Names
# are unique regardless of case, and found that way.
_BY_USERNAME = select(User).where(User.username_lower == bindparam("username_lower"))


def find(username: str) -> User | None:
    return db.session.scalars(_BY_USERNAME, {"username_lower": username.lower()}).first()


def all_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))


def create(username: str, password: str | None, *, admin: bool = False) -> User:
    """A new account, committed. `password` None: it signs in only through a trusted proxy."""
    user = _new_account(username, password, admin=admin)
    db.session.add(user)
    db.session.commit()
    return user


def _new_account(username: str, password: str | None, *, admin: bool) -> User:
    username = username.strip()
    if not USERNAME.fullmatch(username):
        raise AccountError(USERNAME_RULE)
    existing = find(username)
    if existing is not None:
        raise AccountError(f"There is already an account named {existing.username}.")
    return User(
        username=username,
        username_lower=username.lower(),
        password_hash=NO_PASSWORD if password is None else _hash(password),
        is_admin=admin,
    )


def create_first_admin(username: str, password: str) -> User:
    """The first account, an admin; conversations from before accounts become theirs.

    Only one can ever be made: two workers answering two first visits at once are served one
    after the other, and the second is told there is an account already.
    """
    user = _new_account(username, password, admin=True)  # hashed before the lock is taken
    _lock_accounts()
    try:
        if any_user():
            raise AccountError("The first admin was created meanwhile. Sign in instead.")
        db.session.add(user)
        db.session.flush()
        db.session.execute(
            update(Conversation).where(Conversation.user_id.is_(None)).values(user_id=user.id)
        )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return user


def _lock_accounts() -> None:
    """Hold the accounts table until this transaction ends, against other writers of it."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("LOCK TABLE user_account IN SHARE ROW EXCLUSIVE MODE"))
    else:
        # SQLite: any write statement takes the database's one write lock, even one that
        # changes no row; a second writer waits for this transaction to end.
        db.session.execute(update(User).where(text("0 = 1")).values(is_admin=User.is_admin))


def check(username: str, password: str) -> User | None:
    """The active account with this username and password, or None.

    An unknown or password-less name costs a hash too, so that the time of the answer does
    not tell which names exist.
    """
    user = find(username.strip()) if valid_username(username) else None
    if user is None or user.disabled or user.password_hash == NO_PASSWORD:
        check_password_hash(_dummy_hash(), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    """A hash of nothing anyone knows, made the way real ones are (so it costs as much)."""
    if not _DUMMY:
        import secrets

        _DUMMY.append(generate_password_hash(secrets.token_hex(16)))
    return _DUMMY[0]


def end_sessions(user: User) -> None:
    """Sign the person out everywhere: every session cookie made so far stops working."""
    user.session_version += 1
    db.session.commit()


def described(user: User) -> str:
    """An account as the audit log names it: its username, and whether it is an admin."""
    return f"{user.username} (admin)" if user.is_admin else user.username


def set_password(user: User, password: str) -> None:
    """A new password; every session signed in with the old one ends."""
    user.password_hash = _hash(password)
    user.session_version += 1
    db.session.commit()


def set_disabled(user: User, disabled: bool) -> None:
    """Disable or enable; either way, every session made before ends (and its streams)."""
    user.disabled = disabled
    user.session_version += 1
    db.session.commit()


def set_admin(user: User, admin: bool) -> None:
    user.is_admin = admin
    db.session.commit()


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"A password has at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"A password has at most {MAX_PASSWORD:,} characters.")
    return generate_password_hash(password)  # scrypt


# -- flask --app wsgi users ... ---------------------------------------------------------------


@click.group("users")
def users_cli() -> None:
    """Create, list, disable and reset accounts."""


def _password() -> str:
    """From stdin when it is not a terminal (one line), else asked twice; never an argument."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _account(username: str) -> User:
    user = find(username)
    if user is None:
        raise click.ClickException(f"There is no account named {username}.")
    return user


@users_cli.command("create")
@click.argument("username")
@click.option("--admin", is_flag=True, help="Can add and disable accounts.")
@with_appcontext
def create_command(username: str, admin: bool) -> None:
    """Create an account; the password comes from stdin or a prompt."""
    try:
        user = create(username, _password(), admin=admin)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record("user_created", actor=None, target=user.id, detail=described(user))
    click.echo(f"Created {'admin ' if admin else ''}{username}.")


@users_cli.command("list")
@with_appcontext
def list_command() -> None:
    """List the accounts."""
    for user in all_users():
        flags = [f for f, on in (("admin", user.is_admin), ("disabled", user.disabled)) if on]
        click.echo(f"{user.username}\t{', '.join(flags)}".rstrip())


@users_cli.command("disable")
@click.argument("username")
@with_appcontext
def disable_command(username: str) -> None:
    """Stop an account from signing in (its conversations stay)."""
    user = _account(username)
    set_disabled(user, True)
    audit.record("user_disabled", actor=None, target=user.id, detail=user.username)
    click.echo(f"Disabled {username}.")


@users_cli.command("enable")
@click.argument("username")
@with_appcontext
def enable_command(username: str) -> None:
    """Let a disabled account sign in again."""
    user = _account(username)
    set_disabled(user, False)
    audit.record("user_enabled", actor=None, target=user.id, detail=user.username)
    click.echo(f"Enabled {username}.")


@users_cli.command("reset-password")
@click.argument("username")
@with_appcontext
def reset_password_command(username: str) -> None:
    """Set a new password; it comes from stdin or a prompt."""
    user = _account(username)
    try:
        set_password(user, _password())
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record("password_reset", actor=None, target=user.id, detail=user.username)
    click.echo(f"New password set for {username}.")
