"""Reading and writing shares. Every query for them lives here.

A share is a snapshot: its messages and files are copies, taken when the owner shares (or
updates) it, so nothing done to the conversation afterwards changes what the link shows. Only
its owner manages it (anyone else's share ids are a 404), an admin may end any, and a link
reads only while its share exists and its owner's account is enabled.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence

from flask import abort
from sqlalchemy import case, func, insert, literal, select
from sqlalchemy import delete as delete_rows
from sqlalchemy.orm import selectinload, undefer

from .. import audit
from ..conversations import forms
from ..conversations import store as conversations
from ..extensions import db
from ..models import (
    Attachment,
    Conversation,
    Message,
    MessageState,
    Share,
    SharedFile,
    SharedMessage,
    Status,
    User,
    utcnow,
)

TOKEN_BYTES = 32  # secrets.token_urlsafe: 43 characters, 256 bits
MAX_TOKEN = 64  # the column's width: a longer token in a link is no share's

# What a copied answer that was still being written when shared says.
UNFINISHED = "This answer was still being written when the conversation was shared."

# How a page shows an answer being written now: the text published so far.
Now = Callable[[MessageState], MessageState]

_FILE_COLUMNS = ("position", "name", "kind", "media_type", "size", "width", "height", "pages")


def share_of(conversation: Conversation) -> Share | None:
    """The conversation's share, if it is shared."""
    return db.session.scalars(select(Share).where(Share.conversation_id == conversation.id)).first()


def share(conversation: Conversation, owner: User, *, now: Now) -> Share:
    """Share the owner's conversation as it is now (or give its share, if it has one); commit."""
    found = share_of(conversation)
    if found is not None:
        return found
    shared = Share(
        token=secrets.token_urlsafe(TOKEN_BYTES),
        user_id=owner.id,
        conversation_id=conversation.id,
        title=conversation.title,
        model=conversation.model,
    )
    db.session.add(shared)
    _take_snapshot(shared, conversation, now)
    audit.record("conversation_shared", actor=owner, target=conversation.id, commit=False)
    db.session.commit()
    return shared


class ShareError(ValueError):
    """Something that cannot be done to this share; the message says why, for the page."""


def update(shared: Share, *, now: Now) -> None:
    """Take the snapshot again from the conversation as it is now; commit."""
    conversation = (
        db.session.get(Conversation, shared.conversation_id) if shared.conversation_id else None
    )
    if conversation is None:
        raise ShareError(
            "The conversation this was shared from has been deleted, so there is nothing to "
            "update it from. Stop sharing it, or leave it as it is."
        )
    db.session.execute(
        delete_rows(SharedMessage).where(SharedMessage.share_id == shared.id),
        execution_options={"synchronize_session": False},
    )
    db.session.expire(shared, ["messages"])
    shared.title = conversation.title
    shared.model = conversation.model
    shared.shared_at = utcnow()
    _take_snapshot(shared, conversation, now)
    db.session.commit()


def _take_snapshot(shared: Share, conversation: Conversation, now: Now) -> None:
    """Copy the conversation's messages into the share, and their files (in the database, by
    one INSERT ... SELECT: their bytes never pass through this worker)."""
    shared.shared_at = utcnow()
    originals = db.session.scalars(
        select(Message)
        .where(Message.conversation_id == conversation.id)
        .order_by(Message.id)
        .options(undefer(Message.transcript), selectinload(Message.attachments))
    ).all()
    copies: dict[int, SharedMessage] = {}
    for position, message in enumerate(originals):
        state = now(MessageState.of(message))
        copies[message.id] = SharedMessage(
            share=shared,
            position=position,
            role=message.role,
            content=state.content,
            thinking=state.thinking,
            status=message.status,
            error=message.error,
            model=message.model,
            stop_reason=message.stop_reason,
            transcript=message.transcript,
        )
    db.session.add_all(copies.values())
    db.session.flush()
    with_files = {m.id: copies[m.id].id for m in originals if m.attachments}
    if with_files:
        db.session.execute(
            insert(SharedFile).from_select(
                ["share_id", "shared_message_id", *_FILE_COLUMNS, "data"],
                select(
                    literal(shared.id),
                    case(with_files, value=Attachment.message_id),
                    *(getattr(Attachment, name) for name in _FILE_COLUMNS),
                    Attachment.data,
                ).where(Attachment.message_id.in_(with_files)),
            )
        )


def own_share(share_id: int, owner: User) -> Share:
    """The owner's share, or a 404."""
    found = db.session.get(Share, share_id)
    if found is None or found.user_id != owner.id:
        abort(404)
    return found


