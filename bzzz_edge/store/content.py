"""The versioned UCXL store: content per address through time, deduplicated blobs. Uses trio.

``ContentStore`` is the writing side, over the read side in ``_reading`` (``ContentReader``).
Every write is one durable transaction through the store's group-commit writer: a new version
(``put``; ``append`` adds to the latest content), a tombstone (``delete``; history is kept) or
an announcement (``announce``, recorded until the DHT exists). Reads go straight to the map
(``get``, ``meta``, ``history``, ``list``, ``stats``: see ``_reading``). Blobs are keyed by the
SHA-256 of the content, so equal content is stored once, and compressed when that saves at
least 5 %: LZ4 where the hot paths are compiled, zlib where they are pure (the pure LZ4 encoder
is slow); every node decodes both.

What a write did goes two ways (the log builds on both; see ``StoreChange``):
- ``add_hook(fn)``: ``fn(txn, change)`` runs in the writer thread inside the write's own
  transaction, so what it writes (a log entry) commits atomically with the change or not at
  all; an exception from it fails the write.
- ``changes``: a ``Feed[StoreChange]`` published once the write is durable.

Bounds: content at most ``max_content_bytes``; for reads, see ``_reading``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import lmdb
import msgpack
import trio

from .. import _native
from ..feed import Feed
from ..ucxl import Address
from ..ucxl.forms import base_of
from ..wire.compression import Codec, encode
from ._env import Store
from ._reading import DATABASES, MAX_PAGE, MAX_SCAN, STATS_KEY, ContentReader
from ._records import (
    Conflict,
    ContentTooLarge,
    StoreChange,
    Version,
    address_of,
    sort_key,
    version_key,
)

__all__ = ["DATABASES", "MAX_PAGE", "MAX_SCAN", "ContentStore", "local_codec"]
_OFFLOAD_BYTES = 64 * 1024  # hash and compress larger content in a worker thread
_APPEND_TRIES = 8
Hook = Callable[[lmdb.Transaction, StoreChange], None]


def local_codec() -> Codec:
    """LZ4 where the LZ4 hot path is compiled, zlib where it is pure Python."""
    return Codec.LZ4 if _native.implementations()["lz4"] == "compiled" else Codec.ZLIB


class ContentStore(ContentReader):
    """Versioned content under UCXL addresses, in ``store`` (opened with ``DATABASES``)."""

    def __init__(self, store: Store, *, author: str, max_content_bytes: int,
                 compress_min_bytes: int, codec: Codec | None = None) -> None:
        super().__init__(store)
        self.author = author
        self.max_content_bytes = max_content_bytes
        self.compress_min_bytes = compress_min_bytes
        self.codec = local_codec() if codec is None else codec
        self._hooks: list[Hook] = []
        self.changes: Feed[StoreChange] = Feed("store-changes")

    @property
    def closed(self) -> bool:
        return self._store.closed

    @property
    def full(self) -> bool:
        """The map is full at its platform ceiling: writes are refused."""
        return self._store.writer.full

    def writer_stats(self) -> Any:
        """The writer's ``WriterStats`` (commits, writes, failures, growths)."""
        return self._store.writer.stats

    def add_hook(self, hook: Hook) -> None:
        """Run ``hook(txn, change)`` inside every write's transaction (see the module doc)."""
        self._hooks.append(hook)

    # --- writes -------------------------------------------------------------------------------

    async def put(self, address: Address | str, content: bytes, *,
                  media_type: str = "application/octet-stream") -> Version:
        """Store ``content`` as the new latest version of a concrete ``*^`` address.

        Raises:
            UCXLError: a malformed address, or one with a wildcard or another temporal segment.
            ContentTooLarge: content above ``max_content_bytes``.
            StorageError: the store refused the write (full, disk error, closed).
        """
        return await self._put(address_of(address), content, media_type, expect=None)

    async def append(self, address: Address | str, content: bytes, *,
                     media_type: str | None = None) -> Version:
        """A new version whose content is the latest content followed by ``content`` (the
        first version when there is none, or the latest is a tombstone)."""
        addr = address_of(address)
        addr.check_writable()
        for _ in range(_APPEND_TRIES):
            n, latest = self._latest(addr)
            if latest is None or latest.deleted:
                before, kind = b"", media_type
            else:
                before, kind = self._read_blob(latest), media_type or latest.media_type
            if len(before) + len(content) > self.max_content_bytes:
                raise ContentTooLarge(len(before) + len(content), self.max_content_bytes)
            try:
                return await self._put(addr, before + content,
                                       kind or "application/octet-stream", expect=n)
            except Conflict:
                continue
        raise Conflict(f"append to {addr.canonical}: the address kept changing; try again")

    async def delete(self, address: Address | str) -> Version:
        """Add a tombstone as the new latest version (earlier versions stay readable).

        Raises:
            NotFound: nothing stored at the address, or it is already deleted.
        """
        addr = address_of(address)
        addr.check_writable()
        stamp = time.time()

        def fn(txn: lmdb.Transaction) -> Version:
            n, latest = self._latest_in(txn, addr)
            if latest is None or latest.deleted:
                raise self._not_found(addr, n, deleted=latest is not None)
            version = Version(address="", version=n + 1, author=self.author, timestamp=stamp,
                              hash="", size=0, media_type="", codec="", stored=0, deleted=True)
            return self._add_version(txn, addr, n, version, "delete")

        return await self._write(fn, "delete")

    async def announce(self, address: Address | str) -> Version:
        """Record that this node holds the latest content of ``address`` (the DHT takes this
        over when it exists); returns the version announced."""
        addr = address_of(address)
        addr.check_writable()
        stamp = time.time()

        def fn(txn: lmdb.Transaction) -> Version:
            n, latest = self._latest_in(txn, addr)
            if latest is None or latest.deleted:
                raise self._not_found(addr, n, deleted=latest is not None)
            txn.put(addr.content_key, msgpack.packb({"v": n, "ts": stamp}),
                    db=self._db["ucxl_announced"])
            self._run_hooks(txn, StoreChange("announce", latest))
            return latest

        return await self._write(fn, "announce")

    async def _put(self, addr: Address, content: bytes, media_type: str,
                   expect: int | None) -> Version:
        addr.check_writable()
        if len(content) > self.max_content_bytes:
            raise ContentTooLarge(len(content), self.max_content_bytes)
        if len(content) > _OFFLOAD_BYTES:
            digest, blob = await trio.to_thread.run_sync(self._prepare, content)
        else:
            digest, blob = self._prepare(content)
        stamp = time.time()

        def fn(txn: lmdb.Transaction) -> Version:
            n, _ = self._latest_in(txn, addr, record=False)
            if expect is not None and n != expect:
                raise Conflict(f"{addr.canonical} has {n} versions, expected {expect}")
            codec, stored = self._add_blob(txn, digest, blob, len(content))
            version = Version(address="", version=n + 1, author=self.author, timestamp=stamp,
                              hash=digest.hex(), size=len(content), media_type=media_type,
                              codec=codec, stored=stored)
            return self._add_version(txn, addr, n, version, "put")

        return await self._write(fn, "put")

    def _prepare(self, content: bytes) -> tuple[bytes, bytes]:
        return hashlib.sha256(content).digest(), encode(
            content, codec=self.codec, min_size=self.compress_min_bytes)

    async def _write(self, fn: Callable[[lmdb.Transaction], Version], kind: str) -> Version:
        version = await self._store.writer.write(fn)
        self.changes.publish(StoreChange(kind, version))
        return version

    def _add_blob(self, txn: lmdb.Transaction, digest: bytes, blob: bytes,
                  size: int) -> tuple[str, int]:
        refs_db = self._db["blob_refs"]
        raw = txn.get(digest, db=refs_db)
        if raw is None:
            codec, stored = Codec(blob[0]).name.lower(), len(blob)
            txn.put(digest, blob, db=self._db["blobs"])
            txn.put(digest, msgpack.packb([1, codec, stored]), db=refs_db)
            self._count(txn, size, stored)
            return codec, stored
        count, codec, stored = msgpack.unpackb(raw)
        txn.put(digest, msgpack.packb([count + 1, codec, stored]), db=refs_db)
        return str(codec), int(stored)

    def _count(self, txn: lmdb.Transaction, raw_bytes: int, stored_bytes: int) -> None:
        current = txn.get(STATS_KEY, db=self._db["meta"])
        stats = msgpack.unpackb(current) if current else {"raw": 0, "stored": 0}
        stats["raw"] += raw_bytes
        stats["stored"] += stored_bytes
        txn.put(STATS_KEY, msgpack.packb(stats), db=self._db["meta"])

    def _add_version(self, txn: lmdb.Transaction, addr: Address, n: int, version: Version,
                     kind: str) -> Version:
        key = addr.content_key
        base = base_of(addr)
        txn.put(version_key(key, n + 1), msgpack.packb(version.pack()),
                db=self._db["ucxl_versions"])
        txn.put(key, msgpack.packb({"a": base, "n": n + 1}), db=self._db["ucxl_keys"])
        if n == 0:
            txn.put(sort_key(addr.project, addr.task, addr.agent, addr.role, addr.path), key,
                    db=self._db["ucxl_index"])
        written = Version.unpack(base, n + 1, version.pack())
        self._run_hooks(txn, StoreChange(kind, written))
        return written

    def _run_hooks(self, txn: lmdb.Transaction, change: StoreChange) -> None:
        for hook in self._hooks:
            hook(txn, change)
