"""What a node checks before it accepts a relayed (gossip) message. No I/O; time is passed in.

The order is the one in DESIGN.md, cheapest first: a duplicate is dropped before any crypto;
then the origin's signature (over the network ID too, so another network's messages fail);
then the timestamp against the replay window; then the origin's sequence window. Only a
message that passes all of them is remembered as seen, so a forged copy of a real message's ID
cannot make us drop the real one.

Two memories stop replays, and either is enough alone. The dedup cache keeps IDs for twice the
replay window, but it is bounded in entries, so a flood can evict an ID early. The sequence
window does not depend on the cache: per origin it keeps the highest sequence number seen and
which of the ``SEQ_WINDOW`` numbers below it were delivered; anything older than that is
refused. Origins are bounded too (``max_origins``): an origin quiet for longer than twice the
replay window is forgotten first (its old messages are refused by timestamp anyway); when every
slot holds a recent origin, messages of new origins are refused until one frees up.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from bzzz_edge.errors import SignatureError
from bzzz_edge.wire.dedup import DedupCache
from bzzz_edge.wire.envelope import GossipMessage, StaleMessageError, check_timestamp, verify_gossip

__all__ = ["SEQ_WINDOW", "Drop", "GossipReceipt"]

SEQ_WINDOW = 1024


class Drop(enum.Enum):
    """Why a gossip message was not accepted."""

    DUPLICATE = "duplicate"
    BAD_SIGNATURE = "bad-signature"
    STALE = "stale"
    REPLAY = "replay"  # below the origin's sequence window, or seen in it
    TOO_MANY_ORIGINS = "too-many-origins"


@dataclass(slots=True)
class _Window:
    highest: int
    seen: int  # bit i: highest - i was delivered
    last: float  # when the origin was last heard (receiver's clock)


class GossipReceipt:
    """Checks incoming gossip messages; counts what it drops, by reason.

    Args:
        network_id: the ID signed into every message of this network.
        replay_window: seconds a timestamp may differ from our clock, either way.
        max_entries: how many message IDs the dedup cache holds at most.
        max_origins: how many origins' sequence windows are kept at most.
    """

    def __init__(self, network_id: bytes, *, replay_window: float,
                 max_entries: int = 32_768, max_origins: int = 4096) -> None:
        self._network_id = network_id
        self._window_s = replay_window
        self._window_ms = int(replay_window * 1000)
        self._seen = DedupCache(2 * replay_window, max_entries)
        self._origins: dict[bytes, _Window] = {}
        self._max_origins = max_origins
        self.dropped: Counter[Drop] = Counter()
        self.accepted = 0

    def check(self, message: GossipMessage, now: float) -> Drop | None:
        """None when ``message`` is new, authentic and timely (it is then remembered)."""
        msg_id = message.msg_id
        if self._seen.contains(msg_id, now):
            return self._drop(Drop.DUPLICATE)
        try:
            verify_gossip(message, self._network_id)
        except SignatureError:
            return self._drop(Drop.BAD_SIGNATURE)
        try:
            check_timestamp(message, now_ms=int(now * 1000), window_ms=self._window_ms)
        except StaleMessageError:
            return self._drop(Drop.STALE)
        verdict = self._check_sequence(message.origin, message.seq, now)
        if verdict is not None:
            return self._drop(verdict)
        self._seen.check_and_insert(msg_id, now)
        self.accepted += 1
        return None

    def _check_sequence(self, origin: bytes, seq: int, now: float) -> Drop | None:
        window = self._origins.get(origin)
        if window is None:
            if len(self._origins) >= self._max_origins and not self._forget_quiet(now):
                return Drop.TOO_MANY_ORIGINS
            self._origins[origin] = _Window(seq, 1, now)
            return None
        window.last = now
        if seq > window.highest:
            shift = seq - window.highest
            window.seen = ((window.seen << shift) | 1) & ((1 << SEQ_WINDOW) - 1) \
                if shift < SEQ_WINDOW else 1
            window.highest = seq
            return None
        age = window.highest - seq
        if age >= SEQ_WINDOW or window.seen >> age & 1:
            return Drop.REPLAY
        window.seen |= 1 << age
        return None

    def _forget_quiet(self, now: float) -> bool:
        quiet = [o for o, w in self._origins.items() if now - w.last > 2 * self._window_s]
        for origin in quiet:
            del self._origins[origin]
        return bool(quiet)

    def _drop(self, reason: Drop) -> Drop:
        self.dropped[reason] += 1
        return reason
