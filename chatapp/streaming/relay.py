"""Fan-out between workers and hosts through Redis, when REDIS_URL is set.

The worker writing an answer appends each frame's text (and thinking) to Redis keys and
publishes them, in one transaction. Another worker whose listeners follow the answer subscribes
first, then reads the keys into a view of its own (see `frames`): what it read covers everything
published before, and frames published after arrive in order, so the view's positions give no
gap and no duplicate. Stop and the conversation news travel the same way.

Each worker holds one pub/sub connection, whatever the number of streams: a dispatcher greenlet
hands each message to the local channel of its subscribers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import redis
from gevent.event import Event
from gevent.lock import Semaphore

from ..models import MessageState
from .channel import Announcement, Channel, Subscription
from .frames import AnswerView, Frame

log = logging.getLogger(__name__)

TEXT_TTL = 3600  # seconds a live answer's text stays in Redis without a new frame
ACK_TIMEOUT = 5.0


@dataclass
class RemoteAnswer:
    """A subscription to an answer written by another worker."""

    reset: str  # the event that shows the listener what this worker's view shows
    position: int  # where that leaves the listener
    subscription: Subscription[Frame]
    release: Callable[[], None]


class Relay:
    """This worker's link to the others."""

    def __init__(
        self,
        url: str,
        prefix: str,
        capacity: int,
        *,
        on_stop: Callable[[int], object],
        load_state: Callable[[int], MessageState | None],
    ) -> None:
        self.redis = redis.Redis.from_url(url)
        self._prefix = prefix
        self._capacity = capacity
        self._on_stop = on_stop
        self._load_state = load_state
        self._pubsub: Any = None
        self._dispatcher: gevent.Greenlet | None = None
        self._channels: dict[str, Channel[Any]] = {}
        self._views: dict[str, _RemoteView] = {}
        self._acks: dict[str, Event] = {}
        self._lock = Semaphore()

    # -- names ------------------------------------------------------------------------------

    def _answer(self, message_id: int) -> str:
        return f"{self._prefix}:answer:{message_id}"

    def _text_key(self, message_id: int) -> str:
        return f"{self._prefix}:answer:{message_id}:text"

    def _thinking_key(self, message_id: int) -> str:
        return f"{self._prefix}:answer:{message_id}:thinking"

    def _conversation(self, conversation_id: int) -> str:
        return f"{self._prefix}:conversation:{conversation_id}"

    @property
    def _stop_channel(self) -> str:
        return f"{self._prefix}:stop"

    # -- the writer's side ----------------------------------------------------------------

    def begin(self, message_id: int) -> None:
        """A new answer (or a retry of one): no text yet, but it is live."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._text_key(message_id), "", ex=TEXT_TTL)
        pipe.set(self._thinking_key(message_id), "", ex=TEXT_TTL)
        pipe.execute()

    def frame(self, message_id: int, frame: Frame) -> None:
        """Publish a frame to the other workers, and keep its text for their late listeners."""
        message = json.dumps({"start": frame.start, "thinking": frame.thinking, "text": frame.text})
        pipe = self.redis.pipeline(transaction=True)
        for key, added in (
            (self._text_key(message_id), frame.text),
            (self._thinking_key(message_id), frame.thinking),
        ):
            if added:
                pipe.append(key, added.encode())
            pipe.expire(key, TEXT_TTL)
        pipe.publish(self._answer(message_id), message)
        pipe.execute()

    def final(self, message_id: int) -> None:
        """The answer has ended and its final state is stored."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.publish(self._answer(message_id), json.dumps({"final": True}))
        pipe.delete(self._text_key(message_id), self._thinking_key(message_id))
        pipe.execute()

    def delivered(self, message_id: int) -> tuple[str, str] | None:
        """(thinking, text): all that was published of a live answer; None if Redis holds none."""
        thinking, text = self.redis.mget(self._thinking_key(message_id), self._text_key(message_id))
        if text is None:
            return None
        return _decoded(thinking or b""), _decoded(text)

    def request_stop(self, message_id: int) -> None:
        """Ask whichever worker writes the answer to stop it."""
        self.redis.publish(self._stop_channel, str(message_id))

    def announce(self, conversation_id: int, news: Announcement) -> None:
        message = json.dumps(
            {
                "kind": news.kind,
                "message_ids": list(news.message_ids),
                "origin": news.origin,
                "title": news.title,
            }
        )
        self.redis.publish(self._conversation(conversation_id), message)

    # -- the listener's side --------------------------------------------------------------

    def follow_answer(self, message_id: int) -> RemoteAnswer | None:
        """Subscribe to an answer another worker writes; None if no worker is writing it."""
        name = self._answer(message_id)
        channel, subscription = self._subscribe(name)
        remote = self._views.get(name)
        if remote is None:
            remote = self._views[name] = _RemoteView()
        if remote.view is None:
            # Subscribed first, then read: the text covers every frame published before, and
            # the frames kept meanwhile are added after it, skipping what it already holds.
            delivered = self.delivered(message_id)
            if delivered is None:
                self._release(name, channel, subscription)
                return None
            if remote.view is None:  # another listener's read may have got there first
                thinking, text = delivered
                remote.view = AnswerView(message_id, text, thinking)
                for body in remote.early:
                    self._show(message_id, remote.view, channel, body)
                remote.early.clear()
        view = remote.view
        return RemoteAnswer(
            reset=view.reset(),
            position=view.position,
            subscription=subscription,
            release=lambda: self._release(name, channel, subscription),
        )

    def watch(self, conversation_id: int) -> tuple[Subscription[Announcement], Callable[[], None]]:
        """Subscribe to a conversation's news from every worker, this one included."""
        name = self._conversation(conversation_id)
        channel, subscription = self._subscribe(name)
        return subscription, lambda: self._release(name, channel, subscription)

    def close_all(self) -> None:
        """End every subscription: the worker is stopping."""
        for channel in list(self._channels.values()):
            channel.close_all()

    def stop(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.kill(block=True, timeout=2)  # before its connection is closed
            self._dispatcher = None
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
        self.redis.close()

    def watching_workers(self, message_id: int) -> int:
        """How many workers (pub/sub connections) follow the answer, this one included."""
        counts = self.redis.pubsub_numsub(self._answer(message_id))
        return int(counts[0][1]) if counts else 0

    def listeners(self, kind: str) -> int:
        """Local subscriptions through the relay, for `answer` or `conversation` channels."""
        prefix = f"{self._prefix}:{kind}:"
        return sum(c.listeners for name, c in self._channels.items() if name.startswith(prefix))

    def ping(self) -> bool:
        return bool(self.redis.ping())

    # -- the dispatcher ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect the worker's pub/sub and start dispatching (idempotent)."""
        with self._lock:
            if self._dispatcher is not None and not self._dispatcher.dead:
                return
            self._pubsub = self.redis.pubsub()
            ack = self._acks.setdefault(self._stop_channel, Event())
            self._pubsub.subscribe(self._stop_channel, *self._channels)
            self._dispatcher = gevent.spawn(self._run)
        ack.wait(ACK_TIMEOUT)

    def _subscribe(self, name: str) -> tuple[Channel[Any], Subscription[Any]]:
        self.start()
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(self._capacity)
            ack = self._acks[name] = Event()
            self._pubsub.subscribe(name)
            if not ack.wait(ACK_TIMEOUT):
                log.warning("Redis did not confirm the subscription to %s in time", name)
        return channel, channel.subscribe()

    def _release(self, name: str, channel: Channel[Any], subscription: Subscription[Any]) -> None:
        channel.unsubscribe(subscription)
        if not channel.listeners and self._channels.get(name) is channel:
            del self._channels[name]
            self._views.pop(name, None)
            self._acks.pop(name, None)
            if self._pubsub is not None:
                try:
                    self._pubsub.unsubscribe(name)
                except redis.RedisError:
                    log.warning("could not unsubscribe from %s", name, exc_info=True)

    def _run(self) -> None:
        while True:
            try:
                for message in self._pubsub.listen():
                    self._dispatch(message)
            except (redis.RedisError, OSError):
                log.exception("lost the Redis pub/sub connection; reconnecting")
                gevent.sleep(1.0)
            else:
                gevent.sleep(0.1)  # nothing subscribed for a moment

    def _dispatch(self, message: dict[str, Any]) -> None:
        name = message["channel"].decode()
        if message["type"] == "subscribe":
            ack = self._acks.get(name)
            if ack is not None:
                ack.set()
            return
        if message["type"] != "message":
            return
        data = message["data"].decode()
        if name == self._stop_channel:
            self._on_stop(int(data))
            return
        channel = self._channels.get(name)
        if channel is None:
            return
        body = json.loads(data)
        if name.startswith(f"{self._prefix}:conversation:"):
            channel.publish(
                Announcement(
                    body["kind"], tuple(body["message_ids"]), body["origin"], body.get("title")
                )
            )
            return
        message_id = int(name.rsplit(":", 1)[1])
        remote = self._views.setdefault(name, _RemoteView())
        if remote.view is None:
            if not body.get("final"):
                remote.early.append(body)
            return  # its first listener reads the stored text next
        if body.get("final"):
            state = self._load_state(message_id)
            if state is not None:
                channel.publish(remote.view.finish(state))
            return
        self._show(message_id, remote.view, channel, body)

    def _show(
        self, message_id: int, view: AnswerView, channel: Channel[Any], body: dict[str, Any]
    ) -> None:
        def whole() -> tuple[str, str]:
            return self.delivered(message_id) or ("", "")

        frame = view.add_from(body["start"], body.get("thinking", ""), body["text"], whole)
        if frame is not None:
            channel.publish(frame)


@dataclass
class _RemoteView:
    """This worker's view of an answer another worker writes, once it has read its text."""

    view: AnswerView | None = None
    early: list[dict[str, Any]] = field(default_factory=list)  # frames before the read


def _decoded(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
