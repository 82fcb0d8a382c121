"""A question's files as Claude takes them: uploaded once with the Files API, then referred to
by `file_id` in every request that sends them.

Why not base64 in every request: a conversation that starts with a 20 MB PDF would send about
27 MB of base64 on each of its turns (bench/attachments.py measures it), close to the API's
32 MB limit on a request, for a document the API already has. Uploaded once, each turn's
request stays a few kilobytes, and the document is read from the prompt cache like any other
part of the prompt. Text files are small and go inline as text documents.

A server without the Files API (an Anthropic-compatible local server answers 404) gets
base64 instead, and so does every server with CHATAPP_FILES_API off.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from typing import Any

import anthropic
import gevent
from flask import Flask, current_app

from ..attachments import store
from ..attachments.kinds import text_of
from ..models import AttachedFile, MessageState

log = logging.getLogger(__name__)


class Files:
    """Turns the files of a conversation's questions into content blocks for a request."""

    def __init__(
        self, app: Flask, client: Callable[[], anthropic.Anthropic], *, use_files_api: bool
    ) -> None:
        self._app = app
        self._client = client
        self._use_files_api = use_files_api
        app.extensions[EXTENSION_KEY] = self

    def blocks(
        self,
        history: Iterable[MessageState],
        *,
        upload_again: bool = False,
        citations: bool = False,
        more: Iterable[AttachedFile] = (),
    ) -> dict[int, dict[str, Any]]:
        """The content block of every file in `history` (and in `more`: a project's files), by
        attachment id. Files not yet
        uploaded (or all, `upload_again`) are uploaded now, and their `file_id` kept for the
        next requests. With `citations` (the model cites), Claude may cite documents' pages
        and passages."""
        files = [*more, *(file for message in history for file in message.attachments)]
        uploaded = {f.id: f.file_id for f in files if f.file_id and not upload_again}
        needed = [f.id for f in files if f.kind == "text" or f.id not in uploaded]
        data: dict[int, bytes] = {}
        if needed:
            with self._app.app_context():
                data = store.data_of(needed)
        blocks = {}
        for file in files:
            file_id = uploaded.get(file.id)
            if file.kind == "text":
                blocks[file.id] = _text_document(file, data[file.id])
            elif self._use_files_api and file_id is None:
                file_id = self._upload(file, data[file.id])
            if file.kind == "text":
                continue
            if self._use_files_api and file_id is not None:
                blocks[file.id] = _block(file, {"type": "file", "file_id": file_id})
            else:
                blocks[file.id] = _inline(file, data.get(file.id) or self._data(file.id))
        if citations:
            for block in blocks.values():
                if block["type"] == "document":
                    block["citations"] = {"enabled": True}
        return blocks

    def _data(self, attachment_id: int) -> bytes:
        with self._app.app_context():
            return store.data_of([attachment_id])[attachment_id]

    def _upload(self, file: AttachedFile, data: bytes) -> str | None:
        """Upload to the Files API; None where the server has none (then base64 it is)."""
        try:
            uploaded = self._client().files.upload(file=(file.name, data, file.media_type))
        except anthropic.NotFoundError:
            log.warning("the API has no Files API here; files are sent as base64")
            self._use_files_api = False
            return None
        with self._app.app_context():
            store.set_file_id(file.id, uploaded.id)
        return uploaded.id

    def forget_later(self, file_ids: list[str]) -> None:
        """Delete the Files API copies of files deleted here, in a greenlet of their own."""
        if file_ids:
            gevent.spawn(self.forget, file_ids)

    def forget(self, file_ids: Iterable[str]) -> None:
        """Delete the Files API copies of files that were deleted here."""
        for file_id in file_ids:
            try:
                self._client().files.delete(file_id)
            except anthropic.NotFoundError:
                pass  # gone already
            except (anthropic.APIError, OSError) as exc:
                log.warning("could not delete the uploaded copy %s: %r", file_id, exc)


EXTENSION_KEY = "chatapp.files"


def forget_later(file_ids: list[str]) -> None:
    """Delete the Files API copies of files deleted here (the current app's, in a greenlet)."""
    if file_ids:
        files: Files = current_app.extensions[EXTENSION_KEY]
        files.forget_later(file_ids)


def lost_file(exc: anthropic.NotFoundError) -> bool:
    """The API says a file a request referred to is gone (expired, deleted, unknown)."""
    return "file" in str(exc).lower()


def _block(file: AttachedFile, source: dict[str, Any]) -> dict[str, Any]:
    if file.kind == "image":
        return {"type": "image", "source": source}
    return {"type": "document", "source": source, "title": file.name}


def _inline(file: AttachedFile, data: bytes) -> dict[str, Any]:
    encoded = base64.standard_b64encode(data).decode("ascii")
    return _block(file, {"type": "base64", "media_type": file.media_type, "data": encoded})


def _text_document(file: AttachedFile, data: bytes) -> dict[str, Any]:
    source = {"type": "text", "media_type": "text/plain", "data": text_of(data)}
    return {"type": "document", "source": source, "title": file.name}
