"""Reading and writing conversations. Every query for them lives here.

Every conversation and message is read through its owner: another person's ids are a 404,
exactly like ids that do not exist, so nobody can even learn which ones do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flask import abort
from sqlalchemy import ColumnElement, func, literal, or_, select

from ..extensions import db
from ..llm import errors, server_tools
from ..llm.catalogue import EFFORT_LEVELS, Catalogue, Model
from ..llm.thinking import BUDGET_RANGE, DEFAULT_BUDGET, Thinking, fit
from ..models import Conversation, Message, MessageState, Naming, Status, User, utcnow
from ..tools.record import plain_text

TITLE_CHARS = 60


class PromptError(ValueError):
    """A prompt that cannot be sent; the message says why, for the page."""


def clean_prompt(text: str, *, limit: int) -> str:
    """The prompt to send, or PromptError saying what is wrong with it."""
    if not text.strip():
        raise PromptError("Type a message first.")
    if len(text) > limit:
        raise PromptError(
            f"That message is {len(text):,} characters long; the limit is {limit:,}. "
            "Shorten it and send again."
        )
    return text


class SettingsError(ValueError):
    """Settings that cannot be saved; the message says why, for the page."""


@dataclass(frozen=True)
class Settings:
    """How a conversation asks Claude: the model, system prompt, tools (its own and
    Anthropic's server tools) and thinking."""

    model: str
    system_prompt: str = ""
    tools: tuple[str, ...] = ()
    thinking: Thinking = Thinking()
    server_tools: tuple[str, ...] = ()


def clean_settings(
    *,
    model: str,
    system_prompt: str,
    tools: list[str],
    thinking: bool,
    thinking_budget: str,
    effort: str,
    catalogue: Catalogue,
    known_tools: list[str],
    server: list[str] | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[Settings, list[str]]:
    """Settings from a form, kept to what the model takes (and, of the server tools in
    `server`, what this installation's `config` allows), with a sentence for each thing it
    does not take; or SettingsError saying what is wrong with them."""
    chosen_model = catalogue.get(model)
    if chosen_model is None or chosen_model not in catalogue.offered():
        raise SettingsError(f"There is no model called {model!r} here; pick one from the list.")
    unknown = [name for name in tools if name not in known_tools]
    unknown += [name for name in server or [] if name not in server_tools.NAMES]
    if unknown:
        raise SettingsError(f"There is no tool called {unknown[0]!r} here.")
    low, high = BUDGET_RANGE
    try:
        budget = int(thinking_budget.strip() or DEFAULT_BUDGET)
    except ValueError:
        raise SettingsError("The thinking budget must be a whole number of tokens.") from None
    if not low <= budget <= high:
        raise SettingsError(f"The thinking budget must be between {low:,} and {high:,} tokens.")
    effort = effort.strip()
    if effort and effort not in EFFORT_LEVELS:
        raise SettingsError(f"There is no effort level called {effort!r}; pick one from the list.")
    asked = Thinking(on=thinking, effort=effort or None, budget=budget)
    fitted, notes = fit(asked, chosen_model)
    chosen = tuple(name for name in known_tools if name in tools)
    web, dropped = server_tools.fit(server or [], chosen_model, config or {})
    return Settings(model, system_prompt.strip(), chosen, fitted, web), notes + dropped


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


def recent_conversations(owner: User, page: int = 1, per_page: int = 50) -> SidebarPage:
    """The owner's conversations for the sidebar, most recently active first.

    Every page and every new conversation shows this, so it reads only the two columns it
    shows, and one row more than a page instead of counting them all.
    """
    page = max(page, 1)
    rows = db.session.execute(
        select(Conversation.id, Conversation.title)
        .where(Conversation.user_id == owner.id)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page + 1)
    ).all()
    return SidebarPage(rows[:per_page], page, len(rows) > per_page)


def search(owner: User, query: str, limit: int = 50) -> list[Conversation]:
    """The owner's conversations whose title or messages match `query`, newest first.

    PostgreSQL uses its full-text search (whole words, any language); SQLite looks for the
    text anywhere, ignoring case.
    """
    query = " ".join(query.split())
    if not query:
        return []
    if db.engine.dialect.name == "postgresql":
        words = func.plainto_tsquery("simple", query)
        title = func.to_tsvector("simple", Conversation.title).op("@@")(words)
        content = func.to_tsvector("simple", Message.content).op("@@")(words)
    else:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        title = Conversation.title.ilike(pattern, escape="\\")
        content = Message.content.ilike(pattern, escape="\\")
    # Only the owner's messages are read: on SQLite the scan holds the worker's every stream.
    matching = (
        select(Message.conversation_id)
        .join(Conversation, Message.conversation_id == Conversation.id)
        .where(Conversation.user_id == owner.id)
        .where(content)
    )
    return list(
        db.session.scalars(
            select(Conversation)
            .where(Conversation.user_id == owner.id)
            .where(or_(title, Conversation.id.in_(matching)))
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


@dataclass(frozen=True)
class UsageRow:
    """What one person's answers with one model used, all time."""

    username: str
    model: str | None
    answers: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    web_search_requests: int = 0


def usage_by_person_and_model() -> list[UsageRow]:
    """Token totals of every answer, by person and model (for the admins' usage page); the
    requests that named conversations count as tokens, not as answers."""
    rows = db.session.execute(
        select(
            User.username,
            Message.model,
            func.count(Message.id),
            func.coalesce(func.sum(Message.input_tokens), 0),
            func.coalesce(func.sum(Message.output_tokens), 0),
            func.coalesce(func.sum(Message.cache_read_tokens), 0),
            func.coalesce(func.sum(Message.cache_creation_tokens), 0),
            func.coalesce(func.sum(Message.web_search_requests), 0),
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(User, User.id == Conversation.user_id)
        .where(Message.role == "assistant")
        .where(Message.input_tokens.is_not(None))
        .group_by(User.username, Message.model)
    )
    namings = db.session.execute(
        select(
            User.username,
            Conversation.naming_model,
            literal(0),
            func.coalesce(func.sum(Conversation.naming_input_tokens), 0),
            func.coalesce(func.sum(Conversation.naming_output_tokens), 0),
            literal(0),
            literal(0),
            literal(0),
        )
        .join(User, User.id == Conversation.user_id)
        .where(Conversation.naming_input_tokens.is_not(None))
        .group_by(User.username, Conversation.naming_model)
    )
    found = [UsageRow(row[0], row[1], *(int(v or 0) for v in row[2:])) for row in [*rows, *namings]]
    return sorted(found, key=lambda row: (row.username, row.model or ""))


def create_conversation(owner: User, settings: Settings) -> Conversation:
    """A new, empty conversation of the owner's (not committed)."""
    conversation = Conversation(user_id=owner.id)
    _apply(conversation, settings)
    db.session.add(conversation)
    return conversation


def streaming_answer(conversation: Conversation) -> Message | None:
    """The answer still being written in this conversation, if any."""
    return db.session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation.id)
        .where(Message.status == Status.STREAMING.value)
        .limit(1)
    ).first()


def add_exchange(conversation: Conversation, prompt: str) -> tuple[Message, Message]:
    """Store the user's message and an empty answer to be streamed, and commit."""
    if not conversation.messages:
        conversation.title = title_from(prompt)
    question = Message(conversation=conversation, role="user", content=prompt)
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


def edit_question(question: Message, content: str) -> Message:
    """Change the last question and write its answer again, in place; commit, and return
    the answer (to be streamed)."""
    messages = question.conversation.messages
    if question.role != "user" or len(messages) < 2 or messages[-2].id != question.id:
        raise ActionError("Only the last question can be edited.")
    answer = messages[-1]
    if answer.status == Status.STREAMING.value:
        raise ActionError(
            "Claude is still answering. Wait for the answer or press Stop, then edit."
        )
    question.content = content
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
    conversation.title = title[:200]
    db.session.commit()


def delete(conversation: Conversation) -> None:
    """Delete the conversation and every message in it."""
    db.session.delete(conversation)
    db.session.commit()


def switch_model(conversation: Conversation, model_id: str, model: Model | None) -> None:
    """Move the conversation to another model, keeping the thinking it takes; commit."""
    conversation.model = model_id
    fitted, _notes = fit(thinking_of(conversation), model)
    conversation.thinking, conversation.effort = fitted.on, fitted.effort
    db.session.commit()


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
