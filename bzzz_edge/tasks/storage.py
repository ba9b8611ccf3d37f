"""Task state in LMDB, through the store's group-commit writer. Does I/O.

Database ``tasks``: ``meta`` holds ``[applied, group]`` (the decision-log index the stored
state reflects and the coordination group whose log it is); ``t:<id>`` holds one task's
msgpack form (``Task.encode``). Each write puts the changed tasks and the new ``meta`` in one
transaction, so the stored state is always the state at exactly ``applied``. State of another
group (the coordination state was dropped, or the node joined another group) is cleared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lmdb
import msgpack

from ..errors import StorageError
from ..store import Store
from ._model import Task

__all__ = ["DATABASES", "TaskStore"]

DATABASES = ("tasks",)
_META = b"meta"
_PREFIX = b"t:"


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


class TaskStore:
    """Reads and writes one node's task state in its ``Store``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = store.db("tasks")

    def load(self, group: bytes | None) -> tuple[int, list[Task]]:
        """(applied index, tasks) as stored for ``group``; (0, []) for none or another group.

        Raises:
            StorageError: a record does not decode (the store is damaged).
        """
        with self._store.reading() as txn:
            meta = txn.get(_META, db=self._db)
            rows = [bytes(v) for k, v in txn.cursor(db=self._db) if bytes(k).startswith(_PREFIX)]
        if meta is None:
            return 0, []
        try:
            applied, stored_group = msgpack.unpackb(meta)
            if group is None or stored_group != group:
                return 0, []
            tasks = [Task.decode(msgpack.unpackb(raw, strict_map_key=False)) for raw in rows]
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
            raise StorageError(f"task store: a record does not decode: {exc}") from None
        return int(applied), tasks

    async def save(self, applied: int, group: bytes | None, tasks: Sequence[Task], *,
                   replace: bool = False) -> None:
        """Store ``tasks`` (all of them when ``replace``) as the state at ``applied``."""
        await self._store.writer.write(self.save_fn(applied, group, tasks, replace=replace))

    def save_fn(self, applied: int, group: bytes | None, tasks: Sequence[Task], *,
                replace: bool = False) -> Callable[[lmdb.Transaction], None]:
        rows = [(_PREFIX + t.id.encode(), _pack(t.encode())) for t in tasks]
        meta = _pack([applied, group])
        db = self._db

        def apply(txn: lmdb.Transaction) -> None:
            if replace:
                txn.drop(db, delete=False)
            for key, value in rows:
                txn.put(key, value, db=db)
            txn.put(_META, meta, db=db)

        return apply

    def clear(self) -> None:
        """Drop every stored task (blocks; at start)."""
        db = self._db
        self._store.writer.write_sync(lambda txn: txn.drop(db, delete=False))
