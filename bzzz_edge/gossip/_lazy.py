"""Lazy repair (IHAVE/IWANT), per-peer state and the control batch the router sends. No I/O.

Announcing: each heartbeat, every cached message that arrived within the last
``gossip_windows`` heartbeats is announced (IHAVE) to ``lazy_degree`` subscribed peers drawn at
random from those not known to hold it, not pushed it, and not presumed to hold it (the
origin's neighbours, when it came from the origin, which sent it to them): in practice the
non-mesh peers of a topic with many subscribers. A peer that subscribes (or reconnects and
re-subscribes) is told every cached ID of the topic it may lack, and every
``refresh_interval`` each peer is told the newest cached IDs of its topics it is not known to
hold (anti-entropy: what covers a push lost on a lossy link, or while a connection was down).

Asking: an announced ID that is neither cached, nor in the dedup cache, nor already asked for
is asked for (IWANT) from the announcer; a request unanswered after ``iwant_timeout`` is a
broken promise, and the ID may be asked of the next peer that announces it.

Limits, per peer and heartbeat: ``max_ihave_ids`` announced IDs and ``max_iwant_ids`` requested
IDs are honoured; past either, the rest of that heartbeat's are ignored and the peer is charged
(once per heartbeat). One message is re-sent to one peer at most ``max_retransmissions`` times.
At most ``max_pending_iwants`` requests are outstanding. A message at its topic's hop limit is
neither announced nor served: repair does not stretch the limit.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bzzz_edge.gossip._config import RouterConfig
from bzzz_edge.gossip._control import Control
from bzzz_edge.gossip._events import Action, Offence, Send
from bzzz_edge.gossip._mcache import CacheEntry, MessageCache
from bzzz_edge.gossip._mesh import TopicState
from bzzz_edge.gossip._receipt import GossipReceipt

__all__ = ["ControlBatch", "LazyRepair", "PeerState"]

Charge = Callable[[bytes, Offence, float], None]


@dataclass(slots=True)
class PeerState:
    topics: dict[str, None] = field(default_factory=dict)
    neighbours: frozenset[bytes] = frozenset()
    ihave_ids: int = 0  # this heartbeat
    iwant_ids: int = 0
    charged: set[Offence] = field(default_factory=set)  # paced offences this heartbeat

    def new_heartbeat(self) -> None:
        self.ihave_ids = self.iwant_ids = 0
        self.charged.clear()


@dataclass(slots=True)
class _Parts:
    subscriptions: list[tuple[str, bool]] = field(default_factory=list)
    graft: list[str] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)
    ihave: dict[str, list[bytes]] = field(default_factory=dict)
    iwant: list[bytes] = field(default_factory=list)
    neighbours: tuple[bytes, ...] | None = None


class ControlBatch:
    """Control parts gathered per peer while one event or tick is handled, sent as one
    message per peer at the end."""

    def __init__(self) -> None:
        self._parts: dict[bytes, _Parts] = {}

    def add(self, peer: bytes, *, subscriptions: tuple[tuple[str, bool], ...] = (),
            graft: tuple[str, ...] = (), prune: tuple[str, ...] = (),
            ihave: tuple[str, list[bytes]] | None = None, iwant: tuple[bytes, ...] = (),
            neighbours: tuple[bytes, ...] | None = None) -> None:
        parts = self._parts.get(peer)
        if parts is None:
            parts = self._parts[peer] = _Parts()
        parts.subscriptions.extend(subscriptions)
        parts.graft.extend(graft)
        parts.prune.extend(prune)
        if ihave is not None:
            parts.ihave.setdefault(ihave[0], []).extend(ihave[1])
        parts.iwant.extend(iwant)
        if neighbours is not None:
            parts.neighbours = neighbours

    def drop(self, peer: bytes) -> None:
        self._parts.pop(peer, None)

    def drain(self) -> Iterator[tuple[bytes, Control]]:
        parts, self._parts = self._parts, {}
        for peer, p in parts.items():
            control = Control(tuple(p.subscriptions), tuple(p.graft), tuple(p.prune),
                              tuple((t, tuple(ids)) for t, ids in p.ihave.items()),
                              tuple(p.iwant), p.neighbours)
            if control:
                yield peer, control


class LazyRepair:
    def __init__(self, config: RouterConfig, rng: random.Random, cache: MessageCache,
                 receipt: GossipReceipt) -> None:
        self._config = config
        self._rng = rng
        self._cache = cache
        self._receipt = receipt
        self._pending: dict[bytes, tuple[bytes, float]] = {}  # id -> (asked peer, deadline)
        self.broken_promises = 0

    def received(self, msg_id: bytes) -> None:
        self._pending.pop(msg_id, None)

    def expire_pending(self, now: float) -> Iterator[tuple[bytes, Offence]]:
        pending = self._pending
        while pending:
            msg_id, (peer, deadline) = next(iter(pending.items()))
            if deadline > now:
                return
            del pending[msg_id]
            self.broken_promises += 1
            yield peer, Offence.BROKEN_PROMISE

    def on_ihave(self, peer: bytes, state: PeerState,
                 ihave: tuple[tuple[str, tuple[bytes, ...]], ...], topics: dict[str, TopicState],
                 now: float, wall: float, batch: ControlBatch, charge: Charge) -> None:
        state.ihave_ids += sum(len(ids) for _, ids in ihave)
        if state.ihave_ids > self._config.max_ihave_ids:
            charge(peer, Offence.IHAVE_FLOOD, now)
            return
        want: list[bytes] = []
        pending, deadline = self._pending, now + self._config.iwant_timeout
        for topic, ids in ihave:
            topic_state = topics.get(topic)
            if topic_state is None or not topic_state.subscribed:
                continue
            for msg_id in ids:
                entry = self._cache.get(msg_id)
                if entry is not None:
                    entry.have.add(peer)
                elif msg_id not in pending and not self._receipt.seen(msg_id, wall):
                    if len(pending) >= self._config.max_pending_iwants:
                        break
                    pending[msg_id] = (peer, deadline)
                    want.append(msg_id)
        if want:
            batch.add(peer, iwant=tuple(want))

    def on_iwant(self, peer: bytes, state: PeerState, ids: tuple[bytes, ...],
                 topics: dict[str, TopicState], now: float, out: list[Action], charge: Charge,
                 verify: Callable[[CacheEntry, float], bool]) -> None:
        state.iwant_ids += len(ids)
        if state.iwant_ids > self._config.max_iwant_ids:
            charge(peer, Offence.IWANT_FLOOD, now)
            return
        limit = self._config.max_retransmissions
        for msg_id in ids:
            entry = self._cache.get(msg_id)
            if entry is None:
                continue
            topic_state = topics.get(entry.message.topic)
            if topic_state is None or not topic_state.may_pass_on(entry.message.hops,
                                                                  self._config.max_hops):
                continue
            served = entry.served.get(peer, 0)
            if served >= limit:
                charge(peer, Offence.IWANT_FLOOD, now)
                continue
            if verify(entry, now):
                entry.served[peer] = served + 1
                out.append(Send(peer, entry.message))

    def announce(self, now: float, topics: dict[str, TopicState], batch: ControlBatch) -> None:
        config = self._config
        since = now - config.gossip_windows * config.heartbeat_interval
        cap, degree, sample = config.max_ihave_ids // 2, config.lazy_degree, self._rng.sample
        per_peer: dict[bytes, dict[str, list[bytes]]] = {}
        for msg_id, entry in self._cache.recent(since):
            topic = entry.message.topic
            state = topics.get(topic)
            if state is None or not state.may_pass_on(entry.message.hops, config.max_hops):
                continue
            have, pushed, presumed = entry.have, entry.pushed, entry.presumed
            candidates = [p for p in state.peers
                          if p not in have and p not in pushed and p not in presumed]
            if len(candidates) > degree:
                candidates = sample(candidates, degree)
            for peer in candidates:
                groups = per_peer.get(peer)
                if groups is None:
                    groups = per_peer[peer] = {}
                ids = groups.get(topic)
                if ids is None:
                    groups[topic] = [msg_id]
                elif len(ids) < cap:
                    ids.append(msg_id)
        for peer, groups in per_peer.items():
            for topic, ids in groups.items():
                batch.add(peer, ihave=(topic, ids))

    def sync_peer(self, peer: bytes, topic: str, batch: ControlBatch, *,
                  refresh: bool = False) -> None:
        """Tell a peer that just subscribed (or, every ``refresh_interval``, any subscribed
        peer) which cached messages of ``topic`` it may lack, newest first."""
        cap = self._config.max_ihave_ids // (8 if refresh else 2)
        ids = self._cache.topic_ids(topic, peer, cap)
        if ids:
            batch.add(peer, ihave=(topic, ids))
