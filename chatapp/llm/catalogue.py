"""Which models this installation offers, and what each of them can do.

The Models API (`client.models.list()`) is the only source: each model's display name, release
date, lifecycle (active, deprecated, retired), context window, largest `max_tokens`, and its
capabilities (which kinds of thinking it takes, its effort levels, image and PDF input, server
tools, citations). A worker fetches the list in a greenlet of its own when it starts serving,
and again every REFRESH_SECONDS; no request ever waits for it. Each good list is stored in the
database, so a worker that cannot reach the API starts from the last good one, or, on a new
installation, from the short built-in list below, and the log says which.

CHATAPP_MODELS is an optional allow-list (full names, or prefixes such as `claude-opus`);
CHATAPP_MODEL names the default model, which falls back to the newest active Sonnet offered.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anthropic
import gevent
import httpx2
from flask import Flask, current_app
from sqlalchemy import delete

from ..extensions import db
from ..models import ListedModel, utcnow

log = logging.getLogger(__name__)

EXTENSION_KEY = "chatapp.catalogue"
REFRESH_SECONDS = 3600.0
RETRY_SECONDS = 60.0  # after a failed fetch, try again sooner than the hourly refresh
# Effort levels as the API names them, least first; a model offers some of them.
EFFORT_LEVELS = ("low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True)
class Model:
    """One model as the Models API describes it, reduced to what chatapp uses."""

    id: str
    display_name: str
    created_at: datetime
    lifecycle: str  # "active" | "deprecated" | "retired"
    line: str | None = None  # "sonnet", "opus", "haiku", ... (None: not said)
    max_input_tokens: int | None = None  # the context window
    max_tokens: int | None = None  # the largest max_tokens a request may ask for
    adaptive_thinking: bool = False  # takes thinking {type: "adaptive"}
    budget_thinking: bool = False  # takes thinking {type: "enabled", budget_tokens: N}
    thinking_required: bool = False  # always thinks: thinking cannot be switched off
    efforts: tuple[str, ...] = ()  # effort levels it takes (output_config.effort)
    image_input: bool = False
    pdf_input: bool = False
    web_search: bool = False  # the web search and web fetch server tools
    citations: bool = False

    @property
    def thinks(self) -> bool:
        return self.adaptive_thinking or self.budget_thinking

    @property
    def retired(self) -> bool:
        return self.lifecycle == "retired"

    @property
    def deprecated(self) -> bool:
        return self.lifecycle == "deprecated"

    @property
    def label(self) -> str:
        """How the picker names it."""
        return f"{self.display_name} (deprecated)" if self.deprecated else self.display_name

    @property
    def family(self) -> str | None:
        """Its line, as the API says or, failing that, as its id says (for old listings)."""
        if self.line:
            return self.line
        for name in ("sonnet", "opus", "haiku"):
            if f"-{name}" in self.id:
                return name
        return None

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> Model:
        """A model from the JSON of a `ModelInfo`. Capabilities that are missing (an
        Anthropic-compatible server that does not report them) count as not supported, so no
        request ever carries an option the model may reject."""
        capabilities = info.get("capabilities") or {}

        def supported(*path: str) -> bool:
            node: Any = capabilities
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            return bool(isinstance(node, dict) and node.get("supported"))

        thinking = supported("thinking")
        adaptive = thinking and supported("thinking", "types", "adaptive")
        efforts = (
            tuple(level for level in EFFORT_LEVELS if supported("effort", level))
            if supported("effort")
            else ()
        )
        return cls(
            id=str(info["id"]),
            display_name=str(info.get("display_name") or info["id"]),
            created_at=_datetime(info.get("created_at")),
            lifecycle=str(info.get("lifecycle") or "active"),
            line=info.get("line"),
            max_input_tokens=_positive(info.get("max_input_tokens")),
            max_tokens=_positive(info.get("max_tokens")),
            adaptive_thinking=adaptive,
            budget_thinking=thinking and supported("thinking", "types", "enabled"),
            thinking_required=adaptive and not supported("thinking", "types", "disabled"),
            efforts=efforts,
            image_input=supported("image_input"),
            pdf_input=supported("pdf_input"),
            web_search=supported("server_tools", "web_search"),
            citations=supported("citations"),
        )


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime(1970, 1, 1, tzinfo=UTC)


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def capabilities(
    *,
    adaptive: bool = False,
    enabled: bool = False,
    disabled: bool = True,
    efforts: Iterable[str] = (),
    images: bool = True,
    pdfs: bool = True,
    web_search: bool = False,
    citations: bool = True,
) -> dict[str, Any]:
    """The `capabilities` object of a ModelInfo, as the Models API writes it (for the
    built-in list and the demo upstream)."""

    def flag(value: bool) -> dict[str, bool]:
        return {"supported": value}

    levels = set(efforts)
    return {
        "batch": flag(True),
        "citations": flag(citations),
        "code_execution": flag(False),
        "context_management": {"supported": False},
        "effort": {"supported": bool(levels), **{k: flag(k in levels) for k in EFFORT_LEVELS}},
        "image_input": flag(images),
        "pdf_input": flag(pdfs),
        "server_tools": {
            "supported": web_search,
            "web_search": flag(web_search),
            "code_execution": flag(False),
        },
        "structured_outputs": flag(True),
        "thinking": {
            "supported": adaptive or enabled,
            "types": {
                "adaptive": flag(adaptive),
                "enabled": flag(enabled),
                "disabled": flag(disabled),
                "between_tools": flag(False),
            },
        },
    }


def model_info(
    model_id: str,
    display_name: str,
    created_at: str,
    *,
    lifecycle: str = "active",
    line: str | None = None,
    context: int = 200_000,
    max_tokens: int = 64_000,
    **abilities: Any,
) -> dict[str, Any]:
    """One ModelInfo as the Models API sends it."""
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name,
        "created_at": created_at,
        "lifecycle": lifecycle,
        "deprecated_at": None if lifecycle == "active" else "2026-09-01T00:00:00Z",
        "retires_at": None,
        "line": line,
        "max_input_tokens": context,
        "max_tokens": max_tokens,
        "capabilities": capabilities(**abilities),
    }


# Used until this installation has heard from the Models API once: current models as of
# December 2026, described as the API described them then.
BUILT_IN: tuple[dict[str, Any], ...] = (
    model_info(
        "claude-opus-5-5",
        "Claude Opus 5.5",
        "2026-10-20T00:00:00Z",
        line="opus",
        context=1_000_000,
        max_tokens=128_000,
        adaptive=True,
        disabled=False,
        efforts=("low", "medium", "high", "xhigh", "max"),
        web_search=True,
    ),
    model_info(
        "claude-sonnet-5-5",
        "Claude Sonnet 5.5",
        "2026-10-20T00:00:00Z",
        line="sonnet",
        context=1_000_000,
        max_tokens=128_000,
        adaptive=True,
        efforts=("low", "medium", "high", "max"),
        web_search=True,
    ),
    model_info(
        "claude-haiku-5-5",
        "Claude Haiku 5.5",
        "2026-10-20T00:00:00Z",
        line="haiku",
        context=1_000_000,
        max_tokens=128_000,
        adaptive=True,
        efforts=("low", "medium", "high"),
        web_search=True,
    ),
    model_info(
        "claude-sonnet-4-6",
        "Claude Sonnet 4.6",
        "2026-02-17T00:00:00Z",
        line="sonnet",
        adaptive=True,
        enabled=True,
        efforts=("low", "medium", "high", "max"),
        web_search=True,
    ),
    model_info(
        "claude-opus-4-6",
        "Claude Opus 4.6",
        "2026-02-05T00:00:00Z",
        line="opus",
        adaptive=True,
        enabled=True,
        efforts=("low", "medium", "high", "max"),
        web_search=True,
    ),
    model_info(
        "claude-haiku-4-5",
        "Claude Haiku 4.5",
        "2025-10-15T00:00:00Z",
        line="haiku",
        enabled=True,
        web_search=True,
    ),
)


class Catalogue:
    """This worker's list of models: from the API, else the last good list, else built in."""

    def __init__(
        self, app: Flask, client: Callable[[], anthropic.Anthropic], models: Sequence[Model]
    ) -> None:
        self._app = app
        self._client = client
        self._allowed = tuple(app.config["MODELS"])
        self._preferred: str | None = app.config["MODEL"]
        self._models: dict[str, Model] = {}
        self.source = "built-in"  # where the list came from: "api", "database" or "built-in"
        self._use(models, "built-in")
        self._refresher: gevent.Greenlet | None = None
        self._refresher_pid: int | None = None

    # -- what is offered ------------------------------------------------------------------

    def get(self, model_id: str) -> Model | None:
        return self._models.get(model_id)

    def offered(self) -> list[Model]:
        """The models a person may pick, newest first: listed, not retired, allowed."""
        return [m for m in self._models.values() if not m.retired and self.allowed(m.id)]

    def allowed(self, model_id: str) -> bool:
        """CHATAPP_MODELS lets it be used here (everything is, without a list)."""
        return not self._allowed or any(
            model_id == entry or model_id.startswith(entry) for entry in self._allowed
        )

    def default(self) -> str:
        """The model a new chat starts with: CHATAPP_MODEL while it is offered, else the
        newest active Sonnet, else the newest model offered."""
        offered = self.offered()
        if self._preferred and any(m.id == self._preferred for m in offered):
            return self._preferred
        active = [m for m in offered if not m.deprecated]
        for candidates in ([m for m in active if m.family == "sonnet"], active, offered):
            if candidates:
                return candidates[0].id
        return self._preferred or BUILT_IN[1]["id"]

    def newest(self, family: str) -> str | None:
        """The newest active model of a line that is offered here (e.g. for naming chats)."""
        for model in self.offered():
            if model.family == family and not model.deprecated:
                return model.id
        return None

    def unavailable(self, model_id: str) -> str | None:
        """Why answers cannot be asked of this model here, as a sentence; None if they can."""
        model = self.get(model_id)
        name = model.display_name if model else model_id
        if model is not None and model.retired:
            return f"{name} has been retired: Claude no longer answers with it."
        if not self.allowed(model_id):
            return f"{name} is no longer offered on this server."
        if model is None and self.source != "built-in":
            return f"{name} is not among the models Claude offers now."
        return None

    def describe(self, model_id: str | None) -> str:
        """The model's display name, or its id when the list does not know it."""
        model = self.get(model_id or "")
        return model.display_name if model else (model_id or "")

    # -- keeping the list current ---------------------------------------------------------

    def ensure_running(self) -> None:
        """Start this worker's refresher (once per process: gunicorn forks after loading)."""
        if self._refresher_pid == os.getpid() and self._refresher and not self._refresher.dead:
            return
        self._refresher_pid = os.getpid()
        self._refresher = gevent.spawn(self._keep_current)

    def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.kill(block=False)
            self._refresher = None

    def _keep_current(self) -> None:
        self.load_stored()
        while True:
            wait = REFRESH_SECONDS if self.refresh() else RETRY_SECONDS
            gevent.sleep(wait)

    def load_stored(self) -> bool:
        """Start from the last good list in the database, if there is one."""
        try:
            with self._app.app_context():
                rows = db.session.scalars(db.select(ListedModel.info)).all()
        except Exception:
            log.exception("could not read the stored list of models; using the built-in list")
            return False
        if not rows or self.source == "api":
            return False
        self._use([Model.from_info(info) for info in rows], "database")
        return True

    def refresh(self) -> bool:
        """Fetch the list from the Models API and store it; keep the current one on failure."""
        try:
            infos = [
                info.model_dump(mode="json") for info in self._client().models.list(limit=1000)
            ]
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            log.warning(
                "could not fetch the list of models from the API (%r); using the %s list",
                exc,
                "last good" if self.source != "built-in" else "built-in",
            )
            return False
        if not infos:
            log.warning("the Models API listed no models; keeping the %s list", self.source)
            return False
        self._use([Model.from_info(info) for info in infos], "api")
        self._store(infos)
        return True

    def _use(self, models: Iterable[Model], source: str) -> None:
        newest_first = sorted(models, key=lambda m: (m.created_at, m.id), reverse=True)
        self._models = {model.id: model for model in newest_first}
        self.source = source

    def _store(self, infos: list[dict[str, Any]]) -> None:
        try:
            with self._app.app_context():
                db.session.execute(delete(ListedModel))
                now = utcnow()
                db.session.add_all(
                    ListedModel(id=info["id"], info=info, fetched_at=now) for info in infos
                )
                db.session.commit()
        except Exception:
            log.exception("could not store the list of models; it is used but not kept")


def install(app: Flask, client: Callable[[], anthropic.Anthropic]) -> Catalogue:
    """Give the app its catalogue (the built-in list until the first fetch)."""
    catalogue = Catalogue(app, client, [Model.from_info(info) for info in BUILT_IN])
    app.extensions[EXTENSION_KEY] = catalogue
    return catalogue


def catalogue(app: Flask | None = None) -> Catalogue:
    """The current app's catalogue."""
    found: Catalogue = (app or current_app).extensions[EXTENSION_KEY]
    return found
