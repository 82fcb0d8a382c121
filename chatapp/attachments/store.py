"""Reading and writing attachments, always through their owner.

A file is stored when it is uploaded (the composer uploads as soon as a file is chosen,
dropped or pasted), pending until a send claims it for its question. Another person's file is
a 404, like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from flask import abort, current_app, request
from sqlalchemy import delete, select, update

from ..extensions import db
from ..ids import parse as parse_id
from ..llm.catalogue import Model
from ..models import AttachedFile, Attachment, User, utcnow
from .kinds import FileRefused, Inspected, inspect

# Pending files nobody sent are deleted after this long.
PENDING_FOR = timedelta(days=1)


@dataclass(frozen=True)
class Limits:
    """How much one question may carry (CHATAPP_MAX_FILE_MB, CHATAPP_MAX_FILES, the API's)."""

    file_bytes: int
    files: int
    pdf_pages: int
    question_bytes: int  # the API takes requests of at most 32 MB

    @classmethod
    def of(cls, config: dict[str, object]) -> Limits:
        return cls(
            file_bytes=int(float(str(config["MAX_FILE_MB"])) * 1024 * 1024),
            files=int(str(config["MAX_FILES"])),
            pdf_pages=int(str(config["MAX_PDF_PAGES"])),
            question_bytes=32 * 1024 * 1024,
        )

    @property
    def upload_bytes(self) -> int:
        """The largest upload of one file (with its form)."""
        return self.file_bytes + 1024 * 1024

    @property
    def send_bytes(self) -> int:
        """The largest send: a question's files (without JavaScript the form carries them),
        and its text, which form encoding makes up to 12 bytes a character."""
        return min(self.files * self.file_bytes, self.question_bytes) + 2 * 1024 * 1024


# The endpoints whose requests carry files, and how much each may carry.
_CARRIERS = {
    "attachments.upload": "upload_bytes",
    "conversations.send": "send_bytes",
    "projects.add_files": "send_bytes",
}


def limit_request_size() -> None:
    """Let the requests that carry files be as large as their files (CHATAPP_MAX_CONTENT_LENGTH
    holds for every other request). Runs before anything reads the form."""
    carrier = _CARRIERS.get(request.endpoint or "")
    if carrier is not None:
        limit = getattr(Limits.of(current_app.config), carrier)
        request.max_content_length = max(limit, int(current_app.config["MAX_CONTENT_LENGTH"]))


def check(name: str, data: bytes, limits: Limits) -> Inspected:
    """What the file is, or FileRefused if it cannot be attached at all."""
    if len(data) > limits.file_bytes:
        raise FileRefused(
            f"{name} is {_mb(len(data))}; files may be at most {_mb(limits.file_bytes)} "
            "(CHATAPP_MAX_FILE_MB)."
        )
    return inspect(name, data, max_pdf_pages=limits.pdf_pages)


def fits_model(files: Iterable[AttachedFile | Inspected], model: Model | None) -> None:
    """FileRefused if the model cannot read one of the files."""
    name = model.display_name if model else "This model"
    for file in files:
        if file.kind == "image" and not (model and model.image_input):
            raise FileRefused(f"{name} cannot see images; pick another model to attach one.")
        if file.kind == "pdf" and not (model and model.pdf_input):
            raise FileRefused(f"{name} cannot read PDFs; pick another model to attach one.")


def fits_question(files: Sequence[AttachedFile], limits: Limits) -> None:
    """FileRefused if the question would carry too many files or too many bytes."""
    if len(files) > limits.files:
        raise FileRefused(
            f"A question can carry at most {limits.files} files (CHATAPP_MAX_FILES); "
            "remove some and send again."
        )
    total = sum(file.size for file in files)
    if total > limits.question_bytes:
        raise FileRefused(
            f"These files come to {_mb(total)}; one question can carry at most "
            f"{_mb(limits.question_bytes)}. Send them in two questions."
        )


def add(owner: User, name: str, data: bytes, inspected: Inspected) -> Attachment:
    """Store a checked file, pending until a question claims it (not committed)."""
    attachment = Attachment(
        user_id=owner.id,
        name=clean_name(name),
        kind=inspected.kind,
        media_type=inspected.media_type,
        size=len(data),
        width=inspected.width,
        height=inspected.height,
        pages=inspected.pages,
        data=data,
    )
    db.session.add(attachment)
    return attachment


def pending(owner: User, ids: Iterable[str]) -> list[Attachment]:
    """The owner's pending files with these ids, in the order given; 404 for any other."""
    found = []
    for raw in ids:
        attachment_id = parse_id(raw)
        if attachment_id is None:
            abort(404)
        attachment = db.session.get(Attachment, attachment_id)
        if attachment is None or attachment.user_id != owner.id or not _pending(attachment):
            abort(404)
        found.append(attachment)
    return found


def get(attachment_id: int, owner: User) -> Attachment:
    """One of the owner's question files, or a 404 (a project's files are reached through
    their project: chatapp.projects)."""
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.user_id != owner.id or attachment.project_id is not None:
        abort(404)
    return attachment


def _pending(attachment: Attachment) -> bool:
    """Uploaded for a question and not sent yet (neither a question's nor a project's)."""
    return attachment.message_id is None and attachment.project_id is None


def remove_pending(attachment: Attachment) -> None:
    """Forget a file that was not sent (its chip was removed)."""
    if not _pending(attachment):
        abort(404)
    db.session.delete(attachment)
    db.session.commit()


def data_of(attachment_ids: Sequence[int]) -> dict[int, bytes]:
    """The bytes of these files, by id."""
    rows = db.session.execute(
        select(Attachment.id, Attachment.data).where(Attachment.id.in_(attachment_ids))
    )
    return {row.id: row.data for row in rows}


def set_file_id(attachment_id: int, file_id: str | None) -> None:
    """Remember (or forget) the Files API copy of a file."""
    db.session.execute(
        update(Attachment).where(Attachment.id == attachment_id).values(file_id=file_id)
    )
    db.session.commit()


def delete_stale_pending(*, limit: int) -> int:
    """Delete up to `limit` files uploaded but never sent, older than PENDING_FOR; how many
    went."""
    stale = select(Attachment.id).where(Attachment.message_id.is_(None))
    stale = stale.where(Attachment.project_id.is_(None))
    stale = stale.where(Attachment.created_at < utcnow() - PENDING_FOR).limit(limit)
    ids = list(db.session.scalars(stale))
    if ids:
        db.session.execute(delete(Attachment).where(Attachment.id.in_(ids)))
    db.session.commit()
    return len(ids)


def clean_name(name: str) -> str:
    """A file name to show and to send: its last part, printable, not too long."""
    last = name.replace("\\", "/").rsplit("/", 1)[-1]
    printable = "".join(c for c in last if c.isprintable()).strip()
    return (printable or "file")[-200:]


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
