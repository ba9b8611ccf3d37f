"""The node's LMDB environment: opening, named databases, growth, clean close. Does I/O.

Reads go straight to the memory map; writes are synchronous transactions, so what a write
returns has reached the disk (``sync=True``, the LMDB default). When the map fills up it is
doubled and the write retried. Writes may come from worker threads (so an fsync never stalls
the event loop); one lock orders every transaction against growing the map and closing, which
LMDB requires to happen with no transaction open. The ``meta`` database records whether the
last run ended with a clean close, so a restart knows whether the previous process was killed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgpack

from ..errors import StorageError

__all__ = ["Store"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_DATABASES = ("meta", "peers")
_MAX_DBS = 32


class Store:
    """An open LMDB environment under ``<data_dir>/store``."""

    def __init__(self, path: Path, *, map_size: int) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._env = lmdb.open(str(path), map_size=map_size, max_dbs=_MAX_DBS,
                                  subdir=True, sync=True, metasync=True, mode=0o600)
        except lmdb.Error as exc:
            raise StorageError(f"cannot open the store at {path}: {exc}") from None
        self.path = path
        self._lock = threading.RLock()
        self._dbs = {name: self._env.open_db(name.encode()) for name in _DATABASES}
        self.previous_clean: bool = self.get_meta("clean_shutdown", True)
        self.put_meta("clean_shutdown", False)
        self.put_meta("starts", self.get_meta("starts", 0) + 1)
        self.put_meta("last_start", time.time())

    @property
    def closed(self) -> bool:
        return self._env is None

    def get_meta(self, key: str, default: T) -> T:
        return self.get("meta", key.encode(), default)  # type: ignore[no-any-return]

    def put_meta(self, key: str, value: object) -> None:
        packed = msgpack.packb(value)
        self._write(lambda txn: txn.put(key.encode(), packed, db=self._dbs["meta"]))

    def get(self, db: str, key: bytes, default: Any = None) -> Any:
        with self._lock, self._open().begin(db=self._dbs[db]) as txn:
            raw = txn.get(key)
        return default if raw is None else msgpack.unpackb(raw)

    def put(self, db: str, key: bytes, value: object) -> None:
        """Store ``value`` (msgpack-able) durably under ``key``."""
        packed = msgpack.packb(value, use_bin_type=True)
        self._write(lambda txn: txn.put(key, packed, db=self._dbs[db]))

    def delete(self, db: str, key: bytes) -> None:
        self._write(lambda txn: txn.delete(key, db=self._dbs[db]))

    def write_batch(self, changes: dict[tuple[str, bytes], object]) -> None:
        """Put (or, for a None value, delete) many keys in one durable transaction."""
        packed = {k: None if v is None else msgpack.packb(v, use_bin_type=True)
                  for k, v in changes.items()}

        def apply(txn: lmdb.Transaction) -> None:
            for (db, key), value in packed.items():
                if value is None:
                    txn.delete(key, db=self._dbs[db])
                else:
                    txn.put(key, value, db=self._dbs[db])

        self._write(apply)

    def items(self, db: str) -> Iterator[tuple[bytes, Any]]:
        """A snapshot of every (key, value) in ``db``."""
        with self._lock, self._open().begin(db=self._dbs[db]) as txn:
            rows = [(bytes(k), msgpack.unpackb(v)) for k, v in txn.cursor()]
        return iter(rows)

    def _open(self) -> lmdb.Environment:
        if self._env is None:
            raise StorageError(f"the store at {self.path} is closed")
        return self._env

    def _write(self, action: Callable[[lmdb.Transaction], T]) -> T:
        with self._lock:
            env = self._open()
            while True:
                try:
                    with env.begin(write=True) as txn:
                        return action(txn)
                except lmdb.MapFullError:
                    new_size = env.info()["map_size"] * 2
                    log.info("store map full; growing it to %d MiB", new_size // 2**20)
                    env.set_mapsize(new_size)
                except lmdb.Error as exc:
                    raise StorageError(f"store write failed: {exc}") from None

    def close(self) -> None:
        """Flush, mark the close clean, and close the environment (idempotent)."""
        with self._lock:
            if self._env is None:
                return
            self.put_meta("clean_shutdown", True)
            self._env.sync(True)
            self._env.close()
            self._env = None  # type: ignore[assignment]
        log.info("storage closed")
