"""The stored shape of conversations and their messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


class Status(enum.StrEnum):
    """Where a message is in its life. Every answer ends in exactly one terminal status."""

    STREAMING = "streaming"
    COMPLETE = "complete"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    # The API stopped the answer (stop_reason "refusal"). Its text so far is kept and shown,
    # but the exchange is never sent to Claude again.
    REFUSED = "refused"


class User(db.Model):  # type: ignore[name-defined]
    """A person who signs in. Their conversations are theirs alone."""

    __tablename__ = "user_account"
    __table_args__ = (UniqueConstraint("username_lower", name="uq_user_account_username_lower"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    # The name in lower case, unique: one account per name whatever its case ("Ann" cannot be
    # made beside "ann"), and found that way. A column rather than an index on lower(username):
    # SQLite's schema cannot be read back with such an index, so no check could compare it.
    username_lower: Mapped[str] = mapped_column(String(80))
    # werkzeug's scrypt hash; "!" for someone who only ever signs in through a trusted proxy.
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Part of every session cookie; signing out, a new password and disabling add one, which
    # ends every session made before (chatapp.auth.accounts.session_user).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # Flask-Login
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return not self.disabled

    def get_id(self) -> str:
        """What the session cookie holds: the account and its session version."""
        return f"{self.id}:{self.session_version}"


class Sharing(enum.StrEnum):
    """Who besides its owner may see a project, and do what in it."""

    PRIVATE = "private"  # its owner alone
    USE = "use"  # the whole team may see it and start their own conversations in it
    EDIT = "edit"  # ... and change its name, instructions and files


class Project(db.Model):  # type: ignore[name-defined]
    """One piece of work: instructions and files every conversation in it starts from.

    Its owner alone deletes it or changes its sharing; a shared project's conversations stay
    their own author's (chatapp/projects/store.py).
    """

    __tablename__ = "project"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    # A system prompt every conversation in the project starts from, before its own.
    instructions: Mapped[str] = mapped_column(Text, default="", server_default="")
    sharing: Mapped[str] = mapped_column(
        String(16), default=Sharing.PRIVATE.value, server_default=Sharing.PRIVATE.value
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    owner: Mapped[User] = relationship()
    # The project's files, in the order added (loaded without their bytes).
    files: Mapped[list[Attachment]] = relationship(
        order_by="Attachment.id", cascade="all, delete-orphan", passive_deletes=True
    )


class Pin(db.Model):  # type: ignore[name-defined]
    """A conversation or a project a person keeps at the top of their sidebar."""

    __tablename__ = "pin"
    __table_args__ = (
        UniqueConstraint("user_id", "conversation_id", name="uq_pin_conversation"),
        UniqueConstraint("user_id", "project_id", name="uq_pin_project"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    # One of the two.
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversation.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Conversation(db.Model):  # type: ignore[name-defined]
    __tablename__ = "conversation"
    __table_args__ = (
        # The sidebar: a person's conversations, most recently active first.
        Index("ix_conversation_user_recent", "user_id", "updated_at", "id"),
        # Retention (CHATAPP_RETAIN_DAYS): the conversations untouched the longest, without
        # reading the others.
        Index("ix_conversation_updated_at", "updated_at", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Whose it is. Empty only for conversations from before accounts, until the first admin
    # is created and takes them.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    # The project it is in, if any; a deleted project leaves its conversations outside any.
    # No index of its own: a project's conversations are read through their author's
    # (ix_conversation_user_recent), and deleting a project is rare.
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    model: Mapped[str] = mapped_column(String(100))
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    # The tools Claude may call here, by name, separated by spaces ("" for none).
    tools: Mapped[str] = mapped_column(String(500), default="", server_default="")
    # Anthropic's server tools Claude may use here ("web_search web_fetch"; "" for none): a
    # column of their own, as a tool module may register a tool of the same name.
    server_tools: Mapped[str] = mapped_column(String(100), default="", server_default="")
    # Extended thinking: on or off, and how many tokens it may use.
    thinking: Mapped[bool] = mapped_column(default=False, server_default=false())
    thinking_budget: Mapped[int] = mapped_column(Integer, default=4096, server_default="4096")
    # Adaptive thinking's effort level (output_config.effort); None: the model's default.
    effort: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The request that named the conversation (CHATAPP_TITLE_MODEL): billed like an answer.
    naming_model: Mapped[str | None] = mapped_column(String(100))
    naming_input_tokens: Mapped[int | None] = mapped_column(Integer)
    naming_output_tokens: Mapped[int | None] = mapped_column(Integer)
    named_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        order_by="Message.id",
        cascade="all, delete-orphan",
    )

    @property
    def naming(self) -> Naming | None:
        """What naming this conversation used, if a model named it."""
        if self.naming_input_tokens is None:
            return None
        return Naming(self.naming_model, self.naming_input_tokens, self.naming_output_tokens)


@dataclass(frozen=True)
class Naming:
    """The tokens of the request that named a conversation, priced as an answer's are."""

    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    web_search_requests: int | None = None


