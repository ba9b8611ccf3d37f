"""The Raft log, term, vote, snapshot and group record in LMDB, through the group-commit
writer. Does I/O.

Layout: database ``raft`` holds ``hard`` (``[term, vote]``), ``snapshot`` (``[index, term,
config, data]``), ``group`` (the group this node belongs to, see ``service``) and ``owner``
(the node ID and network ID the state belongs to, see ``claim``); database
``raft_log`` holds one entry per key, the index as 8 big-endian bytes (so a cursor walks the
log in order), the value the entry's wire form. ``persist_fn`` performs ``Persist`` actions
exactly as ``DurableState`` (the contract's reference model) does, several in one
transaction: one sync for a batch. Encoding happens in the caller's thread, so the writer
thread only copies bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import lmdb
import msgpack

from ..errors import DecodeError, StorageError
from ..store import Store
from ..store._writer import PendingWrite
from ._events import Persist
from ._messages import Entry, Limits, Snapshot, _decode_entry, _encode_entry, decode_configuration
from ._storage import Stored

__all__ = ["DATABASES", "RaftStore"]

DATABASES = ("raft", "raft_log")
_INDEX = struct.Struct(">Q")
# The most a write committed in the caller's thread (``write``) may carry. That thread is the
# event loop's: while it copies and syncs, SWIM, RPCs and HTTP wait. Log entries of ordinary
# commands fit many times over; a snapshot (up to 64 MiB installed from a leader), a
# truncation or a compaction (thousands of deletions) goes to the writer's thread.
_INLINE_MAX_BYTES = 256 * 1024
# Our own records: only the format is checked on reading, not a peer's limits.
_OWN = Limits(max_entries=1 << 30, max_command_bytes=1 << 30, max_snapshot_bytes=1 << 40)


def _key(index: int) -> bytes:
    return _INDEX.pack(index)


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


class RaftStore:
    """Reads and writes one node's Raft state in its ``Store``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._meta = store.db("raft")
        self._log = store.db("raft_log")

    # --- reading (at start, and for the API) --------------------------------------------------

    def group(self) -> bytes | None:
        """The group this node belongs to, or None if it never joined or founded one."""
        value = self._store.get("raft", b"group")
        return value if isinstance(value, bytes) else None

    def load(self) -> Stored:
        """Everything the core needs to restart.

        Raises:
            StorageError: a record does not decode (the store is damaged).
        """
        try:
            with self._store.reading() as txn:
                hard = txn.get(b"hard", db=self._meta)
                snap_raw = txn.get(b"snapshot", db=self._meta)
                rows = [bytes(v) for _, v in txn.cursor(db=self._log)]
            term, vote = msgpack.unpackb(hard) if hard is not None else (0, None)
            snapshot = _decode_snapshot(msgpack.unpackb(snap_raw)) if snap_raw else None
            entries = tuple(_decode_entry(msgpack.unpackb(raw), "stored", _OWN) for raw in rows)
        except (DecodeError, ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageError(f"raft store: a record does not decode: {exc}") from None
        return Stored(int(term), vote, snapshot, entries)

    def entries(self, start: int, limit: int) -> list[Entry]:
        """Up to ``limit`` stored entries from index ``start`` on (compacted ones are gone)."""
        out: list[Entry] = []
        with self._store.reading() as txn:
            cursor = txn.cursor(db=self._log)
            if not cursor.set_range(_key(max(start, 0))):
                return out
            for _, raw in cursor:
                out.append(_decode_entry(msgpack.unpackb(raw), "stored", _OWN))
                if len(out) >= limit:
                    break
        return out

    # --- writing --------------------------------------------------------------------------------

    def claim(self, owner: bytes) -> bool:
        """Make the stored state ``owner``'s (node ID + network ID), at start; blocks.

        State left by another identity or network (``init --force`` over a data dir that ran
        a node) is dropped: its group's voters name a node that no longer exists, and a node
        holding it would wait for ever in a group of strangers. True when that happened.
        """
        held = self._store.get("raft", b"owner")
        if held == owner:
            return False
        foreign = held is not None
        meta, log = self._meta, self._log

        def apply(txn: lmdb.Transaction) -> None:
            if foreign:
                txn.drop(meta, delete=False)
                txn.drop(log, delete=False)
            txn.put(b"owner", _pack(owner), db=meta)

        self._store.writer.write_sync(apply)
        return foreign

    async def set_group(self, group: bytes) -> None:
        await self._store.writer.write(lambda txn: txn.put(b"group", _pack(group),
                                                           db=self._meta))

    async def persist(self, actions: Sequence[Persist]) -> None:
        """Make ``actions`` durable, in order, in one transaction."""
        await self.start(actions).result()

    def start(self, actions: Sequence[Persist]) -> PendingWrite:
        """``persist`` in two steps: queued with the writer now (its sync starts while the
        caller goes on), durable once ``result()`` returns."""
        return self._store.writer.start(self.persist_fn(actions))

    def write(self, actions: Sequence[Persist]) -> PendingWrite | None:
        """``persist`` without waiting when it can: committed in the calling thread when the
        writer allows it (``Writer.write_now``: None, durable on return), else queued as by
        ``start`` (the write pending). Call it only when no earlier write of ours is still
        queued: an inline commit would overtake it. Only entries and the hard state, up to
        ``_INLINE_MAX_BYTES``, are committed inline; anything else goes to the writer."""
        steps = self._steps(actions)
        fn = self._apply_fn(steps)
        if _small_appends(steps):
            done, _ = self._store.writer.write_now(fn)
            if done:
                return None
        return self._store.writer.start(fn)

    def persist_fn(self, actions: Sequence[Persist]) -> Callable[[lmdb.Transaction], None]:
        """The writer function performing ``actions`` (encoded here, applied there)."""
        return self._apply_fn(self._steps(actions))

    @staticmethod
    def _steps(actions: Sequence[Persist]) -> list[tuple[Any, ...]]:
        """``actions`` encoded, as the steps of one transaction."""
        steps: list[tuple[Any, ...]] = []
        for p in actions:
            if p.snapshot is not None:
                s = p.snapshot
                steps.append(("snap", _pack([s.index, s.term, s.config.encode(), s.data])))
            if p.truncate_from is not None:
                steps.append(("truncate", _key(p.truncate_from)))
            if p.compact_through is not None:
                steps.append(("compact", _key(p.compact_through)))
            steps.extend(("put", _key(e.index), _pack(_encode_entry(e))) for e in p.entries)
        if actions:
            last = actions[-1]
            steps.append(("hard", _pack([last.term, last.vote])))
        return steps

    def _apply_fn(self, steps: list[tuple[Any, ...]]) -> Callable[[lmdb.Transaction], None]:
        meta, log = self._meta, self._log

        def apply(txn: lmdb.Transaction) -> None:
            for step in steps:
                kind = step[0]
                if kind == "put":
                    txn.put(step[1], step[2], db=log)
                elif kind == "hard":
                    txn.put(b"hard", step[1], db=meta)
                elif kind == "snap":
                    txn.put(b"snapshot", step[1], db=meta)
                elif kind == "truncate":
                    cursor = txn.cursor(db=log)
                    if cursor.set_range(step[1]):
                        while cursor.delete():
                            pass
                else:  # compact: delete every key up to and including step[1]
                    cursor = txn.cursor(db=log)
                    if cursor.first():
                        while cursor.key() and bytes(cursor.key()) <= step[1]:
                            if not cursor.delete():
                                break

        return apply


def _small_appends(steps: list[tuple[Any, ...]]) -> bool:
    """Only entries and the hard state, and few bytes of them: a write fit to commit inline."""
    size = 0
    for step in steps:
        if step[0] == "put":
            size += len(step[2])
        elif step[0] != "hard":
            return False
    return size <= _INLINE_MAX_BYTES


def _decode_snapshot(value: object) -> Snapshot:
    if not isinstance(value, list) or len(value) != 4:
        raise DecodeError("raft store: snapshot is not [index, term, config, data]")
    index, term, config, data = value
    if not isinstance(index, int) or not isinstance(term, int) or not isinstance(data, bytes):
        raise DecodeError("raft store: snapshot fields have the wrong types")
    return Snapshot(index, term, decode_configuration(config, "snapshot.config"), data)
