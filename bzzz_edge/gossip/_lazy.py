"""Lazy repair (IHAVE/IWANT) and the per-peer state it keeps. No I/O.

Announcing: each heartbeat, every cached message that arrived within the last
``gossip_windows`` heartbeats is announced (IHAVE) to ``lazy_degree`` subscribed peers drawn at
random from those not known to hold it, not pushed it, and not presumed to hold it (the
origin's neighbours, when it came from the origin, which sent it to them): in practice the
non-mesh peers of a topic with many subscribers. A peer that subscribes (or reconnects and
re-subscribes) is told every cached ID of the topic it may lack, and every
``refresh_interval`` each peer is told the newest cached IDs of its topics it is not known to
hold (anti-entropy: what covers a push lost on a lossy link, or while a connection was down;
every holder tells, not only the origin: at high loss that redundancy is what repairs).

Asking: an announced ID that is neither cached, nor in the dedup cache, nor already asked for
is asked for (IWANT) from the announcer, as many as our budget for that peer allows this
heartbeat (``ControlBatch``); the rest wait in the peer's backlog (at most ``max_iwant_ids``)
for the next heartbeats, so a node back from a long disconnection fetches everything the cache
still holds, a slice per heartbeat. A request unanswered after ``iwant_timeout`` is a broken
promise, and the ID may be asked of the next peer that announces it.

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

from bzzz_edge.gossip._batch import ControlBatch
from bzzz_edge.gossip._config import RouterConfig
from bzzz_edge.gossip._events import Action, Offence, Send
from bzzz_edge.gossip._mcache import CacheEntry, MessageCache, with_peer
from bzzz_edge.gossip._mesh import TopicState
from bzzz_edge.gossip._receipt import GossipReceipt

__all__ = ["LazyRepair", "PeerState"]

Charge = Callable[[bytes, Offence, float], None]


@dataclass(slots=True)
class PeerState:
    topics: dict[str, None] = field(default_factory=dict)
    neighbours: frozenset[bytes] = frozenset()
    ihave_ids: int = 0  # this heartbeat
    iwant_ids: int = 0
    charged: set[Offence] = field(default_factory=set)  # paced offences this heartbeat
    # IDs it announced that we lack and have not asked for yet (at most ``max_iwant_ids``).
    backlog: list[bytes] = field(default_factory=list)
    # Topics whose cached messages we are telling it about: topic -> newest serial to cover;
    # the cursor is the cache serial reached so far.
    sync: dict[str, int] = field(default_factory=dict)
    sync_cursor: int = 0

    def new_heartbeat(self) -> None:
        self.ihave_ids = self.iwant_ids = 0
        self.charged.clear()


class LazyRepair:
    def __init__(self, config: RouterConfig, rng: random.Random, cache: MessageCache,
                 receipt: GossipReceipt) -> None:
        self._config = config
        self._rng = rng
        self._cache = cache
        self._receipt = receipt
        self._pending: dict[bytes, tuple[bytes, float]] = {}  # id -> (asked peer, deadline)
        self.broken_promises = 0
        # Every cached entry up to this serial is announced, or was out of the window when the
        # last heartbeat looked: ``announce`` looks only at those after it (a busy node's
        # window holds thousands of entries, nearly all of them settled).
        self._settled = 0

    def received(self, msg_id: bytes) -> None:
        self._pending.pop(msg_id, None)

    def idle(self) -> bool:
        """No IWANT is waiting for its answer (or its timeout)."""
        return not self._pending

    def settled(self) -> bool:
        """The last ``announce`` left no message of the window unannounced, and nothing was
        cached since."""
        return self._settled >= self._cache.serial

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
        wanted = []
        for topic, ids in ihave:
            topic_state = topics.get(topic)
            if topic_state is None or not topic_state.subscribed:
                continue
            for msg_id in ids:
                entry = self._cache.get(msg_id)
                if entry is not None:
                    entry.have = with_peer(entry.have, peer)
                else:
                    wanted.append(msg_id)
        backlog = state.backlog
        backlog.extend(wanted[: self._config.max_iwant_ids - len(backlog)])
        self.ask(peer, state, now, wall, batch)

    def ask(self, peer: bytes, state: PeerState, now: float, wall: float,
            batch: ControlBatch) -> None:
        """Ask ``peer`` for what it announced and we lack, as far as this heartbeat's room
        allows; the rest stays in its backlog for the next heartbeat."""
        backlog = state.backlog
        if not backlog:
            return
        want: list[bytes] = []
        room = batch.iwant_room(peer)
        pending, deadline = self._pending, now + self._config.iwant_timeout
        taken = 0
        for msg_id in backlog:
            if len(want) >= room or len(pending) >= self._config.max_pending_iwants:
                break
            taken += 1
            if msg_id not in pending and self._cache.get(msg_id) is None and \
                    not self._receipt.seen(msg_id, wall):
                pending[msg_id] = (peer, deadline)
                want.append(msg_id)
        del backlog[:taken]
        batch.iwant(peer, want)

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
            if topic_state is None or not topic_state.may_pass_on(entry.hops,
                                                                  self._config.max_hops):
                continue
            served = entry.served.get(peer, 0)
            if served >= limit:
                charge(peer, Offence.IWANT_FLOOD, now)
                continue
            if verify(entry, now):
                entry.served[peer] = served + 1
                out.append(Send(peer, entry.outgoing()))

    def announce(self, now: float, topics: dict[str, TopicState], batch: ControlBatch) -> None:
        config = self._config
        since = now - config.gossip_windows * config.heartbeat_interval
        degree, sample = config.lazy_degree, self._rng.sample
        per_peer: dict[bytes, dict[str, list[bytes]]] = {}
        settled, oldest_open = self._settled, None
        for msg_id, entry in self._cache.recent(since):
            if entry.serial <= settled:
                break
            if entry.announced:
                continue
            topic = entry.message.topic
            state = topics.get(topic)
            if state is None or not state.may_pass_on(entry.hops, config.max_hops):
                oldest_open = entry.serial  # looked at again next time, while in the window
                continue
            have, pushed, presumed = entry.have, entry.pushed, entry.presumed
            # (set differences in C first: in a full mesh no peer is left, for every message)
            missing = (state.peers.keys() - presumed).difference(pushed, have)
            candidates = [p for p in state.peers if p in missing] if missing else []
            if not candidates:
                # Every subscribed peer holds it or was sent it, and these sets only grow: done
                # (a peer that subscribes later is told by its sync).
                entry.announced = True
                continue
            oldest_open = entry.serial  # (newest first: the last one set is the oldest)
            if len(candidates) > degree:
                candidates = sample(candidates, degree)
            for peer in candidates:
                groups = per_peer.get(peer)
                if groups is None:
                    groups = per_peer[peer] = {}
                ids = groups.get(topic)
                if ids is None:
                    groups[topic] = [msg_id]
                else:
                    ids.append(msg_id)
        # What is older than the window is never announced again: settled too.
        self._settled = self._cache.serial if oldest_open is None else oldest_open - 1
        for peer, groups in per_peer.items():
            for topic, ids in groups.items():
                batch.ihave(peer, topic, ids)

    def sync_peer(self, peer: bytes, state: PeerState, topic: str, batch: ControlBatch) -> None:
        """Start telling a peer that just subscribed (or reconnected) about every cached
        message of ``topic`` it may lack, oldest first, a slice a heartbeat (``continue_sync``)."""
        state.sync[topic] = self._cache.serial
        state.sync_cursor = 0  # from the oldest entry again, for the new topic's sake
        self.continue_sync(peer, state, batch)

    def continue_sync(self, peer: bytes, state: PeerState, batch: ControlBatch) -> None:
        """Announce the next slice of the sync: as many IDs as the peer may ask us for in one
        heartbeat, so that its backlog keeps up."""
        if not state.sync:
            return
        pace = self._config.max_iwant_ids // 2
        slices: dict[str, list[bytes]] = {}
        count, cursor, until = 0, state.sync_cursor, max(state.sync.values())
        done = True
        for msg_id, entry in self._cache.since(cursor):
            if entry.serial > until:
                break
            if count >= pace:
                done = False
                break
            cursor = entry.serial
            topic = entry.message.topic
            upto = state.sync.get(topic)
            if upto is not None and entry.serial <= upto and peer not in entry.have:
                slices.setdefault(topic, []).append(msg_id)
                count += 1
        if done:
            state.sync.clear()
            state.sync_cursor = 0
        else:
            state.sync_cursor = cursor
        for topic, ids in slices.items():
            batch.ihave(peer, topic, ids)

    def refresh(self, peers: dict[bytes, PeerState], topics: dict[str, TopicState],
                batch: ControlBatch) -> None:
        """Anti-entropy: tell each peer, for each topic we share, the IDs among the newest
        cached ones that it is not known to hold (one pass over the cache for all of them)."""
        newest = self._cache.newest_by_topic(self._config.max_ihave_ids // 8)
        if not newest:
            return
        for peer, peer_state in peers.items():
            for topic in peer_state.topics:
                group = newest.get(topic)
                state = topics.get(topic)
                if group is None or state is None or not state.subscribed:
                    continue
                ids = [msg_id for msg_id, entry in group if peer not in entry.have]
                batch.ihave(peer, topic, ids)
