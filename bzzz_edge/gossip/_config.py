"""Pub/sub router tunables: one frozen record, two presets, validation naming the key. No I/O.

Modelled on ``membership._config``: ``lan()`` is the default, ``local()`` is for clusters on
one machine, and ``profile(name, overrides)`` applies the ``gossip.*`` config keys. Every time
is in seconds. Why these defaults: coordination messages (task claims, availability) must reach
every subscriber in milliseconds, so the eager path (origin flood plus mesh push) does the
work and nothing waits for a heartbeat unless a message was lost. The heartbeat only repairs
(IHAVE/IWANT) and keeps meshes, and at 0.2 s a lost message is repaired within about half a
second on a LAN, where py-libp2p's 120 s default would leave it missing for minutes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from bzzz_edge.errors import ConfigError
from bzzz_edge.gossip._control import MAX_NEIGHBOURS
from bzzz_edge.wire.constants import MAX_HOPS

__all__ = ["PROFILES", "RouterConfig", "lan", "local", "profile"]


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """Tunables of the pub/sub router; every value must be positive.

    Attributes:
        heartbeat_interval: mesh upkeep and lazy repair (IHAVE) run this often.
        mesh_degree: D, the mesh size a topic with many subscribed peers is kept at.
        mesh_low: below this many mesh peers the heartbeat grafts up to ``mesh_degree``.
        mesh_high: above this many it prunes down to ``mesh_degree``. While a topic has at
            most this many subscribed peers, all of them are in the mesh.
        lazy_degree: each heartbeat, every recent message is announced (IHAVE) to this many
            subscribed peers not known to have it.
        gossip_windows: a message is announced for this many heartbeats after it arrived.
        refresh_interval: our subscriptions and neighbour list are re-sent to every peer this
            often (a reliable transport never loses them; a lossy one, or the simulator, may).
        history: seconds a message stays in the cache for IWANT requests and for peers that
            subscribe or reconnect (they are told what they may have missed).
        cache_bytes: the message cache's bound, in message body bytes plus a fixed overhead.
        max_ihave_ids: IDs one peer may announce to us per heartbeat; beyond, it is scored down.
        max_iwant_ids: IDs one peer may ask us for per heartbeat; beyond, it is scored down.
        max_retransmissions: times one message is sent to one peer in answer to IWANT.
        iwant_timeout: an IWANT unanswered this long is a broken promise (the ID may be asked
            of another peer).
        max_pending_iwants: IDs asked for and not yet received, at most.
        max_hops: the hop limit of topics that set none (also caps what we forward).
        replay_window: seconds a message's timestamp may differ from our wall clock.
        dedup_entries: message IDs the dedup cache holds.
        max_streams: (origin, topic) sequence windows kept.
        max_peers: peers the router keeps state for; further connections are ignored.
        max_topics_per_peer: topics one peer may subscribe to in our view.
        max_neighbours: a peer's announced neighbour list is cut to this length.
        peer_message_rate: gossip messages a second one peer may make us check (bursts 2x).
        peer_duplicate_rate: duplicates a second one peer may send before they count against it.
        ban_score: a peer whose penalty reaches this is banned (penalties start at 0 and each
            offence adds its weight, see ``_score``).
        score_halflife: a peer's penalty halves in this many seconds.
    """

    heartbeat_interval: float = 0.2
    mesh_degree: int = 6
    mesh_low: int = 4
    mesh_high: int = 12
    lazy_degree: int = 3
    gossip_windows: int = 3
    refresh_interval: float = 5.0
    history: float = 10.0
    cache_bytes: int = 16 * 1024 * 1024
    max_ihave_ids: int = 5000
    max_iwant_ids: int = 1000
    max_retransmissions: int = 3
    iwant_timeout: float = 0.5
    max_pending_iwants: int = 8192
    max_hops: int = 32
    replay_window: float = 60.0
    dedup_entries: int = 65_536
    max_streams: int = 8192
    max_peers: int = 1024
    max_topics_per_peer: int = 256
    max_neighbours: int = 256
    peer_message_rate: float = 5000.0
    peer_duplicate_rate: float = 5000.0
    ban_score: float = 100.0
    score_halflife: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            wants_int = f.type == "int"
            ok = isinstance(value, int if wants_int else int | float)
            ok = ok and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value <= 0:
                kind = "int" if wants_int else "number"
                raise ConfigError(f"gossip.{f.name}: expected a positive {kind}, got {value!r}",
                                  key=f"gossip.{f.name}")
        if not self.mesh_low <= self.mesh_degree <= self.mesh_high:
            raise ConfigError(
                "gossip.mesh_degree: must lie between mesh_low and mesh_high "
                f"({self.mesh_low!r} <= {self.mesh_degree!r} <= {self.mesh_high!r})",
                key="gossip.mesh_degree")
        if self.max_neighbours > MAX_NEIGHBOURS:
            raise ConfigError(f"gossip.max_neighbours: at most {MAX_NEIGHBOURS}, "
                              f"got {self.max_neighbours!r}", key="gossip.max_neighbours")
        if self.max_hops > MAX_HOPS:
            raise ConfigError(f"gossip.max_hops: at most {MAX_HOPS}, got {self.max_hops!r}",
                              key="gossip.max_hops")
        if self.history < self.heartbeat_interval * self.gossip_windows:
            raise ConfigError(
                "gossip.history: must cover gossip_windows heartbeats "
                f"({self.gossip_windows} x {self.heartbeat_interval} s), got {self.history!r}",
                key="gossip.history")


def lan() -> RouterConfig:
    """The default: home networks, a heartbeat of 0.2 s (a lost message repaired in ~0.5 s).

    The refresh (subscriptions re-sent, anti-entropy over the cache) runs every 5 s: over TCP
    a subscription is never lost, and the heartbeat's IHAVE already repairs a dropped message
    within ``gossip_windows`` heartbeats; at one a second it was a fifth of an idle node's
    messages."""
    return RouterConfig()


def local() -> RouterConfig:
    """Clusters on one machine (tests, development): a heartbeat of 50 ms."""
    return RouterConfig(heartbeat_interval=0.05, iwant_timeout=0.25, history=5.0,
                        refresh_interval=0.5)


PROFILES = {"lan": lan, "local": local}


def profile(name: str, overrides: Mapping[str, object] | None = None) -> RouterConfig:
    """The named profile with individual keys replaced (the ``gossip.*`` config keys).

    Raises:
        ConfigError: an unknown profile or key, or a value out of range; it names the key.
    """
    if name not in PROFILES:
        raise ConfigError(f"node.profile: unknown profile {name!r}", key="node.profile")
    base = PROFILES[name]()
    known = {f.name for f in fields(base)}
    for key in overrides or {}:
        if key not in known:
            raise ConfigError(f"gossip.{key}: no such setting", key=f"gossip.{key}")
    return replace(base, **dict(overrides or {}))  # type: ignore[arg-type]
