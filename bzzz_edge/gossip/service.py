"""The gossip service: publishes our messages and delivers accepted ones to subscribers. Trio.

Gossip envelopes arrive through the handler registered with the connection manager, in the
sending peer's connection reader. Per message: the peer's budget (floods are dropped before
any crypto), then the receipt checks (duplicate, signature, timestamp, sequence window), then
delivery to the topic's subscribers. Bad messages and floods are strikes against the sending
peer, kept by the transport's guard across reconnections; duplicates within their budget are
normal and free.
"""

from __future__ import annotations

import logging
import time

import trio

from ..identity import Identity
from ..ids import short_id
from ..net import ConnectionManager
from ..settings import GossipSettings
from ..wire.envelope import Envelope, GossipMessage, encode_envelope, sign_gossip
from ..wire.types import GOSSIP
from . import Drop, GossipReceipt, PeerBudget

__all__ = ["GossipService"]

log = logging.getLogger(__name__)


class GossipService:
    """Signed messages on topics, flooded to the connected peers.

    Args:
        settings: what one peer may make us check (``gossip`` config section).
        replay_window: seconds a message's timestamp may differ from our clock.
    """

    def __init__(self, manager: ConnectionManager, identity: Identity, network_id: bytes, *,
                 settings: GossipSettings, replay_window: float) -> None:
        self._manager = manager
        self._identity = identity
        self._network_id = network_id
        self.receipt = GossipReceipt(network_id, replay_window=replay_window)
        rate, duplicates = settings.max_rate, settings.max_duplicate_rate
        self._budget = PeerBudget(rate=rate, burst=2 * rate)
        self._duplicates = PeerBudget(rate=duplicates, burst=2 * duplicates)
        self._flood_strikes = PeerBudget(rate=1.0, burst=1.0)  # a sustained flood: 1 a second
        self._subscriptions: dict[str, trio.MemorySendChannel[GossipMessage]] = {}
        self.undelivered = 0
        self.flood_dropped = 0
        # Sequence numbers start from the clock so a restarted node never reuses one.
        self._seq = time.time_ns() // 1000
        # Before the transport runs, so no message comes before we listen.
        manager.on_envelope(GOSSIP, self._on_gossip)

    def counters(self) -> dict[str, int]:
        out = {f"gossip_{drop.value}": n for drop, n in self.receipt.dropped.items()}
        out.update(gossip_accepted=self.receipt.accepted, gossip_undelivered=self.undelivered,
                   gossip_flood_dropped=self.flood_dropped)
        return out

    def subscribe(self, topic: str, buffer: int = 256) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Deliver accepted messages on ``topic`` to the returned channel."""
        send, receive = trio.open_memory_channel[GossipMessage](buffer)
        self._subscriptions[topic] = send
        return receive

    def publish(self, topic: str, body: bytes | None = None) -> GossipMessage:
        """Sign a message as its origin and send it to every connected peer."""
        self._seq += 1
        message = sign_gossip(self._identity.private_key, network_id=self._network_id,
                              seq=self._seq, timestamp_ms=int(time.time() * 1000), topic=topic,
                              body=body)
        self._manager.broadcast(encode_envelope(message))
        return message

    def _on_gossip(self, sender: bytes, envelope: Envelope) -> None:
        assert isinstance(envelope, GossipMessage)
        if not self._budget.spend(sender, trio.current_time()):
            self.flood_dropped += 1
            if self._flood_strikes.spend(sender, trio.current_time()):
                self._manager.strike(sender, "gossip flood")
            return
        drop = self.receipt.check(envelope, time.time())
        if drop is None:
            self._deliver(envelope)
        elif drop is Drop.DUPLICATE:
            if not self._duplicates.spend(sender, trio.current_time()):
                self._manager.strike(sender, "flood of duplicate gossip")
        else:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("dropped gossip from %s: %s", short_id(sender), drop.value)
            self._manager.strike(sender, f"gossip {drop.value}")

    def _deliver(self, message: GossipMessage) -> None:
        channel = self._subscriptions.get(message.topic)
        if channel is None:
            return
        try:
            channel.send_nowait(message)
        except trio.WouldBlock:
            self.undelivered += 1
            log.debug("subscriber of %s is full; message dropped", message.topic)
