"""The pub/sub router's contract: what goes in (events) and what comes out (actions). No I/O.

The router (``Router`` in ``_router``) is a sans-IO core like the SWIM core::

    router = Router(config, me=node_id, network_id=net, rng=random.Random(seed), now=t,
                    wall_offset=time.time() - t)
    actions = router.handle(event, now)      # one event in, actions out
    actions = router.tick(now)               # when now >= router.next_deadline()
    router.next_deadline() -> float | None   # the next time tick() has work

Clocks. ``now`` is the driver's monotonic clock in seconds (``trio.current_time()``); timers
and deadlines are on it. Message timestamps are wall-clock milliseconds, so the router also
needs the wall clock: ``now + wall_offset``. The shell passes ``wall_offset`` at construction
and a ``WallClock`` event whenever it re-reads the offset (say once a second), so a wall-clock
step never stalls the heartbeat. The simulator runs both clocks on virtual time.

Events, from the driver:

- ``PeerConnected(peer)`` / ``PeerDisconnected(peer)``: an authenticated connection to a peer
  opened or closed. The router then announces our subscriptions to it.
- ``Received(peer, envelope)``: a decoded envelope from ``peer`` (authenticated by the secure
  channel): a ``GossipMessage``, or the ``DirectMessage`` of type ``PUBSUB_CONTROL`` (its body
  is decoded strictly by the router; garbage scores the peer down, never raises).
- ``Subscribe(topic)`` / ``Unsubscribe(topic)``: this node joins or leaves a topic.
- ``Publish(message)``: a message this node originated, signed by the shell with
  ``wire.envelope.sign_gossip`` (the core holds no private key), ``hops == 0``. The shell
  numbers messages per topic (``seq`` counts per origin and topic; start it from the clock so
  a restarted node does not reuse numbers). The router delivers it to our own subscribers
  (``Deliver`` with ``hops == 0``) and sends it to every connected peer subscribed to the topic.
- ``SetTopicPolicy(topic, validator, hop_limit)``: a per-topic validator and hop limit.
- ``WallClock(offset)``: the wall clock is now ``now + offset``.

Actions, for the driver to perform in order:

- ``Send(peer, envelope)``: encode with ``wire.envelope.encode_envelope`` and send. One message
  forwarded to several peers is the same ``envelope`` object in consecutive actions, so a shell
  may encode it once. Per-peer send queues (bounded, with drop accounting) are the shell's.
- ``Deliver(message, hops, gap)``: hand ``message`` to local subscribers of its topic.
  ``hops`` is the links it crossed (0 for our own, 1 straight from its origin); ``gap`` the
  sequence numbers of its (origin, topic) stream skipped since the previous delivery of that
  stream (0 in order or late, ``GAP_UNKNOWN`` when the jump exceeds the sequence window: the
  origin restarted, or we missed more than we can count).
- ``Penalise(peer, offence)``: the peer misbehaved (``Offence`` says how); the shell strikes
  it with the connection guard (``ConnectionManager.strike``).
- ``Ban(peer, offence)``: the peer's score fell below ``ban_score``: disconnect and ban it.
  The router has already forgotten it; a later ``PeerConnected`` starts it from a clean slate
  unless the shell's ban list refuses it.

Counters: ``router.topic_stats()`` maps each topic we subscribe to (or saw) to a ``TopicStats``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from bzzz_edge.wire.envelope import DirectMessage, GossipMessage

__all__ = [
    "GAP_UNKNOWN",
    "Action",
    "Ban",
    "Deliver",
    "Event",
    "Offence",
    "PeerConnected",
    "PeerDisconnected",
    "Penalise",
    "Publish",
    "Received",
    "Send",
    "SetTopicPolicy",
    "Subscribe",
    "TopicStats",
    "Unsubscribe",
    "Validation",
    "Validator",
    "WallClock",
]

#: ``Deliver.gap`` when the stream jumped further than the sequence window can count.
GAP_UNKNOWN = -1


class Validation(enum.Enum):
    """A topic validator's verdict on an authentic message."""

    ACCEPT = "accept"  # deliver and forward
    REJECT = "reject"  # invalid: drop, count, score the sender down
    IGNORE = "ignore"  # drop quietly (not wanted, but not the sender's fault)


#: Called with an authentic, timely, new message of its topic; must be quick and pure.
Validator: TypeAlias = Callable[[GossipMessage], Validation]


class Offence(enum.Enum):
    """What a peer did wrong; the weights live in ``_score``."""

    BAD_SIGNATURE = "bad-signature"
    MALFORMED = "malformed-control"
    REJECTED = "rejected-by-validator"
    STALE = "stale"
    REPLAY = "replay"
    FLOOD = "message-flood"
    DUPLICATE_FLOOD = "duplicate-flood"
    IHAVE_FLOOD = "ihave-flood"
    IWANT_FLOOD = "iwant-flood"
    BROKEN_PROMISE = "broken-promise"


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer: bytes


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer: bytes


@dataclass(frozen=True, slots=True)
class Received:
    """``peer`` (authenticated by the channel) sent ``envelope`` (gossip or pubsub control)."""

    peer: bytes
    envelope: GossipMessage | DirectMessage


@dataclass(frozen=True, slots=True)
class Subscribe:
    topic: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topic: str


@dataclass(frozen=True, slots=True)
class Publish:
    """A message we originated, already signed (``sign_gossip``), with ``hops == 0``."""

    message: GossipMessage


@dataclass(frozen=True, slots=True)
class SetTopicPolicy:
    """``validator`` (None: accept all) and ``hop_limit`` (None: the config's ``max_hops``)
    for ``topic``: a message that has crossed ``hop_limit`` links is delivered, not forwarded."""

    topic: str
    validator: Validator | None = None
    hop_limit: int | None = None


@dataclass(frozen=True, slots=True)
class WallClock:
    """The wall clock now reads ``now + offset`` (seconds)."""

    offset: float


Event: TypeAlias = (
    PeerConnected | PeerDisconnected | Received | Subscribe | Unsubscribe | Publish
    | SetTopicPolicy | WallClock
)


# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    peer: bytes
    envelope: GossipMessage | DirectMessage


@dataclass(frozen=True, slots=True)
class Deliver:
    message: GossipMessage
    hops: int
    gap: int


@dataclass(frozen=True, slots=True)
class Penalise:
    peer: bytes
    offence: Offence


@dataclass(frozen=True, slots=True)
class Ban:
    peer: bytes
    offence: Offence


Action: TypeAlias = Send | Deliver | Penalise | Ban


@dataclass(frozen=True, slots=True)
class TopicStats:
    """Per-topic counters (queue drops are counted by the shell)."""

    delivered: int = 0
    duplicates: int = 0
    invalid: int = 0  # bad signature or rejected by the validator
    stale: int = 0  # timestamp outside the replay window, or a replay (below the sequence
    # window, or seen in it after the dedup cache forgot it)
    ignored: int = 0  # the validator said IGNORE (or raised: a bug of ours, nobody is charged)
    gaps: int = 0  # sequence numbers skipped (GAP_UNKNOWN jumps count in ``resyncs``)
    resyncs: int = 0
    mesh_peers: int = 0
    subscribed_peers: int = 0
