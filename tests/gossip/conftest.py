"""Helpers for the router core tests: identities, routers wired back to back, signed messages."""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bzzz_edge.gossip import (
    Action,
    Ban,
    Deliver,
    Event,
    PeerConnected,
    Penalise,
    Publish,
    Received,
    Router,
    RouterConfig,
    Send,
    Subscribe,
    local,
)
from bzzz_edge.ids import node_id_from_public_key
from bzzz_edge.wire.envelope import (
    DirectMessage,
    GossipMessage,
    decode_envelope,
    encode_envelope,
    sign_gossip,
)
from bzzz_edge.wire.types import KNOWN_TYPES

NET = b"router-test-network"
WALL = 1_800_000_000.0
TOPIC = "bzzz/coordination/v1"


@functools.cache
def key(index: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([index + 1]) * 32)


@functools.cache
def nid(index: int) -> bytes:
    return node_id_from_public_key(key(index).public_key().public_bytes(Encoding.Raw,
                                                                        PublicFormat.Raw))


def message(index: int, seq: int, *, topic: str = TOPIC, body: bytes = b"hello",
            now: float = 0.0) -> GossipMessage:
    return sign_gossip(key(index), network_id=NET, seq=seq, timestamp_ms=int((now + WALL) * 1000),
                       topic=topic, body=body)


def config(**overrides: object) -> RouterConfig:
    overrides = {"dedup_entries": 1024, **overrides}
    return dataclasses.replace(local(), **overrides)  # type: ignore[arg-type]


def router(index: int, cfg: RouterConfig | None = None, now: float = 0.0) -> Router:
    return Router(cfg or config(), me=nid(index), network_id=NET, rng=random.Random(index),
                  now=now, wall_offset=WALL)


class Net:
    """Routers wired back to back: every ``Send`` is encoded, decoded and handed over at once
    (in order); everything else is recorded per node. Links are explicit (``connect``)."""

    def __init__(self, n: int, cfg: RouterConfig | None = None, *, direct: bool = False) -> None:
        self.direct = direct  # gossip messages through ``handle_message``, as the service does
        self.now = 0.0
        self.routers = {nid(i): router(i, cfg) for i in range(n)}
        self.index = {nid(i): i for i in range(n)}
        self.actions: dict[int, list[Action]] = {i: [] for i in range(n)}
        self.down: set[tuple[int, int]] = set()  # directed links that drop everything
        self.sent: list[tuple[int, int, object]] = []  # (from, to or -1 outside the net, envelope)

    def connect_all(self) -> None:
        for a in range(len(self.routers)):
            for b in range(a + 1, len(self.routers)):
                self.connect(a, b)

    def connect(self, a: int, b: int) -> None:
        self.handle(a, PeerConnected(nid(b)))
        self.handle(b, PeerConnected(nid(a)))

    def subscribe(self, topic: str = TOPIC, nodes: Iterable[int] | None = None) -> None:
        for i in nodes if nodes is not None else range(len(self.routers)):
            self.handle(i, Subscribe(topic))

    def handle(self, i: int, event: Event) -> None:
        self._run([(i, self.routers[nid(i)].handle(event, self.now))])

    def publish(self, i: int, seq: int, **kw: object) -> GossipMessage:
        m = message(i, seq, now=self.now, **kw)  # type: ignore[arg-type]
        self.handle(i, Publish(m))
        return m

    def advance(self, seconds: float) -> None:
        """Run every heartbeat due in the next ``seconds``, in time order."""
        end = self.now + seconds
        while True:
            due = min((r.next_deadline() or end + 1, self.index[n]) for n, r in
                      self.routers.items())
            if due[0] > end:
                break
            self.now = max(self.now, due[0])
            self._run([(due[1], self.routers[nid(due[1])].tick(self.now))])
        self.now = end

    def _run(self, batches: list[tuple[int, list[Action]]]) -> None:
        queue = list(batches)
        while queue:
            i, actions = queue.pop(0)
            for action in actions:
                if isinstance(action, Send):
                    j = self.index.get(action.peer, -1)
                    self.sent.append((i, j, action.envelope))
                    if j < 0 or (i, j) in self.down:
                        continue
                    env = decode_envelope(encode_envelope(action.envelope), KNOWN_TYPES)
                    assert isinstance(env, GossipMessage | DirectMessage)
                    to = self.routers[action.peer]
                    if self.direct and isinstance(env, GossipMessage):
                        queue.append((j, to.handle_message(nid(i), env, self.now)))
                    else:
                        queue.append((j, to.handle(Received(nid(i), env), self.now)))
                else:
                    self.actions[i].append(action)

    def delivered(self, i: int) -> list[Deliver]:
        return [a for a in self.actions[i] if isinstance(a, Deliver)]

    def penalties(self, i: int) -> list[Penalise]:
        return [a for a in self.actions[i] if isinstance(a, Penalise)]

    def bans(self, i: int) -> list[Ban]:
        return [a for a in self.actions[i] if isinstance(a, Ban)]

    def gossip_sent(self) -> int:
        return sum(1 for _, _, env in self.sent if isinstance(env, GossipMessage))
