"""DHT records in LMDB: the records this node holds and the ones it publishes. Uses trio.

One database, ``dht_records``: key ``kind byte + key + publisher key`` (the record's slot),
value the msgpack of ``encode_record``. What the core stores, replaces or expires is queued
here (``put``, ``drop``) and written in batches through the store's group-commit writer, so a
burst of STOREs costs one commit, and the DHT never waits on an fsync. Records are checked
again when loaded (``load``): a damaged row is skipped and counted, never trusted.
"""

from __future__ import annotations

import logging
from collections import Counter

import trio

from ..errors import BzzzError, DecodeError
from ..store import Store
from ._record import Record, decode_record, encode_record

__all__ = ["DATABASES", "RecordRows"]

log = logging.getLogger(__name__)

DATABASES = ("dht_records",)
_DB = "dht_records"
_RETRY_AFTER = 1.0


def _row_key(record: Record) -> bytes:
    return bytes([int(record.kind)]) + record.key + record.publisher_key


class RecordRows:
    """Queues record writes and commits them in batches (``run``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._dirty: dict[tuple[str, bytes], object] = {}
        self._wakeup = trio.Event()
        self.counters: Counter[str] = Counter()

    def load(self) -> list[Record]:
        """Every stored record that still decodes (signatures are the caller's to check)."""
        out = []
        for key, items in self._store.items(_DB):
            try:
                record = decode_record(items)
            except DecodeError:
                self.counters["rows_damaged"] += 1
                continue
            if _row_key(record) == key:
                out.append(record)
        return out

    def put(self, record: Record) -> None:
        self._mark(_row_key(record), encode_record(record))

    def drop(self, record: Record) -> None:
        self._mark(_row_key(record), None)

    def _mark(self, key: bytes, value: object) -> None:
        self._dirty[(_DB, key)] = value
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            if not await self.flush():
                await trio.sleep(_RETRY_AFTER)  # a failing store (disk full): no hot loop

    async def flush(self) -> bool:
        """Write what is queued; False (and kept queued) when the store refused it."""
        changes, self._dirty = self._dirty, {}
        if not changes:
            return True
        try:
            await self._store.write_batch_async(changes)
        except BzzzError as exc:
            self._dirty = {**changes, **self._dirty}
            self._wakeup.set()
            self.counters["write_failed"] += 1
            log.error("DHT records not written (%d queued): %s", len(self._dirty), exc)
            return False
        self.counters["rows_written"] += len(changes)
        return True

