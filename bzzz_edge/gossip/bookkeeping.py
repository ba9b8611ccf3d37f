"""The pub/sub service's bookkeeping: our sequence numbers, and envelopes that arrive before
their connection is registered. No I/O (the caller passes the clock in).
"""

from __future__ import annotations

from collections import OrderedDict, deque

from bzzz_edge.wire.envelope import DirectMessage, GossipMessage

__all__ = ["EarlyEnvelopes", "Sequences"]


class Sequences:
    """Per-topic sequence numbers of the messages we originate, for ``max_topics`` topics
    (least recently used forgotten first). A topic without a count starts from the clock in
    microseconds: never a number used before a restart or before its count was forgotten."""

    def __init__(self, max_topics: int = 4096) -> None:
        self._max = max_topics
        self._last: OrderedDict[str, int] = OrderedDict()

    def next(self, topic: str, now_us: int) -> int:
        last = self._last.pop(topic, None)
        seq = now_us if last is None else last + 1
        self._last[topic] = seq
        if len(self._last) > self._max:
            self._last.popitem(last=False)
        return seq


class EarlyEnvelopes:
    """Envelopes from peers whose connection the manager has not registered yet (it reads on
    while the hello is checked), held until it is: ``per_peer`` for ``peers`` peers at most,
    the oldest dropped (and counted) past that."""

    def __init__(self, *, peers: int = 16, per_peer: int = 64) -> None:
        self._peers = peers
        self._per_peer = per_peer
        self._held: OrderedDict[bytes, deque[GossipMessage | DirectMessage]] = OrderedDict()
        self.dropped = 0

    def hold(self, peer: bytes, envelope: GossipMessage | DirectMessage) -> None:
        held = self._held.pop(peer, None)
        if held is None:
            held = deque(maxlen=self._per_peer)
            if len(self._held) >= self._peers:
                self.dropped += len(self._held.popitem(last=False)[1])
        self._held[peer] = held
        if len(held) == self._per_peer:
            self.dropped += 1
        held.append(envelope)

    def take(self, peer: bytes) -> list[GossipMessage | DirectMessage]:
        """What ``peer`` sent before its registration, oldest first (then forgotten)."""
        return list(self._held.pop(peer, ()))
