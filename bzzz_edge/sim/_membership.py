"""Membership cores in the simulator: the wiring, and a cluster harness for tests and benchmarks.

No I/O. Messages cross the simulated network in their real wire form (msgpack of
``encode_message``) unless ``encode=False``, so the simulation exercises the strict decoder too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgpack

from bzzz_edge.membership import (
    Action,
    Address,
    ConnectionLost,
    Event,
    Join,
    MemberEvent,
    Membership,
    MembershipConfig,
    Received,
    Send,
    Status,
    encode_message,
    lan,
)
from bzzz_edge.sim._protocols import Outgoing
from bzzz_edge.sim._simulator import NetworkConfig, Simulator

__all__ = ["MembershipCluster", "MembershipWiring", "sim_node_id"]


def sim_node_id(index: int) -> bytes:
    """A stable 32-byte node ID for simulated node ``index``."""
    return hashlib.sha256(b"bzzz-edge sim node %d" % index).digest()


class MembershipWiring:
    """Maps membership ``Send`` actions to simulated messages and back."""

    def __init__(self, *, encode: bool = True) -> None:
        self._encode = encode

    def outgoing(self, action: Action) -> Outgoing | None:
        if not isinstance(action, Send):
            return None
        if self._encode:
            return Outgoing(action.to, msgpack.packb(encode_message(action.message)))
        return Outgoing(action.to, action.message)

    def incoming(self, sender: bytes, payload: object) -> Event:
        if self._encode:
            assert isinstance(payload, bytes)
            payload = msgpack.unpackb(payload)
        return Received(sender, payload)

    def connection_lost(self, peer: bytes) -> Event | None:
        return ConnectionLost(peer)


class MembershipCluster:
    """``n`` simulated nodes running ``Membership`` with one configuration.

    Every ``MemberEvent`` is recorded in ``events`` as ``(time, observer, event)``. Each node's
    latest incarnation (from events about itself) is kept as its "persisted" incarnation, which
    ``restart`` uses the way a real node would.
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int = 0,
        config: MembershipConfig | None = None,
        network: NetworkConfig | None = None,
        encode: bool = True,
    ) -> None:
        self.config = config if config is not None else lan()
        self.sim: Simulator[Event, Action] = Simulator(
            MembershipWiring(encode=encode), seed=seed, network=network
        )
        self.ids = [sim_node_id(i) for i in range(n)]
        self.events: list[tuple[float, bytes, MemberEvent]] = []
        self.persisted: dict[bytes, int] = {}
        self.sim.observe(self._record)

    def _record(self, node: bytes, action: Action, now: float) -> None:
        if isinstance(action, MemberEvent):
            self.events.append((now, node, action))
            if action.node == node:
                self.persisted[node] = action.incarnation

    @staticmethod
    def address(index: int) -> Address:
        return Address(f"10.0.{index // 250}.{index % 250 + 1}", 7946)

    def _new_core(self, index: int, incarnation: int) -> Membership:
        return Membership(
            self.ids[index],
            address=self.address(index),
            now=self.sim.now,
            config=self.config,
            incarnation=incarnation,
            meta={"proto": 1},
            rng=self.sim.derive_rng(),
        )

    def start(self, *, spread: float = 0.0) -> None:
        """Start every node; each joins node 0 at a random moment within ``spread`` seconds."""
        now = self.sim.now
        for index, node in enumerate(self.ids):
            self.sim.add_node(node, self._new_core(index, 0))
            self.persisted[node] = 0
        rng = self.sim.derive_rng()
        for node in self.ids[1:]:
            at = now + rng.uniform(0, spread) if spread else now
            self.sim.inject(node, Join(self.ids[0], self.address(0)), at=at)

    def view(self, index: int) -> Membership:
        core = self.sim.core(self.ids[index])
        assert isinstance(core, Membership)
        return core

    def running(self) -> list[int]:
        return [i for i, node in enumerate(self.ids) if self.sim.is_running(node)]

    def converged(self) -> bool:
        """Every running node sees exactly the running nodes as alive."""
        expected = {self.ids[i] for i in self.running()}
        for i in self.running():
            alive = {m.node for m in self.view(i).members() if m.status is Status.ALIVE}
            if alive != expected:
                return False
        return True

    def all_see(self, target: int, statuses: Iterable[Status]) -> bool:
        """Every running node other than ``target`` holds ``target`` in one of ``statuses``."""
        wanted = set(statuses)
        node = self.ids[target]
        return all(self.view(i).status_of(node) in wanted for i in self.running() if i != target)

    def kill(self, index: int, *, notify_peers: bool = False) -> float:
        """Kill node ``index`` now; returns the time of death."""
        self.sim.kill(self.ids[index], notify_peers=notify_peers)
        return self.sim.now

    def restart(
        self, index: int, *, incarnation: int | None = None, via: int | None = None
    ) -> None:
        """Restart node ``index`` and have it join node ``via`` (the first running node).

        By default it starts at its persisted incarnation plus one, as a real node would.
        """
        node = self.ids[index]
        if incarnation is None:
            incarnation = self.persisted.get(node, 0) + 1
        self.sim.restart(node, self._new_core(index, incarnation))
        if via is None:
            via = next(i for i in self.running() if i != index)
        self.sim.inject(node, Join(self.ids[via], self.address(via)))

    def first_time_all(self, target: int, status: Status, since: float) -> float | None:
        """When the last running node (other than ``target``) first moved ``target`` to
        ``status`` at or after ``since``; None if some node has not."""
        node = self.ids[target]
        first: dict[bytes, float] = {}
        for when, observer, event in self.events:
            if when >= since and event.node == node and event.new_status is status:
                first.setdefault(observer, when)
        observers = [self.ids[i] for i in self.running() if i != target]
        if any(obs not in first for obs in observers):
            return None
        return max(first[obs] for obs in observers)
