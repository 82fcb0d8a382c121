"""Storing answers while they stream: group commit, and the final write.

Generations never write per token. They mark themselves dirty; one ticker per worker appends
the new text of every dirty answer every FLUSH_INTERVAL seconds, in one statement per
transaction. Only the new text is sent, but the database rewrites the whole row (SQLite;
PostgreSQL's TOAST value) on every append, so a tick costs in proportion to the answers'
lengths so far: about 50 µs for an answer of 4,000 characters on SQLite, which is 100 ms for
2,000 of them. SQLite's write holds every greenlet of the worker, so a tick's rows are cut
into transactions of at most BATCH_CHARACTERS characters rewritten (and BATCH_ROWS rows), and
the other greenlets run between them. No session or connection is held between transactions.

When the database does not answer, nothing is dropped: a failed group commit keeps its text in
memory, and the ticker tries again later and later (up to MAX_BACKOFF apart), in its own
greenlet, so the streams go on meanwhile. The log says so once per outage (`Outage`), not
once a tick. An answer's end is retried the same way, by its generation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import gevent
from flask import Flask
from gevent.event import Event
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import selectinload, undefer

from ..conversations.store import thinking_of
from ..cooperate import let_streams_run
from ..database import background_lock_waits, unreachable
from ..extensions import db
from ..llm.thinking import Thinking
from ..metrics import Meter
from ..models import Conversation, Message, MessageState, Status, utcnow
from ..outage import Outage
from ..projects import store as projects

if TYPE_CHECKING:
    from gevent import Greenlet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unstored:
    """What a live answer received since its last write, after what is stored of it."""

    stored_text: int  # characters of text stored
    text: str  # text received since
    text_pieces: int  # how many pieces that text came in
    stored_thinking: int
    thinking: str
    thinking_pieces: int
    # The prompt's tokens, billed once the API took the request (None before): stored as the
    # text is, so an answer whose worker dies still costs its prompt (and the sweeper knows
    # to count its output).
    input_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    web_search_requests: int | None = None  # billed per search, so stored as they come


class Progress(Protocol):
    """What the flusher needs from a live answer."""

    message_id: int

    def unstored(self) -> Unstored: ...

    def mark_stored(self, written: Unstored) -> None:
        """What `written` holds is now stored."""
        ...


# One group-commit transaction rewrites at most this many characters (about 12 ms on SQLite
# here) and this many rows; a tick with more writes several, one after the other.
BATCH_CHARACTERS = 1_000_000
BATCH_ROWS = 500
# While the database does not answer, tries come further and further apart, up to this many
# seconds.
MAX_BACKOFF = 5.0
STOP_WAIT = 2.0  # seconds a stop lets the ticker finish a write (more: the database is away)


class Flusher:
    """Writes the text of every answer that changed since the last tick, in few short
    transactions."""

    def __init__(
        self, app: Flask, interval: float, meter: Meter, database: Outage | None = None
    ) -> None:
        self._app = app
        self._meter = meter
        self._interval = interval
        self._database = database or Outage("the database")
        self._dirty: dict[int, Progress] = {}
        self._ticker: Greenlet | None = None
        self._stopping = Event()  # the ticker ends at its next wait
        self.writes = 0  # statements executed, for metrics and benchmarks

    @property
    def waiting(self) -> int:
        """Answers whose newest text is not stored yet."""
        return len(self._dirty)

    def mark(self, progress: Progress) -> None:
        """Note that `progress` has text the database does not have yet."""
        self._dirty[progress.message_id] = progress
        if self._ticker is None or self._ticker.dead:
            self._stopping.clear()
            self._ticker = gevent.spawn(self._run)

    def forget(self, message_id: int) -> None:
        """Drop a pending write; the final write supersedes it."""
        self._dirty.pop(message_id, None)

    def flush(self) -> bool:
        """Write everything pending now; False if the database did not take it all (what it
        did not take is pending again)."""
        if not self._dirty:
            return True
        batch, self._dirty = self._dirty, {}
        pending = []
        for _mid, progress in sorted(batch.items()):  # lock order: see Sweeper.sweep
            new = progress.unstored()
            if new.text or new.thinking:
                pending.append((progress, new))
        parts = list(_transactions(pending))
        for count, part in enumerate(parts):
            if count:
                let_streams_run()  # between two writes
            if not self._write(part):
                for rest in parts[count + 1 :]:  # no use trying them now
                    for progress, _new in rest:
                        self._dirty.setdefault(progress.message_id, progress)
                return False
        return True

    def _write(self, part: list[tuple[Progress, Unstored]]) -> bool:
        """Append the new text of `part`'s answers in one statement and one transaction;
        False (and the answers pending again) if the database did not take it."""
        rows = [
            {
                "answer_id": progress.message_id,
                "stored_text": new.stored_text,
                "text": new.text,
                "stored_thinking": new.stored_thinking,
                "thinking": new.thinking,
                "prompt_input": new.input_tokens,
                "prompt_cache_read": new.cache_read_tokens,
                "prompt_cache_creation": new.cache_creation_tokens,
                "searches": new.web_search_requests,
            }
            for progress, new in part
        ]
        started = time.monotonic()
        try:
            with self._app.app_context(), db.engine.connect() as connection:
                # Core executemany: one statement, one round of the driver, for all answers.
                # Only the new text is sent; the length check makes a repeated append harmless
                # (a retry of a commit whose answer was lost, too).
                table = Message.__table__
                with background_lock_waits(connection):
                    connection.execute(
                        update(table)
                        .where(table.c.id == bindparam("answer_id"))
                        .where(table.c.status == Status.STREAMING.value)
                        .where(func.length(table.c.content) == bindparam("stored_text"))
                        .where(func.length(table.c.thinking) == bindparam("stored_thinking"))
                        .values(
                            content=table.c.content + bindparam("text"),
                            thinking=table.c.thinking + bindparam("thinking"),
                            input_tokens=bindparam("prompt_input"),
                            cache_read_tokens=bindparam("prompt_cache_read"),
                            cache_creation_tokens=bindparam("prompt_cache_creation"),
                            web_search_requests=bindparam("searches"),
                            updated_at=utcnow(),
                        ),
                        rows,
                    )
                    connection.commit()
        except Exception as exc:
            if not unreachable(exc):
                log.exception("could not store the streamed text of %d answers", len(rows))
            self._database.failed(exc)
            self._meter.db_flush_failures.inc()
            for progress, _new in part:
                self._dirty.setdefault(progress.message_id, progress)
            return False
        finally:
            self._meter.observe_flush(time.monotonic() - started)
        self._database.succeeded()
        self.writes += 1
        for progress, new in part:
            progress.mark_stored(new)
        return True

    def stop(self) -> None:
        """End the ticker, then write what is pending. The ticker is let finish a write it is
        in (a kill inside psycopg's pipeline leaves its generator to a later garbage
        collection, which then talks to the server from wherever it runs)."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            self._stopping.set()
            ticker.join(timeout=STOP_WAIT)
            ticker.kill()
        self.flush()

    def _run(self) -> None:
        pause = self._interval
        while self._dirty:
            if self._stopping.wait(pause):
                return
            pause = self._interval if self.flush() else min(pause * 2, MAX_BACKOFF)


