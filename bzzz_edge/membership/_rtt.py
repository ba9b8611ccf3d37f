"""Per-peer round-trip estimates and probe timeouts, in the manner of RFC 6298. No I/O.

Each ack to a direct ping gives one round-trip sample (the sequence number is fresh for every
ping, so Karn's ambiguity about retransmissions never arises). The estimator keeps TCP's
smoothed mean (SRTT, gain 1/8) and mean deviation (RTTVAR, gain 1/4); the probe timeout of a
peer is ``SRTT + 4 * RTTVAR``, clamped to the profile's bounds. A peer with no sample yet gets
the profile's initial timeout (RFC 6298 uses 1 s), so a slow link is never judged by a fast
default before it has been measured. A probe that times out doubles that peer's timeout
(RFC 6298's backoff, up to the upper bound) until a new sample arrives: when a link suddenly
slows down (Wi-Fi moving to a busier channel), the acks that now come too late would otherwise
never be counted, and every probe would fail.

Why not a fixed timeout: a home network spans a wired LAN (RTT under a millisecond), Wi-Fi
(a few to tens of milliseconds, with bursts), powerline and VPN links (hundreds). A timeout
tuned for one makes the other either slow to detect or full of false suspicions.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RttEstimator", "RttTable"]

_ALPHA = 1 / 8  # RFC 6298 gains
_BETA = 1 / 4
_K = 4


@dataclass(slots=True)
class RttEstimator:
    """Smoothed round trip and its variation for one peer; times in seconds."""

    srtt: float
    rttvar: float
    samples: int = 1
    backoff: int = 1

    @classmethod
    def first(cls, sample: float) -> RttEstimator:
        return cls(srtt=sample, rttvar=sample / 2)

    def update(self, sample: float) -> None:
        self.rttvar = (1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - sample)
        self.srtt = (1 - _ALPHA) * self.srtt + _ALPHA * sample
        self.samples += 1
        self.backoff = 1

    def timeout(self, low: float, high: float) -> float:
        return min(max(self.srtt + _K * self.rttvar, low) * self.backoff, high)


class RttTable:
    """Round-trip estimates for every peer we have pinged, and the timeouts derived from them.

    Args:
        low, high: bounds on any probe timeout.
        initial: timeout for a peer without samples.
        max_peers: most peers tracked; past it, estimates of forgotten peers must be dropped
            by the caller (``forget``), and new ones are not kept.
    """

    __slots__ = ("_high", "_initial", "_low", "_max_peers", "_peers")

    def __init__(self, low: float, high: float, initial: float, max_peers: int) -> None:
        self._low = low
        self._high = high
        self._initial = min(max(initial, low), high)
        self._max_peers = max_peers
        self._peers: dict[bytes, RttEstimator] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, node: bytes) -> RttEstimator | None:
        return self._peers.get(node)

    def sample(self, node: bytes, rtt: float) -> None:
        """Record one measured round trip to ``node`` (negative values are ignored)."""
        if rtt < 0:
            return
        estimate = self._peers.get(node)
        if estimate is not None:
            estimate.update(rtt)
        elif len(self._peers) < self._max_peers:
            self._peers[node] = RttEstimator.first(rtt)

    def timeout(self, node: bytes) -> float:
        """The probe timeout for ``node``: SRTT + 4 RTTVAR, bounded; the initial one unmeasured."""
        estimate = self._peers.get(node)
        if estimate is None:
            return self._initial
        return estimate.timeout(self._low, self._high)

    def back_off(self, node: bytes) -> None:
        """A probe of ``node`` timed out: double its timeout until the next sample."""
        estimate = self._peers.get(node)
        if estimate is not None and estimate.timeout(self._low, self._high) < self._high:
            estimate.backoff *= 2

    def forget(self, node: bytes) -> None:
        self._peers.pop(node, None)
