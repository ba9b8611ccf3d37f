"""What a node checks before it accepts a gossip message. No I/O; time is passed in.

The order follows DESIGN.md, cheapest first, with every check that needs no crypto before the
signature: a duplicate (dedup cache) is dropped first; then the timestamp against the replay
window; then the sequence window (a number below it, or seen in it); then the origin's
signature (over the network ID too, so another network's messages fail), unless the message
came over its origin's own authenticated connection (``authenticated=True``: the secure channel
already proved who sent it). Only a message that passes all of them is remembered as seen, so a
forged copy of a real message's ID cannot make us drop the real one.

Two memories stop replays, and either is enough alone. The dedup cache keeps IDs for twice the
replay window, but it is bounded in entries, so a flood can evict an ID early. The sequence
window does not depend on the cache: per stream, an (origin, topic) pair, since sequence
numbers count per topic, it keeps the highest number seen and which of the ``SEQ_WINDOW``
numbers below it were delivered; anything older, or seen in it, is refused as a replay.
Streams are bounded (``max_origins``): one quiet for longer than twice the replay window is
forgotten first (its old messages are refused by timestamp anyway); when every slot holds a
recent stream, messages of new streams are refused until one frees up.

``admit`` also reports the gap: how many sequence numbers of the stream were skipped since the
highest one seen (``GAP_UNKNOWN``, -1, past the window).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from bzzz_edge.errors import SignatureError
from bzzz_edge.wire.dedup import DedupCache
from bzzz_edge.wire.envelope import GossipMessage, verify_gossip

__all__ = ["SEQ_WINDOW", "Drop", "GossipReceipt"]

SEQ_WINDOW = 1024
_WINDOW_MASK = (1 << SEQ_WINDOW) - 1  # (a 1024-bit constant: not made again per message)
_GAP_UNKNOWN = -1


class Drop(enum.Enum):
    """Why a gossip message was not accepted."""

    DUPLICATE = "duplicate"
    BAD_SIGNATURE = "bad-signature"
    STALE = "stale"
    REPLAY = "replay"  # below the origin's sequence window, or seen in it
    TOO_MANY_ORIGINS = "too-many-origins"
    NOT_SUBSCRIBED = "not-subscribed"  # counted by the router, never by the receipt


@dataclass(slots=True)
class _Window:
    highest: int
    seen: int  # bit i (< SEQ_WINDOW): highest - i was delivered; higher bits are never read
    last: float  # when the origin was last heard (receiver's clock)


class GossipReceipt:
    """Checks incoming gossip messages; counts what it drops, by reason.

    Args:
        network_id: the ID signed into every message of this network.
        replay_window: seconds a timestamp may differ from our clock, either way.
        max_entries: how many message IDs the dedup cache holds at most.
        max_origins: how many (origin, topic) sequence windows are kept at most.
    """

    def __init__(self, network_id: bytes, *, replay_window: float,
                 max_entries: int = 32_768, max_origins: int = 4096) -> None:
        self._network_id = network_id
        self._window_s = replay_window
        self._window_ms = int(replay_window * 1000)
        self._seen = DedupCache(2 * replay_window, max_entries)
        self._origins: dict[tuple[bytes, str], _Window] = {}
        self._max_origins = max_origins
        self.dropped: Counter[Drop] = Counter()
        self.accepted = 0

    def check(self, message: GossipMessage, now: float) -> Drop | None:
        """None when ``message`` is new, authentic and timely (it is then remembered)."""
        verdict = self.admit(message, now)
        return verdict if isinstance(verdict, Drop) else None

    def seen(self, msg_id: bytes, now: float) -> bool:
        """Whether ``msg_id`` is in the dedup cache (no crypto, nothing recorded)."""
        return bool(self._seen.contains(msg_id, now))

    def admit(self, message: GossipMessage, now: float, *, authenticated: bool = False,
              msg_id: bytes | None = None, own: bool = False) -> Drop | int:
        """The gap (>= 0, or -1 when unknown) when ``message`` is new, authentic and timely (it
        is then remembered); else why it was dropped.

        Args:
            now: the wall clock, in seconds.
            authenticated: it came over its origin's own authenticated connection, so its
                signature is not checked again.
            msg_id: ``message.msg_id``, when the caller has computed it already.
            own: we originated it; its stream is never refused for want of a slot (the
                least recently heard stream is forgotten instead).
        """
        if msg_id is None:
            msg_id = message.msg_id
        if self._seen.contains(msg_id, now):
            return self._drop(Drop.DUPLICATE)
        # ``check_timestamp``'s test, inline: it runs for every message.
        if abs(int(now * 1000) - message.timestamp_ms) > self._window_ms:
            return self._drop(Drop.STALE)
        stream = (message.origin, message.topic)
        window = self._origins.get(stream)
        if window is not None:
            age = window.highest - message.seq
            if age >= SEQ_WINDOW or (age >= 0 and window.seen >> age & 1):
                return self._drop(Drop.REPLAY)
        elif len(self._origins) >= self._max_origins and not self._forget_quiet(now):
            if not own:
                return self._drop(Drop.TOO_MANY_ORIGINS)
            self._forget_oldest()  # our own streams always get a slot
        if not authenticated:
            try:
                verify_gossip(message, self._network_id)
            except SignatureError:
                return self._drop(Drop.BAD_SIGNATURE)
        self._seen.check_and_insert(msg_id, now)
        self.accepted += 1
        return self._record(stream, message.seq, now)

    def _record(self, stream: tuple[bytes, str], seq: int, now: float) -> int:
        window = self._origins.get(stream)
        if window is None:
            self._origins[stream] = _Window(seq, 1, now)
            return 0
        window.last = now
        if seq > window.highest:
            shift = seq - window.highest
            window.highest = seq
            if shift >= SEQ_WINDOW:
                window.seen = 1
                return _GAP_UNKNOWN
            seen = window.seen << shift | 1
            # Bits past the window are never read (an older number is refused by its age
            # first): they are cut off once they would double it, not for every message (an
            # AND with a 1024-bit mask cost four times the shift).
            window.seen = seen & _WINDOW_MASK if seen.bit_length() > 2 * SEQ_WINDOW else seen
            return shift - 1
        window.seen |= 1 << (window.highest - seq)
        return 0

    def _forget_quiet(self, now: float) -> bool:
        quiet = [o for o, w in self._origins.items() if now - w.last > 2 * self._window_s]
        for origin in quiet:
            del self._origins[origin]
        return bool(quiet)

    def _forget_oldest(self) -> None:
        oldest = min(self._origins, key=lambda stream: self._origins[stream].last)
        del self._origins[oldest]

    def _drop(self, reason: Drop) -> Drop:
        self.dropped[reason] += 1
        return reason
