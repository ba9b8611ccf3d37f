"""Helpers for the membership core tests: node IDs, cores, and filtering their actions."""

from __future__ import annotations

import hashlib
import random
from typing import TypeVar

import pytest

from bzzz_edge.membership import (
    Action,
    Address,
    Join,
    MemberEvent,
    Membership,
    MembershipConfig,
    Message,
    Received,
    Send,
    lan,
)

M = TypeVar("M")


def nid(index: int) -> bytes:
    return hashlib.sha256(b"test node %d" % index).digest()


def addr(index: int) -> Address:
    return Address(f"192.168.1.{index + 1}", 7946)


def make(
    index: int,
    *,
    now: float = 0.0,
    config: MembershipConfig | None = None,
    incarnation: int = 0,
    seed: int | None = None,
) -> Membership:
    return Membership(
        nid(index),
        address=addr(index),
        now=now,
        config=config if config is not None else lan(),
        incarnation=incarnation,
        meta={"proto": 1},
        rng=random.Random(index if seed is None else seed),
    )


def sends(
    actions: list[Action], kind: type[M] | None = None, to: bytes | None = None
) -> list[Send]:
    """The Send actions, optionally only those carrying a ``kind`` message to ``to``."""
    return [
        a
        for a in actions
        if isinstance(a, Send)
        and (kind is None or isinstance(a.message, kind))
        and (to is None or a.to == to)
    ]


def events(actions: list[Action]) -> list[MemberEvent]:
    return [a for a in actions if isinstance(a, MemberEvent)]


def deliver(core: Membership, sender: bytes, message: Message, now: float) -> list[Action]:
    return core.handle(Received(sender, message), now)


class Net:
    """Cores wired back to back by hand: every Send is delivered at once unless dropped.

    ``down`` nodes neither receive nor answer. Good enough for unit tests; the simulator in
    bzzz_edge.sim does latency, loss and partitions.
    """

    def __init__(self, cores: list[Membership]) -> None:
        self.cores = {c.self_id: c for c in cores}
        self.down: set[bytes] = set()
        self.log: list[tuple[float, bytes, Action]] = []

    def run(self, actions: list[Action], source: bytes, now: float) -> None:
        queue = [(source, a) for a in actions]
        while queue:
            origin, action = queue.pop(0)
            self.log.append((now, origin, action))
            if isinstance(action, Send) and action.to in self.cores and action.to not in self.down:
                out = self.cores[action.to].handle(Received(origin, action.message), now)
                queue.extend((action.to, a) for a in out)

    def join_all(self, now: float = 0.0) -> None:
        """Every node joins every other one, so all know all at ``now``."""
        for core in self.cores.values():
            for other in self.cores.values():
                if other is not core:
                    join = Join(other.self_id, other.member(other.self_id).address)
                    self.run(core.handle(join, now), core.self_id, now)

    def advance(self, until: float) -> float:
        """Tick every live core at its deadlines up to ``until``; returns ``until``."""
        while True:
            due = [
                (d, node)
                for node, core in self.cores.items()
                if node not in self.down and (d := core.next_deadline()) is not None and d <= until
            ]
            if not due:
                return until
            when, node = min(due)
            self.run(self.cores[node].tick(when), node, when)

    def events_about(self, node: bytes) -> list[tuple[float, bytes, MemberEvent]]:
        return [
            (t, origin, a)
            for t, origin, a in self.log
            if isinstance(a, MemberEvent) and a.node == node
        ]


@pytest.fixture
def config() -> MembershipConfig:
    return lan()


def tick_until_send(
    core: Membership, kind: type[M], *, to: bytes | None = None, limit: float = 30.0
) -> tuple[float, list[Send]]:
    """Tick ``core`` alone at its deadlines until it sends a ``kind`` message (to ``to``)."""
    while True:
        when = core.next_deadline()
        assert when is not None and when <= limit, f"no {kind.__name__} sent by {limit}"
        found = sends(core.tick(when), kind, to)
        if found:
            return when, found
