"""The pub/sub router: messages in, deliveries and sends out; sans-IO, time passed in. No I/O.

This module keeps peers, topics, control messages and the heartbeat; the message path itself
(publish, receive, check, deliver, pass on) is the ``Relay`` mixin in ``_relay``.

The contract (events, actions, clocks) is in ``_events``. How a message travels:

- Its origin sends it to every connected peer subscribed to its topic (flood publish).
- A node that accepts a new message delivers it and pushes it to its topic mesh (``_mesh``),
  except to the peer it came from, the origin, peers known to hold it, and, when it came
  straight from its origin, the origin's announced neighbours (the origin sent it to them
  itself). In a fully connected home lab every subscriber thus gets exactly one copy, from the
  origin; in a sparse or large network the mesh carries it on, one hop per link.
- Lazy repair (``_lazy``): each heartbeat, every recent message is announced (IHAVE) to
  ``lazy_degree`` subscribed peers that were neither pushed it nor presumed to hold it (in
  practice: the non-mesh peers of a topic with many subscribers); a peer missing it asks
  (IWANT) and gets it from the message cache (``_mcache``). A peer that subscribes or
  reconnects is told every cached message of its topics it may lack, a slice a heartbeat, and
  every ``refresh_interval`` each peer is told the newest ones it is not known to hold
  (anti-entropy for lossy links), with our subscriptions and neighbour list.
- A quiet router skips heartbeats: while nothing is left to repair (no IWANT pending, no
  backlog or sync, every recent message announced, no neighbour news), a heartbeat would only
  re-plan meshes, which every peer or subscription event re-plans at once, so
  ``next_deadline`` is the next refresh. An event that leaves something to repair (a new
  message, an IHAVE of one we lack, a newcomer to sync) brings the heartbeats back. An idle
  node thus wakes for pub/sub once per refresh, not five times a second.

What a message goes through on receipt, cheapest first (``_receipt``): the sender's budget, the
dedup cache, the timestamp, the (origin, topic) sequence window, and only then the signature,
which is skipped when the sender is the origin (its authenticated connection proves it); such a
message is verified later, once, if we ever pass it on. Then the topic's validator.

Per-peer state is bounded: at most ``max_peers`` peers, ``max_topics_per_peer`` topics,
``max_neighbours`` neighbours and a backlog of ``max_iwant_ids`` wanted IDs each; per
heartbeat at most ``max_ihave_ids`` announced IDs and ``max_iwant_ids`` requested IDs are
honoured (beyond, the peer is penalised), each message is re-sent to one peer at most
``max_retransmissions`` times, and at most ``max_pending_iwants`` requests are outstanding.
Offences add to a decaying penalty (``_score``); at ``ban_score`` the router emits ``Ban``
and forgets the peer.
"""

from __future__ import annotations

import random

from bzzz_edge.errors import DecodeError
from bzzz_edge.gossip._batch import ControlBatch
from bzzz_edge.gossip._budget import PeerBudget
from bzzz_edge.gossip._config import RouterConfig
from bzzz_edge.gossip._control import Control, decode_control, encode_control
from bzzz_edge.gossip._events import (
    Action,
    Ban,
    Event,
    Offence,
    PeerConnected,
    PeerDisconnected,
    Penalise,
    Publish,
    Received,
    Send,
    SetTopicPolicy,
    Subscribe,
    TopicStats,
    Unsubscribe,
    WallClock,
)
from bzzz_edge.gossip._lazy import LazyRepair, PeerState
from bzzz_edge.gossip._mcache import MessageCache
from bzzz_edge.gossip._mesh import TopicState, plan_mesh
from bzzz_edge.gossip._receipt import GossipReceipt
from bzzz_edge.gossip._relay import Relay
from bzzz_edge.gossip._score import WEIGHTS, PeerPenalties
from bzzz_edge.wire.envelope import DirectMessage, GossipMessage
from bzzz_edge.wire.types import PUBSUB_CONTROL

__all__ = ["Router"]

