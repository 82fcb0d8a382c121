"""`flask --app wsgi audit`: the audit log on the command line, newest first."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..models import AuditEvent
from . import KINDS, events


@click.command("audit")
@click.option(
    "--user", "username", help="Only this person's events (a failed sign-in's: the name typed)."
)
@click.option("--kind", help="Only events of this kind, e.g. sign_in_failed.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--before", type=click.IntRange(1), help="Only events older than this number.")
@with_appcontext
def audit_command(username: str | None, kind: str | None, limit: int, before: int | None) -> None:
    """Print the audit log, newest first, one event a line:
    number, time (UTC), kind, who, target, from where, detail; separated by tabs."""
    if kind is not None and kind not in KINDS:
        raise click.BadParameter(
            f"there is no kind {kind!r}; the kinds are: {', '.join(KINDS)}.", param_hint="--kind"
        )
    for event in events(username=username, kind=kind, before=before, limit=limit).events:
        click.echo("\t".join(line(event)))


def line(event: AuditEvent) -> list[str]:
    """An event's columns as the command prints them ("-" where there is nothing)."""
    kind = KINDS.get(event.kind)
    target = "-"
    if event.target_id is not None:
        target = f"{kind.target if kind and kind.target else 'target'} {event.target_id}"
    return [
        str(event.id),
        event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        event.kind,
        event.username or "-",
        target,
        event.address or "server",
        event.detail or "-",
    ]
