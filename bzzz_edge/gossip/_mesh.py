"""Per-topic state: who subscribes, the mesh we push to, the counters; mesh upkeep. No I/O.

A topic's mesh is the set of subscribed peers we push every new message to. While a topic has
at most ``mesh_high`` subscribed peers (a home lab), all of them are in it. With more, the
heartbeat keeps it between ``mesh_low`` and ``mesh_high``, grafting or pruning towards
``mesh_degree`` at random (gossipsub's D, D_lo, D_hi). Meshes are symmetric: a GRAFT asks the
peer to add us, a PRUNE to drop us; a GRAFT beyond ``mesh_high`` is answered with a PRUNE.

Peers and mesh members are kept in insertion-ordered dicts, never sets: bytes hashing is
randomised per process, and the order in which peers are drawn must follow the seed alone.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

from bzzz_edge.gossip._config import RouterConfig
from bzzz_edge.gossip._events import TopicStats, Validator

__all__ = ["TopicState", "plan_mesh"]


@dataclass(slots=True)
class TopicState:
    subscribed: bool = False  # by us
    peers: dict[bytes, None] = field(default_factory=dict)  # connected peers subscribed to it
    mesh: dict[bytes, None] = field(default_factory=dict)
    validator: Validator | None = None
    hop_limit: int | None = None
    counters: Counter[str] = field(default_factory=Counter)

    def stats(self) -> TopicStats:
        c = self.counters
        return TopicStats(
            delivered=c["delivered"], duplicates=c["duplicates"], invalid=c["invalid"],
            stale=c["stale"], ignored=c["ignored"] + c["validator_errors"], gaps=c["gaps"],
            resyncs=c["resyncs"],
            mesh_peers=len(self.mesh), subscribed_peers=len(self.peers),
        )

    def may_pass_on(self, message_hops: int, default_limit: int) -> bool:
        """Whether a message that crossed ``message_hops`` links may cross one more."""
        limit = self.hop_limit if self.hop_limit is not None else default_limit
        return message_hops < limit

    def idle(self) -> bool:
        return not (self.subscribed or self.peers or self.mesh or self.counters
                    or self.validator is not None or self.hop_limit is not None)

    def drop_peer(self, peer: bytes) -> None:
        self.peers.pop(peer, None)
        self.mesh.pop(peer, None)


def plan_mesh(state: TopicState, config: RouterConfig,
              rng: random.Random) -> tuple[list[bytes], list[bytes]]:
    """The peers to graft and to prune so that the mesh keeps its bounds."""
    if not state.subscribed:
        return [], list(state.mesh)
    if len(state.peers) <= config.mesh_high:
        return [p for p in state.peers if p not in state.mesh], []
    size = len(state.mesh)
    if size < config.mesh_low:
        candidates = [p for p in state.peers if p not in state.mesh]
        want = min(config.mesh_degree - size, len(candidates))
        return rng.sample(candidates, want), []
    if size > config.mesh_high:
        return [], rng.sample(list(state.mesh), size - config.mesh_degree)
    return [], []
