"""Keeping data only as long as allowed.

With CHATAPP_RETAIN_DAYS set, conversations nobody has touched (sent to, retried, edited)
for longer are deleted with everything in them, and each deletion is recorded in the audit
log; a conversation with an answer streaming is never deleted. With CHATAPP_AUDIT_RETAIN_DAYS
set, older audit events go too. Both are off (0) by default. Files uploaded for a question
that was never sent go after a day, always.

Each worker's sweeper (chatapp.streaming.sweeper) calls `sweep` every CHATAPP_SWEEP_INTERVAL
seconds. A sweep deletes a few small batches, one short transaction each, with the worker's
other greenlets running between them, so a backlog (retention just switched on) drains over
several sweeps instead of holding the worker. Workers sweeping at once are safe: PostgreSQL
hands each its own rows (SKIP LOCKED); SQLite has one writer, and every DELETE checks its
conditions itself and says which rows it removed, so each deletion is recorded once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from flask import Flask

from . import audit
from .attachments import store as attachments
from .conversations import store
from .cooperate import let_streams_run
from .extensions import db
from .models import utcnow

log = logging.getLogger(__name__)

# One transaction deletes at most this many conversations, and no more of their messages
# than this unless a single conversation has more: the time a delete holds the worker on
# SQLite grows with the messages (400 messages of 4,000 characters took 15-30 ms here,
# commit included; 2,000 took 70 ms). A sweep runs at most BATCHES_PER_SWEEP transactions.
CONVERSATIONS_PER_BATCH = 20
MESSAGES_PER_BATCH = 250
BATCHES_PER_SWEEP = 5
AUDIT_EVENTS_PER_BATCH = 500
PENDING_PER_BATCH = 50


def sweep(app: Flask) -> tuple[int, int]:
    """Delete what has outlived its retention period, a few batches at most; return how many
    conversations and audit events went."""
    days = float(app.config["RETAIN_DAYS"])
    audit_days = float(app.config["AUDIT_RETAIN_DAYS"])
    conversations = events = 0
    if days > 0:
        conversations = _batches(app, lambda: len(expire_conversations(days)))
    if audit_days > 0:
        events = _batches(
            app, lambda: audit.purge_older_than(audit_days, batch=AUDIT_EVENTS_PER_BATCH)
        )
    # Files uploaded for a question nobody sent (the page was closed, the chip forgotten).
    unsent = _batches(app, lambda: attachments.delete_stale_pending(limit=PENDING_PER_BATCH))
    if unsent:
        log.info("deleted %d files that were attached but never sent", unsent)
    if conversations or events:
        log.info(
            "retention deleted %d conversations (untouched for %g days) and %d audit events "
            "(older than %g days)",
            conversations,
            days,
            events,
            audit_days,
        )
    return conversations, events


def expire_conversations(days: float, *, limit: int = CONVERSATIONS_PER_BATCH) -> list[int]:
    """Delete up to `limit` conversations untouched for more than `days` days, with no answer
    streaming; record each in the audit log; commit. Returns the ids deleted."""
    cutoff = utcnow() - timedelta(days=days)
    ids: list[int] = []
    messages = 0
    for conversation_id, count in store.expired_conversations(cutoff, limit=limit):
        if ids and messages + count > MESSAGES_PER_BATCH:
            break
        ids.append(conversation_id)
        messages += count
    if not ids:
        db.session.commit()  # ends the transaction the lookup began
        return []
    return store.delete_conversations(
        ids,
        actor=None,
        detail=f"retention: untouched for over {days:g} days",
        untouched_before=cutoff,
    )


def _batches(app: Flask, batch: Callable[[], int]) -> int:
    """Run `batch` (which returns how many rows it deleted) until one deletes nothing, at
    most BATCHES_PER_SWEEP times, letting the worker's streams run between them."""
    total = 0
    for number in range(BATCHES_PER_SWEEP):
        if number:
            let_streams_run()
        with app.app_context():
            done = batch()
        total += done
        if not done:
            break
    return total
