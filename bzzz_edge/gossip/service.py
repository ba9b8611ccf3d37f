"""The pub/sub service: drives the sans-IO gossip router over the node's connections. Trio.

Data flows one way through it, like the membership service:
- the connection manager's ``events`` feed (peers connected and lost) becomes the router's
  peer events; gossip and control envelopes, handed over by the connections in each peer's own
  reader task, become ``Received`` events;
- the router's ``Send`` actions go out over the connections (into each connection's outbox,
  bounded in frames and bytes: what does not fit is dropped and counted per topic as a queue
  drop; gossip messages, best effort, fill half an outbox at most, and go to one peer at most
  at ``OUTBOUND_SHARE`` of the rate that peer checks from one sender, the excess dropped and
  counted as queue drops too); ``Deliver`` actions are decoded (decompressed) and put into
  every local subscription of the topic; ``Penalise`` and ``Ban`` go to the transport's guard
  (strikes, bans);
- a ticker sleeps until the router's next deadline (heartbeats) and runs its timers.

The application's side: ``publish(topic, data)`` signs a message as its origin (a sequence
number per topic, starting from the clock so a restarted node never reuses one), refusing a bad
topic or a message over ``gossip.max_message_size`` at once; ``subscribe(topic)`` joins the
topic (if needed) and returns a bounded ``Subscription`` (a slow consumer loses the oldest
deliveries, counted, and never grows memory); ``join``/``leave`` hold a topic without a
subscriber. The standard topics are joined at start and stay joined. Our own publications reach
our own subscribers.

Bounds, against a peer holding the network key: every per-peer state is the router's (bounded
there) or the connection's (its outbox); topics joined are capped (``gossip.max_topics``);
sequence counters of the topics we published on are kept for 4096 topics at most; envelopes
that arrive before their connection is registered wait for it, 64 for each of 16 peers at most.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import trio

from .. import gossip as core
from ..errors import BzzzError, CodecError, LocalProtocolError
from ..feed import Overflowed
from ..identity import Identity
from ..ids import short_id
from ..net import ConnectionManager, PeerConnected, PeerDisconnected
from ..settings import GossipSettings
from ..wire.compression import CompressionStats
from ..wire.envelope import (
    DirectMessage,
    Envelope,
    GossipMessage,
    encode_envelope,
    sign_gossip,
)
from ..wire.types import GOSSIP, PUBSUB_CONTROL
from ._local import TOPIC_COUNTERS, LocalTopics
from .bodies import body_check, decode_body, encode_body, preferred_codec
from .bookkeeping import EarlyEnvelopes, Sequences
from .delivery import Delivery, Published, Subscription
from .latency import LatencyHistogram
from .topics import STANDARD_TOPICS, check_topic

__all__ = ["GossipService"]

log = logging.getLogger(__name__)

# The router judges message timestamps by the wall clock's offset from trio's clock, which a
# clock step (NTP, suspend) moves: it is read again before a message is handled, at most this
# often (no timer: an idle node does not wake for it).
_WALL_CLOCK_INTERVAL = 1.0
_MAX_SEEN_ROWS = 256
# Gossip messages sent to one peer: at most this share of ``peer_message_rate`` a second, in
# bursts of one second of it. The receiver checks ``peer_message_rate`` a second from one sender
# (bursts of twice that), reads 5,000 frames a second from it, and charges the excess as a
# flood; eight insiders flooding us at once (each within its own budget, 40,000 messages a
# second in all) would otherwise have us relay eight times what an honest peer takes: queued
# in our outbox and the kernel's socket buffers ahead of membership's probes (seconds of
# delay), and struck against us as a flood by the honest peer. Gossip is best effort; the
# excess is dropped here (queue drops) and repaired, if anyone wants it, by IHAVE/IWANT.
OUTBOUND_SHARE = 0.8


class GossipService:
    """Pub/sub for one node.

    Args:
        manager: the node's connections; the service registers its envelope types there.
        identity: signs our messages as their origin.
        network_id: signed into every message (another network's fail verification).
        settings: the ``gossip`` config section (service limits).
        router: the router's configuration (``node.profile`` with the ``gossip.*`` overrides).
        max_message_size: the largest body, in bytes, before compression (fits a frame).
        standard_topics: joined at start and kept.
    """

    def __init__(self, manager: ConnectionManager, identity: Identity, network_id: bytes, *,
                 settings: GossipSettings, router: core.RouterConfig,
                 max_message_size: int | None = None,
                 standard_topics: tuple[str, ...] = STANDARD_TOPICS,
                 rng: random.Random | None = None) -> None:
        self._manager = manager
        self._identity = identity
        self._origin_key = identity.public_key_bytes  # derived once, not per message
        self._network_id = network_id
        self._settings = settings
        self.max_message_size = max_message_size or settings.max_message_size
        self._codec = preferred_codec()
        self.compression = CompressionStats()
        self.latency = LatencyHistogram()
        now = trio.current_time()
        self.router = core.Router(router, me=identity.node_id, network_id=network_id,
                                  rng=rng or random.Random(), now=now,
                                  wall_offset=time.time() - now)
        self._body_check = body_check(self.max_message_size)
        self._topics = LocalTopics(max_topics=settings.max_topics,
                                   subscriber_buffer=settings.subscriber_buffer,
                                   on_enter=self._enter, on_left=self._left)
        self._seqs = Sequences(max_topics=4096)
        self._hop_limits: dict[str, int | None] = {}
        self.tallies: Counter[str] = Counter()
        self._peers: set[bytes] = set()  # connected, as the router was told
        self._early = EarlyEnvelopes(peers=16, per_peer=64)
        self._outbound = core.PeerBudget(rate=OUTBOUND_SHARE * router.peer_message_rate,
                                         burst=router.peer_message_rate,
                                         max_peers=router.max_peers)
        # The ticker's sleep: an earlier deadline is set on it in place (no task switch).
        self._ticker_sleep: trio.CancelScope | None = None
        self._wall_read_at = -math.inf
        self.started = trio.Event()
        # Handlers by type of what the feed and the router hand us; others are counted, logged.
        self._on_feed: dict[type, Callable[[Any], None]] = {
            Overflowed: lambda _event: self._resync(),
            PeerConnected: lambda event: self._connected(event.peer_id),
            PeerDisconnected: lambda event: self._disconnected(event.peer_id),
        }
        self._on_action: dict[type, Callable[[Any], None]] = {
            core.Send: self._send,
            core.Deliver: self._deliver,
            core.Penalise: lambda action: self._strike(action, "penalised", 1),
            core.Ban: lambda action: self._strike(action, "banned",
                                                  self._manager.guard.limits.max_strikes),
        }
        self.unhandled: Counter[str] = Counter()
        self._encoded: dict[int, bytes] = {}
        for topic in standard_topics:
            self.join(topic)
        # Before the transport runs, so no peer or message comes before we listen.
        self._events = manager.events.subscribe()
        for kind in (GOSSIP, PUBSUB_CONTROL):
            manager.on_envelope(kind, self._on_envelope)

    # --- the application's side ---------------------------------------------------------------

    def publish(self, topic: str, data: bytes) -> Published:
        """Sign ``data`` as a message on ``topic`` and hand it to the router.

        Raises:
            TopicError: a bad topic name.
            MessageTooLarge: ``data`` is over the maximum message size.
            BzzzError: the router refused the message (see its text).
        """
        check_topic(topic)
        body = encode_body(data, max_size=self.max_message_size,
                           min_size=self._settings.compress_min_size, codec=self._codec,
                           stats=self.compression)
        seq = self._seqs.next(topic, time.time_ns() // 1000)
        message = sign_gossip(self._identity.private_key, network_id=self._network_id, seq=seq,
                              timestamp_ms=int(time.time() * 1000), topic=topic, body=body,
                              origin_key=self._origin_key)
        try:
            actions = self.router.handle(core.Publish(message), trio.current_time())
        except LocalProtocolError as exc:  # e.g. the wall clock stepped back past our numbers
            raise BzzzError(f"publish on {topic!r} refused: {exc}") from None
        self._perform(actions)
        self.tallies["published"] += 1
        return Published(topic, message.origin, seq)

    def subscribe(self, topic: str, buffer: int | None = None, *,
                  others_only: bool = False, matching: tuple[bytes, ...] = ()) -> Subscription:
        """Deliveries on ``topic`` from now on; joins the topic while a subscription is open.
        ``others_only``: not this node's own publications nor what it delivers here as its
        own (``deliver_here``), for a service that would only skip them. ``matching``: only
        deliveries whose data holds one of these byte strings (``Subscription``).

        Raises:
            TopicError: a bad topic name, or ``gossip.max_topics`` topics are joined already.
        """
        check_topic(topic)
        return self._topics.subscribe(topic, buffer,
                                      skip_origin=self.router.me if others_only else None,
                                      matching=matching)

    def deliver_here(self, topic: str, origin: bytes, seq: int, timestamp_ms: int,
                     data: bytes) -> None:
        """Hand ``data`` to this node's own subscribers of ``topic`` as ``origin``'s message
        ``seq``, sent to no peer: for what every node derives itself, alike, so a copy over
        the wire would only repeat it (the task events of the decision log, which every node
        applies: ``tasks.service``). Counted ``delivered_here``.

        Raises:
            TopicError: a bad topic name.
        """
        check_topic(topic)
        self.tallies["delivered_here"] += 1
        subscribers = self._topics.subscribers(topic)
        if not subscribers:
            return
        delivery = Delivery(topic, origin, seq, timestamp_ms, 0, data)
        for subscription in subscribers:
            if not subscription.put(delivery):
                self._count(topic, "subscriber_drops")

    def join(self, topic: str) -> None:
        """Hold ``topic`` joined (its messages are relayed and kept for subscribers to come).

        Raises:
            TopicError: a bad topic name, or too many topics joined.
        """
        check_topic(topic)
        self._topics.join(topic)

    def leave(self, topic: str) -> None:
        """Stop holding ``topic``; it is left once its last subscription closes too."""
        self._topics.leave(topic)

    def joined(self) -> list[str]:
        return self._topics.held()

    def topic_stats(self) -> list[dict[str, Any]]:
        """Every topic joined, and up to 256 only seen (peers subscribe to them), with the
        router's and our counters."""
        stats = self.router.topic_stats()
        joined = set(self.joined())
        out = []
        seen = sorted(set(stats) - joined)[:_MAX_SEEN_ROWS]  # peers' topics: a bounded view
        for topic in sorted(joined | set(seen)):
            row: dict[str, Any] = {"topic": topic, "joined": topic in joined,
                                   "standard": topic in STANDARD_TOPICS,
                                   "subscribers": len(self._topics.subscribers(topic))}
            counters = stats.get(topic)
            if counters is not None:
                row.update(dataclasses.asdict(counters))
            mine = self._topics.counters.get(topic, Counter())
            for key in TOPIC_COUNTERS:
                row[key] = mine[key]
            out.append(row)
        return out

    def counters(self) -> dict[str, int]:
        """Totals over every topic, for the ``gossip_messages`` metric family."""
        totals: Counter[str] = Counter()
        for stats in self.router.topic_stats().values():
            totals.update({k: v for k, v in dataclasses.asdict(stats).items()
                           if k not in ("mesh_peers", "subscribed_peers")})
        totals.update(self.tallies)
        totals["ignored_unsubscribed"] = self.router.ignored
        totals["early_dropped"] = self._early.dropped
        totals["unhandled_types"] = sum(self.unhandled.values())
        return {f"gossip_{key}": int(value) for key, value in totals.items()}

    # --- running ------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for peer in self._manager.connections:
            self._connected(peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._follow_connections)
                self.started.set()
                task_status.started()
        finally:
            self._topics.close_all()

    async def _ticker(self) -> None:
        while True:
            deadline = self.router.next_deadline()
            with trio.CancelScope(deadline=deadline if deadline is not None
                                  else trio.current_time() + 1) as sleep:
                self._ticker_sleep = sleep
                await trio.sleep_forever()
            self._ticker_sleep = None
            self._perform(self.router.tick(trio.current_time()), wake_ticker=False)

    async def _follow_connections(self) -> None:
        async for event in self._events:
            (self._on_feed.get(type(event)) or self._unhandled)(event)

    def _unhandled(self, item: object) -> None:
        """A type with no handler (our bug): counted, logged loudly once per type."""
        name = type(item).__name__
        self.unhandled[name] += 1
        level = logging.WARNING if self.unhandled[name] == 1 else logging.DEBUG
        log.log(level, "gossip service has no handler for %s", name)

    def _connected(self, peer: bytes) -> None:
        if peer not in self._peers:
            self._peers.add(peer)
            self._perform(self._handle(core.PeerConnected(peer)))
            for envelope in self._early.take(peer):
                self._perform(self._handle(core.Received(peer, envelope)))

    def _disconnected(self, peer: bytes) -> None:
        self._early.take(peer)
        self._outbound.forget(peer)
        if peer in self._peers:
            self._peers.discard(peer)
            self._perform(self._handle(core.PeerDisconnected(peer)))

    def _resync(self) -> None:
        """We missed connection events: tell the router the connections there are now."""
        connected = self._manager.connections
        for peer in list(self._peers):
            if peer not in connected:
                self._disconnected(peer)
        for peer in connected:
            self._connected(peer)

    def _on_envelope(self, sender: bytes, received: Envelope) -> None:
        # Only the kinds registered above come here; the connection counts any other.
        envelope = cast("GossipMessage | DirectMessage", received)  # (a string: no union built)
        if sender not in self._peers:
            # A connection's reader hands us its peer's first messages before the event feed's
            # PeerConnected reaches our task. Registered already: the router hears of the peer
            # now. Not yet (the manager still checks the hello, the reader reads on): they wait
            # for the registration, since nothing could be sent back to that peer before it.
            if sender in self._manager.connections:
                self._connected(sender)
            else:
                self._early.hold(sender, envelope)
                return
        now = trio.current_time()
        if now >= self._wall_read_at + _WALL_CLOCK_INTERVAL:
            self._wall_read_at = now
            self._perform(self._handle(core.WallClock(time.time() - now), now), wake_ticker=False)
        if type(envelope) is GossipMessage:  # every message, at every node: no event record
            self._perform(self.router.handle_message(sender, envelope, now))
        else:
            self._perform(self._handle(core.Received(sender, envelope), now))

    # --- the router's actions -----------------------------------------------------------------

    def _handle(self, event: Any, now: float | None = None) -> list[Any]:
        try:
            actions: list[Any] = self.router.handle(
                event, trio.current_time() if now is None else now)
        except LocalProtocolError as exc:
            log.debug("gossip router refused %s: %s", type(event).__name__, exc)
            return []
        return actions

    def _perform(self, actions: list[Any], *, wake_ticker: bool = True) -> None:
        self._encoded.clear()  # one encoding per envelope sent to several peers
        for action in actions:
            (self._on_action.get(type(action)) or self._unhandled)(action)
        self._encoded.clear()
        sleep = self._ticker_sleep
        if wake_ticker and sleep is not None:
            # The ticker's sleep ends earlier when the router's next deadline comes first: its
            # deadline moves, and the ticker is not woken now for it (a quiet router's first
            # message used to cost every node a task switch for that alone).
            deadline = self.router.next_deadline()
            if deadline is not None and deadline < sleep.deadline:
                sleep.deadline = deadline

    def _send(self, action: core.Send) -> None:
        bulk = isinstance(action.envelope, GossipMessage)
        if bulk and not self._outbound.spend(action.peer, trio.current_time()):
            self._send_failed(action.peer, action.envelope)  # over the peer's share: dropped
            return
        payload = self._encoded.get(id(action.envelope))
        if payload is None:
            payload = self._encoded[id(action.envelope)] = encode_envelope(action.envelope)
        # Messages in bulk: half the peer's outbox at most, so a flood we relay leaves room
        # for control messages, RPC answers and consensus.
        if not self._manager.send(action.peer, payload, bulk=bulk):
            self._send_failed(action.peer, action.envelope)

    def _strike(self, action: core.Penalise | core.Ban, tally: str, weight: int) -> None:
        """Penalise is one strike, Ban as many as the guard bans at (an immediate ban)."""
        self.tallies[f"{tally}_{action.offence.value}"] += 1
        self._manager.strike(action.peer, f"gossip {action.offence.value}", weight=weight)

    def _send_failed(self, peer: bytes, envelope: Any) -> None:
        """A full outbox, or a connection closed meanwhile (the feed says so next)."""
        self.tallies["queue_drops"] += 1
        topic = getattr(envelope, "topic", None)
        if isinstance(topic, str) and topic in self._topics.counters:
            self._topics.counters[topic]["queue_drops"] += 1

    def _deliver(self, action: Any) -> None:
        message: GossipMessage = action.message
        subscribers = self._topics.subscribers(message.topic)
        self.latency.observe(time.time() - message.timestamp_ms / 1000)
        if not subscribers:
            return
        try:
            data = decode_body(message.body, max_size=self.max_message_size,
                               stats=self.compression)
        except CodecError as exc:
            self._count(message.topic, "undecodable")
            log.debug("message %s:%d on %s has a body we cannot decode: %s",
                      short_id(message.origin), message.seq, message.topic, exc)
            return
        delivery = Delivery(message.topic, message.origin, message.seq, message.timestamp_ms,
                            action.hops, data, action.gap)
        for subscription in subscribers:
            if not subscription.put(delivery):
                self._count(message.topic, "subscriber_drops")

    # --- bookkeeping --------------------------------------------------------------------------

    def set_hop_limit(self, topic: str, hop_limit: int | None) -> None:
        """Deliver but no longer forward ``topic``'s messages that crossed ``hop_limit`` links
        (None: the config's ``gossip.max_hops``)."""
        self._hop_limits[topic] = hop_limit
        self._perform(self._handle(core.SetTopicPolicy(topic, self._body_check, hop_limit)))

    def _enter(self, topic: str) -> None:
        """Join ``topic`` in the router, with the body check as its validator."""
        self._perform(self._handle(core.SetTopicPolicy(topic, self._body_check,
                                                       self._hop_limits.get(topic))))
        self._perform(self._handle(core.Subscribe(topic)))

    def _left(self, topic: str) -> None:
        self._perform(self._handle(core.Unsubscribe(topic)))

    def _count(self, topic: str, key: str) -> None:
        self.tallies[key] += 1
        counters = self._topics.counters.get(topic)
        if counters is not None:
            counters[key] += 1

