"""This node's own DHT records: signing them, and finding them among the rows kept from the
last run. Uses trio (through the record rows it reads at start).

A record's version is the time in milliseconds, raised above every earlier version in its
slot (kind, key, publisher), so a newer record of ours always replaces the older one even when
the clock went back. Rows kept from the last run are verified again: ours are republished,
others' go back into the core's store.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from ..errors import BzzzError
from ..identity import Identity
from ._record import Kind, Record, sign_record, verify_record
from ._store import RecordStore
from .storage import RecordRows

__all__ = ["OwnRecords"]

log = logging.getLogger(__name__)


class OwnRecords:
    """Signs this node's records; ``public_key``: the publisher key they carry."""

    def __init__(self, identity: Identity, network_id: bytes) -> None:
        self._identity = identity
        self._network_id = network_id
        self.public_key = identity.private_key.public_key().public_bytes_raw()
        self._versions: dict[tuple[Kind, bytes, bytes], int] = {}

    def sign(self, kind: Kind, key: bytes, *, address: str | None = None, value: bytes = b"",
             content_hash: bytes | None = None) -> Record:
        """A record of ours, its version above every earlier one in its slot."""
        now_ms = int(time.time() * 1000)
        slot = (kind, key, self.public_key)
        version = max(now_ms, self._versions.get(slot, 0) + 1)
        self._versions[slot] = version
        return sign_record(self._identity.private_key, network_id=self._network_id, kind=kind,
                           key=key, version=version, timestamp_ms=now_ms, address=address,
                           value=value, content_hash=content_hash)

    def load(self, rows: RecordRows, store: RecordStore, now: float,
             counters: Counter[str]) -> list[Record]:
        """Records kept from the last run into ``store``; our own ones, to republish."""
        own = []
        for record in rows.load():
            try:
                verify_record(record, self._network_id)
            except BzzzError:
                counters["rows_refused"] += 1
                continue
            if record.publisher_key == self.public_key:
                own.append(record)
                self._versions[record.slot] = max(record.version,
                                                  self._versions.get(record.slot, 0))
            else:
                store.put(record, now, lambda _: True)
        if own or len(store):
            log.info("DHT: %d records held, %d of our own, from the last run",
                     len(store), len(own))
        return own
