"""A question's files: checked from their bytes, stored, sent to Claude, shown to their owner."""

from __future__ import annotations

from .kinds import FileRefused, describe, estimated_tokens, filesize
from .store import Limits, add, check, fits_model, fits_question, pending
from .views import bp

__all__ = [
    "FileRefused",
    "Limits",
    "add",
    "bp",
    "check",
    "describe",
    "estimated_tokens",
    "fits_model",
    "filesize",
    "fits_question",
    "pending",
]
