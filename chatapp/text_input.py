"""Text a request carries, refused before anything reads it when no database could store it.

PostgreSQL cannot store a NUL character (U+0000) in text, and SQLite would keep it where no page
shows it; a form field, a query argument or a file's name holding one is answered with a
sentence (a 400), for every route at once.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import BadRequest

NUL = "\x00"

REFUSED = (
    "What you sent holds a NUL character (\\0), which cannot be stored, so nothing was saved. "
    "Remove it (it often comes with text pasted from a binary file) and try again."
)


def refuse_nul_characters() -> None:
    """A before-request hook: BadRequest if any text of the request holds a NUL character."""
    texts = [value for _key, values in request.args.lists() for value in values]
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        texts += [value for _key, values in request.form.lists() for value in values]
        texts += [f.filename or "" for _key, files in request.files.lists() for f in files]
    if any(NUL in text for text in texts):
        raise BadRequest(REFUSED)
