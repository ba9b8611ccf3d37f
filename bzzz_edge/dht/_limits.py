"""Per-peer request limits: a token bucket per peer, in a bounded table. No I/O.

Each peer may make ``burst`` requests at once and ``rate`` per second sustained. At most
``max_peers`` peers are tracked; the least recently active one is forgotten first (it comes
back with a full bucket, which costs us at most ``burst`` requests per forgotten peer: a peer
cannot gain by being forgotten, since forgetting needs ``max_peers`` other active peers).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["PeerLimiter"]


class PeerLimiter:
    """Token buckets per peer. See the module docstring."""

    def __init__(self, *, rate: float, burst: int, max_peers: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_peers = max_peers
        self._buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # tokens, at
        self.refused = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, peer: bytes, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``peer``'s bucket; False (and nothing taken) if short."""
        tokens, at = self._buckets.pop(peer, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - at) * self._rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        else:
            self.refused += 1
        self._buckets[peer] = (tokens, now)
        while len(self._buckets) > self._max_peers:
            self._buckets.popitem(last=False)
        return allowed
