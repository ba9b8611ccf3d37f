"""The topics this node holds, its subscribers, and their per-topic counters. Uses trio (the
subscriptions it hands out are trio queues).

A topic is held while ``join`` holds it or a subscription on it is open; ``on_enter`` is called
when a topic starts being held and ``on_left`` when it stops (the service joins and leaves it in
the router then). At most ``max_topics`` are held at once: past that, a new one is refused with
a ``TopicError`` naming the config key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from .delivery import Subscription
from .topics import TopicError

__all__ = ["LocalTopics"]

# Counted per topic held, besides the service's totals.
TOPIC_COUNTERS = ("queue_drops", "subscriber_drops", "undecodable")


class LocalTopics:
    """Topics held by ``join`` or by open subscriptions.

    Args:
        max_topics: topics held at once (``gossip.max_topics``).
        subscriber_buffer: a subscription's queue when the caller names none.
        on_enter, on_left: called when a topic starts and stops being held.
    """

    def __init__(self, *, max_topics: int, subscriber_buffer: int,
                 on_enter: Callable[[str], None], on_left: Callable[[str], None]) -> None:
        self._max_topics = max_topics
        self._buffer = subscriber_buffer
        self._on_enter = on_enter
        self._on_left = on_left
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._joined: set[str] = set()  # held by join() (the standard topics included)
        self.counters: dict[str, Counter[str]] = {}

    def subscribe(self, topic: str, buffer: int | None = None, *,
                  skip_origin: bytes | None = None,
                  matching: tuple[bytes, ...] = ()) -> Subscription:
        self._check_room(topic)
        subscription = Subscription(topic, buffer or self._buffer, self._unsubscribed,
                                    skip_origin=skip_origin, matching=matching)
        subscribers = self._subscriptions.setdefault(topic, set())
        first = not subscribers and topic not in self._joined
        subscribers.add(subscription)
        if first:
            self._on_enter(topic)
        return subscription

    def join(self, topic: str) -> None:
        if topic in self._joined:
            return
        self._check_room(topic)
        self._joined.add(topic)
        if not self._subscriptions.get(topic):
            self._on_enter(topic)

    def leave(self, topic: str) -> None:
        self._joined.discard(topic)
        if not self._subscriptions.get(topic):
            self._left(topic)

    def held(self) -> list[str]:
        return sorted(self._joined | {t for t, subs in self._subscriptions.items() if subs})

    def subscribers(self, topic: str) -> list[Subscription]:
        return list(self._subscriptions.get(topic, ()))

    def close_all(self) -> None:
        for subscribers in list(self._subscriptions.values()):
            for subscription in list(subscribers):
                subscription.close()

    def _check_room(self, topic: str) -> None:
        if topic in self._joined or self._subscriptions.get(topic):
            return
        if len(self.held()) >= self._max_topics:
            raise TopicError(f"topic {topic!r}: {self._max_topics} topics are joined already "
                             "(gossip.max_topics)")
        self.counters.setdefault(topic, Counter())

    def _unsubscribed(self, subscription: Subscription) -> None:
        subscribers = self._subscriptions.get(subscription.topic)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers and subscription.topic not in self._joined:
            self._left(subscription.topic)

    def _left(self, topic: str) -> None:
        self._subscriptions.pop(topic, None)
        self.counters.pop(topic, None)
        self._on_left(topic)
