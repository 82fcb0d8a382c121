"""The answers this worker is writing, and what they share: the client and the flusher."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
import redis
from flask import Flask, current_app
from gevent.event import Event

from ..extensions import db
from ..llm import catalogue
from ..llm.client import Claude
from ..llm.files import Files
from ..metrics import Meter, multiprocess
from ..outage import Outage
from .channel import Channel, News, Subscription
from .generation import AnswerServices, AnswerSettings, Generation
from .persistence import Flusher, Question, load_state
from .relay import Relay
from .sweeper import Sweeper

log = logging.getLogger(__name__)

EXTENSION_KEY = "chatapp.streams"
# With several workers, each writes its gauges this often for a scrape any worker answers.
GAUGE_SECONDS = 1.0


class Streams:
    """Per-app (and so per-worker) registry of live generations."""

    def __init__(self, app: Flask) -> None:
        config = app.config
        self.app = app
        self.claude = Claude(config)
        self.catalogue = catalogue.install(app, lambda: self.claude.client)
        self.files = Files(app, lambda: self.claude.client, use_files_api=bool(config["FILES_API"]))
        self.meter = Meter()
        self.database = Outage(
            "the database",
            consequence="streamed text is kept in memory and stored when it answers again",
        )
        self.flusher = Flusher(app, float(config["FLUSH_INTERVAL"]), self.meter, self.database)
        self.stopping = Event()  # the worker is going away: waiting writes give up
        self._frame_interval = float(config["FRAME_INTERVAL"])
        self._frames_per_second = float(config["WORKER_FRAMES_PER_SECOND"])
        self.settings = AnswerSettings.of(config)
        self.live: dict[int, Generation] = {}
        self._conversations: dict[int, Channel[News]] = {}
        self.closing = False  # the worker is stopping: streams that would wait end instead
        self.open_streams = 0  # SSE responses being written by this worker
        self.relay: Relay | None = None
        self._gauges: gevent.Greenlet | None = None
        if config.get("REDIS_URL"):
            self.relay = Relay(
                config["REDIS_URL"],
                config["REDIS_PREFIX"],
                self.settings.listener_capacity,
                on_stop=self._stop_here,
                load_state=lambda message_id: load_state(app, message_id),
            )
        self.services = AnswerServices(
            app=app,
            claude=self.claude,
            catalogue=self.catalogue,
            files=self.files,
            meter=self.meter,
            flusher=self.flusher,
            database=self.database,
            stopping=self.stopping,
            relay=self.relay,
            watchers=self.watchers,
            frame_interval=lambda: self.frame_interval,
            forget=self.forget,
            send_news=self.send_news,
        )
        self.sweeper = Sweeper(
            app,
            lambda: tuple(self.live),
            on_interrupted=self._interrupted,
            delivered=self.relay.delivered if self.relay else lambda _message_id: None,
            count_output=lambda model, text: self.claude.counter.count(model, text),
            database=self.database,
        )
        app.extensions[EXTENSION_KEY] = self
        app.before_request(self._ensure_running)

    @property
    def ends_waiting(self) -> int:
        """Answers that ended and wait for the database to store their end."""
        return self.services.ends_waiting

    @property
    def frame_interval(self) -> float:
        """The least time between two frames of one answer: FRAME_INTERVAL, and longer when
        this worker writes so many answers that their frames together would pass
        WORKER_FRAMES_PER_SECOND. Each frame costs a render and a write whatever it holds, so
        under load frames grow instead of multiplying: the text still arrives whole, in
        bigger steps, and the worker keeps up."""
        return max(self._frame_interval, len(self.live) / self._frames_per_second)

    def _ensure_running(self) -> None:
        """Start this worker's background greenlets on its first request (after the fork)."""
        self.sweeper.ensure_running()
        self.catalogue.ensure_running()
        if self.relay is not None:
            self.relay.start()  # listen for Stop pressed on other workers
        if self._gauges is None and multiprocess():
            self._gauges = gevent.spawn(self._publish_gauges)

    def _publish_gauges(self) -> None:
        """Keep this worker's part of the service's gauges current (chatapp.metrics)."""
        while True:
            self.meter.set_gauges(self.gauges())
            gevent.sleep(GAUGE_SECONDS)

    def start(
        self, message_id: int, conversation_id: int, question: Question | None = None
    ) -> Generation:
        """Start writing the answer `message_id` (stored with status `streaming`), to
        `question` if the caller has it, else to what is stored before it."""
        generation = Generation(self.services, self.settings, message_id, conversation_id, question)
        if self.relay is not None:
            self.relay.begin(message_id)
        self.live[message_id] = generation
        generation.start()
        return generation

    def stop(self, message_id: int) -> bool:
        """Stop the answer, whichever worker writes it. Harmless if it has ended.

        False when another worker may be writing it and Redis is away: the Stop is passed on
        once Redis is back.
        """
        if self._stop_here(message_id) or self.relay is None:
            return True
        return self.relay.request_stop(message_id)

    def _stop_here(self, message_id: int) -> bool:
        generation = self.live.get(message_id)
        if generation is None:
            return False
        generation.stop()
        return True

    def send_news(
        self,
        conversation_id: int,
        kind: str,
        message_ids: tuple[int, ...],
        origin: str | None,
        title: str | None = None,
    ) -> None:
        """Tell every open page of the conversation that messages appeared or restarted, or
        that it has a new title."""
        news = News(kind, message_ids, origin, title)
        if self.relay is not None:
            try:
                self.relay.send_news(conversation_id, news)  # comes back to this worker's pages too
                return
            except redis.RedisError:
                pass  # pages elsewhere see the news when they reconnect or reload
        channel = self._conversations.get(conversation_id)
        if channel is not None:
            channel.publish(news)

    def watch(self, conversation_id: int) -> tuple[Subscription[News], Callable[[], None]]:
        """Subscribe to a conversation's news; call the second value when done."""
        if self.relay is not None:
            try:
                return self.relay.watch(conversation_id)
            except redis.RedisError:
                pass  # Redis is away: this page hears this worker's news only
        channel = self._conversations.setdefault(
            conversation_id, Channel(self.settings.listener_capacity)
        )
        subscription = channel.subscribe()

        def release() -> None:
            channel.unsubscribe(subscription)
            if not channel.listeners and self._conversations.get(conversation_id) is channel:
                del self._conversations[conversation_id]

        return subscription, release

    def watchers(self, message_id: int) -> int:
        """How many follow the answer: streams in this worker, or workers following it."""
        local = self.listeners(message_id)
        if local or self.relay is None:
            return local
        return self.relay.watching_workers(message_id)

    def _interrupted(self, message_ids: list[int]) -> None:
        """Answers the sweeper ended: tell their listeners on every worker."""
        if self.relay is not None:
            for message_id in message_ids:
                self.relay.final(message_id)

    def counts(self) -> dict[str, int]:
        """What this worker holds right now, for /metrics and leak checks."""
        return {
            "answers_live": len(self.live),
            "streams_open": self.open_streams,
            "answer_subscriptions": sum(g.channel.listeners for g in self.live.values())
            + (self.relay.listeners("answer") if self.relay else 0),
            "conversation_subscriptions": sum(c.listeners for c in self._conversations.values())
            + (self.relay.listeners("conversation") if self.relay else 0),
            "answers_unstored": self.flusher.waiting,
            "answer_ends_waiting": self.ends_waiting,
        }

    def gauges(self) -> dict[str, float]:
        """This worker's gauges for /metrics: what it holds, and how its last tries went."""
        with self.app.app_context():
            pool = db.engine.pool
        return {
            **self.counts(),
            "db_connections_in_use": int(getattr(pool, "checkedout", lambda: 0)()),
            "database_reachable": int(not self.database.down),
            "redis_reachable": int(self.relay is None or not self.relay.outage.down),
        }

    def _close_watchers(self) -> None:
        """End the open pages' conversation streams; browsers reconnect to another worker."""
        self.closing = True
        for channel in self._conversations.values():
            channel.close_all()
        if self.relay is not None:
            self.relay.close_all()

    def listeners(self, message_id: int) -> int:
        """How many streams are following the answer `message_id` in this worker."""
        generation = self.live.get(message_id)
        return generation.channel.listeners if generation is not None else 0

    def forget(self, generation: Generation) -> None:
        if self.live.get(generation.message_id) is generation:
            del self.live[generation.message_id]

    def wind_down(self, grace: float) -> None:
        """Let live answers finish for up to `grace` seconds, then interrupt the rest.

        Called when the worker is asked to stop (SIGTERM, a reload). Every answer ends with
        what it has stored: `complete` if it finished in time, else `interrupted`.
        """
        self._close_watchers()
        deadline = time.monotonic() + max(grace, 0.0)
        while self.live and time.monotonic() < deadline:
            gevent.sleep(0.1)
        if self.live:
            log.warning("interrupting %d answers still being written at shutdown", len(self.live))
        self.shutdown()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Interrupt every live answer, store what it has, and release the client."""
        self.stopping.set()
        self._close_watchers()
        if self._gauges is not None:
            self._gauges.kill()
        for generation in list(self.live.values()):
            generation.interrupt()
        for generation in list(self.live.values()):
            generation.join(timeout)
        self.flusher.stop()
        self.sweeper.stop()
        self.catalogue.stop()
        self.claude.close()
        if self.relay is not None:
            self.relay.stop()


def streams(app: Flask | None = None) -> Streams:
    """The registry of the current app."""
    target = app if app is not None else current_app
    registry: Streams = target.extensions[EXTENSION_KEY]
    return registry
