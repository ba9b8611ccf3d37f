"""What the consensus driver does with a batch of the core's actions. Uses trio.

Four departures from performing every action in order after the batch's sync, each argued
where it is made: a leader's appends go out while its own write syncs (``parallel``);
committed entries are applied while their write syncs (``applies_early``); commit notices and
learners' appends wait for the proposers the commit woke (``is_notice``), and notices are
dropped when an append of the next batch carries the commit index anyway
(``without_stale_notices``); and a leader's batch that only appends entries does not wait for
its write at all (``leader_only``, ``WriteBehind``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import trio

from ._events import (
    Accepted,
    Action,
    Apply,
    Persist,
    Rejected,
    RestoreSnapshot,
    Send,
    State,
    TakeSnapshot,
)
from ._messages import AppendEntries
from ._raft import Raft

__all__ = ["WriteBehind", "applies_early", "carried_last", "is_notice", "leader_only",
           "parallel", "stored_through", "without_stale_notices"]


class Pending(Protocol):
    """A write already queued with the store's writer (``Writer.start``)."""

    @property
    def done(self) -> bool: ...

    async def result(self) -> object: ...


def parallel(action: Action) -> bool:
    """A leader's appends go out while its own write syncs (dissertation 10.2.1).

    A deviation from the core's contract, which asks for every ``Persist`` before the sends
    after it, made for latency: it overlaps the leader's sync with the followers' round trip.
    It is safe because the core counts the leader's own copy toward a majority only once the
    driver reports it durable (write-behind, ``_events``): an entry is never counted committed
    on the leader's word before the leader holds it; and a leader that crashes first loses
    only entries that no majority holds, as when it crashes just after sending. Votes,
    acknowledgements and snapshots still wait for the sync.
    """
    return isinstance(action, Send) and isinstance(action.message, AppendEntries)


def applies_early(actions: list[Action]) -> bool:
    """Whether a batch's ``Apply`` may be performed while its write syncs (a learner is sent
    entries with their commit, ``_replication``: it applies them without waiting a sync).

    A deviation from the core's contract, as ``parallel`` is: an ``Apply`` names committed
    entries only, which a majority holds durably whatever happens to our copy, and our write
    of them is queued first, so whatever the state machine's consumers write after applying
    them lands in the same or a later commit of the store's one writer (never ahead of the
    log). Not when the batch takes or restores a snapshot (the machine's state must match its
    index) or replaces entries; what the store holds is served only up to
    ``stored_through``."""
    for action in actions:
        if isinstance(action, RestoreSnapshot | TakeSnapshot):
            return False
        if isinstance(action, Persist) and (action.truncate_from is not None
                                            or action.snapshot is not None):
            return False
    return True


def stored_through(stored: int, persists: list[Persist]) -> int:
    """The last log index in the store once ``persists`` are durable (``stored`` before)."""
    for p in persists:
        if p.snapshot is not None:
            stored = p.snapshot.index
        if p.truncate_from is not None:
            stored = min(stored, p.truncate_from - 1)
        if p.entries:
            stored = p.entries[-1].index
    return stored


def is_notice(action: Action, voters: frozenset[bytes]) -> bool:
    """What tells a follower of a commit: a commit notice, or an append to a learner (it is
    sent only committed entries, ``_replication``); either may wait for the proposers that
    the commit woke."""
    return isinstance(action, Send) and isinstance(action.message, AppendEntries) \
        and (action.message.quiet or action.to not in voters)


def without_stale_notices(actions: list[Action]) -> list[Action]:
    """Drop a commit notice to a peer that a later append of the batch goes to: that append
    carries the commit index too (it never falls), so the notice is spent."""
    later: set[bytes] = set()
    out: list[Action] = []
    for action in reversed(actions):
        if isinstance(action, Send) and isinstance(action.message, AppendEntries):
            if action.message.quiet and action.to in later:
                continue
            later.add(action.to)
        out.append(action)
    out.reverse()
    return out


def carried_last(actions: list[Action], carried: list[Action]) -> list[Action]:
    """``actions`` with the notices ``carried`` over from the batch before moved after the
    rest, except those to a peer that the rest also sends to (a peer gets its messages in the
    order made). Each send on loopback wakes its receiver, which on two shared cores may take
    the CPU from the leader before its next send: the appends that carry new proposals, which
    a commit waits for, go out first."""
    if not carried:
        return actions
    late_ids = {id(c) for c in carried}
    fresh = {a.to for a in actions if isinstance(a, Send) and id(a) not in late_ids}
    late = [a for a in actions if id(a) in late_ids and
            not (isinstance(a, Send) and a.to in fresh)]
    if not late:
        return actions
    moved = {id(a) for a in late}
    return [a for a in actions if id(a) not in moved] + late


def leader_only(core: Raft | None, actions: list[Action], term: int) -> bool:
    """Whether a leader's batch may go without waiting for its writes (``_events``): still
    leader in ``term``, writing entries only, doing nothing that depends on its own copy
    (appends, proposals' outcomes, committed entries)."""
    if core is None or core.state is not State.LEADER or core.term != term:
        return False
    for action in actions:
        if isinstance(action, Persist):
            if not action.entries or action.snapshot is not None or \
                    action.truncate_from is not None or action.compact_through is not None:
                return False
        elif not (parallel(action) or isinstance(action, Accepted | Rejected | Apply)):
            return False
    return True


class WriteBehind:
    """A leader's entry writes, finished in the background: ``add`` hands each to the store's
    writer at once, so its sync runs while the driver sends the appends (the writer puts what
    queues during a sync into one commit); ``run`` waits for them in order and tells
    ``written`` of each once durable."""

    def __init__(self, start: Callable[[list[Persist]], Pending],
                 written: Callable[[list[Persist]], None]) -> None:
        self._start, self._written = start, written
        self._queue: deque[tuple[list[Persist], Pending]] = deque()
        self._queued = trio.Event()
        self._done = trio.Event()
        self._done.set()

    def add(self, persists: list[Persist], pending: Pending | None = None) -> None:
        """Write ``persists`` behind (``pending``: already queued with the writer)."""
        if pending is None:
            pending = self._start(persists)
        self._queue.append((persists, pending))
        self._done = trio.Event()
        self._queued.set()

    @property
    def queued(self) -> bool:
        """Whether a write is still queued (a later one must not overtake it)."""
        return bool(self._queue)

    async def idle(self) -> None:
        """Until every write queued so far is durable."""
        if self._queue:
            await self._done.wait()

    async def run(self) -> None:
        while True:
            await self._queued.wait()
            self._queued = trio.Event()
            while self._queue:
                await self._queue[0][1].result()
                # Those done as well (the writer commits what queued meanwhile together) are
                # reported with it: one ``Persisted`` for the core, not one per batch.
                durable: list[Persist] = []
                while self._queue and self._queue[0][1].done:
                    persists, pending = self._queue.popleft()
                    await pending.result()  # raises if it failed; returns at once
                    durable += persists
                self._written(durable)
            self._done.set()
