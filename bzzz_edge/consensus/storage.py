"""The Raft state of one node: its log, term, vote and snapshot in a write-ahead file
(``_wal``: one write and one fdatasync per durable append), the group record in LMDB. Does I/O.

The write-ahead log lives in ``<store>/raft-wal``. LMDB's database ``raft`` holds ``group``
(the group this node belongs to, see ``service``) and ``owner`` (the node ID and network ID
the state belongs to, see ``claim``). Before this file format, LMDB held the log too
(``raft_log``: one entry per key, the index as 8 big-endian bytes; ``hard`` and ``snapshot``
in ``raft``): a data dir of that kind is migrated on first open (``_open``), atomically (the
new log is built aside, synced and renamed into place before the old records are cleared).

``write`` performs ``Persist`` actions exactly as ``DurableState`` (the contract's reference
model) does, several in one record: one sync for a batch; in the caller's thread when that
is quick, else handed to the log's own thread.
"""

from __future__ import annotations

import logging
import shutil
import struct
import time
from collections.abc import Sequence
from pathlib import Path

import lmdb
import msgpack

from ..errors import DecodeError, StorageError
from ..store import Store
from ._events import Persist
from ._messages import Entry, Limits, _decode_entry
from ._storage import Stored
from ._wal import RaftWal
from ._wal_files import sync_dir as _sync_dir
from ._wal_snapshot import decode_snapshot
from ._wal_steps import pack as _pack
from ._wal_steps import steps_of
from ._wal_worker import WalPending, WalWorker

__all__ = ["DATABASES", "INLINE_MAX_SECONDS", "RaftStore"]

log = logging.getLogger(__name__)

DATABASES = ("raft", "raft_log")
_INDEX = struct.Struct(">Q")
# The most a write made in the caller's thread (``write``) may carry. That thread is the
# event loop's: while it copies and syncs, SWIM, RPCs and HTTP wait. Log entries of ordinary
# commands fit many times over; a snapshot (up to 64 MiB installed from a leader) or a
# segment's roll goes to the log's thread.
_INLINE_MAX_BYTES = 256 * 1024
# Writes are made in the caller's thread only while syncs take less than this (an average of
# recent ones): a slow disk (an SD card's sync takes milliseconds) would block the event loop.
INLINE_MAX_SECONDS = 0.002
# Our own records: only the format is checked on reading, not a peer's limits.
_OWN = Limits(max_entries=1 << 30, max_command_bytes=1 << 30, max_snapshot_bytes=1 << 40)
_LMDB_STATE = (b"hard", b"snapshot")  # the log's records in ``raft`` before the WAL


