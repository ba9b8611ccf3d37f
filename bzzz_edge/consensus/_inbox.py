"""The consensus driver's inbox: what may reach the Raft core, bounded and fair. Uses trio.

Everything for the core (a peer's message, a proposal, a membership verdict, a hand-over)
waits here until the driver takes the batch. The inbox holds at most ``MAX_INBOX`` events and
at most ``MAX_QUEUED_PER_PEER`` messages of one peer (Raft retries what is refused, so a flood
only slows its sender). A peer's envelope is checked before it is queued: undecodable ones,
messages of another group, and messages before we belong to a group are refused and counted,
except a leader's appends, which make us adopt its group (queued as the group's bytes, ahead
of the message).

Waiting costs the driver no cancel scope per batch (a scope with a deadline is registered and
unregistered with trio's timers each time, a good part of a follower's work per append): the
driver parks itself, ``put`` wakes it, and a timer task (``keep_time``) wakes it at the
deadline. The timer's own scope is moved only when a deadline comes earlier than the one it
waits for; when the deadline moved later, the timer wakes at the old one and waits again.
"""

from __future__ import annotations

import math
from collections import Counter, deque

import msgpack
import trio

from ._events import Event, Received

__all__ = ["GROUP_LEN", "MAX_INBOX", "MAX_QUEUED_PER_PEER", "Inbox"]

GROUP_LEN = 40  # the founder's node ID and 8 random bytes
MAX_INBOX = 8192
MAX_QUEUED_PER_PEER = 1024  # one peer's messages waiting in the inbox; more are dropped
_ADOPTING_KINDS = (3, 5)  # AppendEntries, InstallSnapshot: only a leader sends them


class Inbox:
    """Events for the driver, in order (``bytes``: a group to adopt first); refusals are
    counted in ``counters`` (the service's)."""

    def __init__(self, counters: Counter[str]) -> None:
        self._counters = counters
        self._events: deque[Event | bytes] = deque()
        self._queued: Counter[bytes] = Counter()  # messages in the inbox, by sender
        self._waiter: trio.lowlevel.Task | None = None  # the driver, parked in ``wait``
        self._deadline = math.inf  # when the parked driver wants to wake at the latest
        self._timer: trio.CancelScope | None = None  # the timer's scope, while it waits

    def __len__(self) -> int:
        return len(self._events)

    def put(self, event: Event | bytes, *, front: bool = False) -> bool:
        """Queue ``event`` (``front``: before the rest); False, counted, when the inbox is full."""
        if len(self._events) >= MAX_INBOX:
            self._counters["inbox_full"] += 1
            return False
        if front:
            self._events.appendleft(event)
        else:
            self._events.append(event)
        self._wake()
        return True

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            trio.lowlevel.reschedule(waiter)

    def take(self) -> Event | bytes | None:
        """The next event, or None when the inbox is empty."""
        if not self._events:
            return None
        event = self._events.popleft()
        if isinstance(event, Received):
            left = self._queued[event.sender] - 1
            if left > 0:
                self._queued[event.sender] = left
            else:
                self._queued.pop(event.sender, None)
        return event

    async def wait(self, deadline: float) -> None:
        """Until something is queued or ``deadline`` passes (at once if something is; one
        task at a time, with ``keep_time`` running)."""
        if self._events:
            return
        if trio.current_time() >= deadline:
            await trio.lowlevel.checkpoint()
            return
        self._deadline = deadline
        timer = self._timer
        if timer is not None and deadline < timer.deadline:
            timer.deadline = deadline
        self._waiter = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def keep_time(self) -> None:
        """Wakes the task in ``wait`` at its deadline; runs until cancelled."""
        while True:
            with trio.CancelScope(deadline=self._deadline) as self._timer:
                await trio.sleep_forever()
            self._timer = None
            if trio.current_time() >= self._deadline:
                self._deadline = math.inf  # (the next wait sets it)
                self._wake()

    def receive(self, sender: bytes, body: bytes, group: bytes | None) -> None:
        """A peer's RAFT envelope body ``[group, message]``, for a node in ``group``."""
        try:
            value = msgpack.unpackb(body, use_list=True)
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException):
            value = None
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], bytes)
                and len(value[0]) == GROUP_LEN):
            self._counters["malformed_envelopes"] += 1
            return
        theirs, payload = value
        if group is None:
            kind = payload[0] if isinstance(payload, list) and payload else None
            if kind not in _ADOPTING_KINDS or self._adopting():
                self._counters["before_group"] += 1
                return
            self.put(theirs)
        elif theirs != group:
            self._counters["foreign_group"] += 1
            return
        if self._queued[sender] >= MAX_QUEUED_PER_PEER:
            self._counters["peer_backlog"] += 1
            return
        if self.put(Received(sender, payload)):
            self._queued[sender] += 1

    def _adopting(self) -> bool:
        return any(isinstance(e, bytes) for e in self._events)