class Message(db.Model):  # type: ignore[name-defined]
    __tablename__ = "message"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversation.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # "user" | "assistant"
    content: Mapped[str] = mapped_column(Text, default="")
    thinking: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[str] = mapped_column(String(16), default=Status.COMPLETE.value, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(100))
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_read_tokens: Mapped[int | None] = mapped_column(Integer)
    cache_creation_tokens: Mapped[int | None] = mapped_column(Integer)
    # Web searches the answer made (the API's usage.server_tool_use): billed per search.
    web_search_requests: Mapped[int | None] = mapped_column(Integer)
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    # An answer as the Messages API takes it back: its rounds of thinking (with signatures),
    # text (with its citations), tool calls and tool results, server tools' calls and results
    # (with their encrypted content). Written when the answer ends; read only to ask the next
    # answer.
    transcript: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    # A question's files, in the order attached (loaded with the message, without their bytes).
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="message",
        order_by="Attachment.position",
        cascade="all, delete-orphan",
    )


class Attachment(db.Model):  # type: ignore[name-defined]
    """A file attached to a question (or a project's file): an image, a PDF or a text file,
    with its bytes.

    Uploaded before the question is sent, it waits without a message (pending) until a send
    claims it; pending files nobody sent are deleted by the sweeper after a day.
    """

    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("message.id", ondelete="CASCADE"), index=True
    )
    # A project's file (then it has no message, and is never pending).
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # "image" | "pdf" | "text"
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    pages: Mapped[int | None] = mapped_column(Integer)
    # The copy uploaded to the Files API, referred to by every request that sends the file.
    file_id: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    message: Mapped[Message | None] = relationship(back_populates="attachments")


class Share(db.Model):  # type: ignore[name-defined]
    """A conversation shared with the team as it was at one moment: a snapshot of its
    messages and files, copied so that later edits or its deletion do not change it
    (chatapp/sharing). Stopping it deletes it; so does deleting its owner."""

    __tablename__ = "share"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The link's secret part (secrets.token_urlsafe): a link cannot be guessed from another.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    # The conversation it was taken from; empty once that is deleted (the snapshot stays).
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversation.id", ondelete="SET NULL"), unique=True
    )
    title: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(100))
    # Anyone with the link may read it, signed in or not (only while CHATAPP_PUBLIC_LINKS).
    public: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    shared_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    owner: Mapped[User] = relationship()
    messages: Mapped[list[SharedMessage]] = relationship(
        back_populates="share",
        order_by="SharedMessage.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class SharedMessage(db.Model):  # type: ignore[name-defined]
    """A message of a share's snapshot, as it stood when shared (an answer still being
    written keeps the status `streaming` and the text it had)."""

    __tablename__ = "shared_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    share_id: Mapped[int] = mapped_column(ForeignKey("share.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    thinking: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(100))
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    # What "Continue in my chats" sends Claude back (see `Message.transcript`).
    transcript: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, deferred=True)

    share: Mapped[Share] = relationship(back_populates="messages")
    files: Mapped[list[SharedFile]] = relationship(
        order_by="SharedFile.position", passive_deletes=True
    )


