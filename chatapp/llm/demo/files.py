"""The demo upstream's Files API, and what it makes of the files a request sends.

`POST /v1/files` keeps a file in memory and answers with its metadata; `DELETE` forgets it. A
request that refers to an unknown `file_id` gets the API's 404. Every image and document a
request carries (by `file_id`, base64 or text) is read once, so the emulator can count its
tokens (an image about one per 750 pixels, a PDF page about 2,000) and demo mode can say what
it received.
"""

from __future__ import annotations

import base64
import binascii
import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.formparser import parse_form_data

from ...attachments.kinds import FileRefused, describe, estimated_tokens, inspect
from . import wire

# Keys the emulator adds to a copy of a request's image and document blocks (never sent on).
TOKENS = "_demo_tokens"
SEEN = "_demo_seen"


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    mime_type: str
    data: bytes
    created_at: str

    def metadata(self) -> dict[str, Any]:
        return {
            "type": "file",
            "id": self.id,
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size_bytes": len(self.data),
            "created_at": self.created_at,
            "downloadable": False,
        }


class FileStore:
    """The files uploaded to this demo upstream, by id."""

    def __init__(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.deleted: list[str] = []

    def upload(self, environ: dict[str, Any]) -> StoredFile | None:
        """Keep the file of a multipart upload; None if the request carries none."""
        _stream, _form, files = parse_form_data(environ)
        try:
            part = files.get("file")
            if part is None:
                return None
            stored = StoredFile(
                id=wire.new_id("file"),
                filename=part.filename or "unnamed",
                mime_type=part.mimetype or "application/octet-stream",
                data=part.read(),
                created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            )
        finally:
            for each in files.values():
                each.close()
        self.files[stored.id] = stored
        return stored

    def delete(self, file_id: str) -> bool:
        found = self.files.pop(file_id, None)
        if found is not None:
            self.deleted.append(file_id)
        return found is not None

    def read(self, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """A copy of the request whose image and document blocks say what they hold (their
        tokens, and how demo mode describes them), and the first unknown `file_id`, if any."""
        read = copy.deepcopy(body)
        for message in read.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") in ("image", "document"):
                    missing = self._read_block(block)
                    if missing is not None:
                        return read, missing
        return read, None

    def _read_block(self, block: dict[str, Any]) -> str | None:
        source = block.get("source")
        if not isinstance(source, dict):
            return None
        name = block.get("title") if isinstance(block.get("title"), str) else None
        data: bytes | None = None
        if source.get("type") == "file":
            stored = self.files.get(str(source.get("file_id")))
            if stored is None:
                return str(source.get("file_id"))
            data, name = stored.data, name or stored.filename
        elif source.get("type") == "base64":
            try:
                data = base64.b64decode(str(source.get("data")), validate=True)
            except (binascii.Error, ValueError):
                data = None
        elif source.get("type") == "text":
            data = str(source.get("data", "")).encode()
        name = name or ("an image" if block["type"] == "image" else "a document")
        if data is None:
            block[TOKENS], block[SEEN] = 0, name
            return None
        try:
            found = inspect(name, data, max_pdf_pages=10_000)
        except FileRefused:
            block[TOKENS], block[SEEN] = len(data) // wire.CHARS_PER_TOKEN, name
            return None
        sized = _Sized(
            found.kind, found.media_type, found.width, found.height, found.pages, len(data)
        )
        block[TOKENS] = estimated_tokens(sized)
        block[SEEN] = f"{name} ({describe(found)})"
        return None


@dataclass(frozen=True)
class _Sized:
    kind: str
    media_type: str
    width: int | None
    height: int | None
    pages: int | None
    size: int
