"""What a node checks before it accepts a relayed (gossip) message. No I/O; time is passed in.

The order is the one in DESIGN.md, cheapest first: a duplicate is dropped before any crypto;
then the origin's signature (over the network ID too, so another network's messages fail);
then the timestamp against the replay window. Only a message that passes all three is
remembered as seen, so a forged copy of a real message's ID cannot make us drop the real one.
The dedup cache keeps IDs for twice the replay window: a replay older than that is refused by
its timestamp instead.
"""

from __future__ import annotations

import enum
from collections import Counter

from bzzz_edge.errors import SignatureError
from bzzz_edge.wire.dedup import DedupCache
from bzzz_edge.wire.envelope import GossipMessage, StaleMessageError, check_timestamp, verify_gossip

__all__ = ["Drop", "GossipReceipt"]


class Drop(enum.Enum):
    """Why a gossip message was not accepted."""

    DUPLICATE = "duplicate"
    BAD_SIGNATURE = "bad-signature"
    STALE = "stale"


class GossipReceipt:
    """Checks incoming gossip messages; counts what it drops, by reason.

    Args:
        network_id: the ID signed into every message of this network.
        replay_window: seconds a timestamp may differ from our clock, either way.
        max_entries: how many message IDs the dedup cache holds at most.
    """

    def __init__(self, network_id: bytes, *, replay_window: float,
                 max_entries: int = 32_768) -> None:
        self._network_id = network_id
        self._window_ms = int(replay_window * 1000)
        self._seen = DedupCache(2 * replay_window, max_entries)
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
        if self._seen.check_and_insert(msg_id, now):
            return self._drop(Drop.DUPLICATE)
        self.accepted += 1
        return None

    def _drop(self, reason: Drop) -> Drop:
        self.dropped[reason] += 1
        return reason
