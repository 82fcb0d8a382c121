"""Reading and writing projects. Every query for them lives here.

Who may do what with a project:

- its owner: everything; alone deletes it or changes its sharing;
- anyone signed in, when it is shared "Can use": see it and start their own conversations in
  it; "Can edit": also change its name, instructions and files;
- anyone else: nothing. A project they cannot see is a 404, exactly like one that does not
  exist; one they can see but not change answers 403.

Conversations in a project stay their author's alone (chatapp.conversations.store reads them
through their owner). A conversation's project is always one its author can see: making a
project private moves everyone else's conversations out of it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from flask import abort
from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import selectinload

from .. import audit
from ..attachments import store as stored_files
from ..attachments.kinds import FileRefused, Inspected
from ..attachments.store import clean_name
from ..extensions import db
from ..llm import files as uploaded_files
from ..models import AttachedFile, Attachment, Conversation, Project, Sharing, User, utcnow

MAX_NAME = 200  # the column's width


class Need(enum.Enum):
    """What a person needs to be allowed, to act on a project."""

    USE = "use"  # see it, start conversations in it
    EDIT = "edit"  # change its name, instructions, files
    OWN = "own"  # delete it, change its sharing


class ProjectError(ValueError):
    """A change to a project that cannot be made; the message says why, for the page."""


def visible_to(user: User) -> ColumnElement[bool]:
    """The projects `user` may see: their own, and every shared one."""
    return or_(Project.user_id == user.id, Project.sharing != Sharing.PRIVATE.value)


def can(user: User, project: Project, need: Need) -> bool:
    return _may(user.id, project, need)


def _may(user_id: int | None, project: Project, need: Need) -> bool:
    if project.user_id == user_id:
        return True
    if need is Need.OWN:
        return False
    if need is Need.EDIT:
        return project.sharing == Sharing.EDIT.value
    return project.sharing in (Sharing.USE.value, Sharing.EDIT.value)


def get_project(project_id: int, user: User, need: Need = Need.USE) -> Project:
    """The project, if `user` may do what `need` says with it: else 404 when they cannot
    even see it, 403 when they can see it but not do that."""
    project = db.session.get(Project, project_id)
    if project is None or not can(user, project, Need.USE):
        abort(404)
    if not can(user, project, need):
        what = "delete it or change its sharing" if need is Need.OWN else "change it"
        abort(403, f"Only {'its owner' if need is Need.OWN else 'its editors'} may {what}.")
    return project


def find_visible(project_id: int, user: User) -> Project | None:
    """The project if `user` may see it, else None."""
    project = db.session.get(Project, project_id)
    return project if project is not None and can(user, project, Need.USE) else None


def projects_for(user: User) -> list[Project]:
    """Every project `user` may see, by name."""
    return list(
        db.session.scalars(
            select(Project)
            .where(visible_to(user))
            .options(selectinload(Project.owner))
            .order_by(func.lower(Project.name), Project.id)
        )
    )


def clean_name_of_project(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise ProjectError("A project needs a name.")
    if len(name) > MAX_NAME:
        raise ProjectError(
            f"That name is {len(name):,} characters long; the limit is {MAX_NAME}. Shorten it."
        )
    return name


def clean_instructions(text: str, *, limit: int) -> str:
    text = text.strip()
    if len(text) > limit:
        raise ProjectError(
            f"The instructions are {len(text):,} characters long; the limit is {limit:,}. "
            "Shorten them and save again."
        )
    return text


def create(owner: User, name: str, instructions: str = "") -> Project:
    """A new private project of the owner's; committed."""
    project = Project(user_id=owner.id, name=name, instructions=instructions)
    db.session.add(project)
    db.session.flush()
    audit.record("project_created", actor=owner, target=project.id, commit=False)
    db.session.commit()
    return project


def update_project(project: Project, *, name: str, instructions: str) -> None:
    project.name = name
    project.instructions = instructions
    project.updated_at = utcnow()
    db.session.commit()


def set_sharing(project: Project, sharing: str, *, by: User) -> None:
    """Share the project with the team (Can use, Can edit) or make it private again. Made
    private, everyone else's conversations leave it (they stay theirs, outside any project)."""
    if sharing not in {s.value for s in Sharing}:
        raise ProjectError("Choose who may use this project from the list.")
    project.sharing = sharing
    if sharing == Sharing.PRIVATE.value:
        db.session.execute(
            update(Conversation)
            .where(Conversation.project_id == project.id)
            .where(Conversation.user_id != project.user_id)
            .values(project_id=None)
        )
    audit.record("project_sharing", actor=by, target=project.id, detail=sharing, commit=False)
    db.session.commit()


