"""Peer penalties: offences add weight, the total decays, past a bound the peer is banned. No I/O.

A peer's penalty starts at 0; each offence adds its weight (``WEIGHTS``) and the total halves
every ``halflife`` seconds, so honest peers that now and then relay something stale (clock
skew, a slow path) never get near the ban bound, while a peer sending forged messages reaches
it in a handful (weight 20 against a bound of 100), and a peer flooding requests in a few
heartbeats. Penalties are kept for at most ``max_peers`` peers, least recently charged
forgotten first, and survive a reconnection (the router does not forget them on disconnect).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

from bzzz_edge.gossip._events import Offence

__all__ = ["WEIGHTS", "PeerPenalties"]

WEIGHTS: dict[Offence, float] = {
    Offence.BAD_SIGNATURE: 20.0,
    Offence.MALFORMED: 20.0,
    Offence.REJECTED: 10.0,
    Offence.STALE: 1.0,
    Offence.REPLAY: 2.0,
    Offence.FLOOD: 10.0,
    Offence.DUPLICATE_FLOOD: 10.0,
    Offence.IHAVE_FLOOD: 10.0,
    Offence.IWANT_FLOOD: 10.0,
    Offence.BROKEN_PROMISE: 1.0,
}


@dataclass(slots=True)
class _Penalty:
    value: float
    stamp: float


class PeerPenalties:
    def __init__(self, *, halflife: float, ban_at: float, max_peers: int) -> None:
        self._rate = math.log(2) / halflife
        self._ban_at = ban_at
        self._max = max_peers
        self._penalties: OrderedDict[bytes, _Penalty] = OrderedDict()

    def value(self, peer: bytes, now: float) -> float:
        entry = self._penalties.get(peer)
        if entry is None:
            return 0.0
        return entry.value * math.exp(-self._rate * max(0.0, now - entry.stamp))

    def charge(self, peer: bytes, offence: Offence, now: float) -> bool:
        """Add ``offence``'s weight; True when the peer has now reached the ban bound."""
        value = self.value(peer, now) + WEIGHTS[offence]
        self._penalties[peer] = _Penalty(value, now)
        self._penalties.move_to_end(peer)
        while len(self._penalties) > self._max:
            self._penalties.popitem(last=False)
        return value >= self._ban_at

    def forget(self, peer: bytes) -> None:
        self._penalties.pop(peer, None)
