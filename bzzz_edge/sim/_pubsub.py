"""Pub/sub router cores in the simulator: the wiring, and a cluster harness. No I/O.

``PubsubCluster(n)`` runs ``n`` routers over a connection graph (a ring, so it is connected,
plus ``extra_links`` random links per node: a sparse network like a large lab's), each node
with a real Ed25519 identity, so signatures are made and checked for real. Connections are
modelled like the transport's: a partition or a crash drops them (both ends see
``PeerDisconnected`` after ``detect`` seconds) and healing or a restart opens them again.

Messages cross the simulated network as encoded frames (``encode=True``, which exercises the
strict decoders) or as objects (faster, for large runs). Every ``Deliver`` is recorded, with
the virtual time, in ``deliveries``; ``counts`` tallies what was sent by kind (gossip messages,
control messages).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bzzz_edge.gossip import (
    Action,
    Deliver,
    Event,
    PeerConnected,
    PeerDisconnected,
    Publish,
    Received,
    Router,
    RouterConfig,
    Send,
    Subscribe,
    lan,
)
from bzzz_edge.ids import node_id_from_public_key
from bzzz_edge.sim._protocols import Outgoing
from bzzz_edge.sim._simulator import NetworkConfig, Simulator
from bzzz_edge.wire.envelope import (
    DirectMessage,
    GossipMessage,
    decode_envelope,
    encode_envelope,
    sign_gossip,
)
from bzzz_edge.wire.types import KNOWN_TYPES

__all__ = ["Delivery", "PubsubCluster", "PubsubWiring"]

#: The simulated wall clock: virtual time plus this (a plausible Unix time).
WALL_OFFSET = 1_800_000_000.0
NETWORK_ID = b"bzzz-edge-sim-network"


class PubsubWiring:
    """Maps router ``Send`` actions to simulated frames and back; counts sends by kind."""

    def __init__(self, *, encode: bool = True) -> None:
        self._encode = encode
        self.counts: Counter[str] = Counter()

    def outgoing(self, action: Action) -> Outgoing | None:
        if not isinstance(action, Send):
            return None
        envelope = action.envelope
        self.counts["gossip" if isinstance(envelope, GossipMessage) else "control"] += 1
        return Outgoing(action.peer, encode_envelope(envelope) if self._encode else envelope)

    def incoming(self, sender: bytes, payload: object) -> Event:
        if isinstance(payload, bytes):
            payload = decode_envelope(payload, KNOWN_TYPES)
        assert isinstance(payload, GossipMessage | DirectMessage)
        return Received(sender, payload)

    def connection_lost(self, peer: bytes) -> Event | None:
        return PeerDisconnected(peer)


@dataclass(frozen=True, slots=True)
class Delivery:
    at: float
    node: int
    origin: bytes
    topic: str
    seq: int
    hops: int
    gap: int


class PubsubCluster:
    """``n`` simulated routers with real identities over a sparse connection graph."""

    def __init__(self, n: int, *, seed: int = 0, config: RouterConfig | None = None,
                 network: NetworkConfig | None = None, extra_links: int = 3,
                 encode: bool = True, detect: float = 0.5) -> None:
        # A smaller dedup cache than a real node's: it is allocated up front, for each node.
        self.config = config if config is not None else replace(lan(), dedup_entries=8192)
        self.wiring = PubsubWiring(encode=encode)
        self.sim: Simulator[Event, Action] = Simulator(self.wiring, seed=seed, network=network)
        rng = random.Random(f"{seed}/keys")
        self.keys = [Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)) for _ in range(n)]
        self.ids = [node_id_from_public_key(k.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)) for k in self.keys]
        self.index = {node: i for i, node in enumerate(self.ids)}
        self.links = self._graph(n, extra_links, random.Random(f"{seed}/graph"))
        self.detect = detect
        self.deliveries: list[Delivery] = []
        self.subscriptions: dict[int, set[str]] = {i: set() for i in range(n)}
        self._seq: dict[tuple[int, str], int] = {}
        self._down: set[frozenset[int]] = set()  # links cut by a partition
        self.sim.observe(self._record)

    @staticmethod
    def _graph(n: int, extra: int, rng: random.Random) -> set[frozenset[int]]:
        links = {frozenset((i, (i + 1) % n)) for i in range(n)} if n > 1 else set()
        for i in range(n):
            for j in rng.sample(range(n - 1), min(extra, n - 1)):  # any node but i
                links.add(frozenset((i, j if j < i else j + 1)))
        return links

    def neighbours(self, i: int) -> list[int]:
        return sorted(j for link in self.links if i in link for j in link if j != i)

    def _record(self, node: bytes, action: Action, now: float) -> None:
        if isinstance(action, Deliver):
            m = action.message
            self.deliveries.append(Delivery(now, self.index[node], m.origin, m.topic, m.seq,
                                            action.hops, action.gap))

    def _new_core(self, i: int) -> Router:
        return Router(self.config, me=self.ids[i], network_id=NETWORK_ID,
                      rng=self.sim.derive_rng(), now=self.sim.now, wall_offset=WALL_OFFSET)

    def router(self, i: int) -> Router:
        core = self.sim.core(self.ids[i])
        assert isinstance(core, Router)
        return core

    def start(self, topics: Iterable[str] = ("t",), subscribers: Iterable[int] | None = None,
              *, connect: bool = True) -> None:
        """Add every node, subscribe ``subscribers`` (default all) to ``topics``, connect."""
        topics = tuple(topics)
        for i, node in enumerate(self.ids):
            self.sim.add_node(node, self._new_core(i))
        for i in range(len(self.ids)) if subscribers is None else subscribers:
            for topic in topics:
                self.subscribe(i, topic)
        if connect:
            for link in sorted(tuple(sorted(link)) for link in self.links):
                self._connect(*link, at=self.sim.now)

    def subscribe(self, i: int, topic: str) -> None:
        self.subscriptions[i].add(topic)
        self.sim.inject(self.ids[i], Subscribe(topic))

    def _connect(self, a: int, b: int, *, at: float) -> None:
        self.sim.inject(self.ids[a], PeerConnected(self.ids[b]), at=at)
        self.sim.inject(self.ids[b], PeerConnected(self.ids[a]), at=at)

    def _disconnect(self, a: int, b: int, *, at: float) -> None:
        for x, y in ((a, b), (b, a)):
            if self.sim.is_running(self.ids[x]):
                self.sim.inject(self.ids[x], PeerDisconnected(self.ids[y]), at=at)

    def publish(self, i: int, topic: str = "t", body: bytes = b"x") -> GossipMessage:
        """Node ``i`` signs and publishes a message now; per-topic sequence numbers."""
        key = (i, topic)
        seq = self._seq.get(key, int(self.sim.now * 1e6)) + 1
        self._seq[key] = seq
        message = sign_gossip(self.keys[i], network_id=NETWORK_ID, seq=seq,
                              timestamp_ms=int((self.sim.now + WALL_OFFSET) * 1000),
                              topic=topic, body=body)
        self.sim.inject(self.ids[i], Publish(message))
        return message

    def running(self) -> list[int]:
        return [i for i, node in enumerate(self.ids) if self.sim.is_running(node)]

    def receivers(self, message: GossipMessage) -> set[int]:
        return {d.node for d in self.deliveries
                if d.origin == message.origin and d.seq == message.seq
                and d.topic == message.topic}

    def expected(self, message: GossipMessage) -> set[int]:
        """Running subscribers of the message's topic."""
        return {i for i in self.running() if message.topic in self.subscriptions[i]}

    def all_delivered(self, messages: Iterable[GossipMessage]) -> bool:
        return all(self.expected(m) <= self.receivers(m) for m in messages)

    # --- faults -----------------------------------------------------------------------------

    def partition(self, groups: list[list[int]]) -> None:
        """Split the network; links across groups drop after ``detect`` seconds."""
        self.sim.partition([[self.ids[i] for i in g] for g in groups])
        side = {i: n for n, g in enumerate(groups) for i in g}
        for link in sorted(tuple(sorted(link)) for link in self.links):
            a, b = link
            if side.get(a) != side.get(b) or a not in side:
                self._down.add(frozenset(link))
                self._disconnect(a, b, at=self.sim.now + self.detect)

    def heal(self) -> None:
        """Join the network again; the cut links reconnect (after ``detect`` seconds)."""
        self.sim.heal()
        for link in sorted(tuple(sorted(link)) for link in self._down):
            a, b = link
            if self.sim.is_running(self.ids[a]) and self.sim.is_running(self.ids[b]):
                self._connect(a, b, at=self.sim.now + self.detect)
        self._down.clear()

    def kill(self, i: int) -> None:
        self.sim.kill(self.ids[i])
        for j in self.neighbours(i):
            if self.sim.is_running(self.ids[j]):
                self.sim.inject(self.ids[j], PeerDisconnected(self.ids[i]),
                                at=self.sim.now + self.detect)

    def restart(self, i: int) -> None:
        """A new process for node ``i``: fresh router, same subscriptions, links redialled."""
        self.sim.restart(self.ids[i], self._new_core(i))
        for topic in sorted(self.subscriptions[i]):
            self.sim.inject(self.ids[i], Subscribe(topic))
        for j in self.neighbours(i):
            if self.sim.is_running(self.ids[j]) and frozenset((i, j)) not in self._down:
                self._connect(i, j, at=self.sim.now)