class RaftStore:
    """Reads and writes one node's Raft state (see the module docstring).

    Args:
        store: the node's store (``DATABASES`` declared).
        wal_dir: where the write-ahead log lives (default ``<store>/raft-wal``).
    """

    def __init__(self, store: Store, *, wal_dir: Path | None = None) -> None:
        self._store = store
        self._meta = store.db("raft")
        self._log = store.db("raft_log")
        self.wal_dir = wal_dir if wal_dir is not None else store.path / "raft-wal"
        self._wal: RaftWal | None = None  # opened at first use (``claim`` may drop it first)
        self._worker = WalWorker()
        self._handed: WalPending | None = None  # the last write handed to the log's thread
        self._recent_sync = 0.0  # seconds, a moving average of inline writes
        self.inline_max_seconds = INLINE_MAX_SECONDS
        self.inline_writes = 0
        self.handed_writes = 0
        self._closed = False

    # --- reading (at start, and for the API) --------------------------------------------------

    def group(self) -> bytes | None:
        """The group this node belongs to, or None if it never joined or founded one."""
        value = self._store.get("raft", b"group")
        return value if isinstance(value, bytes) else None

    def load(self) -> Stored:
        """Everything the core needs to restart.

        Raises:
            StorageError: the log cannot be read, or a synced record is corrupt.
        """
        return self._open().stored()

    def entries(self, start: int, limit: int) -> list[Entry]:
        """Up to ``limit`` stored entries from index ``start`` on (compacted ones are gone)."""
        return self._open().entries(start, limit)

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
        if foreign:
            self._open().reset()  # before the owner changes: a crash between drops it again
        meta, log_db = self._meta, self._log

        def apply(txn: lmdb.Transaction) -> None:
            if foreign:
                txn.drop(meta, delete=False)
                txn.drop(log_db, delete=False)
            txn.put(b"owner", _pack(owner), db=meta)

        self._store.writer.write_sync(apply)
        return foreign

    async def set_group(self, group: bytes) -> None:
        await self._store.writer.write(lambda txn: txn.put(b"group", _pack(group),
                                                           db=self._meta))

    async def persist(self, actions: Sequence[Persist]) -> None:
        """Make ``actions`` durable, in order, in one record."""
        pending = self.write(actions)
        if pending is not None:
            await pending.result()

    def persist_sync(self, actions: Sequence[Persist]) -> None:
        """``persist`` in the calling thread, blocking (start-up, tests)."""
        wal = self._open()
        with wal.lock:
            wal.append(actions)

    def start(self, actions: Sequence[Persist]) -> WalPending:
        """``persist`` in two steps: handed to the log's thread now (its sync runs while the
        caller goes on), durable once ``result()`` returns."""
        wal = self._open()
        steps = steps_of(actions)
        timed = not any(p.snapshot is not None for p in actions)

        def append() -> None:
            with wal.lock:
                began = time.perf_counter()
                wal.append(actions, steps)
                if timed:  # (a write handed over for a slow disk must be able to bring
                    # the average back down, or no write would be inline again)
                    self._took(time.perf_counter() - began)

        self._handed = self._worker.start(append)
        self.handed_writes += 1
        return self._handed

    def write(self, actions: Sequence[Persist]) -> WalPending | None:
        """``persist`` without waiting when it can: made in the calling thread when it is
        quick (None: durable on return), else handed over as by ``start`` (the write
        pending). Only writes without a snapshot, up to ``_INLINE_MAX_BYTES``, that fit in
        the segment, behind no write still handed over, while recent syncs were quick, are
        made inline."""
        wal = self._open()
        if any(p.snapshot is not None for p in actions) or \
                self._recent_sync > self.inline_max_seconds or \
                (self._handed is not None and not self._handed.done):
            return self.start(actions)
        steps = steps_of(actions)
        payload = _pack(steps)
        if len(payload) > _INLINE_MAX_BYTES or not wal.fits(len(payload)) or \
                not wal.lock.acquire(blocking=False):
            return self.start(actions)
        try:
            began = time.perf_counter()
            wal.append(actions, steps, payload)
            self._took(time.perf_counter() - began)
            self.inline_writes += 1
        finally:
            wal.lock.release()
        return None

    def _took(self, seconds: float) -> None:
        """A write's time, into the moving average ``write`` decides on (one store in the
        log's thread or the caller's, under the log's lock: no update is lost)."""
        self._recent_sync += (seconds - self._recent_sync) / 8

    def close(self) -> None:
        """Finish the writes handed over and close the log's file (idempotent); reads and
        writes fail from then on, as the store's do once it is closed."""
        self._closed = True
        self._worker.close()
        if self._wal is not None:
            self._wal.close()
            self._wal = None

    # --- the log's files ----------------------------------------------------------------------

    def _open(self) -> RaftWal:
        if self._wal is not None:
            return self._wal
        if self._closed:
            raise StorageError(f"the raft log at {self.wal_dir} is closed")
        if not RaftWal.exists(self.wal_dir):
            self._create()
        self._wal = RaftWal(self.wal_dir)
        if self._lmdb_holds_log():  # migrated, but stopped before the old records went
            self._clear_lmdb_log()
        return self._wal

    def _create(self) -> None:
        """The log's directory, with what LMDB held of the log before (if anything): built
        aside, synced, and renamed into place whole."""
        old = self._lmdb_load()
        aside = self.wal_dir.with_name(self.wal_dir.name + ".new")
        try:
            for leftover in (aside, self.wal_dir):  # a directory without a segment: unused
                if leftover.exists():
                    shutil.rmtree(leftover)
            wal = RaftWal(aside)
            if old.entries or old.snapshot is not None or old.term:
                wal.adopt(old)
            wal.close()
            aside.rename(self.wal_dir)
            _sync_dir(self.wal_dir.parent)
        except OSError as exc:
            raise StorageError(f"raft log: cannot create {self.wal_dir}: {exc}") from None
        if old.entries or old.snapshot is not None or old.term:
            log.info("raft log: moved %d entries%s and term %d from LMDB to the write-ahead "
                     "log at %s", len(old.entries),
                     " and a snapshot" if old.snapshot is not None else "", old.term,
                     self.wal_dir)

    def _lmdb_holds_log(self) -> bool:
        with self._store.reading() as txn:
            if any(txn.get(key, db=self._meta) is not None for key in _LMDB_STATE):
                return True
            return txn.cursor(db=self._log).first()

    def _clear_lmdb_log(self) -> None:
        meta, log_db = self._meta, self._log

        def apply(txn: lmdb.Transaction) -> None:
            for key in _LMDB_STATE:
                txn.delete(key, db=meta)
            txn.drop(log_db, delete=False)

        self._store.writer.write_sync(apply)

    def _lmdb_load(self) -> Stored:
        """The log as LMDB held it before the write-ahead log (empty on a new node)."""
        try:
            with self._store.reading() as txn:
                hard = txn.get(b"hard", db=self._meta)
                snap_raw = txn.get(b"snapshot", db=self._meta)
                rows = [bytes(v) for _, v in txn.cursor(db=self._log)]
            term, vote = msgpack.unpackb(hard) if hard is not None else (0, None)
            snapshot = decode_snapshot(msgpack.unpackb(snap_raw)) if snap_raw else None
            entries = tuple(_decode_entry(msgpack.unpackb(raw), "stored", _OWN) for raw in rows)
        except (DecodeError, ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageError(f"raft store: a record does not decode: {exc}") from None
        return Stored(int(term), vote, snapshot, entries)


def lmdb_key(index: int) -> bytes:
    """An entry's key in the LMDB log of earlier versions (tests write one to migrate)."""
    return _INDEX.pack(index)
