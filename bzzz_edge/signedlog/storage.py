"""Signed logs in LMDB: the layout, reads and the writes the log service commits. Does I/O.

Four named databases, declared when the node opens its store (``DATABASES``):

- ``log_entries``: ``author + index (8 bytes, big-endian)`` -> the encoded entry;
- ``log_tree``: ``author + level (1 byte) + index (8 bytes)`` -> a perfect Merkle subtree's
  hash (``_merkle``), so any root and any inclusion proof is a few reads;
- ``log_heads``: ``author`` -> the latest signed head whose root is the root of the stored
  entries: for every log, the entries and the head are written in one transaction, so what is
  stored always verifies (``verify_stored``);
- ``log_forks``: ``author + index + kind`` -> msgpack ``[ours, theirs, seen_ms]``: fork
  evidence. A log with any is corrupt; nothing more is replicated into it;
- ``log_pending``: ``sequence (8 bytes)`` -> msgpack ``[type, data]``: entries to append,
  written inside another component's transaction (a store write), so the entry cannot be lost
  once that write is durable; the log service appends them and deletes them in one commit.

The functions here take an open LMDB transaction, so the same code serves the node (through the
store's writer and read transactions) and ``bzzz-edge log verify`` on a stopped node's data dir
(``open_readonly``, which never writes and never takes the node's data-dir lock: LMDB lets a
reader in beside a running writer).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from ..errors import BzzzError, DecodeError, SignatureError, StorageError
from ..ids import short_id
from ._chain import BadEntry, Fork, LogChain
from ._codec import ZERO_HASH, Entry, SignedHead, decode_head
from ._merkle import inclusion_proof, peaks, root
from ._parallel import PARALLEL_MIN, SWITCH_INTERVAL, decoded, default_workers
from ._verify import Verified, verify_log

__all__ = [
    "DATABASES",
    "LogDbs",
    "LogReader",
    "NoSuchLog",
    "default_workers",
    "drop_pending",
    "open_readonly",
    "put_pending",
    "stored_length",
    "verify_stored",
    "write_entries",
    "write_fork",
]

DATABASES = ("log_entries", "log_tree", "log_heads", "log_forks", "log_pending")
_INDEX = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class LogDbs:
    """The database handles."""

    entries: Any
    tree: Any
    heads: Any
    forks: Any
    pending: Any

    @classmethod
    def of(cls, open_db: Any) -> LogDbs:
        """From a function that returns a handle by name (``Store.db``)."""
        return cls(*(open_db(name) for name in DATABASES))


class NoSuchLog(BzzzError):
    """No log of that author is stored here."""


def _entry_key(author: bytes, index: int) -> bytes:
    return author + _INDEX.pack(index)


def _node_key(author: bytes, level: int, index: int) -> bytes:
    return author + bytes((level,)) + _INDEX.pack(index)


class LogReader:
    """Reads of the logs in one read (or write) transaction."""

    def __init__(self, txn: lmdb.Transaction, dbs: LogDbs) -> None:
        self._txn = txn
        self._dbs = dbs

    def head(self, author: bytes) -> SignedHead | None:
        """The stored head (checked again: a flipped byte on disk is an error, not a head).

        Raises:
            StorageError: the stored head does not decode or verify.
        """
        raw = self._txn.get(author, db=self._dbs.heads)
        if raw is None:
            return None
        try:
            return decode_head(bytes(raw))
        except (DecodeError, SignatureError) as exc:
            raise StorageError(f"the stored head of log {short_id(author)} is damaged: "
                               f"{exc}") from None

    def authors(self) -> list[bytes]:
        return [bytes(k) for k, _ in self._txn.cursor(db=self._dbs.heads)]

    def entry(self, author: bytes, index: int) -> bytes | None:
        raw = self._txn.get(_entry_key(author, index), db=self._dbs.entries)
        return None if raw is None else bytes(raw)

    def entries(self, author: bytes, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """``(index, encoded entry)`` from ``start`` on, in order, as stored."""
        cursor = self._txn.cursor(db=self._dbs.entries)
        if not cursor.set_range(_entry_key(author, start)):
            return
        for key, value in cursor:
            if key[:32] != author:
                return
            yield _INDEX.unpack(bytes(key[32:]))[0], bytes(value)

    def batch(self, author: bytes, start: int, limit: int, max_bytes: int) -> list[bytes]:
        """At most ``limit`` consecutive entries from ``start``, at most ``max_bytes`` in all
        (but at least one)."""
        out: list[bytes] = []
        size = 0
        for index, encoded in self.entries(author, start):
            if index != start + len(out) or len(out) >= limit:
                break
            if out and size + len(encoded) > max_bytes:
                break
            out.append(encoded)
            size += len(encoded)
        return out

    def node(self, author: bytes, level: int, index: int) -> bytes:
        raw = self._txn.get(_node_key(author, level, index), db=self._dbs.tree)
        if raw is None:
            raise StorageError(f"log {short_id(author)}: Merkle node ({level}, {index}) is "
                               "missing")
        return bytes(raw)

    def root(self, author: bytes, length: int) -> bytes:
        return root(length, lambda level, index: self.node(author, level, index))

    def proof(self, author: bytes, index: int, length: int) -> list[bytes]:
        return inclusion_proof(index, length, lambda lv, ix: self.node(author, lv, ix))

    def chain(self, author: bytes, public_key: bytes | None = None) -> LogChain | None:
        """The stored log as a ``LogChain`` to extend (None if nothing is stored).

        ``public_key``: for a log with no head yet (a fresh own log).
        """
        head = self.head(author)
        if head is None:
            return None if public_key is None else LogChain(author, public_key)
        n = head.length
        tip = self.node(author, 0, n - 1) if n else ZERO_HASH
        return LogChain(author, head.public_key, length=n, tip=tip,
                        peak_hashes=[self.node(author, lv, ix) for lv, ix in peaks(n)])

    def pending(self, limit: int) -> list[tuple[bytes, bytes]]:
        """The first ``limit`` queued entries: ``(key, canonical [type, data])``."""
        out: list[tuple[bytes, bytes]] = []
        for key, value in self._txn.cursor(db=self._dbs.pending):
            if len(out) >= limit:
                break
            out.append((bytes(key), bytes(value)))
        return out

    def last_pending(self) -> int:
        """The highest sequence number queued (0 if none)."""
        cursor = self._txn.cursor(db=self._dbs.pending)
        return _INDEX.unpack(bytes(cursor.key()))[0] if cursor.last() else 0

    def forks(self, author: bytes) -> list[Fork]:
        out: list[Fork] = []
        cursor = self._txn.cursor(db=self._dbs.forks)
        if not cursor.set_range(author):
            return out
        for key, value in cursor:
            if key[:32] != author:
                break
            ours, theirs, _seen = msgpack.unpackb(value)
            index = _INDEX.unpack(bytes(key[32:40]))[0]
            out.append(Fork(author, index, bytes(key[40:]).decode(), ours, theirs))
        return out


def write_entries(txn: lmdb.Transaction, dbs: LogDbs, entries: list[tuple[Entry, list[
        tuple[int, int, bytes]]]], head: SignedHead, *, done: Sequence[bytes] = ()) -> None:
    """Store checked entries (with the Merkle nodes they complete) and the head they reach;
    ``done``: pending keys (``log_pending``) these entries were made from, deleted with them.

    Refuses to leave a gap: the first entry must follow what is stored (a write after a failed
    one would otherwise chain onto an entry that never reached the disk).

    Raises:
        StorageError: the entries do not continue the stored log, or do not reach ``head``.
    """
    author = head.author
    first = entries[0][0].index if entries else head.length
    stored = txn.get(author, db=dbs.heads)
    have = 0 if stored is None else stored_length(bytes(stored))
    if first != have:
        raise StorageError(f"log {short_id(author)}: entry {first} does not follow the "
                           f"{have} stored")
    if first + len(entries) != head.length:
        raise StorageError(f"log {short_id(author)}: {len(entries)} entries from {first} do "
                           f"not reach the head's {head.length}")
    for entry, nodes in entries:
        txn.put(_entry_key(author, entry.index), entry.encoded, db=dbs.entries)
        for level, index, digest in nodes:
            txn.put(_node_key(author, level, index), digest, db=dbs.tree)
    txn.put(author, head.encoded, db=dbs.heads)
    for key in done:
        txn.delete(key, db=dbs.pending)


def stored_length(encoded_head: bytes) -> int:
    """The length a head we stored ourselves vouches for (not checked again)."""
    body = msgpack.unpackb(encoded_head)[0]
    return int(msgpack.unpackb(body)[3])


def drop_pending(txn: lmdb.Transaction, dbs: LogDbs, done: Sequence[bytes]) -> None:
    for key in done:
        txn.delete(key, db=dbs.pending)


def put_pending(txn: lmdb.Transaction, dbs: LogDbs, sequence: int, packed: bytes) -> None:
    """Queue an entry (``canonical_pack([type, data])``) inside the caller's transaction."""
    txn.put(_INDEX.pack(sequence), packed, db=dbs.pending)


