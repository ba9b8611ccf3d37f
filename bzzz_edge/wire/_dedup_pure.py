"""Message dedup cache, pure-Python twin of ``_native/dedup.pyx``. No I/O, never reads the clock.

A seen-set of fixed-size binary message IDs (blake2b(origin || seq, digest_size=16) on the
wire). Rules, identical in both implementations:

- An ID is remembered from the first time :meth:`DedupCache.check_and_insert` sees it until
  ``ttl`` seconds later: it is live while ``inserted_at > now - ttl``. Seeing it again within
  that time is a duplicate and does not extend its life, so entries leave in insertion order.
- At most ``max_entries`` IDs are held; inserting into a full cache evicts the oldest first.
- Time is passed in. The cache keeps the largest ``now`` it has been given and uses that: a
  ``now`` that goes backwards (a caller mixing clocks, or events handled out of order) is
  treated as "no time has passed", so nothing is un-expired, nothing expires early, and
  insertion order stays time order. ``now`` must be finite (ValueError otherwise).
- Expired entries are dropped when a call moves the clock forward, so ``len()`` counts the
  entries held as of the latest ``now``; :meth:`DedupCache.expire` advances the clock without
  inserting (for a periodic tick).
- IDs must be ``bytes`` (TypeError otherwise) of exactly ``id_size`` bytes (ValueError).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

__all__ = ["DEFAULT_ID_SIZE", "IMPLEMENTATION", "MAX_ENTRIES", "MAX_ID_SIZE", "DedupCache"]

IMPLEMENTATION = "pure"

DEFAULT_ID_SIZE = 16
MAX_ID_SIZE = 64
MAX_ENTRIES = 1 << 26

_INF = math.inf


def _check_config(ttl: float, max_entries: int, id_size: int) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"dedup: ttl must be a number, not {type(ttl).__name__}")
    if not 0.0 < ttl < _INF:
        raise ValueError(f"dedup: ttl must be positive and finite, got {ttl!r}")
    for name, value, top in (
        ("max_entries", max_entries, MAX_ENTRIES),
        ("id_size", id_size, MAX_ID_SIZE),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"dedup: {name} must be an int, not {type(value).__name__}")
        if not 1 <= value <= top:
            raise ValueError(f"dedup: {name} must be between 1 and {top}, got {value}")
    return float(ttl)


class DedupCache:
    """A TTL- and size-bounded set of message IDs with O(1) check-and-insert.

    Args:
        ttl: seconds an ID stays remembered after it was first seen (> 0, finite).
        max_entries: the most IDs held at once; the oldest is evicted beyond it.
        id_size: the exact length of every ID in bytes (1..64, default 16).

    Raises:
        TypeError, ValueError: a parameter has the wrong type or is out of range.
    """

    __slots__ = (
        "_evictions",
        "_expirations",
        "_hits",
        "_id_size",
        "_inserts",
        "_max_entries",
        "_now",
        "_order",
        "_seen",
        "_ttl",
    )

    def __init__(self, ttl: float, max_entries: int, id_size: int = DEFAULT_ID_SIZE) -> None:
        self._ttl = _check_config(ttl, max_entries, id_size)
        self._max_entries = max_entries
        self._id_size = id_size
        self._seen: dict[bytes, float] = {}  # ID -> the clock when it was inserted
        self._order: deque[bytes] = deque()  # IDs, oldest first
        self._now = -_INF  # the largest `now` seen so far
        self._hits = 0
        self._inserts = 0
        self._evictions = 0
        self._expirations = 0

    def check_and_insert(self, msg_id: bytes, now: float) -> bool:
        """True if ``msg_id`` was seen within the TTL; otherwise remember it and return False.

        Raises:
            TypeError: ``msg_id`` is not bytes.
            ValueError: ``msg_id`` has the wrong length or ``now`` is not finite.
        """
        if type(msg_id) is not bytes or len(msg_id) != self._id_size:
            self._reject_id(msg_id)
        if now > self._now:
            self._advance(now)
        elif not now > -_INF:  # NaN, or -inf before any time was set
            self._reject_now(now)
        seen = self._seen
        if msg_id in seen:
            self._hits += 1
            return True
        if len(seen) >= self._max_entries:
            del seen[self._order.popleft()]
            self._evictions += 1
        seen[msg_id] = self._now
        self._order.append(msg_id)
        self._inserts += 1
        return False

    def check_and_insert_many(self, msg_ids: Iterable[bytes], now: float) -> list[bool]:
        """:meth:`check_and_insert` for each ID in order, at one ``now``; the answers in a list.

        Duplicates within the batch count as duplicates. An invalid ID raises after the IDs
        before it were recorded, as the same sequence of single calls would.
        """
        if now > self._now:
            self._advance(now)
        elif not now > -_INF:
            self._reject_now(now)
        seen = self._seen
        order = self._order
        size = self._id_size
        clock = self._now
        answers: list[bool] = []
        for msg_id in msg_ids:
            if type(msg_id) is not bytes or len(msg_id) != size:
                self._reject_id(msg_id)
            if msg_id in seen:
                self._hits += 1
                answers.append(True)
                continue
            if len(seen) >= self._max_entries:
                del seen[order.popleft()]
                self._evictions += 1
            seen[msg_id] = clock
            order.append(msg_id)
            self._inserts += 1
            answers.append(False)
        return answers

    def contains(self, msg_id: bytes, now: float) -> bool:
        """Whether ``msg_id`` is live at ``now``, without recording anything or moving the clock.

        Raises:
            TypeError, ValueError: as :meth:`check_and_insert`.
        """
        if type(msg_id) is not bytes or len(msg_id) != self._id_size:
            self._reject_id(msg_id)
        if not -_INF < now < _INF:
            self._reject_now(now)
        inserted = self._seen.get(msg_id)
        if inserted is None:
            return False
        clock = now if now > self._now else self._now
        return inserted > clock - self._ttl

    def expire(self, now: float) -> int:
        """Move the clock to ``now`` (if later) and drop expired IDs; returns how many.

        Raises:
            ValueError: ``now`` is not finite.
        """
        before = self._expirations
        if now > self._now:
            self._advance(now)
        elif not now > -_INF:
            self._reject_now(now)
        return self._expirations - before

    def _advance(self, now: float) -> None:
        if now == _INF:
            self._reject_now(now)
        self._now = float(now)
        cutoff = self._now - self._ttl
        seen = self._seen
        order = self._order
        while order and seen[order[0]] <= cutoff:
            del seen[order.popleft()]
            self._expirations += 1

    def _reject_id(self, msg_id: object) -> None:
        if type(msg_id) is not bytes:
            raise TypeError(f"dedup: message ID must be bytes, not {type(msg_id).__name__}")
        raise ValueError(f"dedup: message ID must be {self._id_size} bytes, got {len(msg_id)}")

    @staticmethod
    def _reject_now(now: object) -> None:
        raise ValueError(f"dedup: now must be a finite number, got {now!r}")

    def __len__(self) -> int:
        return len(self._seen)

    def __repr__(self) -> str:
        return (
            f"DedupCache(ttl={self._ttl}, max_entries={self._max_entries}, "
            f"id_size={self._id_size}, len={len(self._seen)}, {IMPLEMENTATION})"
        )

    @property
    def ttl(self) -> float:
        return self._ttl

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @property
    def id_size(self) -> int:
        return self._id_size

    @property
    def hits(self) -> int:
        """Calls of check_and_insert that found a live duplicate."""
        return self._hits

    @property
    def inserts(self) -> int:
        """IDs recorded by check_and_insert."""
        return self._inserts

    @property
    def evictions(self) -> int:
        """Live IDs dropped because the cache was full."""
        return self._evictions

    @property
    def expirations(self) -> int:
        """IDs dropped because their TTL ran out."""
        return self._expirations
