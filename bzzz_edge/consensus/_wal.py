"""The Raft log's write-ahead file: one write and one fdatasync per durable append. Does I/O.

Why not LMDB: a synced LMDB commit syncs twice (its data pages, then its meta page) and its
transaction costs CPU; a follower's acknowledgement and the leader's own count wait for it on
every commit. ``benchmarks/bench_raft_sync.py`` on this machine: 0.21 ms against 0.09 ms per
durable append alone, 0.53 against 0.21 ms with five processes syncing on one disk (p50).

Layout, in the directory ``<store>/raft-wal``:

- one segment ``<seq>.wal`` (16 hex digits), preallocated with zeros, so a sync never also
  journals a size change or an extent conversion. It holds records back to back
  (``_wal_record``: the frame, and what a torn write may leave); the first is a checkpoint
  (the whole live state: snapshot mark, entries, term and vote, ``_wal_steps``), so a segment
  stands alone. When a record does not fit, the next segment is written whole under a
  temporary name (checkpoint of the live log, streamed, then the record), synced, renamed,
  the directory synced, and the old segment removed: that is the compaction (the log is
  bounded by the core's snapshots, so a checkpoint is too);
- ``snapshot``: the latest snapshot (``_wal_snapshot``), replaced by rename (written and
  synced before the record that marks it).

On open the segment is replayed: a torn tail (a write never synced, so never acknowledged)
is zeroed with a warning; corruption of something that was synced is refused
(``StorageError``), since going on would lose acknowledged entries. A segment of format 1
(``_wal_v1``, written up to 5a02428) is read with its own rules and rolled at once into a
format-2 segment; one of a later format is refused, saying so.

Threads: ``append`` runs in the caller's thread (the driver's, inline) or in the log's own
(``_wal_worker``); one lock keeps them apart, and the caller keeps them in order (see
``RaftStore.write``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgpack

from ..errors import DecodeError, StorageError
from ._events import Persist
from ._messages import Entry, Snapshot
from ._storage import Stored
from ._wal_files import read_all, sync_dir, write_all, write_record, zero_fill
from ._wal_record import (
    HEAD_BYTES,
    MAX_RECORD,
    SALT_BYTES,
    Framing,
    check_tear,
    frame,
    no_checkpoint,
    records,
    used,
)
from ._wal_snapshot import SNAPSHOT, read_snapshot, write_snapshot
from ._wal_steps import STEP_RESET, WalState, pack, steps_of
from ._wal_v1 import segment_format

__all__ = ["SEGMENT_BYTES", "RaftWal"]

log = logging.getLogger(__name__)

SEGMENT_BYTES = 4 * 1024 * 1024


class RaftWal:
    """One node's Raft log and hard state in a write-ahead file, and its snapshot beside it.

    Raises (on open):
        StorageError: the directory cannot be used, or a synced record is corrupt.
    """

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.lock = threading.Lock()  # held by a writer for the files (and its sync)
        self._state_lock = threading.Lock()  # for the in-memory state only: a reader never
        # waits for a sync (a snapshot written in the log's thread takes milliseconds)
        self._state = WalState()
        self._snapshot: Snapshot | None = None
        self._fd = -1
        self._seq = 0
        self._offset = 0
        self._size = 0
        self._salt = b""  # the current segment's
        self._broken: str | None = None
        self.syncs = 0
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            for stale in directory.glob("*.tmp"):
                stale.unlink()  # a segment or snapshot never renamed: never in force
            self._snapshot = read_snapshot(directory)
            segments = sorted(directory.glob("*.wal"))
            if segments:
                # The newest was renamed only once synced, with a checkpoint first; older
                # ones are left by a crash before their removal (removed only once the
                # newest opened: if it is refused, the operator still has them).
                version = self._open_segment(segments[-1])
                for old in segments[:-1]:
                    old.unlink()
                if version == 1:
                    self._roll([])
                    log.info("raft log %s: rewritten from format 1 into %016x.wal (format 2)",
                             segments[-1], self._seq)
            else:
                self._roll([])
        except OSError as exc:
            raise StorageError(f"raft log at {directory}: {exc}") from None

    @staticmethod
    def exists(directory: Path) -> bool:
        return directory.is_dir() and any(directory.glob("*.wal"))

    # --- reading ----------------------------------------------------------------------------------

    def stored(self) -> Stored:
        """What a restarting core is built from. Entries after the snapshot are kept only if
        they continue it (a crash between storing a snapshot and recording it leaves the
        log it replaced: the snapshot wins, as it would have)."""
        with self._state_lock:
            state = self._state
            snap = self._snapshot
            entries = state.ordered()
            term, vote = state.term, state.vote
            mark = state.mark
            held = state.entries.get(snap.index) if snap is not None else None
        if snap is not None and entries and entries[-1].index > snap.index:
            continues = held.term == snap.term if held is not None else \
                mark == (snap.index, snap.term) and entries[0].index == snap.index + 1
            if not continues:
                log.warning("raft log: the entries after snapshot %d do not continue it "
                            "(stopped between storing it and recording it): dropped",
                            snap.index)
                entries = tuple(e for e in entries if e.index <= snap.index)
        return Stored(term, vote, snap, entries)

    def entries(self, start: int, limit: int) -> list[Entry]:
        out: list[Entry] = []
        with self._state_lock:
            held = self._state.entries
            index = max(start, self._state.first)
            while len(out) < limit and (entry := held.get(index)) is not None:
                out.append(entry)
                index += 1
        return out

    @property
    def last_index(self) -> int:
        state = self._state
        return state.last if state.entries else 0

    # --- writing ----------------------------------------------------------------------------------

    def fits(self, size: int) -> bool:
        """Whether a record of ``size`` payload bytes goes into the segment without a roll."""
        return self._offset + HEAD_BYTES + size <= self._size

    def append(self, actions: Sequence[Persist], steps: list[list[Any]] | None = None,
               payload: bytes | None = None) -> None:
        """Make ``actions`` durable: snapshots stored first, then one record, synced. Call
        with ``lock`` held (``steps``: ``steps_of(actions)``, ``payload``: them packed, if
        the caller made them).

        Raises:
            StorageError: a write or sync failed (not acknowledged; the log refuses writes
                until reopened), or the actions would leave a gap in the log (refused before
                anything is written; the log goes on).
        """
        if self._broken is not None:
            raise StorageError(f"raft log at {self.directory}: refusing writes after an earlier "
                               f"failure ({self._broken}); reopen it")
        if steps is None:
            steps = steps_of(actions)
        entries = [e for p in actions for e in p.entries]
        try:
            self._state.check(steps, entries)  # (refused before anything is written)
        except DecodeError as exc:
            raise StorageError(f"{exc}; not written") from None
        doing = "storing a snapshot"
        try:
            for p in actions:
                if p.snapshot is not None:
                    self._write_snapshot(p.snapshot)
            data = payload if payload is not None else pack(steps)
            if len(data) >= MAX_RECORD:
                raise StorageError("raft log: a record over 2 GiB")
            if not self.fits(len(data)):
                doing = f"rolling into segment {self._seq + 1:016x}.wal"
                self._roll([data])
            else:
                doing = (f"writing a record of {HEAD_BYTES + len(data)} bytes at offset "
                         f"{self._offset} of {self._seq:016x}.wal")
                write_all(self._fd, frame(data, self._salt), self._offset)
                os.fdatasync(self._fd)
                self.syncs += 1
                self._offset += HEAD_BYTES + len(data)
            with self._state_lock:
                self._state.apply_steps(steps, entries)
        except OSError as exc:
            # Nothing more is written: after a failed write or sync what the file holds is
            # unknown (a record cut short would leave a hole before the next one); reopening
            # replays what is there and truncates a torn tail.
            self._broken = f"{doing}: {exc}"
            raise StorageError(f"raft log at {self.directory}: {doing} failed ({exc}); not "
                               "acknowledged, and the log refuses writes until reopened"
                               ) from None
        except DecodeError as exc:
            raise StorageError(f"raft log: {exc}") from None

    def reset(self) -> None:
        """Forget everything (the state of another identity or network)."""
        with self.lock:
            try:
                snap = self.directory / SNAPSHOT
                if snap.exists():
                    snap.unlink()
                with self._state_lock:
                    self._snapshot = None
                    self._state = WalState()
                self._roll([])
            except OSError as exc:
                self._broken = f"reset: {exc}"
                raise StorageError(f"raft log at {self.directory}: reset failed ({exc}); the "
                                   "log refuses writes until reopened") from None

    def close(self) -> None:
        with self.lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            self._broken = "closed"

    # --- files --------------------------------------------------------------------------------

    def _open_segment(self, path: Path) -> int:
        """Replay the segment at ``path`` (a torn tail zeroed) and make it current; its
        format's version."""
        fd = os.open(path, os.O_RDWR)
        try:
            data = read_all(fd)
            framing = segment_format(path, data)
            state, offset = self._replay(path, fd, data, framing)
            size = max(len(data), self.segment_bytes)
            if len(data) < size:  # cut short (a copy, a truncation): preallocated again
                zero_fill(fd, len(data), size)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._seq, self._offset, self._size = fd, int(path.stem, 16), offset, size
        self._salt = framing.salt
        self._state = state
        return framing.version

    @staticmethod
    def _replay(path: Path, fd: int, data: bytes, framing: Framing) -> tuple[WalState, int]:
        """The state the records of a segment leave, and the offset after the last (a torn
        tail after it zeroed: each write is synced before the next is made, so only the last
        can be torn, and nothing was written after it)."""
        state = WalState()
        end = 0
        for offset, payload, after in records(data, framing):
            try:
                steps = msgpack.unpackb(payload)
                if not isinstance(steps, list):
                    raise DecodeError("a record is not a list of steps")
                if offset == 0 and steps[:1] != [[STEP_RESET]]:
                    raise StorageError(no_checkpoint(path, "its first record is not a "
                                                           "checkpoint"))
                state.apply_steps(steps, None)
            except (DecodeError, ValueError, TypeError, IndexError,
                    msgpack.UnpackException) as exc:
                raise StorageError(f"raft log {path}: record at offset {offset} passes its "
                                   f"CRC but does not decode ({exc}); refusing to start"
                                   ) from None
            end = after
        if used(data) > end:  # a record cut short or failing its CRC, or bytes after zeros
            check_tear(path, data, end, framing)
            log.warning("raft log %s: a torn or corrupt record at offset %d (%d bytes to the "
                        "end of what was written; a write never synced, so never "
                        "acknowledged): zeroed", path, end, used(data) - end)
            zero_fill(fd, end, len(data))
            os.fdatasync(fd)
        return state, end

    def _roll(self, payloads: list[bytes]) -> None:
        """Start the next segment, with a new salt: a checkpoint of the live state, then a
        record of each of ``payloads``; written whole under a temporary name and synced before
        it replaces the current one. Room after them for ``segment_bytes`` of records, or as
        much as they take when more: each roll rewrites the live log, so a large one (a snapshot
        trails far behind) rolls after as many bytes as it holds, not after every
        ``segment_bytes`` (about 2x write amplification instead of live/segment_bytes)."""
        salt = os.urandom(SALT_BYTES)
        seq = self._seq + 1
        final = self.directory / f"{seq:016x}.wal"
        temp = final.with_suffix(".tmp")
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            end = write_record(fd, 0, salt, self._state.checkpoint())
            for payload in payloads:
                end = write_record(fd, end, salt, (payload,))
            size = end + max(self.segment_bytes, end)
            zero_fill(fd, end, size)
            os.fsync(fd)
            os.rename(temp, final)
            sync_dir(self.directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()  # (never in force: opening would remove it too)
            raise
        old, self._fd = self._fd, fd
        old_path = self.directory / f"{self._seq:016x}.wal"
        self._seq, self._offset, self._size, self._salt = seq, end, size, salt
        self.syncs += 1
        if old >= 0:
            os.close(old)
            if old_path.exists():
                # Not synced: the new segment's name is, and if the removal is lost in a
                # crash, opening removes every segment older than the newest.
                old_path.unlink()

    def _write_snapshot(self, snap: Snapshot) -> None:
        write_snapshot(self.directory, snap)
        with self._state_lock:
            self._snapshot = snap

    def adopt(self, stored: Stored) -> None:
        """Take ``stored`` (the state of the LMDB log, at migration) as the whole state."""
        with self.lock:
            if stored.snapshot is not None:
                self._write_snapshot(stored.snapshot)
            state = WalState()
            state.term, state.vote = stored.term, stored.vote
            if stored.snapshot is not None:
                state.mark = (stored.snapshot.index, stored.snapshot.term)
            for entry in stored.entries:
                state._put(entry)
            with self._state_lock:
                self._state = state
            self._roll([])