def write_fork(txn: lmdb.Transaction, dbs: LogDbs, fork: Fork, seen_ms: int) -> None:
    """Keep fork evidence (the log is corrupt from then on)."""
    key = _entry_key(fork.author, fork.index) + fork.kind.encode()
    txn.put(key, msgpack.packb([fork.ours, fork.theirs, seen_ms], use_bin_type=True),
            db=dbs.forks)


def verify_stored(reader: LogReader, author: bytes, *, workers: int = 1) -> Verified:
    """Check a stored log: every entry's chain link and signature, the head's signature and
    root, and the stored Merkle nodes (what inclusion proofs are made of).

    ``workers`` > 1 decodes and checks the entries of a long log in that many threads
    (``_parallel``), chaining them here.

    Raises:
        BadEntry: the first entry that does not hold, by index (or a recorded fork).
        BzzzError: no such log.
    """
    try:
        head = reader.head(author)
    except StorageError as exc:
        raise BadEntry(0, str(exc)) from None
    if head is None:
        raise NoSuchLog(f"no log of {short_id(author)} is stored here")
    forks = reader.forks(author)
    if forks:
        first = min(forks, key=lambda f: f.index)
        raise BadEntry(first.index, f"FORK: the author signed two different {first.kind}s "
                                    f"for index {first.index} (evidence kept)")

    def check_nodes(index: int, nodes: list[tuple[int, int, bytes]]) -> None:
        for level, idx, digest in nodes:
            try:
                stored = reader.node(author, level, idx)
            except StorageError:
                stored = b""
            if stored != digest:
                raise BadEntry(index, f"stored Merkle node ({level}, {idx}) is damaged")

    if workers <= 1 or head.length < PARALLEL_MIN:
        return verify_log(head, reader.entries(author), check_nodes=check_nodes)
    # The chaining here holds the GIL for a chunk at a time; a checker thread back from a
    # verification waits for it up to the switch interval (5 ms), which left the threads little
    # faster than one. A shorter interval for the walk's length lets them in.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    entries = decoded(reader.entries(author), head.public_key, workers)
    try:
        return verify_log(head, entries, check_nodes=check_nodes, decoded=True)
    finally:
        entries.close()
        sys.setswitchinterval(interval)


def open_readonly(path: Path) -> tuple[lmdb.Environment, LogDbs]:
    """Open a data dir's store for reading only (a running node may be writing to it).

    Raises:
        BzzzError: no store there, or it holds no logs.
    """
    if not (path / "data.mdb").exists():
        raise BzzzError(f"no store at {path} (has the node ever run with this data dir?)")
    try:
        env = lmdb.open(str(path), readonly=True, max_dbs=64, subdir=True, lock=True)
    except lmdb.Error as exc:
        raise BzzzError(f"cannot open the store at {path} for reading: {exc}") from None
    try:
        dbs = LogDbs(*(env.open_db(name.encode(), create=False) for name in DATABASES))
    except lmdb.Error:
        env.close()
        raise BzzzError(f"the store at {path} holds no signed log yet") from None
    return env, dbs
