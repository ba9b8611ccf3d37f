"""Task state in LMDB, through the store's group-commit writer. Does I/O.

Database ``tasks``: ``meta`` holds ``[applied, group, machine meta]`` (the decision-log index
the stored state reflects, the coordination group whose log it is, and what the machine holds
besides tasks: ``TaskMachine.meta``); ``t:<id>`` holds one task's msgpack form
(``Task.encode``); ``a:<id>`` the signed announce of a task announced over gossip and not in
the log yet (``_announced``). Each write puts the changed tasks and the new ``meta`` in one
transaction, so the stored state is always the state at exactly ``applied``. State of another
group (the coordination state was dropped, or the node joined another group) is cleared.

The signed-log records of the changes a write stores (``records``) are queued for the log in
the same transaction (``LogService.queue_in``), so they are durable exactly when the state
they describe is: after a crash either both are there (the log appends the records at start)
or neither (the changes are applied again from the decision log, and recorded again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lmdb
import msgpack

from ..errors import StorageError
from ..signedlog.service import LogService
from ..store import Store
from ._model import Task

__all__ = ["DATABASES", "Record", "TaskStore"]

DATABASES = ("tasks",)
_META = b"meta"
_PREFIX = b"t:"
_ANNOUNCED = b"a:"

#: A signed-log record: (entry type, data).
Record = tuple[str, Mapping[str, Any]]


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


class TaskStore:
    """Reads and writes one node's task state in its ``Store``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store.db("tasks")

    def load(self, group: bytes | None) -> tuple[int, list[Task], dict[str, Any] | None]:
        """(applied index, tasks, machine meta) as stored for ``group``; (0, [], None) for none
        or another group.

        Raises:
            StorageError: a record does not decode (the store is damaged).
        """
        with self._store.reading() as txn:
            meta = txn.get(_META, db=self._db)
            rows = [bytes(v) for k, v in txn.cursor(db=self._db) if bytes(k).startswith(_PREFIX)]
        if meta is None:
            return 0, [], None
        try:
            applied, stored_group, *rest = msgpack.unpackb(meta, strict_map_key=False)
            if group is None or stored_group != group:
                return 0, [], None
            tasks = [Task.decode(msgpack.unpackb(raw, strict_map_key=False)) for raw in rows]
            machine_meta = rest[0] if rest else None
            if machine_meta is not None and not isinstance(machine_meta, dict):
                raise TypeError("machine meta: not a map")
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise StorageError(f"task store: a record does not decode: {exc}") from None
        return int(applied), tasks, machine_meta

    def load_announced(self) -> list[bytes]:
        """The stored announces of tasks not in the log yet (``_announced`` checks them)."""
        with self._store.reading() as txn:
            return [bytes(v) for k, v in txn.cursor(db=self._db)
                    if bytes(k).startswith(_ANNOUNCED)]

    async def save(self, applied: int, group: bytes | None, tasks: Sequence[Task], *,
                   replace: bool = False, removed: Sequence[str] = (),
                   meta: dict[str, Any] | None = None,
                   announced: Sequence[tuple[str, bytes]] = (),
                   unannounced: Sequence[str] = (), records: Sequence[Record] = (),
                   log: LogService | None = None) -> None:
        """Store ``tasks`` (all of them when ``replace``) without ``removed`` as the state at
        ``applied``, with the machine's ``meta``; the announces ``announced`` (ID, command;
        all of them when ``replace``) without ``unannounced``; and queue ``records`` (in
        order) for ``log``, which is woken once they are durable."""
        await self._store.writer.write(self.save_fn(applied, group, tasks, replace=replace,
                                                    removed=removed, meta=meta,
                                                    announced=announced,
                                                    unannounced=unannounced,
                                                    records=records, log=log))
        if records and log is not None:
            log.wake()

    def save_fn(self, applied: int, group: bytes | None, tasks: Sequence[Task], *,
                replace: bool = False, removed: Sequence[str] = (),
                meta: dict[str, Any] | None = None,
                announced: Sequence[tuple[str, bytes]] = (),
                unannounced: Sequence[str] = (), records: Sequence[Record] = (),
                log: LogService | None = None) -> Callable[[lmdb.Transaction], None]:
        """``save``'s write function (the caller wakes ``log`` after it committed)."""
        rows = [(_PREFIX + t.id.encode(), _pack(t.encode())) for t in tasks]
        rows += [(_ANNOUNCED + task_id.encode(), command) for task_id, command in announced]
        gone = [_PREFIX + task_id.encode() for task_id in removed]
        gone += [_ANNOUNCED + task_id.encode() for task_id in unannounced]
        meta_row = _pack([applied, group, meta])
        db = self._db

        def apply(txn: lmdb.Transaction) -> None:
            if replace:
                txn.drop(db, delete=False)
            for key in gone:
                txn.delete(key, db=db)
            for key, value in rows:
                txn.put(key, value, db=db)
            txn.put(_META, meta_row, db=db)
            if log is not None:
                for type_, data in records:
                    log.queue_in(txn, type_, data)

        return apply

    def clear(self) -> None:
        """Drop every stored task (blocks; at start)."""
        db = self._db
        self._store.writer.write_sync(lambda txn: txn.drop(db, delete=False))
