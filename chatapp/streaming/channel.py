"""Fan-out of one message's frames (or one conversation's news) to every listener in this worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from gevent.queue import Empty, Full, Queue


@dataclass(frozen=True)
class News:
    """News for everyone who has a conversation open: messages appeared or were restarted."""

    kind: str  # "exchange": new messages to append; "restart": a message to replace; "title"
    message_ids: tuple[int, ...]
    origin: str | None = None  # the tab that caused it, which already shows it
    title: str | None = None  # the conversation's new title, for "title"


Item = TypeVar("Item")


class Ended(Exception):
    """The subscription is over: its listener left, or fell too far behind and must reconnect."""


class Subscription(Generic[Item]):
    """One listener's bounded queue of frames."""

    def __init__(self, capacity: int) -> None:
        self._queue: Queue[Item | None] = Queue(maxsize=capacity + 1)
        self._capacity = capacity
        self.overflowed = False
        self.closed = False

    def offer(self, frame: Item) -> None:
        """Queue a frame without ever waiting; a listener that is too far behind is cut loose."""
        if self.overflowed or self.closed:
            return
        if self._queue.qsize() >= self._capacity:
            # Its client stopped reading. It reconnects with its last id and catches up from
            # the stored text, so nothing is lost and the generation never waits for it.
            self.overflowed = True
            return
        self._queue.put_nowait(frame)

    def close(self) -> None:
        """End the subscription now (its listener left), waking a listener that waits."""
        if not self.closed:
            self.closed = True
            try:
                self._queue.put_nowait(None)  # the one slot kept free for this
            except Full:
                pass

    def next(self, timeout: float) -> Item | None:
        """The next frame, or None after `timeout` seconds without one.

        Raises `Ended` once frames were dropped for this listener, or it was closed.
        """
        if self.overflowed or self.closed:
            raise Ended
        try:
            item = self._queue.get(timeout=timeout)
        except Empty:
            return None
        if item is None or self.closed:
            raise Ended
        return item

    def __len__(self) -> int:
        return self._queue.qsize()


class Channel(Generic[Item]):
    """The listeners of one message (or one conversation) in this worker."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._subscriptions: set[Subscription[Item]] = set()

    def subscribe(self) -> Subscription[Item]:
        subscription: Subscription[Item] = Subscription(self._capacity)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[Item]) -> None:
        self._subscriptions.discard(subscription)

    def close_all(self) -> None:
        """End every subscription, waking their listeners."""
        for subscription in tuple(self._subscriptions):
            subscription.close()

    def publish(self, frame: Item) -> None:
        for subscription in tuple(self._subscriptions):
            subscription.offer(frame)

    @property
    def listeners(self) -> int:
        return len(self._subscriptions)
