"""Kademlia protocol constants and the DHT cores' tunables. No I/O.

Constants are protocol facts shared by every node of a network (ID size, message limits);
``DhtConfig`` holds what a node may tune (k, alpha, timeouts, limits). The shell builds a
``DhtConfig`` from the typed settings; the cores take it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from bzzz_edge.errors import LocalProtocolError

__all__ = [
    "ID_BITS",
    "ID_LEN",
    "MAX_ADDRESS_LEN",
    "MAX_CONTACTS_PER_REPLY",
    "MAX_HOST_LEN",
    "MAX_RECORDS_PER_REPLY",
    "MAX_RECORD_VALUE",
    "MAX_RPC_ID",
    "MAX_VERSION",
    "DhtConfig",
]

#: Node IDs and keys are 256-bit (SHA-256 of a public key, or of a UCXL address).
ID_BITS: Final = 256
ID_LEN: Final = ID_BITS // 8
#: Largest value carried inside a record; larger content is fetched from a provider.
MAX_RECORD_VALUE: Final = 16_384
#: Largest canonical UCXL address a record may name (the UCXL SPEC's own limit).
MAX_ADDRESS_LEN: Final = 2048
#: Contacts and records a reply may carry; more is a protocol error, not work for us.
MAX_CONTACTS_PER_REPLY: Final = 64
MAX_RECORDS_PER_REPLY: Final = 32
MAX_HOST_LEN: Final = 255
MAX_RPC_ID: Final = 2**64 - 1
MAX_VERSION: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class DhtConfig:
    """Tunables of one DHT node; times in seconds.

    Attributes:
        k: bucket size and replication factor.
        alpha: RPCs in flight per lookup path.
        disjoint_paths: S/Kademlia ``d``: independent lookup paths that never share a node.
        replacement_cache: candidates remembered per bucket for when an entry dies.
        rpc_timeout: an RPC unanswered this long drops its peer from the lookup's set.
        lookup_deadline: a lookup ends by then whatever is still in flight.
        hedge_delay: a get asks the nearest node alone first; unanswered this long, it asks
            ``alpha`` per path (a get widens at once on an answer without the value).
        failures_before_check: consecutive RPC failures after which an entry is checked.
        refresh_interval: a bucket no lookup touched for this long is refreshed by one.
        record_ttl: a stored record expires this long after it was last stored.
        republish_interval: the publisher stores its own records again this often.
        replicate_interval: a holder re-stores each record to the k closest this often.
        replicate_batch: records re-replicated per tick at most (bounds work per tick).
        max_records: records this node stores for others, in all.
        max_records_per_publisher: of those, from one publisher.
        max_publishers_per_key: publishers with a record under one key (first come).
        peer_rate: requests per second one peer may make of us, sustained.
        peer_burst: requests one peer may make at once.
        max_tracked_peers: peers whose rate is tracked (the least recent is forgotten).
        max_pending_rpcs: our own RPCs in flight, in all.
        max_operations: lookups, puts and gets running at once.
    """

    k: int = 20
    alpha: int = 3
    disjoint_paths: int = 2
    replacement_cache: int = 8
    rpc_timeout: float = 0.5
    lookup_deadline: float = 5.0
    hedge_delay: float = 0.05
    failures_before_check: int = 1
    refresh_interval: float = 3600.0
    record_ttl: float = 86_400.0
    republish_interval: float = 3600.0
    replicate_interval: float = 3600.0
    replicate_batch: int = 16
    max_records: int = 65_536
    max_records_per_publisher: int = 4096
    max_publishers_per_key: int = 16
    peer_rate: float = 50.0
    peer_burst: int = 100
    max_tracked_peers: int = 4096
    max_pending_rpcs: int = 1024
    max_operations: int = 64

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value <= 0:
                raise LocalProtocolError(f"DhtConfig.{field.name} must be positive, got {value!r}")
        if self.disjoint_paths > self.k:
            raise LocalProtocolError("DhtConfig.disjoint_paths must not exceed k")
        if self.k > MAX_CONTACTS_PER_REPLY:
            raise LocalProtocolError(f"DhtConfig.k must be at most {MAX_CONTACTS_PER_REPLY}")
