"""Conversations and their messages as a person's pages read and change them: the sidebar,
search, one conversation, and the actions on it (send, restart, edit, continue, rename, delete).

Every conversation and message is read through its owner: another person's ids are a 404,
exactly like ids that do not exist, so nobody can even learn which ones do. Elsewhere: the
streaming rooms write answers as they stream (streaming/persistence.py), what a form may set is
checked in forms.py, and the admins' usage report is auth/usage.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import abort
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy import delete as delete_rows
from sqlalchemy.orm import selectinload

from .. import audit
from ..extensions import db
from ..llm import errors, files
from ..llm.catalogue import Model
from ..llm.thinking import Thinking, fit
from ..models import (
    Attachment,
    Conversation,
    Message,
    MessageState,
    Naming,
    Status,
    User,
    utcnow,
)
from ..tools.record import plain_text
from .forms import Settings

TITLE_CHARS = 60  # a title made from the first question
MAX_TITLE = 200  # a title given by hand (the column's width)
MAX_SEARCH = 200  # characters of a search


@dataclass(frozen=True)
class SidebarPage:
    """One page of the sidebar: each conversation's id and title, and whether there are
    newer and older pages."""

    items: Sequence[Any]  # rows with `id` and `title`
    page: int
    has_next: bool  # older conversations follow

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def next_num(self) -> int:
        return self.page + 1


def recent_conversations(
    owner: User,
    page: int = 1,
    per_page: int = 50,
    *,
    besides: Sequence[int] = (),
    grouped: Sequence[int] = (),
) -> SidebarPage:
    """The owner's conversations for the sidebar that are in none of the projects `grouped`
    (shown under their project), most recently active first; without those in `besides`
    (pinned, shown above them).

    Every page and every new conversation shows this, so it reads only the two columns it
    shows, and one row more than a page instead of counting them all.
    """
    page = max(page, 1)
    rows = db.session.execute(
        select(Conversation.id, Conversation.title)
        .where(Conversation.user_id == owner.id)
        .where(or_(Conversation.project_id.is_(None), Conversation.project_id.not_in(grouped)))
        .where(Conversation.id.not_in(besides))
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page + 1)
    ).all()
    return SidebarPage(rows[:per_page], page, len(rows) > per_page)


def search(owner: User, query: str, limit: int = 50) -> list[Conversation]:
    """The owner's conversations whose title, messages or file names match `query`, newest
    first.

    PostgreSQL uses its full-text search (whole words, any language); SQLite looks for the
    text anywhere, ignoring case. File names match by any part, on both.
    """
    query = " ".join(query.split())[:MAX_SEARCH]
    if not query:
        return []
    pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if db.engine.dialect.name == "postgresql":
        words = func.plainto_tsquery("simple", query)
        title = func.to_tsvector("simple", Conversation.title).op("@@")(words)
        content = func.to_tsvector("simple", Message.content).op("@@")(words)
    else:
        title = Conversation.title.ilike(pattern, escape="\\")
        content = Message.content.ilike(pattern, escape="\\")
    # Only the owner's messages are read: on SQLite the scan holds the worker's every stream.
    matching = (
        select(Message.conversation_id)
        .join(Conversation, Message.conversation_id == Conversation.id)
        .where(Conversation.user_id == owner.id)
        .where(content)
    )
    # And the names of the owner's files, by any part (a name is not words: "q3-report.pdf").
    file_name = Attachment.name.ilike(pattern, escape="\\")
    named = (
        select(Message.conversation_id)
        .join(Attachment, Attachment.message_id == Message.id)
        .where(Attachment.user_id == owner.id)
        .where(file_name)
    )
    return list(
        db.session.scalars(
            select(Conversation)
            .where(Conversation.user_id == owner.id)
            .where(or_(title, Conversation.id.in_(matching), Conversation.id.in_(named)))
            .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
            .limit(limit)
        )
    )


def get_conversation(conversation_id: int, owner: User) -> Conversation:
    """The owner's conversation, or a 404."""
    conversation = db.session.get(Conversation, conversation_id)
    if conversation is None or conversation.user_id != owner.id:
        abort(404)
    return conversation


