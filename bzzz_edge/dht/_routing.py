"""The Kademlia routing table: k-buckets with a replacement cache. No I/O.

Buckets are indexed by the length of the prefix a contact's ID shares with ours (256 of them;
only the first dozen or so fill in practice). Each bucket keeps at most ``k`` entries, least
recently seen first, and a replacement cache of at most ``replacement_cache`` candidates, most
recent last, so the table holds at most ``256 * (k + replacement_cache)`` contacts whatever a
peer sends us.

The table never talks to the network. Entries are kept over newcomers (long-lived nodes tend to
stay alive); a newcomer meeting a full bucket waits in the replacement cache. An entry becomes
stale when RPCs to it fail; then the table asks the shell to check it (``CheckLiveness``, at
most one check in flight per entry) and is told the outcome (``check_result``): only an entry
that failed its check is evicted, and the most recently seen candidate takes its place.
A bucket is refreshed by a lookup of a random ID in it when no lookup touched it for
``refresh_interval`` (``refresh_targets``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from bzzz_edge.dht._config import ID_BITS, DhtConfig
from bzzz_edge.dht._contact import Contact, bucket_index, id_in_bucket

__all__ = ["CheckLiveness", "RoutingTable"]


@dataclass(frozen=True, slots=True)
class CheckLiveness:
    """Action: find out whether ``contact`` is alive and report it with ``check_result``."""

    contact: Contact


class _Entry:
    __slots__ = ("checking", "contact", "failures", "key", "last_seen")

    def __init__(self, contact: Contact, now: float) -> None:
        self.contact = contact
        self.key = int.from_bytes(contact.node, "big")
        self.last_seen = now
        self.failures = 0
        self.checking = False


class _Bucket:
    __slots__ = ("entries", "replacements", "touched")

    def __init__(self, now: float) -> None:
        self.entries: dict[bytes, _Entry] = {}  # least recently seen first
        self.replacements: dict[bytes, Contact] = {}  # most recently seen last
        self.touched = now


class RoutingTable:
    """The k-buckets of node ``self_id``. See the module docstring.

    Args:
        self_id: this node's 32-byte ID.
        config: ``k``, ``replacement_cache``, ``failures_before_check``, ``refresh_interval``.
        now: the current time (buckets count as refreshed at creation).
    """

    def __init__(self, self_id: bytes, config: DhtConfig, now: float) -> None:
        self.self_id = self_id
        self._self_key = int.from_bytes(self_id, "big")
        self._config = config
        self._created = now
        self._buckets: list[_Bucket | None] = [None] * ID_BITS  # made when first needed
        self._size = 0
        self._deepest = -1

    def _bucket(self, index: int) -> _Bucket:
        bucket = self._buckets[index]
        if bucket is None:
            bucket = self._buckets[index] = _Bucket(self._created)
        return bucket

    def _filled(self) -> Iterator[_Bucket]:
        for bucket in self._buckets[: self._deepest + 1]:
            if bucket is not None and bucket.entries:
                yield bucket

    # --- views ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def __contains__(self, node: object) -> bool:
        if not isinstance(node, bytes) or node == self.self_id or len(node) != len(self.self_id):
            return False
        bucket = self._buckets[bucket_index(self.self_id, node)]
        return bucket is not None and node in bucket.entries

    def contacts(self) -> Iterator[Contact]:
        for bucket in self._filled():
            for entry in bucket.entries.values():
                yield entry.contact

    def bucket(self, index: int) -> tuple[list[Contact], list[Contact]]:
        """Entries (least recently seen first) and replacement candidates of bucket ``index``."""
        bucket = self._bucket(index)
        return ([e.contact for e in bucket.entries.values()], list(bucket.replacements.values()))

    def deepest_bucket(self) -> int:
        """Index of the deepest non-empty bucket, or -1 when the table is empty."""
        return self._deepest

    def closest(self, target: bytes, count: int, *, exclude: bytes | None = None) -> list[Contact]:
        """The ``count`` entries closest to ``target``, nearest first.

        Buckets are visited nearest group first: the target's own bucket (sharing more of
        its prefix), then the deeper buckets, then the shallower ones one by one; every entry
        of a later group is farther than any of an earlier one, so only the groups needed to
        fill ``count`` are sorted.
        """
        goal = int.from_bytes(target, "big")
        own = self._index(goal)
        buckets, deepest = self._buckets, self._deepest
        found: list[_Entry] = []
        if own < ID_BITS and (bucket := buckets[own]) is not None:
            self._gather(found, bucket, exclude)
        if len(found) < count:
            for bucket in buckets[own + 1: deepest + 1]:
                if bucket is not None:
                    self._gather(found, bucket, exclude)
            index = min(own, deepest + 1) - 1
            while len(found) < count and index >= 0:
                if (bucket := buckets[index]) is not None:
                    self._gather(found, bucket, exclude)
                index -= 1
        found.sort(key=lambda e: e.key ^ goal)
        return [e.contact for e in found[:count]]

    def closest_known(self, target: bytes, count: int) -> list[Contact]:
        """Like ``closest``, the replacement candidates of the buckets it visits included:
        nodes seen lately that a full bucket left out. A get's seeds: the more of the nodes
        near its key it knows, the likelier its first RPC reaches one holding the record (a
        candidate gone silent costs the get its hedge delay, not its answer)."""
        goal = int.from_bytes(target, "big")
        own = self._index(goal)
        buckets, deepest = self._buckets, self._deepest
        groups: list[list[_Bucket | None]] = [[buckets[own]]] if own < ID_BITS else []
        groups.append(buckets[own + 1: deepest + 1])
        groups += [[buckets[i]] for i in range(min(own, deepest + 1) - 1, -1, -1)]
        found: list[tuple[int, Contact]] = []
        for group in groups:
            for bucket in group:
                if bucket is not None:
                    found += [(e.key ^ goal, e.contact) for e in bucket.entries.values()]
                    found += [(int.from_bytes(node, "big") ^ goal, contact)
                              for node, contact in bucket.replacements.items()]
            if len(found) >= count:
                break
        found.sort(key=lambda pair: pair[0])
        return [contact for _, contact in found[:count]]

    def _index(self, key: int) -> int:
        """The bucket of the ID ``key`` (as an integer); ``ID_BITS`` for our own ID."""
        return ID_BITS - (key ^ self._self_key).bit_length()

    @staticmethod
    def _gather(found: list[_Entry], bucket: _Bucket, exclude: bytes | None) -> None:
        if exclude is None or exclude not in bucket.entries:
            found += bucket.entries.values()
        else:
            found += [e for e in bucket.entries.values() if e.contact.node != exclude]

    # --- updates --------------------------------------------------------------------------------

    def seen(self, contact: Contact, now: float) -> None:
        """``contact`` spoke to us or answered: refresh it, add it, or queue it as a candidate."""
        index = self._index(int.from_bytes(contact.node, "big"))
        if index == ID_BITS:
            return  # ourselves
        bucket = self._bucket(index)
        entry = bucket.entries.pop(contact.node, None)
        if entry is not None:
            entry.contact, entry.last_seen, entry.failures = contact, now, 0
            bucket.entries[contact.node] = entry  # to the most recent end
            return
        if len(bucket.entries) < self._config.k:
            bucket.replacements.pop(contact.node, None)
            bucket.entries[contact.node] = _Entry(contact, now)
            self._size += 1
            self._deepest = max(self._deepest, index)
            return
        bucket.replacements.pop(contact.node, None)
        bucket.replacements[contact.node] = contact
        if len(bucket.replacements) > self._config.replacement_cache:
            del bucket.replacements[next(iter(bucket.replacements))]

    def failed(self, node: bytes) -> list[CheckLiveness]:
        """An RPC to ``node`` failed; after enough failures in a row, ask for a liveness check."""
        entry = self._entry(node)
        if entry is None:
            return []
        entry.failures += 1
        if entry.checking or entry.failures < self._config.failures_before_check:
            return []
        entry.checking = True
        return [CheckLiveness(entry.contact)]

    def check_result(self, node: bytes, alive: bool, now: float) -> Contact | None:
        """The outcome of a liveness check; returns the contact evicted, if any."""
        entry = self._entry(node)
        if entry is None:
            return None
        entry.checking = False
        if alive:
            self.seen(entry.contact, now)
            return None
        return self.remove(node)

    def remove(self, node: bytes) -> Contact | None:
        """Drop ``node`` (dead, or departed per membership); a candidate takes its place."""
        if node == self.self_id or len(node) != len(self.self_id):
            return None
        index = bucket_index(self.self_id, node)
        bucket = self._bucket(index)
        bucket.replacements.pop(node, None)
        entry = bucket.entries.pop(node, None)
        if entry is None:
            return None
        self._size -= 1
        if bucket.replacements:
            candidate = bucket.replacements.pop(next(reversed(bucket.replacements)))
            bucket.entries[candidate.node] = _Entry(candidate, entry.last_seen)
            self._size += 1
        if index == self._deepest and not bucket.entries:
            self._deepest = next((i for i in range(index - 1, -1, -1)
                                  if (b := self._buckets[i]) is not None and b.entries), -1)
        return entry.contact

    def touch(self, target: bytes, now: float) -> None:
        """A lookup for ``target`` ran: its bucket needs no refresh for a while."""
        index = self._index(int.from_bytes(target, "big"))
        if index < ID_BITS:
            self._bucket(index).touched = now

    def refresh_targets(self, now: float, rng: random.Random) -> list[bytes]:
        """Random IDs to look up, one per bucket up to the deepest non-empty one plus one, for
        the buckets no lookup touched for ``refresh_interval``; they count as touched now."""
        targets = []
        for index in range(min(ID_BITS, self._deepest + 2)):
            bucket = self._bucket(index)
            if bucket.touched + self._config.refresh_interval <= now:
                bucket.touched = now
                targets.append(id_in_bucket(self.self_id, index, rng))
        return targets

    def next_refresh(self) -> float:
        """When ``refresh_targets`` next has something to return."""
        last = max(1, min(self._deepest + 2, ID_BITS))
        touched = [b.touched for b in self._buckets[:last] if b is not None]
        # A bucket not made yet counts as touched at creation, before any other was.
        oldest = min(touched) if len(touched) == last else self._created
        return oldest + self._config.refresh_interval

    def add_all(self, contacts: Iterable[Contact], now: float) -> None:
        for contact in contacts:
            self.seen(contact, now)

    def _entry(self, node: bytes) -> _Entry | None:
        if node == self.self_id or len(node) != len(self.self_id):
            return None
        bucket = self._buckets[bucket_index(self.self_id, node)]
        return bucket.entries.get(node) if bucket is not None else None
