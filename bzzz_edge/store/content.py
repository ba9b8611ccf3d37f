"""The versioned UCXL store: content per address through time, deduplicated blobs. Uses trio.

Every write is one durable transaction through the store's group-commit writer: a new version
(``put``; ``append`` adds to the latest content), a tombstone (``delete``; history is kept) or
an announcement (``announce``, recorded until the DHT exists). Reads go straight to the map:
``get`` resolves the temporal segment exactly per SPEC (``NoSuchVersion`` with the count that
exists), ``history`` lists versions, ``list`` matches a pattern (wildcards, path prefixes) a
page at a time. Blobs are keyed by the SHA-256 of the content, so equal content is stored once,
and compressed when that saves at least 5 %: LZ4 where the hot paths are compiled, zlib where
they are pure (the pure LZ4 encoder is slow); every node decodes both.

What a write did goes two ways (the log builds on both; see ``StoreChange``):
- ``add_hook(fn)``: ``fn(txn, change)`` runs in the writer thread inside the write's own
  transaction, so what it writes (a log entry) commits atomically with the change or not at
  all; an exception from it fails the write.
- ``changes``: a ``Feed[StoreChange]`` published once the write is durable.

Bounds: content at most ``max_content_bytes``; ``list`` returns at most 1,000 items and scans at
most ``MAX_SCAN`` index entries per call (a page token continues); ``history`` at most 1,000.
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
from ..errors import StorageError
from ..feed import Feed
from ..ucxl import Address, parse
from ..wire.compression import Codec, decode, encode
from ._env import Store
from ._records import (
    Conflict,
    ContentTooLarge,
    NotFound,
    StoreChange,
    Version,
    scan_prefix,
    sort_key,
    version_key,
)

__all__ = ["DATABASES", "ContentStore", "local_codec"]

DATABASES = ("ucxl_keys", "ucxl_versions", "ucxl_index", "ucxl_announced", "blobs", "blob_refs")
MAX_SCAN = 10_000
MAX_PAGE = 1_000
_STATS_KEY = b"ucxl_stats"
_OFFLOAD_BYTES = 64 * 1024  # hash and compress larger content in a worker thread
_APPEND_TRIES = 8
Hook = Callable[[lmdb.Transaction, StoreChange], None]


def local_codec() -> Codec:
    """LZ4 where the LZ4 hot path is compiled, zlib where it is pure Python."""
    return Codec.LZ4 if _native.implementations()["lz4"] == "compiled" else Codec.ZLIB


_PARSED: dict[str, Address] = {}  # recent address texts, parsed (their content key cached)
_PARSED_MAX = 4096
_CODEC_NAMES = {int(c): c.name.lower() for c in Codec}


def _address(address: Address | str) -> Address:
    if isinstance(address, Address):
        return address
    parsed = _PARSED.get(address)
    if parsed is None:
        parsed = parse(address)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()  # bounded; a cache miss only costs a parse
        _PARSED[address] = parsed
    return parsed


def _payload(blob: bytes, size: int) -> bytes:
    """The content of a blob: raw blobs sliced directly (the hot path), others decoded."""
    if blob[0] == Codec.RAW:
        start = 1 + max(1, (size.bit_length() + 6) // 7)  # codec byte + LEB128 size
        if len(blob) == start + size:
            return blob[start:]
    return decode(blob, max_size=size)  # compressed, or a raw blob that does not add up


class ContentStore:
    """Versioned content under UCXL addresses, in ``store`` (opened with ``DATABASES``)."""

    def __init__(self, store: Store, *, author: str, max_content_bytes: int,
                 compress_min_bytes: int, codec: Codec | None = None) -> None:
        self._store = store
        self.author = author
        self.max_content_bytes = max_content_bytes
        self.compress_min_bytes = compress_min_bytes
        self.codec = local_codec() if codec is None else codec
        self._db = {name: store.db(name) for name in (*DATABASES, "meta")}
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
        return await self._put(_address(address), content, media_type, expect=None)

    async def append(self, address: Address | str, content: bytes, *,
                     media_type: str | None = None) -> Version:
        """A new version whose content is the latest content followed by ``content`` (the
        first version when there is none, or the latest is a tombstone)."""
        addr = _address(address)
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
        addr = _address(address)
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
        addr = _address(address)
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
        current = txn.get(_STATS_KEY, db=self._db["meta"])
        stats = msgpack.unpackb(current) if current else {"raw": 0, "stored": 0}
        stats["raw"] += raw_bytes
        stats["stored"] += stored_bytes
        txn.put(_STATS_KEY, msgpack.packb(stats), db=self._db["meta"])

    def _add_version(self, txn: lmdb.Transaction, addr: Address, n: int, version: Version,
                     kind: str) -> Version:
        key = addr.content_key
        base = _base(addr)
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

    # --- reads --------------------------------------------------------------------------------

    def get(self, address: Address | str) -> tuple[Version, bytes]:
        """The version ``address`` selects and its content.

        Raises:
            UCXLError: malformed, or a wildcard address (use ``list``).
            NoSuchVersion: the temporal segment selects no existing version (count included;
                0 when nothing was ever stored there).
            NotFound: the selected version is a tombstone.
        """
        # The hot read path: one read transaction, no context-manager generator.
        addr = _concrete(_address(address))
        key, db = addr.content_key, self._db
        store = self._store
        env = store.env
        store.gate.enter()
        try:
            with env.begin() as txn:
                raw = txn.get(key, db=db["ucxl_keys"])
                keys = None if raw is None else msgpack.unpackb(raw)
                n = 0 if keys is None else int(keys["n"])
                selected = addr.resolve(n)
                record = msgpack.unpackb(txn.get(version_key(key, selected),
                                                 db=db["ucxl_versions"]))
                blob = None if record["d"] else txn.get(bytes.fromhex(record["h"]),
                                                        db=db["blobs"])
        except lmdb.Error as exc:
            raise StorageError(f"store read failed: {exc}") from None
        finally:
            store.gate.leave()
        if record["d"]:
            raise self._tombstone(addr, selected, n)
        if blob is None:
            raise NotFound(f"the content of {addr.canonical} is missing from the store",
                           address=addr.canonical, versions=n, deleted=False)
        record["c"], record["st"] = _CODEC_NAMES[blob[0]], len(blob)
        assert keys is not None
        return Version.unpack(keys["a"], selected, record), _payload(blob, record["s"])

    def meta(self, address: Address | str) -> Version:
        """The version ``address`` selects (raises like ``get``), without reading content."""
        addr = _concrete(_address(address))
        with self._store.reading() as txn:
            n, _ = self._latest_in(txn, addr, record=False)
            selected = addr.resolve(n)  # NoSuchVersion with 0 versions when never written
            version = self._version_in(txn, addr.content_key, _base(addr), selected)
        if version.deleted:
            raise self._tombstone(addr, selected, n)
        return version

    def _tombstone(self, addr: Address, selected: int, n: int) -> NotFound:
        from ._records import with_version

        return NotFound(f"{with_version(_base(addr), selected)} is a deletion (tombstone); "
                        "earlier versions are kept", address=addr.canonical, versions=n,
                        deleted=True)

    def history(self, address: Address | str, *, start: int = 1,
                limit: int = MAX_PAGE) -> list[Version]:
        """Versions ``start``.. (at most ``limit``, at most 1,000) of an address, oldest first;
        an empty list when nothing was stored."""
        addr = _concrete(_address(address))
        limit = max(1, min(limit, MAX_PAGE))
        with self._store.reading() as txn:
            n, _ = self._latest_in(txn, addr, record=False)
            return [self._version_in(txn, addr.content_key, _base(addr), v)
                    for v in range(max(1, start), min(n, max(1, start) + limit - 1) + 1)]

    def list(self, pattern: Address | str, *, limit: int = 100, after: bytes = b"",
             deleted: bool = False) -> tuple[list[Version], bytes | None]:
        """The latest version of each address ``pattern`` matches, in index order.

        Returns (versions, token): pass ``after=token`` for the next page; the token is None
        when the listing is complete. Deleted addresses are left out unless ``deleted``.
        """
        pat = _address(pattern)
        limit = max(1, min(limit, MAX_PAGE))
        prefix = scan_prefix(pat.project, pat.task, pat.agent, pat.role, pat.path)
        out: list[Version] = []
        with self._store.reading() as txn:
            cursor = txn.cursor(db=self._db["ucxl_index"])
            found = cursor.set_range(max(prefix, after))
            if found and after and cursor.key() == after:
                found = cursor.next()
            scanned = 0
            while found:
                index_key = bytes(cursor.key())
                if not index_key.startswith(prefix):
                    return out, None
                scanned += 1
                keys = msgpack.unpackb(txn.get(bytes(cursor.value()), db=self._db["ucxl_keys"]))
                if pat.matches(keys["a"]):
                    latest = self._version_in(txn, bytes(cursor.value()), keys["a"], keys["n"])
                    if deleted or not latest.deleted:
                        out.append(latest)
                        if len(out) >= limit:
                            return out, index_key if cursor.next() else None
                if scanned >= MAX_SCAN:
                    return out, index_key
                found = cursor.next()
        return out, None

    def announced(self, address: Address | str) -> dict[str, Any] | None:
        """``{"version", "timestamp"}`` of this node's announcement of ``address``, if any."""
        addr = _address(address)
        with self._store.reading() as txn:
            raw = txn.get(addr.content_key, db=self._db["ucxl_announced"])
        if raw is None:
            return None
        record = msgpack.unpackb(raw)
        return {"version": record["v"], "timestamp": record["ts"]}

    def stats(self) -> dict[str, Any]:
        """Addresses, versions, blobs, raw and stored bytes, their ratio, map use."""
        with self._store.reading() as txn:
            counts = {name: txn.stat(self._db[db])["entries"] for name, db in (
                ("addresses", "ucxl_keys"), ("versions", "ucxl_versions"),
                ("blobs", "blobs"), ("announced", "ucxl_announced"))}
            raw = txn.get(_STATS_KEY, db=self._db["meta"])
        totals = msgpack.unpackb(raw) if raw else {"raw": 0, "stored": 0}
        info, stat = self._store.env.info(), self._store.env.stat()
        return {**counts, "raw_bytes": totals["raw"], "stored_bytes": totals["stored"],
                "ratio": round(totals["raw"] / totals["stored"], 3) if totals["stored"] else 1.0,
                "map_size": info["map_size"],
                "map_used": (info["last_pgno"] + 1) * stat["psize"],
                "map_ceiling": self._store.writer.max_map_size,
                "full": self._store.writer.full}

    def _latest(self, addr: Address) -> tuple[int, Version | None]:
        with self._store.reading() as txn:
            return self._latest_in(txn, addr)

    def _latest_in(self, txn: lmdb.Transaction, addr: Address, *,
                   record: bool = True) -> tuple[int, Version | None]:
        raw = txn.get(addr.content_key, db=self._db["ucxl_keys"])
        if raw is None:
            return 0, None
        n = int(msgpack.unpackb(raw)["n"])
        if not record:
            return n, None
        return n, self._version_in(txn, addr.content_key, _base(addr), n)

    def _version_in(self, txn: lmdb.Transaction, key: bytes, base: str, n: int) -> Version:
        raw = msgpack.unpackb(txn.get(version_key(key, n), db=self._db["ucxl_versions"]))
        if not raw["d"]:
            refs = txn.get(bytes.fromhex(raw["h"]), db=self._db["blob_refs"])
            if refs is not None:  # the blob's codec now (optimize may have recompressed it)
                _, raw["c"], raw["st"] = msgpack.unpackb(refs)
        return Version.unpack(base, n, raw)

    def _read_blob(self, version: Version) -> bytes:
        with self._store.reading("blobs") as txn:
            blob = txn.get(bytes.fromhex(version.hash))
        if blob is None:
            raise NotFound(f"the content of {version.address} is missing from the store",
                           address=version.address, versions=version.version, deleted=False)
        return decode(blob, max_size=version.size)

    def _not_found(self, addr: Address, n: int, *, deleted: bool) -> NotFound:
        what = "is deleted" if deleted else "has no content (0 versions exist)"
        return NotFound(f"{_base(addr)} {what}", address=addr.canonical, versions=n,
                        deleted=deleted)


def _base(addr: Address) -> str:
    return f"ucxl://{addr.agent}:{addr.role}@{addr.project}:{addr.task}/*^{addr.path}"


def _concrete(addr: Address) -> Address:
    if addr.has_wildcards:
        from ..ucxl import UCXLError

        raise UCXLError(f"{addr.canonical} has a wildcard: it names many addresses; list them "
                        "instead", addr.canonical.index("*"))
    return addr
