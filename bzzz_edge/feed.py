"""Event feeds: one publisher, any number of subscribers, nothing lost silently. Uses trio.

A subscriber reads at its own pace from a bounded queue of its own. When it falls so far
behind that its queue is full, the feed does not drop events quietly and does not block the
publisher (the transport must never wait on a slow reader): it empties that subscriber's
queue, counts and logs the overflow, and hands the subscriber an ``Overflowed`` marker as its
next item. A subscriber that sees ``Overflowed`` has missed events and must resynchronise from
the publisher's current state (for example: the connection manager's list of connections).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

__all__ = ["Feed", "Overflowed", "Subscription"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Overflowed:
    """The subscriber missed ``missed`` events; it must re-read the state it tracks."""

    missed: int


class Subscription(Generic[T]):
    """One subscriber's queue; iterate it with ``async for``."""

    def __init__(self, feed: Feed[T], buffer: int) -> None:
        self._feed = feed
        self._buffer = buffer
        self._queue: deque[T] = deque()
        self._missed = 0
        self._ready = trio.Event()
        self.closed = False

    def _put(self, event: T) -> None:
        if len(self._queue) >= self._buffer:
            self._missed += len(self._queue) + 1
            self._queue.clear()
            self._feed.overflows += 1
            log.warning("event feed %s: a subscriber fell %d events behind; it will resync",
                        self._feed.name, self._missed)
        else:
            self._queue.append(event)
        self._ready.set()

    async def receive(self) -> T | Overflowed:
        """The next event, or ``Overflowed`` when events were missed since the last one."""
        while True:
            if self._missed:
                missed, self._missed = self._missed, 0
                return Overflowed(missed)
            if self._queue:
                return self._queue.popleft()
            self._ready = trio.Event()
            await self._ready.wait()

    def close(self) -> None:
        self.closed = True
        self._feed._subscribers.discard(self)

    def __aiter__(self) -> AsyncIterator[T | Overflowed]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T | Overflowed]:
        while not self.closed:
            yield await self.receive()


class Feed(Generic[T]):
    """Publishes events of one kind to every current subscriber."""

    def __init__(self, name: str, *, buffer: int = 1024) -> None:
        self.name = name
        self._buffer = buffer
        self._subscribers: set[Subscription[T]] = set()
        self.published = 0
        self.overflows = 0

    def subscribe(self, buffer: int | None = None) -> Subscription[T]:
        """Start receiving events published from now on."""
        subscription = Subscription(self, buffer or self._buffer)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, event: T) -> None:
        """Queue ``event`` for every subscriber; never blocks."""
        self.published += 1
        for subscription in list(self._subscribers):
            subscription._put(event)
