"""The node's LMDB environment: opening, named databases, reads, clean close. Does I/O.

Writes go through the environment's group-commit writer (``store.writer``, see ``_writer``):
what a write returns has reached the disk. Reads go straight to the memory map from any thread
or task (``get``, ``items``, ``reading``), sharing the writer's gate so the map never grows
under an open read. Named databases are declared when the store is opened
(``Store(path, map_size=..., databases=("log", ...))``), since LMDB creates them in a write
transaction; ``meta`` and ``peers`` always exist. Stale reader slots left by killed processes
are reclaimed at start (``reader_check``). The ``meta`` database records whether the last run
ended with a clean close, so a restart knows whether the previous process was killed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgpack

from ..errors import StorageError
from ._platform import map_ceiling
from ._writer import Gate, Writer

__all__ = ["BASE_DATABASES", "Store"]

log = logging.getLogger(__name__)
T = TypeVar("T")

BASE_DATABASES = ("meta", "peers")
_MAX_DBS = 64


class Store:
    """An open LMDB environment under ``<data_dir>/store``.

    Args:
        path: the environment's directory (created 0700).
        map_size: the initial map size in bytes (grown when full, up to ``max_map_size``).
        databases: named databases to open besides ``meta`` and ``peers``.
        max_map_size: the growth ceiling (default: ``_platform.map_ceiling()``).

    Raises:
        StorageError: the environment cannot be opened (and nothing was changed).
    """

    def __init__(self, path: Path, *, map_size: int, databases: Iterable[str] = (),
                 max_map_size: int | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        ceiling = map_ceiling() if max_map_size is None else max_map_size
        try:
            self._env = lmdb.open(str(path), map_size=min(map_size, ceiling), max_dbs=_MAX_DBS,
                                  subdir=True, sync=True, metasync=True, mode=0o600)
        except (lmdb.Error, OverflowError, MemoryError) as exc:
            raise StorageError(f"cannot open the store at {path}: {exc}") from None
        self.path = path
        try:
            stale = self._env.reader_check()
            names = dict.fromkeys((*BASE_DATABASES, *databases))
            self._dbs = {name: self._env.open_db(name.encode()) for name in names}
        except (lmdb.Error, OverflowError) as exc:
            self._env.close()
            raise StorageError(f"cannot open the store at {path}: {exc}") from None
        if stale:
            log.warning("store: reclaimed %d reader slots left by killed processes", stale)
        self.gate = Gate()
        self.writer = Writer(self._env, self.gate, max_map_size=max(ceiling, map_size))
        self._closed = False
        self.previous_clean: bool = self.get_meta("clean_shutdown", True)
        meta = self._dbs["meta"]
        starts = self.get_meta("starts", 0) + 1
        self.writer.write_sync(lambda txn: _put_all(txn, meta, {
            "clean_shutdown": False, "starts": starts, "last_start": time.time()}))

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def env(self) -> lmdb.Environment:
        """The LMDB environment (for ``stat``/``info``; write only through ``writer``)."""
        return self._open()

    def db(self, name: str) -> Any:
        """The handle of a database declared at open time.

        Raises:
            KeyError: ``name`` was not declared.
        """
        return self._dbs[name]

    # --- reads --------------------------------------------------------------------------------

    @contextmanager
    def reading(self, db: str | None = None) -> Iterator[lmdb.Transaction]:
        """A read transaction on the map (a consistent snapshot), held briefly."""
        env = self._open()
        self.gate.enter()
        try:
            with env.begin(db=None if db is None else self._dbs[db], buffers=False) as txn:
                yield txn
        except lmdb.Error as exc:
            raise StorageError(f"store read failed: {exc}") from None
        finally:
            self.gate.leave()

    def get_meta(self, key: str, default: T) -> T:
        return self.get("meta", key.encode(), default)  # type: ignore[no-any-return]

    def get(self, db: str, key: bytes, default: Any = None) -> Any:
        with self.reading(db) as txn:
            raw = txn.get(key)
        return default if raw is None else msgpack.unpackb(raw)

    def items(self, db: str) -> Iterator[tuple[bytes, Any]]:
        """A snapshot of every (key, value) in ``db``."""
        with self.reading(db) as txn:
            rows = [(bytes(k), msgpack.unpackb(v)) for k, v in txn.cursor()]
        return iter(rows)

    # --- writes (synchronous conveniences over the writer) ----------------------------------

    def put_meta(self, key: str, value: object) -> None:
        self.put("meta", key.encode(), value)

    def put(self, db: str, key: bytes, value: object) -> None:
        """Store ``value`` (msgpack-able) durably under ``key``; blocks until durable."""
        self.write_batch({(db, key): value})

    def delete(self, db: str, key: bytes) -> None:
        self.write_batch({(db, key): None})

    def write_batch(self, changes: dict[tuple[str, bytes], object]) -> None:
        """Put (or, for a None value, delete) many keys in one durable write; blocks."""
        self.writer.write_sync(self.batch_fn(changes))

    async def write_batch_async(self, changes: dict[tuple[str, bytes], object]) -> None:
        """``write_batch`` from trio: the event loop goes on while it commits."""
        await self.writer.write(self.batch_fn(changes))

    def batch_fn(self, changes: dict[tuple[str, bytes], object]
                 ) -> Callable[[lmdb.Transaction], None]:
        """The writer function putting (or, for None, deleting) ``changes``."""
        packed = [(self._dbs[db], key, None if v is None else msgpack.packb(v, use_bin_type=True))
                  for (db, key), v in changes.items()]

        def apply(txn: lmdb.Transaction) -> None:
            for handle, key, value in packed:
                if value is None:
                    txn.delete(key, db=handle)
                else:
                    txn.put(key, value, db=handle)

        return apply

    def _open(self) -> lmdb.Environment:
        if self._closed:
            raise StorageError(f"the store at {self.path} is closed")
        return self._env

    def close(self) -> None:
        """Commit what is queued, mark the close clean, flush and close (idempotent)."""
        if self._closed:
            return
        meta = self._dbs["meta"]
        try:
            self.writer.write_sync(lambda txn: _put_all(txn, meta, {"clean_shutdown": True}))
        except StorageError as exc:
            log.error("storage: cannot mark the close clean: %s", exc)
        self.writer.close()
        with self.gate.exclusive():
            self._closed = True
            self._env.sync(True)
            self._env.close()
        log.info("storage closed")


def _put_all(txn: lmdb.Transaction, db: Any, values: dict[str, object]) -> None:
    for key, value in values.items():
        txn.put(key.encode(), msgpack.packb(value), db=db)
