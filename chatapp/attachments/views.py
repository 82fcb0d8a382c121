"""Uploading a file for the next question, and serving a question's files to their owner."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, make_response, render_template, request
from flask.typing import ResponseReturnValue

from .. import htmx, ids
from ..auth import signed_in_user
from ..conversations import store as store_of_conversations
from ..extensions import db
from ..llm.catalogue import catalogue
from ..models import AttachedFile
from . import store
from .kinds import INLINE_TYPES, FileRefused

bp = Blueprint("attachments", __name__)


@bp.post("/attachments")
def upload() -> ResponseReturnValue:
    """Store one file for the composer's next question; answer with its chip.

    The composer uploads each file as soon as it is chosen, dropped or pasted, with the model
    the question will go to, so a file that model cannot read is refused at once.
    """
    limits = store.Limits.of(current_app.config)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _refused("Choose a file to attach.")
    data = upload.read()
    upload.close()
    try:
        inspected = store.check(upload.filename, data, limits)
        store.fits_model([inspected], catalogue().get(_model_asked()))
    except FileRefused as exc:
        return _refused(str(exc))
    attachment = store.add(signed_in_user(), upload.filename, data, inspected)
    db.session.commit()
    body = render_template("_attachment_chip.html", file=AttachedFile.of(attachment), pending=True)
    return make_response(body)


@bp.post("/attachments/<id:attachment_id>/remove")
def remove(attachment_id: int) -> ResponseReturnValue:
    """Forget a file that was attached but not sent (its chip's Remove)."""
    store.remove_pending(store.get(attachment_id, signed_in_user()))
    return Response(status=204)


@bp.get("/attachments/<id:attachment_id>")
def show(attachment_id: int) -> Response:
    """The file itself: a raster image inline, anything else as a download."""
    return _file(attachment_id, inline=True)


@bp.get("/attachments/<id:attachment_id>/download")
def download(attachment_id: int) -> Response:
    return _file(attachment_id, inline=False)


def _file(attachment_id: int, *, inline: bool) -> Response:
    attachment = store.get(attachment_id, signed_in_user())
    data = attachment.data
    db.session.close()
    return file_response(data, attachment.name, attachment.media_type, inline=inline)


def file_response(
    data: bytes, name: str, media_type: str, *, inline: bool, cache: str = "private, max-age=3600"
) -> Response:
    """A stored file as a response: a raster image inline if asked, anything else as a
    download, never sniffed, and sandboxed should a browser render it anyway."""
    inline = inline and media_type in INLINE_TYPES
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    response = Response(data, mimetype=media_type)
    disposition = "inline" if inline else "attachment"
    response.headers.set("Content-Disposition", disposition, filename=name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Nothing in a file runs, even if a browser were to render it.
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = cache
    return response


def _model_asked() -> str:
    """The model the next question goes to: the composer's choice for a new chat, else its
    conversation's, else the default."""
    if model := request.form.get("model"):
        return model
    conversation_id = ids.parse(request.form.get("conversation_id"))
    if conversation_id is not None:
        return store_of_conversations.get_conversation(conversation_id, signed_in_user()).model
    return catalogue().default()


def _refused(sentence: str) -> Response:
    """Say next to the composer why the file was not attached; nothing was stored."""
    response = make_response(render_template("_composer_error.html", error=sentence), 422)
    return htmx.retarget(response, "#composer-error", "outerHTML")
