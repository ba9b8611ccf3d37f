"""Per-peer token buckets: how much gossip each peer may make us check. No I/O; time passed in.

Checking a gossip message costs a signature verification, so a peer that sends more than its
share (``rate`` a second, ``burst`` at once) has the excess dropped unchecked and counted
against it; so do duplicates past their own, smaller budget (a relaying peer sends some, a
peer replaying one message in a loop sends thousands). Buckets are kept for at most
``max_peers`` peers, the least recently used forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["PeerBudget"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class PeerBudget:
    def __init__(self, *, rate: float, burst: float, max_peers: int = 1024) -> None:
        self.rate = rate
        self.burst = burst
        self._max = max_peers
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()

    def spend(self, peer: bytes, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` from ``peer``'s bucket; False (nothing taken) if it does not hold it."""
        bucket = self._buckets.get(peer)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.popitem(last=False)
            bucket = self._buckets[peer] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(peer)
            if now > bucket.stamp:  # (no min/max calls: this runs for every message sent)
                tokens = bucket.tokens + (now - bucket.stamp) * self.rate
                bucket.tokens = tokens if tokens < self.burst else self.burst
                bucket.stamp = now
        if bucket.tokens < cost:
            return False
        bucket.tokens -= cost
        return True

    def forget(self, peer: bytes) -> None:
        self._buckets.pop(peer, None)
