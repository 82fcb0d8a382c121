"""People's accounts: the queries, and the `flask users` commands that manage them."""

from __future__ import annotations

import re
import sys

import click
from flask.cli import with_appcontext
from sqlalchemy import bindparam, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..extensions import db
from ..models import Conversation, User

USERNAME = re.compile(r"[A-Za-z0-9._@+-]{1,80}")
MIN_PASSWORD = 8
NO_PASSWORD = "!"  # signs in only through a trusted proxy


class AccountError(ValueError):
    """A request about an account that cannot be done; the message says why."""


def any_user() -> bool:
    return db.session.scalars(select(User.id).limit(1)).first() is not None


def get(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def active_user(user_id: int) -> User | None:
    user = get(user_id)
    return user if user is not None and not user.disabled else None


# Built once: a proxy's sign-in looks the user up on every request, streams included.
_BY_USERNAME = select(User).where(User.username == bindparam("username"))


def find(username: str) -> User | None:
    return db.session.scalars(_BY_USERNAME, {"username": username}).first()


def all_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))


def create(username: str, password: str | None, *, admin: bool = False) -> User:
    """A new account, committed. `password` None: it signs in only through a trusted proxy."""
    username = username.strip()
    if not USERNAME.fullmatch(username):
        raise AccountError("A username is 1 to 80 letters, digits or . _ @ + - (no spaces).")
    if find(username) is not None:
        raise AccountError(f"There is already an account named {username}.")
    user = User(
        username=username,
        password_hash=NO_PASSWORD if password is None else _hash(password),
        is_admin=admin,
    )
    db.session.add(user)
    db.session.commit()
    return user


def create_first_admin(username: str, password: str) -> User:
    """The first account, an admin; conversations from before accounts become theirs."""
    user = create(username, password, admin=True)
    db.session.execute(
        update(Conversation).where(Conversation.user_id.is_(None)).values(user_id=user.id)
    )
    db.session.commit()
    return user


def check(username: str, password: str) -> User | None:
    """The active account with this username and password, or None."""
    user = find(username.strip())
    if user is None or user.disabled or user.password_hash == NO_PASSWORD:
        return None
    return user if check_password_hash(user.password_hash, password) else None


def described(user: User) -> str:
    """An account as the audit log names it: its username, and whether it is an admin."""
    return f"{user.username} (admin)" if user.is_admin else user.username


def set_password(user: User, password: str) -> None:
    user.password_hash = _hash(password)
    db.session.commit()


def set_disabled(user: User, disabled: bool) -> None:
    user.disabled = disabled
    db.session.commit()


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"A password has at least {MIN_PASSWORD} characters.")
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