def _transactions(
    pending: list[tuple[Progress, Unstored]],
) -> Iterator[list[tuple[Progress, Unstored]]]:
    """`pending` cut into runs that each rewrite at most BATCH_CHARACTERS characters and
    BATCH_ROWS rows (an answer longer than that alone is a run of its own)."""
    part: list[tuple[Progress, Unstored]] = []
    characters = 0
    for progress, new in pending:
        size = new.stored_text + len(new.text) + new.stored_thinking + len(new.thinking)
        if part and (characters + size > BATCH_CHARACTERS or len(part) == BATCH_ROWS):
            yield part
            part, characters = [], 0
        part.append((progress, new))
        characters += size
    if part:
        yield part


def store_final(app: Flask, state: MessageState) -> None:
    """Write the finished answer with its status, usage and timing.

    It replaces the whole row, so writing it again after a failure stores it once.
    """
    values = asdict(state)
    for key in ("id", "conversation_id", "role", "attachments"):
        values.pop(key)
    table = Message.__table__  # Core: the ORM's update would also look for the row in the session
    with app.app_context(), db.engine.connect() as connection:
        with background_lock_waits(connection):
            connection.execute(
                update(table).where(table.c.id == state.id).values(**values, updated_at=utcnow())
            )
            connection.commit()


def load_state(app: Flask, message_id: int) -> MessageState | None:
    """The stored state of a message, read in a short session of its own."""
    with app.app_context():
        message = db.session.get(Message, message_id)
        return MessageState.of(message) if message is not None else None


def load_newer(app: Flask, conversation_id: int, after: int) -> list[MessageState]:
    """The conversation's messages newer than message `after`, oldest first."""
    with app.app_context():
        messages = db.session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .where(Message.id > after)
            .order_by(Message.id)
        )
        return [MessageState.of(message) for message in messages]


@dataclass(frozen=True)
class Question:
    """What an answer is asked with: the conversation's settings and the messages before it."""

    user_id: int | None
    model: str
    system_prompt: str
    tools: list[str]  # names of the tools Claude may call
    server_tools: list[str]  # Anthropic's server tools switched on (web search, web fetch)
    thinking: Thinking  # as the person chose it; the request keeps what the model takes
    history: list[MessageState]  # earlier answers with their transcripts
    project: projects.ProjectContext | None = None  # the instructions and files of its project

    @classmethod
    def of(cls, conversation: Conversation, history: list[MessageState]) -> Question:
        """The conversation's settings and project (no query outside one), with `history`."""
        return cls(
            user_id=conversation.user_id,
            model=conversation.model,
            system_prompt=conversation.system_prompt,
            tools=conversation.tools.split(),
            server_tools=conversation.server_tools.split(),
            thinking=thinking_of(conversation),
            history=history,
            project=projects.context_of(conversation),
        )

    @classmethod
    def first(cls, conversation: Conversation, question: Message) -> Question:
        """The first question of a conversation the send has just stored: what the answer is
        asked with, without reading back what the send has in hand."""
        return cls.of(conversation, [MessageState.of(question)])  # a question has no transcript


def load_question(app: Flask, message_id: int) -> Question:
    """What the answer `message_id` is asked with, read in a short session of its own."""
    with app.app_context():
        answer = db.session.get(Message, message_id)
        if answer is None:
            raise LookupError(f"message {message_id} does not exist")
        conversation = answer.conversation
        earlier = db.session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation.id)
            .where(Message.id < message_id)
            .order_by(Message.id)
            .options(undefer(Message.transcript), selectinload(Message.attachments))
        )
        return Question.of(conversation, [MessageState.of(m, transcript=True) for m in earlier])
