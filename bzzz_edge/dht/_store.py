"""The records one node holds for the network: limits, replacement rules, expiry. No I/O.

Records arrive already decoded; the store checks what is cheap first (slot, version, limits)
and asks the caller's ``verify`` only for a record it would keep, so a flood of stale or
over-limit records costs no signature checks. Rules:

- one record per slot (kind, key, publisher); a record replaces the one in its slot only with
  a higher version (same publisher, as the slot says); the same record again just moves its
  expiry (a replica refreshed, or the publisher republishing);
- at most ``max_records`` records, ``max_records_per_publisher`` from one publisher and
  ``max_publishers_per_key`` publishers under one key of a kind (first come: a key's existing
  publishers keep their place);
- a record expires ``record_ttl`` after it was last stored (never on the publisher's clock);
- each record is due for re-replication ``replicate_interval`` after it was stored, or earlier
  when ``mark_for_replication`` says a close node died.

Expiry and replication use heaps with lazy deletion, so a tick costs what is due, not a scan.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterator

from bzzz_edge.dht._config import DhtConfig
from bzzz_edge.dht._messages import Verdict
from bzzz_edge.dht._record import Kind, Record

__all__ = ["RecordStore"]

_Slot = tuple[Kind, bytes, bytes]


class _Held:
    __slots__ = ("expires_at", "record", "replicate_at")

    def __init__(self, record: Record, expires_at: float, replicate_at: float) -> None:
        self.record = record
        self.expires_at = expires_at
        self.replicate_at = replicate_at


class RecordStore:
    """Records held for others (and our own). See the module docstring."""

    def __init__(self, config: DhtConfig) -> None:
        self._config = config
        self._held: dict[_Slot, _Held] = {}
        self._by_key: dict[tuple[Kind, bytes], set[bytes]] = {}
        self._per_publisher: Counter[bytes] = Counter()
        self._expiry: list[tuple[float, _Slot]] = []
        self._replication: list[tuple[float, _Slot]] = []

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[Record]:
        return (held.record for held in self._held.values())

    def get(self, kind: Kind, key: bytes) -> list[Record]:
        """Records of ``kind`` under ``key``, newest timestamp first."""
        publishers = self._by_key.get((kind, key))
        if not publishers:
            return []
        records = [self._held[(kind, key, p)].record for p in publishers]
        return sorted(records, key=lambda r: (-r.timestamp_ms, r.publisher_key))

    def put(self, record: Record, now: float, verify: Callable[[Record], bool]) -> Verdict:
        """Keep ``record`` if the rules allow and ``verify(record)`` holds."""
        slot = record.slot
        held = self._held.get(slot)
        if held is not None:
            if record == held.record:
                # Someone else re-stored it: they replicate this round (Kademlia's
                # optimisation), and it lives another ttl.
                held.expires_at = now + self._config.record_ttl
                held.replicate_at = now + self._config.replicate_interval
                self._push(self._expiry, held.expires_at, slot)
                self._push(self._replication, held.replicate_at, slot)
                return Verdict.REFRESHED
            if record.version <= held.record.version:
                return Verdict.STALE_VERSION
        else:
            refused = self._over_limit(record)
            if refused is not None:
                return refused
        if not verify(record):
            return Verdict.INVALID
        if held is None:
            self._by_key.setdefault((record.kind, record.key), set()).add(record.publisher_key)
            self._per_publisher[record.publisher_key] += 1
        entry = _Held(record, now + self._config.record_ttl, now + self._config.replicate_interval)
        self._held[slot] = entry
        self._push(self._expiry, entry.expires_at, slot)
        self._push(self._replication, entry.replicate_at, slot)
        return Verdict.STORED

    def _push(self, heap: list[tuple[float, _Slot]], when: float, slot: _Slot) -> None:
        heapq.heappush(heap, (when, slot))
        if len(heap) > 4 * len(self._held) + 64:
            # Refreshes leave superseded entries behind; rebuild so they stay bounded.
            current = self._expiry is heap
            heap[:] = [(h.expires_at if current else h.replicate_at, s)
                       for s, h in self._held.items()]
            heapq.heapify(heap)

    def _over_limit(self, record: Record) -> Verdict | None:
        config = self._config
        if len(self._held) >= config.max_records:
            return Verdict.STORE_FULL
        if self._per_publisher[record.publisher_key] >= config.max_records_per_publisher:
            return Verdict.PUBLISHER_FULL
        if len(self._by_key.get((record.kind, record.key), ())) >= config.max_publishers_per_key:
            return Verdict.KEY_FULL
        return None

    def _drop(self, slot: _Slot) -> None:
        del self._held[slot]
        kind, key, publisher = slot
        publishers = self._by_key[(kind, key)]
        publishers.discard(publisher)
        if not publishers:
            del self._by_key[(kind, key)]
        self._per_publisher[publisher] -= 1
        if not self._per_publisher[publisher]:
            del self._per_publisher[publisher]

    def expire(self, now: float) -> list[Record]:
        """Drop and return the records whose time is up."""
        gone: list[Record] = []
        while self._expiry and self._expiry[0][0] <= now:
            when, slot = heapq.heappop(self._expiry)
            held = self._held.get(slot)
            if held is not None and held.expires_at == when:
                self._drop(slot)
                gone.append(held.record)
        return gone

    def due_for_replication(self, now: float, limit: int) -> list[Record]:
        """At most ``limit`` records due for re-replication; each is due again an interval on."""
        due: list[Record] = []
        while self._replication and self._replication[0][0] <= now and len(due) < limit:
            when, slot = heapq.heappop(self._replication)
            held = self._held.get(slot)
            if held is None or held.replicate_at != when:
                continue
            held.replicate_at = now + self._config.replicate_interval
            self._push(self._replication, held.replicate_at, slot)
            due.append(held.record)
        return due

    def mark_for_replication(self, record: Record, at: float) -> None:
        """Make ``record`` due by ``at`` (a node near its key died)."""
        held = self._held.get(record.slot)
        if held is not None and at < held.replicate_at:
            held.replicate_at = at
            self._push(self._replication, at, record.slot)

    def next_deadline(self) -> float | None:
        tops = [heap[0][0] for heap in (self._expiry, self._replication) if heap]
        return min(tops) if tops else None