class SharedFile(db.Model):  # type: ignore[name-defined]
    """A question's file in a share's snapshot: a copy of the attachment, bytes and all."""

    __tablename__ = "shared_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    share_id: Mapped[int] = mapped_column(ForeignKey("share.id", ondelete="CASCADE"), index=True)
    shared_message_id: Mapped[int] = mapped_column(
        ForeignKey("shared_message.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    pages: Mapped[int | None] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class ListedModel(db.Model):  # type: ignore[name-defined]
    """A model as the Models API last listed it: the last good list, for a worker that
    cannot reach the API (see chatapp/llm/catalogue.py)."""

    __tablename__ = "listed_model"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    info: Mapped[dict[str, Any]] = mapped_column(JSON)  # the ModelInfo as the API sent it
    fetched_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


@dataclass(frozen=True)
class AttachedFile:
    """A question's file as plain values, without its bytes."""

    id: int
    name: str
    kind: str
    media_type: str
    size: int
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    file_id: str | None = None

    @classmethod
    def of(cls, attachment: Attachment) -> AttachedFile:
        return cls(
            attachment.id,
            attachment.name,
            attachment.kind,
            attachment.media_type,
            attachment.size,
            attachment.width,
            attachment.height,
            attachment.pages,
            attachment.file_id,
        )


class AuditEvent(db.Model):  # type: ignore[name-defined]
    """One thing done that an admin may have to account for: who, what, to what, when and
    from where (chatapp/audit). Never the text of a conversation, nor its title."""

    __tablename__ = "audit_event"
    __table_args__ = (
        # The admins' filters, newest first; retention (CHATAPP_AUDIT_RETAIN_DAYS) by age.
        Index("ix_audit_event_username", "username", "id"),
        Index("ix_audit_event_kind", "kind", "id"),
        Index("ix_audit_event_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))  # "sign_in", "conversation_deleted", ...
    # Who: the account and its name at the time (no foreign key: the log outlives what it
    # names). A failed sign-in has the name typed and no id; the command line and the server
    # itself have neither (`address` says which).
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(80))
    # What it was done to: an account or a conversation, by id, as the kind says.
    target_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(String(200), default="")
    # From where: the client's address, "cli:<system user>", or empty for the server itself.
    address: Mapped[str | None] = mapped_column(String(64))


@dataclass(frozen=True)
class MessageState:
    """A message as plain values: what templates render and what streams carry.

    Streams never hold ORM objects or sessions, so a finished or live answer travels as this.
    """

    id: int
    conversation_id: int
    role: str
    content: str
    status: str
    thinking: str = ""
    error: str | None = None
    model: str | None = None
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_creation_tokens: int | None = None
    web_search_requests: int | None = None
    ttft_ms: int | None = None
    duration_ms: int | None = None
    # Only where the next request is built (see `Message.transcript`); never loaded for pages.
    transcript: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    attachments: tuple[AttachedFile, ...] = ()  # a question's files

    @classmethod
    def of(cls, message: Message, *, transcript: bool = False) -> MessageState:
        values: dict[str, Any] = {name: getattr(message, name) for name in _STATE_FIELDS}
        if transcript:
            values["transcript"] = message.transcript
        if message.role == "user":
            values["attachments"] = tuple(AttachedFile.of(a) for a in message.attachments)
        return cls(**values)

    @property
    def position(self) -> int:
        """How far the answer has come: characters of thinking, then of text."""
        return len(self.thinking) + len(self.content)

    @property
    def is_streaming(self) -> bool:
        return self.status == Status.STREAMING.value

    @property
    def is_terminal(self) -> bool:
        return not self.is_streaming


_STATE_FIELDS = tuple(
    f.name for f in fields(MessageState) if f.name not in ("transcript", "attachments")
)
