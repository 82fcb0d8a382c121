"""Fan-out to listeners: bounded per listener, never waiting for one."""

from __future__ import annotations

import gevent
import pytest

from chatapp.streaming.channel import Channel, Ended


def test_every_listener_gets_every_frame_in_order() -> None:
    channel: Channel[int] = Channel(capacity=10)
    first, second = channel.subscribe(), channel.subscribe()
    for n in range(5):
        channel.publish(n)
    assert [first.next(0.1) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert [second.next(0.1) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert first.next(0.01) is None  # nothing more: a heartbeat is due


def test_a_listener_that_falls_behind_is_cut_loose_and_the_others_are_not() -> None:
    channel: Channel[int] = Channel(capacity=3)
    stuck, reading = channel.subscribe(), channel.subscribe()
    for n in range(10):
        channel.publish(n)  # never waits, however far behind `stuck` is
        assert reading.next(0.1) == n
    assert stuck.overflowed and len(stuck) == 3  # what it holds stays bounded
    with pytest.raises(Ended):
        stuck.next(0.1)


def test_closing_wakes_a_waiting_listener_at_once() -> None:
    channel: Channel[int] = Channel(capacity=3)
    subscription = channel.subscribe()
    waiter = gevent.spawn(subscription.next, 30.0)
    gevent.sleep(0.01)
    subscription.close()
    waiter.join(1.0)
    assert waiter.dead and isinstance(waiter.exception, Ended)
    channel.unsubscribe(subscription)
    assert channel.listeners == 0


def test_closing_a_full_subscription_still_ends_it() -> None:
    channel: Channel[int] = Channel(capacity=2)
    subscription = channel.subscribe()
    channel.publish(1)
    channel.publish(2)
    subscription.close()
    with pytest.raises(Ended):
        subscription.next(0.1)
