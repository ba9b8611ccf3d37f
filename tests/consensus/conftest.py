"""Raft cores wired back to back: messages go straight from one core's actions to another's
``handle``, through the msgpack wire form, with a disk (``DurableState``) per node."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable

import msgpack
import pytest

from bzzz_edge.consensus import (
    Action,
    Apply,
    Configuration,
    DurableState,
    EntryKind,
    Persist,
    Raft,
    RaftConfig,
    Received,
    Send,
    SnapshotTaken,
    State,
    TakeSnapshot,
    encode_message,
    lan,
)


def node_id(i: int) -> bytes:
    return hashlib.sha256(b"raft test node %d" % i).digest()


class Net:
    """Cores by index; ``deliver`` runs messages until none are left (or ``limit``)."""

    def __init__(self, n: int, *, voters: int | None = None, config: RaftConfig | None = None,
                 seed: int = 0) -> None:
        self.ids = [node_id(i) for i in range(n)]
        k = n if voters is None else voters
        self.bootstrap = Configuration(frozenset(self.ids[:k]), frozenset(self.ids[k:]))
        self.config = config if config is not None else lan()
        self.rng = random.Random(seed)
        self.now = 0.0
        self.disks = {node: DurableState() for node in self.ids}
        self.applied: dict[bytes, list[bytes]] = {node: [] for node in self.ids}
        self.cores = {node: self._core(node) for node in self.ids}
        self.queue: list[tuple[bytes, bytes, bytes]] = []
        self.actions: dict[bytes, list[Action]] = {node: [] for node in self.ids}
        self.down: set[bytes] = set()
        self.cut: set[frozenset[bytes]] = set()
        # drop(sender, dest, message as msgpack-decoded) -> True to lose it
        self.drop: Callable[[bytes, bytes, object], bool] | None = None

    def _core(self, node: bytes) -> Raft:
        return Raft(node, now=self.now, config=self.config, stored=self.disks[node].stored(),
                    bootstrap=self.bootstrap, rng=random.Random(self.rng.random()))

    def core(self, i: int) -> Raft:
        return self.cores[self.ids[i]]

    def restart(self, i: int) -> None:
        node = self.ids[i]
        self.down.discard(node)
        self.applied[node] = []
        self.cores[node] = self._core(node)

    def isolate(self, i: int) -> None:
        for other in self.ids:
            if other != self.ids[i]:
                self.cut.add(frozenset((self.ids[i], other)))

    def perform(self, node: bytes, actions: Iterable[Action]) -> None:
        for action in actions:
            self.actions[node].append(action)
            if isinstance(action, Persist):
                self.disks[node].apply(action)
            elif isinstance(action, Send):
                payload = msgpack.packb(encode_message(action.message))
                self.queue.append((node, action.to, payload))
            elif isinstance(action, Apply):
                self.applied[node] += [e.data for e in action.entries
                                       if e.kind is EntryKind.COMMAND]
            elif isinstance(action, TakeSnapshot):
                data = b"%d" % len(self.applied[node])
                self.perform(node, self.cores[node].handle(SnapshotTaken(action.index, data),
                                                           self.now))

    def handle(self, i: int, event: object) -> list[Action]:
        node = self.ids[i]
        actions = self.cores[node].handle(event, self.now)  # type: ignore[arg-type]
        self.perform(node, actions)
        return actions

    def deliver(self, limit: int = 100_000) -> int:
        count = 0
        while self.queue and count < limit:
            sender, dest, payload = self.queue.pop(0)
            if dest in self.down or sender in self.down or frozenset((sender, dest)) in self.cut:
                continue
            value = msgpack.unpackb(payload)
            if self.drop is not None and self.drop(sender, dest, value):
                continue
            count += 1
            event = Received(sender, value)
            self.perform(dest, self.cores[dest].handle(event, self.now))
        return count

    def advance(self, seconds: float, step: float = 0.005) -> None:
        """Move time on, ticking every core whose deadline passed and delivering at once."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for node, core in self.cores.items():
                deadline = core.next_deadline()
                if node not in self.down and deadline is not None and deadline <= self.now:
                    self.perform(node, core.tick(self.now))
            self.deliver()

    def leaders(self) -> list[int]:
        return [i for i, node in enumerate(self.ids)
                if node not in self.down and self.cores[node].state is State.LEADER]

    def elect(self, timeout: float = 3.0) -> int:
        end = self.now + timeout
        while self.now < end:
            self.advance(0.01)
            leaders = self.leaders()
            if len(leaders) == 1:
                return leaders[0]
        raise AssertionError("no leader elected")


@pytest.fixture
def make_net() -> Callable[..., Net]:
    return Net
