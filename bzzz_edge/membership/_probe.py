"""Bookkeeping for failure-detection probes: probe order and probes in flight. No I/O.

The probe order is a random permutation of the other members that is walked round robin and
*not* reshuffled after each pass (memberlist and the SWIM paper reshuffle). With a fixed order
a member is probed once in every ``n - 1`` periods, instead of up to ``2(n - 1) - 1`` periods
apart, which halves the worst-case detection time; the orders of different nodes are still
independent, which is what spreads the probes evenly. New members go in at a random position.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PendingProbe", "PendingRelay", "ProbeOrder"]


class ProbeOrder:
    """The members this node probes, in a fixed random order walked round robin."""

    __slots__ = ("_index", "_nodes", "_rng")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._nodes: list[bytes] = []
        self._index = 0

    def __len__(self) -> int:
        return len(self._nodes)

    @property
    def nodes(self) -> list[bytes]:
        """The members in probe order (read-only by convention; used for random sampling)."""
        return self._nodes

    def add(self, node: bytes) -> None:
        position = self._rng.randint(0, len(self._nodes))
        self._nodes.insert(position, node)
        if position < self._index:
            self._index += 1

    def probe_next(self, node: bytes) -> None:
        """Move ``node`` (in the order) to be the next one probed."""
        self.remove(node)
        if self._index >= len(self._nodes):
            self._index = 0
        self._nodes.insert(self._index, node)

    def remove(self, node: bytes) -> None:
        position = self._nodes.index(node)
        del self._nodes[position]
        if position < self._index:
            self._index -= 1

    def sample(self, rng: random.Random, k: int, accept: Callable[[bytes], bool]) -> list[bytes]:
        """Up to ``k`` distinct random members that ``accept`` takes.

        As memberlist does: random draws, at most three per member, so a large table is never
        copied; with few acceptable members it may return fewer than exist.
        """
        nodes = self._nodes
        chosen: list[bytes] = []
        for _ in range(3 * len(nodes)):
            node = nodes[rng.randrange(len(nodes))]
            if node not in chosen and accept(node):
                chosen.append(node)
                if len(chosen) >= k:
                    break
        return chosen

    def next(self, eligible: Callable[[bytes], bool]) -> bytes | None:
        """The next eligible member, or None after a full pass finds none."""
        for _ in range(len(self._nodes)):
            if self._index >= len(self._nodes):
                self._index = 0
            node = self._nodes[self._index]
            self._index += 1
            if eligible(node):
                return node
        return None


@dataclass(slots=True)
class PendingProbe:
    """A ping we sent and are waiting on (directly, then through relays)."""

    target: bytes
    incarnation: int  # the target's, when the probe started: a failure is news about that one
    sent: float  # when the direct ping went out: an ack from the target measures a round trip
    direct_deadline: float
    end_deadline: float
    relays: tuple[bytes, ...] = ()
    indirect_sent: bool = False
    nacks: set[bytes] = field(default_factory=set)


@dataclass(slots=True)
class PendingRelay:
    """A ping we sent on behalf of ``requester``'s ping-req."""

    requester: bytes
    requester_seq: int
    target: bytes
    deadline: float
