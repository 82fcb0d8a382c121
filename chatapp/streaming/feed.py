"""What one listener receives: catch-up from where it was, then live frames, then the end.

The listener's position is a character offset into the answer (the `id:` of the last event it
got). Catch-up and live frames are cut against that offset, so a reconnecting browser gets no
gap and no duplicate, and nothing here ever asks Claude again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import redis
from gevent.event import Event

from ..models import MessageState
from . import persistence, sse
from .channel import Announcement, Ended, Subscription, text_frame
from .hub import Streams
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

    `gone` is set when the listener's browser leaves; the stream then ends at once.
    """
    yield sse.retry(retry_ms, id=sse.event_id(state.id, offset))
    generation = streams.live.get(state.id)
    if generation is not None:
        catch_up, subscription = generation.subscribe(offset)
        text_of: Callable[[], str] = generation.text

        def release() -> None:
            generation.channel.unsubscribe(subscription)

    elif state.is_streaming and (remote := _follow_remote(streams, state.id, offset)):
        catch_up, subscription, text_of, release = (
            remote.catch_up,
            remote.subscription,
            remote.text,
            remote.release,
        )
    else:
        yield from _follow_stored(
            streams, state, offset, render_final, heartbeat, poll_interval, gone or Event()
        )
        return

    _end_when(gone, subscription)
    try:
        if catch_up:
            offset += len(catch_up)
            yield _text_event(state.id, catch_up, offset)
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
            if frame.final is not None:
                yield _final_event(frame.final, render_final)
                return
            if frame.end <= offset:
                continue  # the listener has this already
            if frame.start == offset:
                yield frame.payload
            elif frame.start < offset:
                # The listener's position falls inside this frame: send only what it lacks.
                yield _text_event(state.id, frame.text[offset - frame.start :], frame.end)
            else:
                # A gap (frames were dropped on the way): fill it from the whole text.
                yield _text_event(state.id, text_of()[offset : frame.end], frame.end)
            offset = frame.end
    finally:
        release()


def _follow_remote(streams: Streams, message_id: int, offset: int) -> RemoteAnswer | None:
    """Follow through Redis an answer another worker writes; None to use the database."""
    if streams.relay is None:
        return None
    try:
        return streams.relay.follow_answer(message_id, offset)
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
    quiet = 0.0
    while state.is_streaming and not streams.closing and not gone.is_set():
        # Another worker is writing it (or was, and the sweeper will say so): poll what it stores.
        if len(state.content) > offset:
            yield _text_event(state.id, state.content[offset:], len(state.content))
            offset, quiet = len(state.content), 0.0
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
        yield _final_event(state, render_final)


def _end_when(gone: Event | None, subscription: Subscription[Any]) -> None:
    """Close the subscription as soon as the browser leaves."""
    if gone is not None:
        gone.rawlink(lambda _event: subscription.close())


def _text_event(message_id: int, text: str, end: int) -> str:
    return text_frame(message_id, end - len(text), text).payload


def _final_event(state: MessageState, render_final: RenderFinal) -> str:
    return sse.event(
        render_final(state), name="done", id=sse.event_id(state.id, len(state.content))
    )


def watch_conversation(
    streams: Streams,
    conversation_id: int,
    after: int,
    tab: str | None,
    render: Callable[[Announcement, list[MessageState]], str],
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
            catch_up = Announcement("exchange", tuple(m.id for m in missed))
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