def get_message(message_id: int, owner: User) -> Message:
    """A message of one of the owner's conversations, or a 404."""
    message = db.session.scalars(
        select(Message)
        .join(Conversation)
        .where(Message.id == message_id)
        .where(Conversation.user_id == owner.id)
    ).first()
    if message is None:
        abort(404)
    return message


# What an answer's cost is priced from, and what the request that named a conversation used:
# read without the text.
_ANSWER_USAGE = (
    Message.model,
    Message.input_tokens,
    Message.output_tokens,
    Message.cache_read_tokens,
    Message.cache_creation_tokens,
    Message.web_search_requests,
)


_NAMING_USAGE = (
    Conversation.naming_model,
    Conversation.naming_input_tokens,
    Conversation.naming_output_tokens,
)


def conversation_usage(conversation_id: int) -> list[Any]:
    """The model and token counts of each of the conversation's answers, and of the request
    that named it (for what it cost), without reading their text."""
    return usages(
        namings=[Conversation.id == conversation_id, Conversation.naming_input_tokens.is_not(None)],
        answers=[Message.conversation_id == conversation_id],
    )


def usages(
    *, namings: Sequence[ColumnElement[bool]], answers: Sequence[ColumnElement[bool]]
) -> list[Any]:
    """The model and token counts of the namings (conversations) and of the answers that match,
    without their text: each priced as an answer is."""
    named = db.session.execute(select(*_NAMING_USAGE).where(*namings)).all()
    answered = db.session.execute(
        select(*_ANSWER_USAGE).join(Conversation).where(Message.role == "assistant", *answers)
    ).all()
    return [Naming(*naming) for naming in named] + list(answered)


def create_conversation(
    owner: User, settings: Settings, project_id: int | None = None
) -> Conversation:
    """A new, empty conversation of the owner's, in a project they may use or in none (not
    committed)."""
    conversation = Conversation(user_id=owner.id, project_id=project_id)
    _apply(conversation, settings)
    db.session.add(conversation)
    return conversation


def messages_of(conversation: Conversation) -> Sequence[Message]:
    """The conversation's messages, oldest first, with their files (read in one more query)."""
    return db.session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.id)
        .options(selectinload(Message.attachments))
    ).all()


def streaming_answer(conversation: Conversation) -> Message | None:
    """The answer still being written in this conversation, if any."""
    return db.session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation.id)
        .where(Message.status == Status.STREAMING.value)
        .limit(1)
    ).first()


def add_exchange(
    conversation: Conversation, prompt: str, files: Sequence[Attachment] = ()
) -> tuple[Message, Message]:
    """Store the user's message (with its files, in order) and an empty answer to be
    streamed, and commit."""
    if not conversation.messages:
        conversation.title = title_from(prompt)
    question = Message(conversation=conversation, role="user", content=prompt)
    for position, attachment in enumerate(files):
        attachment.position = position
        question.attachments.append(attachment)
    answer = Message(
        conversation=conversation,
        role="assistant",
        content="",
        status=Status.STREAMING.value,
        model=conversation.model,
    )
    conversation.updated_at = utcnow()
    db.session.add_all([question, answer])
    db.session.commit()
    return question, answer


CONTINUE_PROMPT = "Please continue your previous answer exactly where it stopped."


class ActionError(ValueError):
    """An action that does not apply to this message; the message says why, for the page."""


def last_answer(message: Message) -> Message:
    """`message`, checked to be the ended last answer of its conversation."""
    conversation = message.conversation
    if message.role != "assistant" or message.status == Status.STREAMING.value:
        raise ActionError("Only an answer that has ended can be written again or continued.")
    if conversation.messages[-1].id != message.id:
        raise ActionError("Only the last answer of a conversation can be retried or continued.")
    return message


def restart_answer(message: Message) -> Message:
    """Empty the answer for a fresh attempt, in place, and commit.

    Retry replaces a failed, stopped or interrupted answer, and Regenerate a complete one: the
    new answer takes its place in the history, so Claude never sees the one it replaces.
    """
    last_answer(message)
    for name in (
        "error",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_creation_tokens",
        "web_search_requests",
        "ttft_ms",
        "duration_ms",
        "transcript",
    ):
        setattr(message, name, None)
    message.content = message.thinking = ""
    message.status = Status.STREAMING.value
    message.model = message.conversation.model
    message.conversation.updated_at = utcnow()
    db.session.commit()
    return message