def delete_projects(project_ids: Sequence[int], *, by: User | None) -> None:
    """Delete these projects with their files; their conversations stay, outside any project
    (the foreign key's ON DELETE SET NULL), and so do everyone's pins of anything else."""
    if not project_ids:
        return
    file_ids = list(
        db.session.scalars(
            select(Attachment.file_id)
            .where(Attachment.project_id.in_(project_ids))
            .where(Attachment.file_id.is_not(None))
        )
    )
    for project_id in project_ids:
        project = db.session.get(Project, project_id)
        if project is not None:
            db.session.delete(project)
            audit.record("project_deleted", actor=by, target=project_id, commit=False)
    db.session.commit()
    uploaded_files.forget_later([file_id for file_id in file_ids if file_id])


def add_file(project: Project, name: str, data: bytes, inspected: Inspected) -> Attachment:
    """Store a checked file as one of the project's; committed. It belongs to the project's
    owner, whoever added it."""
    attachment = stored_files.add(project.owner, name, data, inspected)
    attachment.project_id = project.id
    project.updated_at = utcnow()
    db.session.commit()
    return attachment


def check_names(kept: Sequence[AttachedFile], names: Sequence[str]) -> None:
    """FileRefused if one of the new files' `names` is already one of the project's (`kept`)
    or is chosen twice: Claude, and the people using the project, tell its files apart by
    their names."""
    taken = {file.name.casefold() for file in kept}
    for name in map(clean_name, names):
        if name.casefold() in taken:
            raise FileRefused(
                f"The project has a file named {name} already. To replace it, remove it first; "
                "to keep both, rename one."
            )
        taken.add(name.casefold())


def file_of(project: Project, attachment_id: int) -> Attachment:
    """One of the project's files, or a 404."""
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.project_id != project.id:
        abort(404)
    return attachment


def remove_file(project: Project, attachment: Attachment) -> None:
    file_id = attachment.file_id
    db.session.delete(attachment)
    project.updated_at = utcnow()
    db.session.commit()
    uploaded_files.forget_later([file_id] if file_id else [])


def files_of(project_id: int) -> list[AttachedFile]:
    """The project's files as plain values, without their bytes, in the order added."""
    return [
        AttachedFile.of(attachment)
        for attachment in db.session.scalars(
            select(Attachment).where(Attachment.project_id == project_id).order_by(Attachment.id)
        )
    ]


def conversations_in(project: Project, user: User) -> list[Conversation]:
    """`user`'s own conversations in the project, most recently active first."""
    return list(
        db.session.scalars(
            select(Conversation)
            .where(Conversation.user_id == user.id)
            .where(Conversation.project_id == project.id)
            .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
        )
    )


def move(conversation: Conversation, project: Project | None) -> None:
    """Put one of the author's conversations in a project they can see, or (None) out of any;
    committed. The next answer is asked with the project's instructions and files."""
    conversation.project_id = project.id if project is not None else None
    db.session.commit()


@dataclass(frozen=True)
class ProjectContext:
    """What a conversation's project adds to every request: its instructions and files."""

    instructions: str
    files: tuple[AttachedFile, ...]


def context_of(conversation: Conversation) -> ProjectContext | None:
    """The instructions and files of the conversation's project, or None outside any, or
    in one its author may not use (made private while the conversation was being started or
    moved in it: a private project's instructions and files go to its owner's requests
    alone)."""
    if conversation.project_id is None:
        return None
    project = db.session.get(Project, conversation.project_id)
    if project is None or not _may(conversation.user_id, project, Need.USE):
        return None
    return context_of_project(project)


def context_of_project(project: Project) -> ProjectContext:
    return ProjectContext(project.instructions, tuple(files_of(project.id)))


def projects_owned() -> dict[int, int]:
    """How many projects each person owns, by account id (for the admins' page)."""
    rows = db.session.execute(
        select(Project.user_id, func.count(Project.id)).group_by(Project.user_id)
    )
    return {row[0]: int(row[1]) for row in rows}


def shared_projects_of(owner: User) -> list[Project]:
    """The owner's projects that others may use."""
    return list(
        db.session.scalars(
            select(Project)
            .where(Project.user_id == owner.id)
            .where(Project.sharing != Sharing.PRIVATE.value)
            .order_by(func.lower(Project.name), Project.id)
        )
    )


def hand_over(project_ids: Sequence[int], to: User, *, by: User | None) -> None:
    """Give these projects, and their files, to another person; committed. Their
    conversations in it stay where they are; the new owner's are theirs already."""
    if not project_ids:
        return
    db.session.execute(update(Project).where(Project.id.in_(project_ids)).values(user_id=to.id))
    db.session.execute(
        update(Attachment).where(Attachment.project_id.in_(project_ids)).values(user_id=to.id)
    )
    for project_id in project_ids:
        audit.record(
            "project_handed_over", actor=by, target=project_id, detail=to.username, commit=False
        )
    db.session.commit()
