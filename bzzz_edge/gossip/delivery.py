"""Deliveries to local subscribers, and each subscriber's bounded queue. Uses trio.

A ``Subscription`` is an async iterator of ``Delivery`` records with a queue of its own,
bounded (``buffer`` deliveries): the service never waits on a subscriber and memory never grows
with a slow one. When the queue is full the oldest delivery is dropped (a subscriber that falls
behind keeps the freshest news), counted in ``dropped``, and the next delivery it receives says
how many it lost just before (``missed``). ``gap`` is different: messages of the origin that
this node never received at all (a hole in the origin's sequence, counted by the router).
"""

from __future__ import annotations

import base64
import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..ids import format_node_id

__all__ = ["Delivery", "Published", "Subscription"]


@dataclass(frozen=True, slots=True)
class Published:
    """What ``publish`` answers: the new message's origin (us) and sequence number."""

    topic: str
    origin: bytes
    seq: int

    @property
    def message_id(self) -> str:
        """``origin:seq``, with the origin as ``bzzz-edge id`` prints it."""
        return f"{format_node_id(self.origin)}:{self.seq}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message as a subscriber receives it."""

    topic: str
    origin: bytes  # the origin's node ID
    seq: int  # the origin's sequence number
    timestamp_ms: int  # the origin's wall clock when it published
    hops: int  # relays between the origin and us (0: from the origin itself)
    data: bytes  # the application's bytes, decompressed
    gap: int = 0  # the origin's messages before this one that never reached us
    missed: int = 0  # deliveries this subscriber lost to a full queue just before this one

    @property
    def message_id(self) -> str:
        """``origin:seq``, with the origin as ``bzzz-edge id`` prints it."""
        return f"{format_node_id(self.origin)}:{self.seq}"

    def as_json(self) -> dict[str, Any]:
        """The shape ``sub --json`` prints and the SSE stream carries."""
        try:
            text: str | None = self.data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return {"id": self.message_id, "topic": self.topic, "origin": format_node_id(self.origin),
                "seq": self.seq, "timestamp": self.timestamp_ms / 1000, "hops": self.hops,
                "data": text, "data_b64": base64.b64encode(self.data).decode("ascii"),
                "gap": self.gap, "missed": self.missed}


class Subscription:
    """One subscriber's deliveries on ``topic``; iterate with ``async for``, end with ``close``.

    Args:
        topic: the topic subscribed to.
        buffer: deliveries queued at most (the oldest is dropped past that).
        on_close: called once when the subscription closes (the service may leave the topic).
        skip_origin: deliveries from this origin are not queued (a service that only wants
            what other nodes publish is not woken for this node's own messages).
        matching: when given, only deliveries whose data holds one of these byte strings are
            queued: a subscriber that wants a few kinds of message on a busy topic (the
            benchmark's event streams want two kinds of task event out of three) is not woken,
            and nothing is formatted or written for it, for the rest.
    """

    def __init__(self, topic: str, buffer: int, on_close: Callable[[Subscription], None], *,
                 skip_origin: bytes | None = None, matching: tuple[bytes, ...] = ()) -> None:
        if buffer < 1:
            raise ValueError(f"subscription buffer must be at least 1, got {buffer}")
        self.topic = topic
        self._buffer = buffer
        self._queue: deque[Delivery] = deque()
        self._missed = 0
        # The tasks waiting for a delivery or the close (nearly always one, or none). Parked
        # and woken by hand, not with an Event renewed per wait nor a ParkingLot (whose
        # ``unpark_all`` builds a generator and a list each time): a subscriber that keeps up
        # waits once per delivery, and that wait is part of every message's cost at every node.
        self._waiters: list[trio.lowlevel.Task] = []
        self._on_close = on_close
        self._skip_origin = skip_origin
        self._matching = matching
        self.closed = False
        self.received = 0  # deliveries handed to this subscription
        self.dropped = 0  # of those, lost to a full queue

    def put(self, delivery: Delivery) -> bool:
        """Queue ``delivery``; never blocks. False when an older one was dropped for it."""
        if self.closed or (self._skip_origin is not None and delivery.origin == self._skip_origin):
            return True
        if self._matching and not any(m in delivery.data for m in self._matching):
            return True
        self.received += 1
        dropped = len(self._queue) >= self._buffer
        if dropped:
            self._queue.popleft()
            self._missed += 1
            self.dropped += 1
        self._queue.append(delivery)
        if self._waiters:
            self._wake()
        return not dropped

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for task in waiters:
            trio.lowlevel.reschedule(task)

    async def _wait(self) -> None:
        """Until ``put`` or ``close`` wakes us (or we are cancelled)."""
        task = trio.lowlevel.current_task()
        self._waiters.append(task)

        def abort(_: Any) -> trio.lowlevel.Abort:
            # (only while still waiting: woken tasks left the list when they were woken)
            self._waiters.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def receive_nowait(self) -> Delivery:
        """The next queued delivery.

        Raises:
            trio.WouldBlock: nothing queued.
            trio.EndOfChannel: the subscription is closed.
        """
        if self._queue:
            delivery = self._queue.popleft()
            if self._missed:
                delivery, self._missed = dataclasses.replace(delivery, missed=self._missed), 0
            return delivery
        if self.closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> Delivery:
        """The next delivery, waiting for one.

        Raises:
            trio.EndOfChannel: the subscription was closed.
        """
        while not self._queue and not self.closed:
            await self._wait()
        return self.receive_nowait()

    def __len__(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Stop receiving; a waiting ``receive`` ends with ``EndOfChannel``."""
        if not self.closed:
            self.closed = True
            self._queue.clear()
            self._wake()
            self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Delivery:
        # ``receive`` inline (no async generator, no coroutine of its own in between: frames
        # less to make and resume per delivery, at every subscriber of every node).
        while not self._queue and not self.closed:
            await self._wait()
        try:
            return self.receive_nowait()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
