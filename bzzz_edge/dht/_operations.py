"""The state of one DHT operation: a lookup, a get, or a put in its two phases. No I/O.

A get is a FIND_VALUE lookup that keeps the highest valid version per publisher of what the
nodes answer and ends at the first answer that carried a valid record (or when the lookup
converges). A put is a FIND_NODE lookup for the key, then a STORE to each of the k closest
nodes found; it ends when all of them answered or timed out. Re-replication and republishing
are puts the node core starts itself (``internal``): the application hears nothing of them.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable

from bzzz_edge.dht._lookup import Lookup
from bzzz_edge.dht._record import Kind, Record

__all__ = ["OpKind", "Operation"]


class OpKind(enum.Enum):
    FIND = 0
    GET = 1
    PUT = 2


class Operation:
    """One operation's state; the node core drives it."""

    __slots__ = ("awaiting", "get_kind", "internal", "kind", "lookup", "op", "record", "records",
                 "stored", "stores_sent")

    def __init__(self, op: Hashable, kind: OpKind, lookup: Lookup, *, internal: bool = False,
                 record: Record | None = None, get_kind: Kind = Kind.VALUE) -> None:
        self.op = op
        self.kind = kind
        self.lookup = lookup
        self.internal = internal
        self.record = record
        self.get_kind = get_kind
        self.records: dict[bytes, Record] = {}  # publisher key -> highest valid version
        self.awaiting: set[int] = set()  # STORE RPCs in flight
        self.stored = 0
        self.stores_sent = 0

    @property
    def storing(self) -> bool:
        return self.stores_sent > 0

    def merge(self, record: Record) -> None:
        """Keep ``record`` if it is the highest version seen from its publisher."""
        held = self.records.get(record.publisher_key)
        if held is None or record.version > held.version:
            self.records[record.publisher_key] = record

    def found(self) -> tuple[Record, ...]:
        return tuple(sorted(self.records.values(),
                            key=lambda r: (-r.timestamp_ms, r.publisher_key)))
