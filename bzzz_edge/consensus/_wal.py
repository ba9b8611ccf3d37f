"""The Raft log's write-ahead file: one write and one fdatasync per durable append. Does I/O.

Why not LMDB: a synced LMDB commit syncs twice (its data pages, then its meta page) and its
transaction costs CPU; a follower's acknowledgement and the leader's own count wait for it on
every commit. ``benchmarks/bench_raft_sync.py`` on this machine: 0.21 ms against 0.09 ms per
durable append alone, 0.53 against 0.21 ms with five processes syncing on one disk (p50).

Layout, in the directory ``<store>/raft-wal``:

- one segment ``<seq>.wal`` (16 hex digits), preallocated with zeros, so a sync never also
  journals a size change or an extent conversion. It holds records back to back; the first
  is a checkpoint (the whole live state: snapshot mark, entries, term and vote), so a segment
  stands alone. When a record does not fit, the next segment is written whole under a
  temporary name (checkpoint of the live log, streamed, then the record), synced, renamed,
  the directory synced, and the old segment removed: that is the compaction (the log is
  bounded by the core's snapshots, so a checkpoint is too);
- ``snapshot``: the latest snapshot, one record in the format-1 frame (a whole file, never
  scanned), replaced by rename (written and synced before the record that marks it).

A record (format 2): ``MAGIC`` (``BzR2``), the segment's salt (8 random bytes chosen when the
segment is written), the payload's length (u32), CRC-32 of payload, salt and length (u32),
the payload (msgpack: a list of steps, see ``_STEP_*``). The zeros after the last record end
the log. Each write is synced before the next is made, so only the last can be torn, and
nothing was written after it. On open the segment is replayed: a record that is cut short or
whose CRC fails, with no record of the segment after it, is the torn tail of a write that was
never synced (so never acknowledged): it is zeroed and a warning logged. A bad record followed
by a header of the segment (its magic and salt) is corruption of something that was synced:
opening refuses (``StorageError``), since going on would lose acknowledged entries. The salt
is what makes that test exact: no command's bytes (a peer's, inside a torn record) can pass
for a record of the segment, and the scan computes no CRC for them.

Format 1 (``BzRw``, no salt, up to 5a02428) is read on open, with its own rules for a torn
tail, and rolled at once into a format-2 segment.

Threads: ``append`` runs in the caller's thread (the driver's, inline) or in ``WalWorker``'s;
one lock keeps them apart, and the caller keeps them in order (see ``RaftStore.write``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import trio

from ..errors import DecodeError, StorageError
from ._events import Persist
from ._messages import Entry, Limits, Snapshot, _decode_entry, _encode_entry, decode_configuration
from ._storage import Stored

__all__ = ["MAGIC", "SEGMENT_BYTES", "RaftWal", "WalPending", "WalWorker"]

log = logging.getLogger(__name__)

MAGIC = b"BzR2"  # a record of format 2 (the version is in every header)
_HEAD = struct.Struct("<4s8sII")  # magic, segment salt, payload length, CRC-32
_SALT_BYTES = 8
_V1_MAGIC = b"BzRw"  # format 1: a segment written up to 5a02428, and the snapshot's file
_V1_HEAD = struct.Struct("<4sII")  # magic, payload length, crc32(length + payload)
_LEN = struct.Struct("<I")
_CHUNK = 1 << 20  # a checkpoint is written in pieces of about this size
SEGMENT_BYTES = 4 * 1024 * 1024
_MAX_RECORD = 1 << 31
_SNAPSHOT = "snapshot"
# Steps of a record (a list of lists, applied in order as ``DurableState`` applies a Persist).
_STEP_MARK = 0  # [0, index, term]: the snapshot at (index, term) was stored
_STEP_TRUNCATE = 1  # [1, index]: entries from index on are gone
_STEP_COMPACT = 2  # [2, index]: entries up to index are gone
_STEP_ENTRY = 3  # [3, entry]: appended (the entry's wire form)
_STEP_HARD = 4  # [4, term, vote]
_STEP_RESET = 5  # [5]: a checkpoint starts: forget everything before
# Our own records: only the format is checked on reading, not a peer's limits.
_OWN = Limits(max_entries=1 << 30, max_command_bytes=1 << 30, max_snapshot_bytes=1 << 40)


def frame(payload: bytes, salt: bytes) -> bytes:
    """One record of the segment salted ``salt`` as it lies in its file."""
    return _head(salt, len(payload), zlib.crc32(payload)) + payload


def _head(salt: bytes, length: int, payload_crc: int) -> bytes:
    """A record's header (the CRC runs over the payload first: a checkpoint is written
    before its length is known)."""
    return _HEAD.pack(MAGIC, salt, length, zlib.crc32(salt + _LEN.pack(length), payload_crc))


def _parse(data: bytes, at: int, salt: bytes) -> tuple[bytes, int] | None:
    """The payload of a valid record of the segment salted ``salt`` at ``at`` and the offset
    after it; None if not valid."""
    if at + _HEAD.size > len(data):
        return None
    magic, got_salt, length, crc = _HEAD.unpack_from(data, at)
    end = at + _HEAD.size + length
    if magic != MAGIC or got_salt != salt or end > len(data):
        return None
    payload = data[at + _HEAD.size:end]
    if zlib.crc32(salt + _LEN.pack(length), zlib.crc32(payload)) != crc:
        return None
    return payload, end


def _frame_v1(payload: bytes) -> bytes:
    """A format-1 record (the snapshot's file)."""
    length = _LEN.pack(len(payload))
    return _V1_HEAD.pack(_V1_MAGIC, len(payload),
                         zlib.crc32(payload, zlib.crc32(length))) + payload


def _parse_v1(data: bytes, at: int) -> tuple[bytes, int] | None:
    """``_parse`` for a format-1 record."""
    if at + _V1_HEAD.size > len(data):
        return None
    magic, length, crc = _V1_HEAD.unpack_from(data, at)
    end = at + _V1_HEAD.size + length
    if magic != _V1_MAGIC or end > len(data):
        return None
    payload = data[at + _V1_HEAD.size:end]
    if zlib.crc32(payload, zlib.crc32(_LEN.pack(length))) != crc:
        return None
    return payload, end


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def steps_of(actions: Sequence[Persist]) -> list[list[Any]]:
    """The steps recording ``actions`` (their snapshots are stored apart, before)."""
    steps: list[list[Any]] = []
    for p in actions:
        if p.snapshot is not None:
            steps.append([_STEP_MARK, p.snapshot.index, p.snapshot.term])
        if p.truncate_from is not None:
            steps.append([_STEP_TRUNCATE, p.truncate_from])
        if p.compact_through is not None:
            steps.append([_STEP_COMPACT, p.compact_through])
        steps.extend([_STEP_ENTRY, _encode_entry(e)] for e in p.entries)
    if actions:
        steps.append([_STEP_HARD, actions[-1].term, actions[-1].vote])
    return steps


class _State:
    """The log as the records so far leave it (the reference model's rules, ``DurableState``),
    plus the latest snapshot mark."""

    __slots__ = ("entries", "first", "mark", "term", "vote")

    def __init__(self) -> None:
        self.term = 0
        self.vote: bytes | None = None
        self.entries: dict[int, Entry] = {}
        self.first = 0  # the lowest index held (when entries is not empty)
        self.mark: tuple[int, int] | None = None

    @property
    def last(self) -> int:
        return self.first + len(self.entries) - 1

    def apply_steps(self, steps: Iterable[list[Any]], decoded: Sequence[Entry] | None) -> None:
        """Apply recorded steps; ``decoded``: the entries of the ``_STEP_ENTRY`` steps when
        the caller has them (a write), else they are decoded here (a replay)."""
        position = 0
        for step in steps:
            kind = step[0]
            if kind == _STEP_ENTRY:
                if decoded is not None:
                    entry = decoded[position]
                    position += 1
                else:
                    entry = _decode_entry(step[1], "stored", _OWN)
                self._put(entry)
            elif kind == _STEP_HARD:
                term, vote = step[1], step[2]
                if not isinstance(term, int) or not (vote is None or isinstance(vote, bytes)):
                    raise DecodeError("raft log: hard state has the wrong types")
                self.term, self.vote = term, vote
            elif kind == _STEP_TRUNCATE:
                self._drop(max(step[1], self.first), self.last)
            elif kind == _STEP_COMPACT:
                self._drop(self.first, min(step[1], self.last))
            elif kind == _STEP_MARK:
                self.mark = (int(step[1]), int(step[2]))
            elif kind == _STEP_RESET:
                self.__init__()  # type: ignore[misc]
            else:
                raise DecodeError(f"raft log: unknown step {kind!r}")

    def check(self, steps: Iterable[list[Any]], decoded: Sequence[Entry]) -> None:
        """Raise what ``apply_steps`` would raise for a gap, changing nothing: a write is
        checked before it is made (a record on disk that replays into an error would make
        every later open refuse the log).

        Raises:
            DecodeError: an entry would leave a gap, or the hard state has the wrong types.
        """
        empty, first, last = not self.entries, self.first, self.last
        position = 0
        for step in steps:
            kind = step[0]
            if kind == _STEP_ENTRY:
                index = decoded[position].index
                position += 1
                if empty:
                    empty, first, last = False, index, index
                elif first <= index <= last + 1:
                    last = max(last, index)
                else:
                    raise DecodeError(f"raft log: entry {index} leaves a gap after {last}")
            elif kind == _STEP_HARD:
                if not isinstance(step[1], int) or \
                        not (step[2] is None or isinstance(step[2], bytes)):
                    raise DecodeError("raft log: hard state has the wrong types")
            elif kind == _STEP_TRUNCATE:  # (as ``_drop``: from the step's index on)
                if not empty and step[1] <= last:
                    empty = step[1] <= first
                    last = step[1] - 1
            elif kind == _STEP_COMPACT:  # (up to the step's index)
                if not empty and step[1] >= first:
                    empty = step[1] >= last
                    first = step[1] + 1
            elif kind == _STEP_RESET:
                empty = True

    def _put(self, entry: Entry) -> None:
        if self.entries and not self.first <= entry.index <= self.last + 1:
            raise DecodeError(f"raft log: entry {entry.index} leaves a gap after {self.last}")
        if not self.entries:
            self.first = entry.index
        self.entries[entry.index] = entry  # (over an entry held: the model's put)

    def _drop(self, start: int, end: int) -> None:
        if end < start or not self.entries:
            return
        for index in range(start, end + 1):
            self.entries.pop(index, None)
        if not self.entries:
            self.first = 0
        elif start <= self.first:
            self.first = end + 1

    def ordered(self) -> tuple[Entry, ...]:
        return tuple(self.entries[i] for i in range(self.first, self.first + len(self.entries)))

    def checkpoint(self) -> Iterator[bytes]:
        """The steps that rebuild this state from nothing, packed (one msgpack list), in
        pieces: a checkpoint of a large log is never one object in memory. The state must
        not change meanwhile (only the writer changes it, and the writer is the caller)."""
        packer = msgpack.Packer(use_bin_type=True)
        yield packer.pack_array_header(2 + (self.mark is not None) + len(self.entries))
        yield packer.pack([_STEP_RESET])
        if self.mark is not None:
            yield packer.pack([_STEP_MARK, *self.mark])
        for index in range(self.first, self.first + len(self.entries)):
            yield packer.pack([_STEP_ENTRY, _encode_entry(self.entries[index])])
        yield packer.pack([_STEP_HARD, self.term, self.vote])


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
        self._state = _State()
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
            self._snapshot = self._read_snapshot()
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
        return self._offset + _HEAD.size + size <= self._size

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
            data = payload if payload is not None else _pack(steps)
            if len(data) >= _MAX_RECORD:
                raise StorageError("raft log: a record over 2 GiB")
            if not self.fits(len(data)):
                doing = f"rolling into segment {self._seq + 1:016x}.wal"
                self._roll([data])
            else:
                doing = (f"writing a record of {_HEAD.size + len(data)} bytes at offset "
                         f"{self._offset} of {self._seq:016x}.wal")
                _write_all(self._fd, frame(data, self._salt), self._offset)
                os.fdatasync(self._fd)
                self.syncs += 1
                self._offset += _HEAD.size + len(data)
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
                snap = self.directory / _SNAPSHOT
                if snap.exists():
                    snap.unlink()
                with self._state_lock:
                    self._snapshot = None
                    self._state = _State()
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
            data = _read_all(fd)
            _check_checkpoint(path, data)
            if data[:len(MAGIC)] == MAGIC:
                version, salt = 2, data[len(MAGIC):len(MAGIC) + _SALT_BYTES]
            elif data[:len(_V1_MAGIC)] == _V1_MAGIC:
                version, salt = 1, b""
            else:
                raise StorageError(_no_checkpoint(path, "its first record is corrupt, or of a "
                                                        "format this version does not read"))
            state, offset = self._replay(path, fd, data, version, salt)
            size = max(len(data), self.segment_bytes)
            if len(data) < size:  # cut short (a copy, a truncation): preallocated again
                _zero_fill(fd, len(data), size)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._seq, self._offset, self._size = fd, int(path.stem, 16), offset, size
        self._salt = salt
        self._state = state
        return version

    def _replay(self, path: Path, fd: int, data: bytes, version: int,
                salt: bytes) -> tuple[_State, int]:
        """The state the records of a segment leave, and the offset after the last."""
        head = _HEAD.size if version == 2 else _V1_HEAD.size
        state = _State()
        offset = 0
        while True:
            if offset + head > len(data) or not any(data[offset:offset + head]):
                if _used(data) > offset:  # a header cut short, or bytes after zeros
                    self._torn(path, fd, data, offset, salt)
                break
            parsed = _parse(data, offset, salt) if version == 2 else _parse_v1(data, offset)
            if parsed is None:
                self._torn(path, fd, data, offset, salt)
                break
            payload, end = parsed
            try:
                steps = msgpack.unpackb(payload)
                if not isinstance(steps, list):
                    raise DecodeError("a record is not a list of steps")
                if offset == 0 and steps[:1] != [[_STEP_RESET]]:
                    raise StorageError(_no_checkpoint(path, "its first record is not a "
                                                            "checkpoint"))
                state.apply_steps(steps, None)
            except (DecodeError, ValueError, TypeError, IndexError,
                    msgpack.UnpackException) as exc:
                raise StorageError(f"raft log {path}: record at offset {offset} passes its "
                                   f"CRC but does not decode ({exc}); refusing to start"
                                   ) from None
            offset = end
        return state, offset

    def _torn(self, path: Path, fd: int, data: bytes, offset: int, salt: bytes) -> None:
        """A record at ``offset`` is cut short or fails its CRC: zero it and what follows, if
        no record written after it follows (else refuse: that would lose synced records).
        The first record (the checkpoint) was synced before the segment got its name: never
        torn. ``salt``: the segment's (empty: format 1)."""
        if offset == 0:
            raise StorageError(_no_checkpoint(path, "its checkpoint is corrupt"))
        later = _later_header(data, offset, salt) if salt else _later_chain_v1(data, offset)
        if later is not None:
            raise StorageError(
                f"raft log {path}: the record at offset {offset} is corrupt and records "
                f"written after it follow (from offset {later}), so it was synced and "
                "acknowledged entries would be lost; refusing to start (restore the data "
                "dir from a backup, or remove it to rejoin as a new member)")
        log.warning("raft log %s: a torn or corrupt record at offset %d (%d bytes to the end "
                    "of what was written; a write never synced, so never acknowledged): "
                    "zeroed", path, offset, max(_used(data) - offset, 0))
        _zero_fill(fd, offset, len(data))
        os.fdatasync(fd)

    def _roll(self, payloads: list[bytes]) -> None:
        """Start the next segment, with a new salt: a checkpoint of the live state, then a
        record of each of ``payloads``; written whole under a temporary name and synced before
        it replaces the current one. Room after them for ``segment_bytes`` of records, or as
        much as they take when more: each roll rewrites the live log, so a large one (a snapshot
        trails far behind) rolls after as many bytes as it holds, not after every
        ``segment_bytes`` (about 2x write amplification instead of live/segment_bytes)."""
        salt = os.urandom(_SALT_BYTES)
        seq = self._seq + 1
        final = self.directory / f"{seq:016x}.wal"
        temp = final.with_suffix(".tmp")
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            end = _write_record(fd, 0, salt, self._state.checkpoint())
            for payload in payloads:
                end = _write_record(fd, end, salt, (payload,))
            size = end + max(self.segment_bytes, end)
            _zero_fill(fd, end, size)
            os.fsync(fd)
            os.rename(temp, final)
            _sync_dir(self.directory)
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
                old_path.unlink()
                _sync_dir(self.directory)

    def _write_snapshot(self, snap: Snapshot) -> None:
        final = self.directory / _SNAPSHOT
        temp = final.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, _frame_v1(_pack([snap.index, snap.term, snap.config.encode(),
                                            snap.data])), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()  # a snapshot cut short is never renamed into place
            raise
        os.close(fd)
        os.rename(temp, final)
        _sync_dir(self.directory)
        with self._state_lock:
            self._snapshot = snap

    def _read_snapshot(self) -> Snapshot | None:
        path = self.directory / _SNAPSHOT
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        parsed = _parse_v1(data, 0)
        if parsed is None or parsed[1] != len(data):
            raise StorageError(f"raft log: the snapshot {path} is corrupt (it was renamed into "
                               "place only once synced); refusing to start")
        try:
            return decode_snapshot(msgpack.unpackb(parsed[0]))
        except (DecodeError, ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageError(f"raft log: the snapshot {path} does not decode: {exc}") from None

    def adopt(self, stored: Stored) -> None:
        """Take ``stored`` (the state of the LMDB log, at migration) as the whole state."""
        with self.lock:
            if stored.snapshot is not None:
                self._write_snapshot(stored.snapshot)
            state = _State()
            state.term, state.vote = stored.term, stored.vote
            if stored.snapshot is not None:
                state.mark = (stored.snapshot.index, stored.snapshot.term)
            for entry in stored.entries:
                state._put(entry)
            with self._state_lock:
                self._state = state
            self._roll([])


def decode_snapshot(value: object) -> Snapshot:
    if not isinstance(value, list) or len(value) != 4:
        raise DecodeError("raft store: snapshot is not [index, term, config, data]")
    index, term, config, data = value
    if not isinstance(index, int) or not isinstance(term, int) or not isinstance(data, bytes):
        raise DecodeError("raft store: snapshot fields have the wrong types")
    return Snapshot(index, term, decode_configuration(config, "snapshot.config"), data)


def _check_checkpoint(path: Path, data: bytes) -> None:
    """Refuse a segment that does not start with a record: it was written with its checkpoint
    and synced before it was named, so an empty or zeroed start is damage, not a crash (read
    as a blank log, it would let a voter vote twice in a term)."""
    if not data:
        raise StorageError(_no_checkpoint(path, "the file is empty"))
    if not any(data[:_HEAD.size]):
        what = "the file is all zeros" if not any(data) else "its first record is zeros"
        raise StorageError(_no_checkpoint(path, what))


def _no_checkpoint(path: Path, what: str) -> str:
    return (f"raft log {path}: no checkpoint ({what}; a segment starts with one, synced "
            "before the file was named, so the file was damaged after it was written); "
            "refusing to start: restore the data dir from a backup, or remove it to rejoin as "
            "a new member")


def _used(data: bytes) -> int:
    """The offset after the last byte that is not zero."""
    return len(data.rstrip(b"\0"))


def _later_header(data: bytes, offset: int, salt: bytes) -> int | None:
    """Where a header of the segment salted ``salt`` lies after the record at ``offset``
    (None: nowhere). Nothing is written after a torn write, and no command's bytes in it
    carry the salt: any such header, even one failing its CRC, was written later."""
    at = data.find(MAGIC + salt, offset + 1)
    return at if at >= 0 else None


def _later_chain_v1(data: bytes, offset: int) -> int | None:
    """``_later_header`` for a format-1 segment (no salt: a command's bytes inside a torn
    record can be a valid record): where valid records start that run up to the zeros at
    the end, as synced records do (a frame inside a torn record is followed by the rest of
    that record, not by zeros)."""
    at = data.find(_V1_MAGIC, offset + 1)
    while at >= 0:
        end, valid = at, 0
        while (parsed := _parse_v1(data, end)) is not None:
            end = parsed[1]
            valid += 1
        if valid and _used(data) <= end:
            return at
        at = data.find(_V1_MAGIC, at + 1)
    return None


def _chunks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``pieces`` joined into chunks of at least ``_CHUNK`` bytes (but the last)."""
    chunk: list[bytes] = []
    held = 0
    for piece in pieces:
        chunk.append(piece)
        held += len(piece)
        if held >= _CHUNK:
            yield b"".join(chunk)  # (one piece: itself, not a copy)
            chunk, held = [], 0
    if chunk:
        yield b"".join(chunk)


def _write_record(fd: int, at: int, salt: bytes, pieces: Iterable[bytes]) -> int:
    """Write a record whose payload is ``pieces`` joined, at ``at`` (the payload in chunks of
    about ``_CHUNK``, then the header); the offset after it.

    Raises:
        OSError: a write failed.
        StorageError: the record would be over 2 GiB.
    """
    position = at + _HEAD.size
    crc = 0
    for chunk in _chunks(pieces):
        _write_all(fd, chunk, position)
        crc = zlib.crc32(chunk, crc)
        position += len(chunk)
    length = position - at - _HEAD.size
    if length >= _MAX_RECORD:
        raise StorageError("raft log: a record over 2 GiB")
    _write_all(fd, _head(salt, length, crc), at)
    return position


def _read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes | memoryview, at: int) -> None:
    """Write all of ``data`` at offset ``at``. A regular file's write can be short without
    an error (ENOSPC on copy-on-write file systems, quotas, RLIMIT_FSIZE, FUSE, NFS): the
    rest is written again, and what fails then raises.

    Raises:
        OSError: a write failed or wrote nothing.
    """
    view = memoryview(data)
    done = 0
    while done < len(view):
        written = os.pwrite(fd, view[done:], at + done)
        if written <= 0:
            raise OSError(errno.EIO, f"a write at offset {at + done} wrote nothing "
                          f"({len(view) - done} bytes left)")
        done += written


def _zero_fill(fd: int, start: int, end: int) -> None:
    """Write zeros over ``start .. end`` (real blocks: a later sync converts no extents)."""
    chunk = bytes(1 << 20)
    at = start
    while at < end:
        length = min(len(chunk), end - at)
        _write_all(fd, memoryview(chunk)[:length], at)
        at += length


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- writes handed to a thread ------------------------------------------------------------------


class WalPending:
    """A write handed to ``WalWorker``: ``result`` waits until it is durable (``PendingWrite``'s
    shape, for ``_batch.WriteBehind``)."""

    __slots__ = ("_done", "_error", "_token", "_waiter", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self._token = trio.lowlevel.current_trio_token()
        self._done = False
        self._error: BaseException | None = None
        self._waiter: trio.lowlevel.Task | None = None

    @property
    def done(self) -> bool:
        return self._done

    async def result(self) -> None:
        """Once durable (raises what the write raised). Not cancellable: a write handed over
        cannot be taken back."""
        if not self._done:
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        if self._error is not None:
            raise self._error

    def _finish(self, error: BaseException | None) -> None:
        def wake() -> None:
            self._error = error
            self._done = True
            if self._waiter is not None:
                trio.lowlevel.reschedule(self._waiter)

        with contextlib.suppress(trio.RunFinishedError):  # nobody waits any more
            self._token.run_sync_soon(wake)


class WalWorker:
    """One thread performing handed-over writes in order (snapshots, large batches, rolls):
    their seconds stay out of the event loop."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[WalPending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self, fn: Callable[[], None]) -> WalPending:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bzzz-raft-wal", daemon=True)
            self._thread.start()
        pending = WalPending(fn)
        self._queue.put(pending)
        return pending

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (pending := self._queue.get()) is not None:
            try:
                pending.fn()
            except BaseException as exc:  # the caller gets it
                pending._finish(exc)
            else:
                pending._finish(None)