def edit_question(question: Message, content: str, keep: Sequence[str] = ()) -> Message:
    """Change the last question, keeping only the files named in `keep`, and write its
    answer again, in place; commit, and return the answer (to be streamed)."""
    messages = question.conversation.messages
    if question.role != "user" or len(messages) < 2 or messages[-2].id != question.id:
        raise ActionError("Only the last question can be edited.")
    answer = messages[-1]
    if answer.status == Status.STREAMING.value:
        raise ActionError(
            "Claude is still answering. Wait for the answer or press Stop, then edit."
        )
    question.content = content
    for attachment in [a for a in question.attachments if str(a.id) not in keep]:
        question.attachments.remove(attachment)  # deleted with the session's flush
    return restart_answer(answer)


def continue_answer(message: Message) -> tuple[Message, Message]:
    """Keep the cut answer and ask, in a new turn, for the rest of it.

    Claude 4.6 and later reject an assistant prefill, so the request is a new user message.
    """
    last_answer(message)
    if not can_continue(message):
        raise ActionError("Only an answer that was cut short can be continued.")
    if not plain_text(message.content).strip():
        raise ActionError("There is nothing to continue yet; retry the answer instead.")
    return add_exchange(message.conversation, CONTINUE_PROMPT)


def can_continue(answer: Message | MessageState) -> bool:
    """The answer stopped before its end: stopped, failed, interrupted, or complete but cut
    short by its length limit or by the context window."""
    if answer.status == Status.COMPLETE.value:
        return errors.cut_short(answer.stop_reason) is not None
    return answer.status in (
        Status.INTERRUPTED.value,
        Status.CANCELLED.value,
        Status.FAILED.value,
    )


def rename(conversation: Conversation, title: str) -> None:
    title = " ".join(title.split())
    if not title:
        raise ActionError("A title can't be empty.")
    if len(title) > MAX_TITLE:
        raise ActionError(
            f"That title is {len(title):,} characters long; the limit is {MAX_TITLE}. "
            "Shorten it and save again."
        )
    conversation.title = title
    db.session.commit()


def switch_model(conversation: Conversation, model_id: str, model: Model | None) -> None:
    """Move the conversation to another model, keeping the thinking it takes; commit."""
    conversation.model = model_id
    fitted, _notes = fit(thinking_of(conversation), model)
    conversation.thinking, conversation.effort = fitted.on, fitted.effort
    db.session.commit()


def delete(conversation: Conversation, *, by: User) -> None:
    """Delete the conversation and every message in it, and record it in the audit log."""
    delete_conversations([conversation.id], actor=by)


def delete_all(
    owner: User,
    *,
    pause: Callable[[], None],
    batch: int = 50,
    by: User | None = None,
    detail: str = "all of theirs at once",
) -> int:
    """Delete every conversation of the owner's, `batch` to a transaction with `pause()`
    between them (a long history must not hold the worker); return how many went. The audit
    log says it was done `by` someone (an admin), or by the owner."""
    total = 0
    while True:
        ids = list(
            db.session.scalars(
                select(Conversation.id)
                .where(Conversation.user_id == owner.id)
                .order_by(Conversation.id)
                .limit(batch)
            )
        )
        deleted = delete_conversations(ids, actor=by or owner, detail=detail)
        total += len(deleted)
        if not deleted:
            return total
        pause()


