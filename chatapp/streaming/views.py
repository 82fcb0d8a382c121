"""The stream of an answer, and Stop."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    make_response,
    render_template,
    request,
    stream_with_context,
)
from gevent.event import Event

from .. import htmx, ids
from ..auth import session_watch, signed_in_user
from ..conversations import context, store
from ..database import UNREACHABLE
from ..extensions import db
from ..llm.catalogue import catalogue
from ..models import MessageState
from . import sse
from .channel import News
from .connection import Connection
from .feed import follow, watch_conversation
from .registry import streams

bp = Blueprint("streaming", __name__)

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


@bp.get("/messages/<id:message_id>/stream")
def stream(message_id: int) -> Response:
    """Server-sent events for one answer, from the listener's position to its end."""
    state = MessageState.of(store.get_message(message_id, signed_in_user()))
    offset = _resume_offset(message_id)
    connection = _connection()
    return _event_stream(
        follow(streams(), state, offset, _render_final, gone=connection.gone, **_pace()),
        connection,
    )


@bp.get("/conversations/<id:conversation_id>/events")
def conversation_events(conversation_id: int) -> Response:
    """Server-sent events that show other tabs' new messages on this open page."""
    store.get_conversation(conversation_id, signed_in_user())
    tab = _tab()
    after = _newest_shown()
    connection = _connection()
    render = partial(_render_news, conversation_id)
    return _event_stream(
        watch_conversation(
            streams(), conversation_id, after, tab, render, gone=connection.gone, **_pace()
        ),
        connection,
    )


@bp.post("/messages/<id:message_id>/stop")
def stop(message_id: int) -> Response:
    """Stop writing the answer; its text so far stays. Harmless once it has ended."""
    store.get_message(message_id, signed_in_user())
    if streams().stop(message_id):
        return Response(status=204)
    # Another worker writes it, and Redis, which would tell it, is away.
    notice = (
        "Stop could not reach the server writing this answer yet, because Redis is not "
        "reachable. It will be passed on as soon as Redis is back."
    )
    if not htmx.is_htmx(request):
        return Response(notice, status=202, mimetype="text/plain")
    response = make_response(render_template("_notice.html", notice=notice), 202)
    return htmx.retarget(response, "#notice", "outerHTML")


def _event_stream(body: Iterator[str], connection: Connection) -> Response:
    """A streamed SSE response; every header is set before the first byte.

    The stream ends when the browser leaves, and also when the person's session does
    (signed out everywhere, a new password, disabled): both set `connection.gone`.
    """
    user = signed_in_user()
    session = (user.id, user.session_version)
    db.session.close()  # the stream holds no connection while it waits
    return Response(
        stream_with_context(connection.send(_counted(body, session, connection.gone))),
        mimetype="text/event-stream",
        headers=STREAM_HEADERS,
    )


def _counted(body: Iterator[str], session: tuple[int, int], gone: Event) -> Iterator[str]:
    registry = streams()
    registry.open_streams += 1
    release = session_watch().watch(*session, gone)
    try:
        yield from body
    except UNREACHABLE as exc:
        # The database went away while this stream needed it: end the stream. The browser
        # reconnects with its last event id, and catches up once the database answers.
        registry.database.failed(exc)
    finally:
        release()
        registry.open_streams -= 1


def _connection() -> Connection:
    """A watch on this request's client socket (gunicorn's gevent worker exposes it)."""
    sock = request.environ.get("gunicorn.socket")
    return Connection(sock, write_timeout=float(current_app.config["STREAM_WRITE_TIMEOUT"]))


def _pace() -> dict[str, Any]:
    config = current_app.config
    return {
        "heartbeat": float(config["HEARTBEAT_SECONDS"]),
        "retry_ms": int(config["SSE_RETRY_MS"]),
    }


def _tab() -> str | None:
    """The page's tab id (app.js makes a UUID); anything longer is no tab of ours."""
    tab = request.args.get("tab")
    return tab if tab and len(tab) <= 64 else None


def _newest_shown() -> int:
    """The newest message the page shows: its last event id, or what it was rendered with.

    A value that is no message id is refused (400) before the stream starts: a stream must
    never begin and then fail on it.
    """
    for value in (request.headers.get("Last-Event-ID"), request.args.get("last_event_id")):
        if value and value.strip():
            return _position(value.strip(), "Last-Event-ID")
    return _position(request.args.get("after", "0"), "after")


def _resume_offset(message_id: int) -> int:
    """How much of the answer the listener already shows.

    The browser's own reconnect sends Last-Event-ID; a new EventSource made by our script after
    a closed one passes it as `last_event_id`; a page rendered mid-answer passes `from`. An id
    of another message is not ours to follow and is passed over; one that is not an id at all
    is refused (400).
    """
    for value in (request.headers.get("Last-Event-ID"), request.args.get("last_event_id")):
        if not value or not value.strip():
            continue
        owner, _, offset = value.strip().partition(":")
        if ids.parse(owner) is None or ids.parse(offset) is None:
            abort(400, "Last-Event-ID is not an event id of this stream.")
        found = sse.parse_event_id(value, message_id)
        if found is not None:
            return found
    return _position(request.args.get("from", "0"), "from")


def _position(value: str, name: str) -> int:
    number = ids.parse(value)
    if number is None:
        abort(400, f"{name} must be a whole number of at most 10 digits.")
    return number


def _render_news(conversation_id: int, news: News, messages: list[MessageState]) -> str:
    body = render_template("_news.html", news=news, messages=messages)
    if news.kind != "title":
        return body
    # Naming the conversation was a billed request: the total shown includes it from now on.
    return body + _conversation_cost(conversation_id)


def _render_final(state: MessageState) -> str:
    # A streamed answer is always its conversation's last message: sending waits for it.
    body = (
        render_template("_message.html", message=state, oob=True, last=True, keep_content=True)
        + render_template("_announcement.html", message=state)
        + _conversation_cost(state.conversation_id)
    )
    used = context.use([state], catalogue().get(state.model or ""))
    if used is not None:
        body += render_template("_context_meter.html", context_use=used, oob=True)
    return body


def _conversation_cost(conversation_id: int) -> str:
    """The swap that brings the page's total up to date; no connection is kept after it.

    Nothing while the database does not answer: the end of the answer, which is stored, is
    not held back for it; the next answer or a reload brings the total up to date.
    """
    try:
        usages = store.conversation_usage(conversation_id)
    except UNREACHABLE as exc:
        streams().database.failed(exc)
        return ""
    finally:
        db.session.close()
    return render_template("_conversation_cost.html", usages=usages, oob=True)
