"""Fan-out between workers and hosts through Redis, when REDIS_URL is set.

The worker writing an answer appends each frame's text (and thinking) to Redis keys and
publishes them, in one transaction. Another worker whose listeners follow the answer subscribes
first, then reads the keys into a view of its own (see `frames`): what it read covers everything
published before, and frames published after arrive in order, so the view's positions give no
gap and no duplicate. Stop and the conversation news travel the same way.

Each worker holds one pub/sub connection, whatever the number of streams: a dispatcher greenlet
hands each message to the local channel of its subscribers.

When Redis goes away, answers go on streaming to the listeners on their own worker, and nothing
waits on Redis: a command gives up after COMMAND_TIMEOUT, and until Redis answers again (one
greenlet tries it every RETRY_EVERY seconds) frames are not sent there at all. Then the first
frame of each answer puts its whole text back in Redis, so a listener on another worker
catches up on what it missed; the ends of answers and the Stops that could not be sent go out
then, and the dispatcher, once subscribed again, gives its listeners what they missed (or the
answer's end, from the database). The log says it once (`Outage`), not once a frame.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import redis
from gevent.event import Event
from gevent.lock import Semaphore
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..models import MessageState
from ..outage import Outage
from .channel import Channel, News, Subscription
from .frames import AnswerView, Frame

log = logging.getLogger(__name__)

TEXT_TTL = 3600  # seconds a live answer's text stays in Redis without a new frame
# A frame renews its answer's keys' TTL only this long after the last renewal: a frame is then
# two commands (the append and the publish), not six.
TTL_RENEWAL = TEXT_TTL / 4
ACK_TIMEOUT = 5.0
COMMAND_TIMEOUT = 2.0  # seconds a command (or connecting) may take before Redis counts as away
RETRY_EVERY = 1.0  # seconds between tries to reach Redis while it is away
STOP_PATIENCE = 120.0  # seconds a Stop that could not be passed on waits for Redis to return


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
        # A command gives up after COMMAND_TIMEOUT, and at once rather than after the client's
        # usual retries with backoff: whoever asked goes on without Redis.
        self.redis = redis.Redis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 1),
        )
        self.outage = Outage(
            "Redis",
            consequence="answers stream to listeners on their own worker only until it is back",
        )
        self._prefix = prefix
        self._capacity = capacity
        self._on_stop = on_stop
        self._load_state = load_state
        self._pubsub: Any = None
        self._dispatcher: gevent.Greenlet | None = None
        self._listening = (
            False  # the pub/sub connection is subscribed (only then may others add to it)
        )
        self._channels: dict[str, Channel[Any]] = {}
        self._views: dict[str, _RemoteView] = {}
        self._acks: dict[str, Event] = {}
        self._lock = Semaphore()
        # The writer's side: bytes of (thinking, text) Redis holds of each answer written here,
        # when they are known to be all of it; an answer missing here gets its whole text next.
        self._lengths: dict[int, tuple[int, int]] = {}
        self._renew_at: dict[int, float] = {}  # when each answer's keys' TTL is due again
        self._unsent_finals: set[int] = set()  # answers whose end is still to be announced
        self._unsent_stops: dict[int, float] = {}  # Stops to pass on -> when to give up
        self._mender: gevent.Greenlet | None = None
        self._stopping = Event()  # the worker is stopping: greenlets end at their next wait

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
        self._lengths.pop(message_id, None)
        if self.outage.down:
            return  # its first frame after Redis is back puts its text there
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.set(self._text_key(message_id), "", ex=TEXT_TTL)
            pipe.set(self._thinking_key(message_id), "", ex=TEXT_TTL)
            pipe.execute()
        except redis.RedisError as exc:
            self._away(exc)
            return
        self._lengths[message_id] = (0, 0)
        self._renew_at[message_id] = time.monotonic() + TTL_RENEWAL
        self.outage.succeeded()

    def frame(self, message_id: int, frame: Frame, whole: Callable[[], tuple[str, str]]) -> None:
        """Publish a frame to the other workers, and keep its text for their late listeners.

        `whole` gives (thinking, text): all that listeners have been sent of the answer, this
        frame included. It is put in Redis in place of the frame's text when Redis may not hold
        the rest: after Redis was away, or if it lost the answer's text (restarted empty).
        While Redis is away, the frame goes nowhere but to this worker's listeners.
        """
        if self.outage.down:
            self._lengths.pop(message_id, None)
            return
        held = self._lengths.get(message_id)
        try:
            if held is None:
                self._put_whole(message_id, frame, whole())
                return
            thinking, text = frame.thinking.encode(), frame.text.encode()
            expected = (held[0] + len(thinking), held[1] + len(text))
            renew = time.monotonic() >= self._renew_at.get(message_id, 0.0)
            pipe = self.redis.pipeline(transaction=True)
            checks: list[tuple[int, int]] = []  # (reply's place, the length it must say)
            for key, added, length in (
                (self._thinking_key(message_id), thinking, expected[0]),
                (self._text_key(message_id), text, expected[1]),
            ):
                if added or renew:
                    checks.append((len(pipe), length))
                    pipe.append(key, added)  # the key's new length in bytes
                if renew:
                    pipe.expire(key, TEXT_TTL)
            pipe.publish(self._answer(message_id), _frame_message(frame))
            replies = pipe.execute()
            # A key that lost its text (Redis restarted empty) says a shorter length when
            # next appended to: the whole text goes back.
            if any(replies[place] != length for place, length in checks):
                self._put_whole(message_id, frame, whole())
                return
            self._lengths[message_id] = expected
            if renew:
                self._renew_at[message_id] = time.monotonic() + TTL_RENEWAL
        except redis.RedisError as exc:
            self._lengths.pop(message_id, None)
            self._away(exc)
            return
        self.outage.succeeded()

    def _put_whole(self, message_id: int, frame: Frame, whole: tuple[str, str]) -> None:
        """Replace what Redis holds of the answer with all of it, then publish `frame`: a
        listener elsewhere that finds a gap before the frame reads the whole text."""
        thinking, text = whole[0].encode(), whole[1].encode()
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(self._thinking_key(message_id), thinking, ex=TEXT_TTL)
        pipe.set(self._text_key(message_id), text, ex=TEXT_TTL)
        pipe.publish(self._answer(message_id), _frame_message(frame))
        pipe.execute()
        self._lengths[message_id] = (len(thinking), len(text))
        self._renew_at[message_id] = time.monotonic() + TTL_RENEWAL
        self.outage.succeeded()

    def final(self, message_id: int) -> None:
        """The answer has ended and its final state is stored: tell the other workers, now or
        as soon as Redis is back."""
        self._lengths.pop(message_id, None)
        self._renew_at.pop(message_id, None)
        if not self.outage.down:
            try:
                self._send_final(message_id)
            except redis.RedisError as exc:
                self._away(exc)
            else:
                self.outage.succeeded()
                return
        self._unsent_finals.add(message_id)
        self._mend()

    def _send_final(self, message_id: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.publish(self._answer(message_id), json.dumps({"final": True}))
        pipe.delete(self._text_key(message_id), self._thinking_key(message_id))
        pipe.execute()

    def delivered(self, message_id: int) -> tuple[str, str] | None:
        """(thinking, text): all that was published of a live answer; None if Redis holds none."""
        if self.outage.down:
            raise redis.ConnectionError("Redis is not reachable")
        try:
            thinking, text = self.redis.mget(
                self._thinking_key(message_id), self._text_key(message_id)
            )
        except redis.RedisError as exc:
            self._away(exc)
            raise
        if text is None:
            return None
        return _decoded(thinking or b""), _decoded(text)

    def request_stop(self, message_id: int) -> bool:
        """Ask whichever worker writes the answer to stop it. False if Redis is away: the Stop
        is then passed on when it is back (within STOP_PATIENCE), until the answer has ended."""
        if not self.outage.down:
            try:
                receivers = self.redis.publish(self._stop_channel, str(message_id))
            except redis.RedisError as exc:
                self._away(exc)
            else:
                self.outage.succeeded()
                if receivers < 2:
                    # No other worker heard it (this one's pub/sub is among the receivers):
                    # the answer has ended, or its writer is not subscribed again yet after
                    # Redis was away. Pass it on again until the answer has ended.
                    self._unsent_stops[message_id] = time.monotonic() + STOP_PATIENCE
                    self._mend()
                return True
        self._unsent_stops[message_id] = time.monotonic() + STOP_PATIENCE
        self._mend()
        return False

    def send_news(self, conversation_id: int, news: News) -> None:
        message = json.dumps(
            {
                "kind": news.kind,
                "message_ids": list(news.message_ids),
                "origin": news.origin,
                "title": news.title,
            }
        )
        if self.outage.down:
            raise redis.ConnectionError("Redis is not reachable")
        try:
            self.redis.publish(self._conversation(conversation_id), message)
        except redis.RedisError as exc:
            self._away(exc)
            raise

    # -- while Redis is away -----------------------------------------------------------------

    def _away(self, error: Exception) -> None:
        """A command failed: Redis is away until the mender reaches it again."""
        self.outage.failed(error)
        self._mend()

    def _mend(self) -> None:
        if self._mender is None or self._mender.dead:
            self._mender = gevent.spawn(self._run_mender)

    def _run_mender(self) -> None:
        """Try Redis every RETRY_EVERY seconds while it is away; once it answers, send the
        answers' ends and the Stops that waited for it."""
        while self.outage.down or self._unsent_finals or self._unsent_stops:
            if self._stopping.wait(RETRY_EVERY):
                return
            if self.outage.down:
                try:
                    self.redis.ping()
                except redis.RedisError as exc:
                    self.outage.failed(exc)
                    continue
                self.outage.succeeded()
            try:
                self._send_waiting()
            except redis.RedisError as exc:
                self.outage.failed(exc)

    def _send_waiting(self) -> None:
        for message_id in sorted(self._unsent_finals):
            self._send_final(message_id)
            self._unsent_finals.discard(message_id)
        now = time.monotonic()
        for message_id, give_up_at in list(self._unsent_stops.items()):
            try:
                state = self._load_state(message_id)
            except Exception:  # the database is away too: keep passing it on
                state = None
                ended = False
            else:
                ended = state is None or not state.is_streaming
            if ended or now > give_up_at:
                if not ended:
                    log.warning("gave up passing on Stop for answer %s", message_id)
                del self._unsent_stops[message_id]
                continue
            # Again each time, until the answer has ended: the writer's worker may not be
            # subscribed again yet.
            self.redis.publish(self._stop_channel, str(message_id))

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
            try:
                delivered = self.delivered(message_id)
            except redis.RedisError:
                self._release(name, channel, subscription)
                raise
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

    def watch(self, conversation_id: int) -> tuple[Subscription[News], Callable[[], None]]:
        """Subscribe to a conversation's news from every worker, this one included."""
        name = self._conversation(conversation_id)
        channel, subscription = self._subscribe(name)
        return subscription, lambda: self._release(name, channel, subscription)

    def close_all(self) -> None:
        """End every subscription: the worker is stopping."""
        for channel in list(self._channels.values()):
            channel.close_all()

    def stop(self) -> None:
        # A greenlet killed while redis-py connects leaks the socket it was connecting (only
        # an OSError closes it there): each is let end at its next wait, which a connect
        # reaches within COMMAND_TIMEOUT; a dispatcher reading its subscriptions is killed at
        # once (its socket is the pub/sub connection's, closed below).
        self._stopping.set()
        if self._mender is not None:
            self._mender.join(timeout=COMMAND_TIMEOUT + 1)
            self._mender.kill(block=True, timeout=2)
            self._mender = None
        if self._dispatcher is not None:
            if not self._listening:
                self._dispatcher.join(timeout=COMMAND_TIMEOUT + 1)
            self._dispatcher.kill(block=True, timeout=2)  # before its connection is closed
            self._dispatcher = None
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
        self.redis.close()

    def watching_workers(self, message_id: int) -> int:
        """How many workers (pub/sub connections) follow the answer, this one included; 1
        while Redis is away (nobody can tell, so the answer counts as watched)."""
        if self.outage.down:
            return 1
        try:
            counts = self.redis.pubsub_numsub(self._answer(message_id))
        except redis.RedisError as exc:
            self._away(exc)
            return 1
        return int(counts[0][1]) if counts else 0

    def listeners(self, kind: str) -> int:
        """Local subscriptions through the relay, for `answer` or `conversation` channels."""
        prefix = f"{self._prefix}:{kind}:"
        return sum(c.listeners for name, c in self._channels.items() if name.startswith(prefix))

    def ping(self) -> bool:
        try:
            answered = bool(self.redis.ping())
        except redis.RedisError as exc:
            self._away(exc)
            raise
        self.outage.succeeded()
        return answered

    # -- the dispatcher ---------------------------------------------------------------------

    def start(self) -> None:
        """Connect the worker's pub/sub and start dispatching (idempotent)."""
        with self._lock:
            if self._dispatcher is not None and not self._dispatcher.dead:
                return
            self._stopping.clear()
            # The pub/sub connection's own reads wait as long as no message comes: redis-py
            # lifts the socket timeout for them.
            self._pubsub = self.redis.pubsub()
            ack = self._acks.setdefault(self._stop_channel, Event())
            try:
                # Connected here, holding the lock: a request that subscribes meanwhile waits
                # for this connection, rather than open a second one nobody reads.
                self._pubsub.subscribe(self._stop_channel, *self._channels)
            except redis.RedisError as exc:
                self._away(exc)  # the dispatcher subscribes once Redis is back
                subscribed = False
            else:
                subscribed = True
            self._listening = subscribed
            self._dispatcher = gevent.spawn(self._run, subscribed)
        if subscribed:
            ack.wait(ACK_TIMEOUT)  # listening for Stop before this worker serves

    def _subscribe(self, name: str) -> tuple[Channel[Any], Subscription[Any]]:
        self.start()
        if self.outage.down or not self._listening:
            raise redis.ConnectionError("Redis is not reachable")
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(self._capacity)
            ack = self._acks[name] = Event()
            try:
                self._pubsub.subscribe(name)
            except redis.RedisError as exc:
                del self._channels[name]
                self._acks.pop(name, None)
                self._away(exc)
                raise
            if not ack.wait(ACK_TIMEOUT):
                log.warning("Redis did not confirm the subscription to %s in time", name)
        return channel, channel.subscribe()

    def _release(self, name: str, channel: Channel[Any], subscription: Subscription[Any]) -> None:
        channel.unsubscribe(subscription)
        if not channel.listeners and self._channels.get(name) is channel:
            del self._channels[name]
            self._views.pop(name, None)
            self._acks.pop(name, None)
            if self._pubsub is not None and not self.outage.down:
                try:
                    self._pubsub.unsubscribe(name)
                except redis.RedisError as exc:
                    self._away(exc)

    def _run(self, subscribed: bool) -> None:
        lost_at = None if subscribed else time.monotonic()
        while True:
            try:
                if not subscribed:
                    # Everything this worker follows, in one command: once the Stop channel's
                    # confirmation arrives, the others are in place too.
                    for ack in self._acks.values():
                        ack.clear()
                    self._pubsub.subscribe(self._stop_channel, *self._channels)
                    # Channels released while Redis was away came back with the connection.
                    followed = {self._stop_channel, *self._channels}
                    released = [
                        name
                        for name in map(_decoded, self._pubsub.channels)
                        if name not in followed
                    ]
                    if released:
                        self._pubsub.unsubscribe(*released)
                    subscribed = self._listening = True
                    if lost_at is not None:
                        lost_at = None
                        self.outage.succeeded()
                        gevent.spawn(self._catch_up)
                for message in self._pubsub.listen():
                    self._dispatch(message)
                gevent.sleep(0.1)  # nothing subscribed for a moment
            except (redis.RedisError, OSError) as exc:
                if lost_at is None:
                    lost_at = time.monotonic()
                subscribed = self._listening = False
                self._away(exc)
                if self._stopping.wait(RETRY_EVERY):
                    return

    def _catch_up(self) -> None:
        """After the pub/sub connection came back: show each followed answer's listeners what
        its frames missed meanwhile, or its end."""
        ack = self._acks.get(self._stop_channel)
        if ack is not None:
            ack.wait(ACK_TIMEOUT)  # subscribed again first: nothing falls between
        for name, remote in list(self._views.items()):
            channel, view = self._channels.get(name), remote.view
            if channel is None or view is None or remote.ended:
                continue
            message_id = int(name.rsplit(":", 1)[1])
            try:
                delivered = self.delivered(message_id)
            except redis.RedisError as exc:
                self._away(exc)
                return
            if delivered is None:  # ended meanwhile, and its end was announced
                self._end_remote(message_id, remote, channel)
                continue
            thinking, text = delivered
            if len(thinking) >= view.thinking_length and len(text) >= view.text_length:
                frame = view.add(text[view.text_length :], thinking[view.thinking_length :])
                if frame.end > frame.start:
                    channel.publish(frame)

    def _end_remote(self, message_id: int, remote: _RemoteView, channel: Channel[Any]) -> None:
        """Show the listeners of an answer another worker wrote its end, from the database."""
        if remote.ended or remote.view is None:
            return
        try:
            state = self._load_state(message_id)
        except Exception:
            # The database is away: the listeners reconnect, and get the end from it later.
            log.warning("could not read the end of answer %s; its listeners reconnect", message_id)
            channel.close_all()
            return
        if state is None or state.is_streaming or remote.ended:
            return
        remote.ended = True
        channel.publish(remote.view.finish(state))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            ack = self._acks.get(_decoded(message["channel"]))
            if ack is not None:
                ack.set()
            return
        if message["type"] != "message":
            return  # a confirmation of something else, or a pong
        name = _decoded(message["channel"])
        data = _decoded(message["data"])
        if name == self._stop_channel:
            self._on_stop(int(data))
            return
        channel = self._channels.get(name)
        if channel is None:
            return
        body = json.loads(data)
        if name.startswith(f"{self._prefix}:conversation:"):
            channel.publish(
                News(body["kind"], tuple(body["message_ids"]), body["origin"], body.get("title"))
            )
            return
        message_id = int(name.rsplit(":", 1)[1])
        remote = self._views.setdefault(name, _RemoteView())
        if remote.view is None:
            if not body.get("final"):
                remote.early.append(body)
            return  # its first listener reads the stored text next
        if body.get("final"):
            # Read from the database in a greenlet of its own: the other answers' frames do
            # not wait for it.
            gevent.spawn(self._end_remote, message_id, remote, channel)
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
    ended: bool = False  # its listeners were shown its end


def _frame_message(frame: Frame) -> str:
    return json.dumps({"start": frame.start, "thinking": frame.thinking, "text": frame.text})


def _decoded(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