def delete_conversations(
    conversation_ids: Sequence[int],
    *,
    actor: User | None,
    detail: str = "",
    untouched_before: datetime | None = None,
) -> list[int]:
    """Delete these conversations with everything in them, record each in the audit log,
    commit, and return the ids that went.

    Every deletion of conversations comes here (one, all of a person's, retention's), so
    whatever a conversation owns goes with it: rows by their foreign keys' ON DELETE
    CASCADE (messages), anything else (files) from here. With `untouched_before`, only
    conversations not updated since then and with no answer streaming go: the DELETE checks
    it itself, so one that somebody took up meanwhile stays.
    """
    if not conversation_ids:
        return []
    uploaded = _uploaded_files(conversation_ids)
    statement = delete_rows(Conversation).where(Conversation.id.in_(conversation_ids))
    if untouched_before is not None:
        statement = statement.where(Conversation.updated_at < untouched_before).where(
            ~_has_streaming_answer()
        )
    deleted = db.session.execute(
        statement.returning(Conversation.id, Conversation.user_id),
        execution_options={"synchronize_session": False},
    ).all()
    owners = {row.user_id for row in deleted} - {actor.id if actor else None}
    names = {
        row.id: row.username
        for row in db.session.execute(select(User.id, User.username).where(User.id.in_(owners)))
    }
    for row in deleted:
        # Someone else's (or the server's) doing: say whose conversation it was.
        whose = f"owner {names[row.user_id]}" if row.user_id in names else ""
        text = "; ".join(part for part in (detail, whose) if part)
        audit.record("conversation_deleted", actor=actor, target=row.id, detail=text, commit=False)
    db.session.commit()
    # The files went with their messages; their copies at the Files API go too.
    files.forget_later([file_id for row in deleted for file_id in uploaded.get(row.id, ())])
    return [row.id for row in deleted]


def _uploaded_files(conversation_ids: Sequence[int]) -> dict[int, list[str]]:
    """The Files API copies of these conversations' files, by conversation."""
    found: dict[int, list[str]] = {}
    for conversation_id, file_id in db.session.execute(
        select(Message.conversation_id, Attachment.file_id)
        .join(Message, Message.id == Attachment.message_id)
        .where(Message.conversation_id.in_(conversation_ids))
        .where(Attachment.file_id.is_not(None))
    ):
        if file_id:
            found.setdefault(conversation_id, []).append(file_id)
    return found


def expired_conversations(untouched_before: datetime, *, limit: int) -> list[tuple[int, int]]:
    """Up to `limit` conversations not updated since `untouched_before` and with no answer
    streaming, the longest untouched first: each one's id and how many messages it has.

    On PostgreSQL they stay locked until the transaction ends and rows another worker holds
    are skipped, so workers sweeping at once each take different ones.
    """
    messages = (
        select(func.count(Message.id))
        .where(Message.conversation_id == Conversation.id)
        .scalar_subquery()
    )
    rows = db.session.execute(
        select(Conversation.id, messages)
        .where(Conversation.updated_at < untouched_before)
        .where(~_has_streaming_answer())
        .order_by(Conversation.updated_at, Conversation.id)
        .limit(limit)
        .with_for_update(of=Conversation, skip_locked=True)
    )
    return [(row[0], int(row[1])) for row in rows]


def _has_streaming_answer() -> ColumnElement[bool]:
    # The few answers streaming, by the status index, once: not each conversation's messages
    # (reading a message's status reads past its text).
    streaming = select(Message.conversation_id).where(Message.status == Status.STREAMING.value)
    return Conversation.id.in_(streaming)


def count_conversations(owner: User) -> int:
    return int(
        db.session.scalar(
            select(func.count(Conversation.id)).where(Conversation.user_id == owner.id)
        )
        or 0
    )


def streaming_answers(owner: User) -> list[int]:
    """The ids of the owner's answers being written now, in any conversation."""
    return list(
        db.session.scalars(
            select(Message.id)
            .join(Conversation)
            .where(Conversation.user_id == owner.id)
            .where(Message.status == Status.STREAMING.value)
        )
    )


def update_settings(conversation: Conversation, settings: Settings) -> None:
    """Change how the next answers are asked."""
    _apply(conversation, settings)
    db.session.commit()


def _apply(conversation: Conversation, settings: Settings) -> None:
    conversation.model = settings.model
    conversation.system_prompt = settings.system_prompt
    conversation.tools = " ".join(settings.tools)
    conversation.server_tools = " ".join(settings.server_tools)
    conversation.thinking = settings.thinking.on
    conversation.effort = settings.thinking.effort
    conversation.thinking_budget = settings.thinking.budget


def thinking_of(conversation: Conversation) -> Thinking:
    """What the conversation asks for in thinking."""
    return Thinking(conversation.thinking, conversation.effort, conversation.thinking_budget)


def title_from(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"