# Offences at least this heavy are reported to the shell (a strike with the connection guard);
# lighter ones (a stale relay, a broken promise) happen to honest peers and only add penalty.
_REPORT_WEIGHT = 10.0
# Offences that come in bursts count once per heartbeat: a flood is one offence, not thousands.
_PACED = frozenset({Offence.FLOOD, Offence.DUPLICATE_FLOOD, Offence.IHAVE_FLOOD,
                    Offence.IWANT_FLOOD, Offence.BROKEN_PROMISE, Offence.STALE})


class Router(Relay):
    """One node's pub/sub router. See the module docstring and ``_events`` for the contract.

    Args:
        config: the tunables (``profile("lan")`` by default).
        me: this node's ID.
        network_id: signed into every message of the network.
        rng: the only source of randomness (mesh and announcement choices).
        now: the driver's monotonic clock.
        wall_offset: the wall clock minus ``now``, in seconds.
    """

    def __init__(self, config: RouterConfig, *, me: bytes, network_id: bytes,
                 rng: random.Random, now: float, wall_offset: float = 0.0) -> None:
        self.config = config
        self.me = me
        self._network_id = network_id
        self._rng = rng
        self._wall_offset = wall_offset
        self.receipt = GossipReceipt(network_id, replay_window=config.replay_window,
                                     max_entries=config.dedup_entries,
                                     max_origins=config.max_streams)
        self.cache = MessageCache(history=config.history, max_bytes=config.cache_bytes)
        self._peers: dict[bytes, PeerState] = {}
        self._topics: dict[str, TopicState] = {}
        self._penalties = PeerPenalties(halflife=config.score_halflife, ban_at=config.ban_score,
                                        max_peers=2 * config.max_peers)
        rate, dup = config.peer_message_rate, config.peer_duplicate_rate
        self._budget = PeerBudget(rate=rate, burst=2 * rate, max_peers=config.max_peers)
        self._duplicates = PeerBudget(rate=dup, burst=2 * dup, max_peers=config.max_peers)
        self._lazy = LazyRepair(config, rng, self.cache, self.receipt)
        self._next_heartbeat = now + config.heartbeat_interval
        self._quiet = False  # the last heartbeat left nothing to repair and nothing came since
        self._next_refresh = now + config.refresh_interval
        self._neighbours_changed = False
        self._out: list[Action] = []
        self._batch = ControlBatch(ihave_budget=config.max_ihave_ids // 2,
                                   iwant_budget=config.max_iwant_ids // 2)
        self.ignored = 0  # messages of topics we do not subscribe to, from unknown peers, ...
        self.ignored_subscriptions = 0  # past a peer's ``max_topics_per_peer``

    # --- the surface ------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, Received):
            if event.peer in self._peers:
                self._on_received(event.peer, event.envelope, now)
            else:
                self.ignored += 1
        elif isinstance(event, PeerConnected):
            self._on_connected(event.peer)
        elif isinstance(event, PeerDisconnected):
            self._forget_peer(event.peer)
        elif isinstance(event, Publish):
            self._on_publish(event.message, now)
        elif isinstance(event, Subscribe):
            self._on_subscribe(event.topic, True, now)
        elif isinstance(event, Unsubscribe):
            self._on_subscribe(event.topic, False, now)
        elif isinstance(event, SetTopicPolicy):
            state = self._topic(event.topic)
            state.validator, state.hop_limit = event.validator, event.hop_limit
        elif isinstance(event, WallClock):
            self._wall_offset = event.offset
        if self._quiet:
            self._wake(now)
        return self._flush()

    def handle_message(self, peer: bytes, message: GossipMessage, now: float) -> list[Action]:
        """``handle(Received(peer, message), now)`` for a gossip message, without the event
        record and the dispatch on its type: every node runs it for every message."""
        if peer in self._peers:
            self._on_message(peer, message, now)
        else:
            self.ignored += 1
        if self._quiet:
            self._wake(now)
        return self._flush()

    def _wake(self, now: float) -> None:
        """After an event while quiet: heartbeats again if it left something to repair, the
        first one as soon as it would come on average."""
        if not self._nothing_to_repair():
            self._quiet = False
            self._next_heartbeat = max(self._next_heartbeat,
                                       now + self.config.heartbeat_interval / 2)

    def tick(self, now: float) -> list[Action]:
        if now >= self._next_heartbeat:
            self._heartbeat(now)
            self._next_heartbeat = max(self._next_heartbeat + self.config.heartbeat_interval,
                                       now + self.config.heartbeat_interval / 2)
            self._quiet = self._nothing_to_repair()
        return self._flush()

    def next_deadline(self) -> float | None:
        if self._quiet:  # the heartbeat that does the refresh (a tick before it does nothing)
            return max(self._next_refresh, self._next_heartbeat)
        return self._next_heartbeat

    def _nothing_to_repair(self) -> bool:
        """Whether a heartbeat now would send nothing but a due refresh (see the module
        docstring); after each heartbeat, and on each event while quiet: cheap."""
        if self._neighbours_changed or not self._lazy.idle():
            return False
        if any(state.backlog or state.sync for state in self._peers.values()):
            return False
        return self._lazy.settled()  # every message of the window announced, none new since

    def topic_stats(self) -> dict[str, TopicStats]:
        return {topic: state.stats() for topic, state in self._topics.items()}

    def topics(self) -> list[str]:
        """The topics this node subscribes to."""
        return [t for t, s in self._topics.items() if s.subscribed]

    def peers(self) -> list[bytes]:
        return list(self._peers)

    def mesh(self, topic: str) -> list[bytes]:
        state = self._topics.get(topic)
        return list(state.mesh) if state is not None else []

    def penalty(self, peer: bytes, now: float) -> float:
        return self._penalties.value(peer, now)

    # --- peers and subscriptions ------------------------------------------------------------

    def _topic(self, topic: str) -> TopicState:
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = TopicState()
        return state

    def _on_connected(self, peer: bytes) -> None:
        if peer in self._peers or peer == self.me or len(self._peers) >= self.config.max_peers:
            return
        self._peers[peer] = PeerState()
        subs = tuple((t, True) for t, s in self._topics.items() if s.subscribed)
        self._batch.add(peer, subscriptions=subs)
        self._neighbours_changed = True

    def _forget_peer(self, peer: bytes) -> None:
        if self._peers.pop(peer, None) is None:
            return
        for state in self._topics.values():
            state.drop_peer(peer)
        self.cache.forget_peer(peer)
        self._budget.forget(peer)
        self._duplicates.forget(peer)
        self._batch.drop(peer)
        self._neighbours_changed = True

    def _on_subscribe(self, topic: str, on: bool, now: float) -> None:
        state = self._topic(topic)
        if state.subscribed == on:
            return
        state.subscribed = on
        for peer in self._peers:
            self._batch.add(peer, subscriptions=((topic, on),))
        if not on:
            for peer in state.mesh:
                self._batch.add(peer, prune=(topic,))
            state.mesh.clear()
            return
        self._maintain(topic, state)

    def _maintain(self, topic: str, state: TopicState) -> None:
        graft, prune = plan_mesh(state, self.config, self._rng)
        for peer in graft:
            state.mesh[peer] = None
            self._batch.add(peer, graft=(topic,))
        for peer in prune:
            state.mesh.pop(peer, None)
            self._batch.add(peer, prune=(topic,))

    # --- messages ---------------------------------------------------------------------------

    def _on_received(self, peer: bytes, envelope: GossipMessage | DirectMessage,
                     now: float) -> None:
        if isinstance(envelope, GossipMessage):
            self._on_message(peer, envelope, now)
        elif envelope.kind == PUBSUB_CONTROL.key:
            try:
                control = decode_control(envelope.body)
            except DecodeError:
                self._charge(peer, Offence.MALFORMED, now)
                return
            self._on_control(peer, control, now)
        else:
            self.ignored += 1

    # --- control ----------------------------------------------------------------------------

    def _on_control(self, peer: bytes, control: Control, now: float) -> None:
        state = self._peers[peer]
        for topic, on in control.subscriptions:
            self._peer_subscription(peer, state, topic, on, now)
            if peer not in self._peers:
                return  # banned
        for topic in control.graft:
            self._on_graft(peer, state, topic, now)
        for topic in control.prune:
            topic_state = self._topics.get(topic)
            if topic_state is not None:
                topic_state.mesh.pop(peer, None)
        if control.neighbours is not None:
            state.neighbours = frozenset(control.neighbours[: self.config.max_neighbours])
        if control.ihave:
            self._lazy.on_ihave(peer, state, control.ihave, self._topics, now,
                                now + self._wall_offset, self._batch, self._charge)
        if control.iwant and peer in self._peers:
            self._lazy.on_iwant(peer, state, control.iwant, self._topics, now, self._out,
                                self._charge, self.ensure_verified)

    def _on_graft(self, peer: bytes, state: PeerState, topic: str, now: float) -> None:
        topic_state = self._topics.get(topic)
        if topic_state is None or not topic_state.subscribed:
            self._batch.add(peer, prune=(topic,))
            return
        if peer in topic_state.mesh:
            return
        if peer not in topic_state.peers:  # a GRAFT implies a subscription we missed
            self._peer_subscription(peer, state, topic, True, now)
            if peer not in topic_state.peers:
                return
        many = len(topic_state.peers) > self.config.mesh_high
        if many and len(topic_state.mesh) >= self.config.mesh_high:
            self._batch.add(peer, prune=(topic,))
        else:
            topic_state.mesh[peer] = None

    def _peer_subscription(self, peer: bytes, state: PeerState, topic: str, on: bool,
                           now: float) -> None:
        if not on:
            state.topics.pop(topic, None)
            topic_state = self._topics.get(topic)
            if topic_state is not None:
                topic_state.drop_peer(peer)
            return
        if topic in state.topics:
            return
        if len(state.topics) >= self.config.max_topics_per_peer:
            self.ignored_subscriptions += 1  # not an offence: honest nodes may have many
            return
        state.topics[topic] = None
        topic_state = self._topic(topic)
        topic_state.peers[peer] = None
        if topic_state.subscribed:
            self._maintain(topic, topic_state)
            self._lazy.sync_peer(peer, state, topic, self._batch)

    # --- heartbeat, penalties, output -------------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        for peer, offence in self._lazy.expire_pending(now):
            if peer in self._peers:
                self._charge(peer, offence, now)
        self.cache.expire(now)
        self._batch.new_heartbeat()
        wall = now + self._wall_offset
        for peer, peer_state in self._peers.items():
            peer_state.new_heartbeat()
            self._lazy.ask(peer, peer_state, now, wall, self._batch)
            self._lazy.continue_sync(peer, peer_state, self._batch)
        idle = []
        for topic, state in self._topics.items():
            if state.subscribed or state.mesh:
                self._maintain(topic, state)
            elif state.idle():
                idle.append(topic)
        for topic in idle:  # nobody we know subscribes, and nothing to remember about it
            del self._topics[topic]
        self._lazy.announce(now, self._topics, self._batch)
        refresh = now >= self._next_refresh
        if refresh:
            self._next_refresh = now + self.config.refresh_interval
            subs = tuple((t, True) for t, s in self._topics.items() if s.subscribed)
            for peer in self._peers:
                self._batch.add(peer, subscriptions=subs)
            self._lazy.refresh(self._peers, self._topics, self._batch)  # anti-entropy
        if self._neighbours_changed or refresh:
            self._neighbours_changed = False
            mine = tuple(self._peers)[: self.config.max_neighbours]
            for peer in self._peers:
                self._batch.add(peer, neighbours=mine)

    def _charge(self, peer: bytes, offence: Offence, now: float) -> None:
        state = self._peers.get(peer)
        if state is None:
            return
        if offence in _PACED:
            if offence in state.charged:
                return  # a flood counts once per heartbeat
            state.charged.add(offence)
        if WEIGHTS[offence] >= _REPORT_WEIGHT:
            self._out.append(Penalise(peer, offence))
        if self._penalties.charge(peer, offence, now):
            self._forget_peer(peer)
            self._out.append(Ban(peer, offence))

    def _flush(self) -> list[Action]:
        out = self._out
        if self._batch.pending():
            for peer, control in self._batch.drain():
                if peer in self._peers:
                    out.append(Send(peer, encode_control(control)))
        self._out = []
        return out
