"""Log lines: readable text by default, one JSON object per line with CHATAPP_LOG_FORMAT=json.

A record may carry structured `fields` (`log.info("...", extra={"fields": {...}})`): text lines
show them as JSON after the message, JSON lines merge them into the object.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        return f"{line} {json.dumps(fields)}" if fields else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **(getattr(record, "fields", None) or {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(log_format: str) -> None:
    """Send the app's logs to stderr in `log_format` ("text" or "json"), once per process."""
    root = logging.getLogger()
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    handler = next((h for h in root.handlers if getattr(h, "chatapp", False)), None)
    if handler is None:
        if root.handlers:  # someone (gunicorn, pytest) set logging up already: leave theirs
            return
        handler = logging.StreamHandler()
        handler.chatapp = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    handler.setFormatter(formatter)
