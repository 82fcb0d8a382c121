"""What one listener receives: a reset to what the answer shows now, live frames, the end.

The listener's position is a character offset into the answer, its thinking first (the `id:`
of the last event it got). Whatever it showed before, a (re)connecting listener is first reset
to what the worker's view of the answer shows now; from then on it takes that view's frames in
order. So a reconnect leaves no gap and no duplicate, and nothing here ever asks Claude again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import redis
from gevent.event import Event

from ..models import MessageState
from . import persistence, sse
from .channel import Ended, News, Subscription
from .frames import AnswerView, finished_content
from .registry import Streams
from .relay import RemoteAnswer

log = logging.getLogger(__name__)

RenderFinal = Callable[[MessageState], str]


def follow(
    streams: Streams,
    state: MessageState,
    offset: int,
    render_final: RenderFinal,
    *,
    heartbeat: float,
    retry_ms: int,
    gone: Event | None = None,
    poll_interval: float = 0.5,
) -> Iterator[str]:
    """Yield the SSE text for one listener of the answer `state` that has `offset` characters.

    `render_final` renders the finished message around the content the listener shows.
    `gone` is set when the listener's browser leaves; the stream then ends at once.
    """
    yield sse.retry(retry_ms, id=sse.event_id(state.id, offset))
    generation = streams.live.get(state.id)
    if generation is not None:
        reset, offset, subscription = generation.subscribe(offset)

        def release() -> None:
            generation.channel.unsubscribe(subscription)

    elif state.is_streaming and (remote := _follow_remote(streams, state.id)):
        reset, offset, subscription, release = (
            remote.reset,
            remote.position,
            remote.subscription,
            remote.release,
        )
    else:
        yield from _follow_stored(
            streams, state, offset, render_final, heartbeat, poll_interval, gone or Event()
        )
        return

    _end_when(gone, subscription)
    try:
        if reset:
            yield reset
        while True:
            try:
                frame = subscription.next(timeout=heartbeat)
            except Ended:
                if subscription.overflowed:
                    log.info("listener of answer %s fell behind; it will reconnect", state.id)
                return
            if frame is None:
                yield sse.comment("keep-alive")
                continue
            if frame.end <= offset and frame.final is None:
                continue  # the reset showed this already
            if frame.start != offset:
                # Frames only ever follow one another; should one go missing, the browser
                # reconnects and is reset.
                log.warning("listener of answer %s is out of step; ending its stream", state.id)
                return
            if frame.final is not None:
                done = partial(_final_event, frame.final, frame.payload, render_final)
                # One `done` for all the answer's listeners in this worker, made by the first.
                yield done() if frame.done is None else frame.done.get(done)
                return
            if frame.payload:
                yield frame.payload
            offset = frame.end
    finally:
        release()


def _follow_remote(streams: Streams, message_id: int) -> RemoteAnswer | None:
    """Follow through Redis an answer another worker writes; None to use the database."""
    if streams.relay is None:
        return None
    try:
        return streams.relay.follow_answer(message_id)
    except redis.RedisError:
        log.warning("Redis is unreachable; following answer %s from the database", message_id)
        return None


def _follow_stored(
    streams: Streams,
    state: MessageState,
    offset: int,
    render_final: RenderFinal,
    heartbeat: float,
    poll_interval: float,
    gone: Event,
) -> Iterator[str]:
    """Follow an answer that this worker is not writing, from the database."""
    while state.is_streaming and state.position < offset and not gone.is_set():
        # The listener has seen more than is stored yet (a group commit is due, or the
        # answer ended a moment ago): wait for it, rather than show the listener less.
        gone.wait(poll_interval)
        loaded = persistence.load_state(streams.app, state.id)
        if loaded is None or streams.closing:
            return
        state = loaded
    if not state.is_streaming:
        if state.is_terminal:
            yield _final_event(state, finished_content(state), render_final)
        return
    view = AnswerView(state.id, state.content, state.thinking)
    if offset or view.position:
        yield view.reset()
    quiet = 0.0
    while state.is_streaming and not streams.closing and not gone.is_set():
        # Another worker is writing it (or was, and the sweeper will say so): poll what it stores.
        if state.position > view.position:
            frame = view.add(
                state.content[view.text_length :], state.thinking[view.thinking_length :]
            )
            if frame.payload:
                yield frame.payload
            quiet = 0.0
        elif quiet >= heartbeat:
            yield sse.comment("keep-alive")
            quiet = 0.0
        gone.wait(poll_interval)
        quiet += poll_interval
        loaded = persistence.load_state(streams.app, state.id)
        if loaded is None:
            return
        state = loaded
    if state.is_terminal:
        yield _final_event(state, view.finish(state).payload, render_final)


def _end_when(gone: Event | None, subscription: Subscription[Any]) -> None:
    """Close the subscription as soon as the browser leaves."""
    if gone is not None:
        gone.rawlink(lambda _event: subscription.close())


def _final_event(state: MessageState, content: str, render_final: RenderFinal) -> str:
    """The `done` event: the content's finished form, then the message around it."""
    return sse.event(
        content + render_final(state), name="done", id=sse.event_id(state.id, state.position)
    )


def watch_conversation(
    streams: Streams,
    conversation_id: int,
    after: int,
    tab: str | None,
    render: Callable[[News, list[MessageState]], str],
    *,
    heartbeat: float,
    retry_ms: int,
    gone: Event | None = None,
) -> Iterator[str]:
    """Yield the SSE text that keeps one open page of a conversation up to date.

    `after` is the newest message the page shows (the `id:` of the last event it got). Messages
    added since, by other tabs, arrive here; the answers themselves then stream through their
    own streams. A page that was away catches up first, so a reconnect misses nothing.
    """
    yield sse.retry(retry_ms)
    if streams.closing:
        return
    subscription, release = streams.watch(conversation_id)  # before the catch-up: no gap
    _end_when(gone, subscription)
    try:
        missed = persistence.load_newer(streams.app, conversation_id, after)
        if missed:
            after = missed[-1].id
            catch_up = News("exchange", tuple(m.id for m in missed))
            yield sse.event(render(catch_up, missed), name="exchange", id=str(after))
        while True:
            try:
                news = subscription.next(timeout=heartbeat)
            except Ended:
                return
            if news is None:
                yield sse.comment("keep-alive")
                continue
            if news.kind == "exchange":
                if max(news.message_ids, default=0) <= after:
                    continue  # caught up with it already
                after = max(news.message_ids)
            if tab and news.origin == tab:
                continue  # that page made the change and shows it already
            states = [persistence.load_state(streams.app, mid) for mid in news.message_ids]
            present = [state for state in states if state is not None]
            yield sse.event(render(news, present), name=news.kind, id=str(after))
    finally:
        release()