def shares_of(owner: User) -> Sequence[Share]:
    """The owner's shares, the most recently shared first."""
    return db.session.scalars(
        select(Share).where(Share.user_id == owner.id).order_by(Share.shared_at.desc())
    ).all()


def every_share() -> Sequence[Share]:
    """Everyone's shares with their owners, the most recently shared first (for admins)."""
    return db.session.scalars(
        select(Share).options(selectinload(Share.owner)).order_by(Share.shared_at.desc())
    ).all()


def counts() -> dict[int, int]:
    """How many shares each person has, by account id."""
    rows = db.session.execute(select(Share.user_id, func.count(Share.id)).group_by(Share.user_id))
    return {user_id: int(count) for user_id, count in rows}


def find(token: str) -> Share | None:
    """The share this link names, while it is shared and its owner's account is enabled."""
    if not token or len(token) > MAX_TOKEN:
        return None
    return db.session.scalars(
        select(Share)
        .join(User, User.id == Share.user_id)
        .where(Share.token == token, User.disabled.is_(False))
        .options(selectinload(Share.owner))
    ).first()


def snapshot(shared: Share) -> Sequence[SharedMessage]:
    """The share's messages in order, with their files (without their bytes)."""
    return db.session.scalars(
        select(SharedMessage)
        .where(SharedMessage.share_id == shared.id)
        .order_by(SharedMessage.position)
        .options(selectinload(SharedMessage.files))
    ).all()


def shared_file(shared: Share, file_id: int) -> SharedFile | None:
    """A file of the share's snapshot, with its bytes."""
    return db.session.scalars(
        select(SharedFile)
        .where(SharedFile.id == file_id, SharedFile.share_id == shared.id)
        .options(undefer(SharedFile.data))
    ).first()


def set_public(shared: Share, public: bool, *, by: User) -> None:
    """Let anyone with the link read it (while CHATAPP_PUBLIC_LINKS allows), or only the team."""
    if shared.public != public:
        shared.public = public
        detail = "public link on" if public else "public link off"
        audit.record("share_public", actor=by, target=shared.conversation_id, detail=detail)
    db.session.commit()


def stop(shared: Share, *, by: User) -> None:
    """Stop sharing: the share and its snapshot go, and its link answers 404; commit."""
    whose = "" if shared.user_id == by.id else f"owner {shared.owner.username}"
    target = shared.conversation_id
    detail = "; ".join(part for part in (f"share {shared.id}", whose) if part)
    db.session.execute(delete_rows(Share).where(Share.id == shared.id))
    db.session.expunge(shared)
    audit.record("share_ended", actor=by, target=target, detail=detail, commit=False)
    db.session.commit()


def copy_for(shared: Share, viewer: User, model: str) -> Conversation:
    """A new conversation of the viewer's, copied from the share's snapshot with its files
    (as the viewer's own attachments), to go on from; commit.

    An answer still being written when shared is copied as it stood, `interrupted`, so the
    viewer can retry or continue it. Usage is not copied: the viewer's copy cost them nothing.
    """
    conversation = conversations.create_conversation(viewer, forms.Settings(model))
    conversation.title = shared.title
    messages = db.session.scalars(
        select(SharedMessage)
        .where(SharedMessage.share_id == shared.id)
        .order_by(SharedMessage.position)
        .options(undefer(SharedMessage.transcript), selectinload(SharedMessage.files))
    ).all()
    copies: dict[int, Message] = {}
    for message in messages:
        unfinished = message.status == Status.STREAMING.value
        copies[message.id] = Message(
            conversation=conversation,
            role=message.role,
            content=message.content,
            thinking=message.thinking,
            status=Status.INTERRUPTED.value if unfinished else message.status,
            error=UNFINISHED if unfinished else message.error,
            model=message.model,
            stop_reason=message.stop_reason,
            transcript=None if unfinished else message.transcript,
        )
    db.session.add_all(copies.values())
    db.session.flush()
    with_files = {m.id: copies[m.id].id for m in messages if m.files}
    if with_files:
        db.session.execute(
            insert(Attachment).from_select(
                ["user_id", "message_id", *_FILE_COLUMNS, "data", "created_at"],
                select(
                    literal(viewer.id),
                    case(with_files, value=SharedFile.shared_message_id),
                    *(getattr(SharedFile, name) for name in _FILE_COLUMNS),
                    SharedFile.data,
                    literal(utcnow()),
                ).where(SharedFile.shared_message_id.in_(with_files)),
            )
        )
    db.session.commit()
    return conversation


def get(share_id: int) -> Share | None:
    """Anyone's share, by id (for admins)."""
    return db.session.get(Share, share_id)
