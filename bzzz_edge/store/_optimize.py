"""``store optimize``: compress blobs stored raw, reclaim unreferenced ones. Uses trio.

Safe while the node runs: blobs are read a chunk at a time from snapshots, compressed in a
worker thread, and each change is its own small write through the writer that first checks the
blob is still what was read (a concurrent write wins; the blob is left for the next run).

- Compressed: blobs stored raw at least ``compress_min_bytes`` long (written before that limit
  was lowered, or by a node whose codec did not pay), re-encoded with this node's codec when
  that saves 5 %. Version records are untouched: readers take the codec from the blob.
- Reclaimed: blobs whose reference count is zero or missing and that no version names in a
  snapshot taken first (a version is never removed today, so this finds blobs a future history
  pruning, or an interrupted repair, left behind).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import lmdb
import msgpack
import trio

from ..wire.compression import Codec, decode, encode, read_header
from ._reading import STATS_KEY
from .content import ContentStore

__all__ = ["OptimizeResult", "optimize"]

_CHUNK = 64


@dataclass(frozen=True, slots=True)
class OptimizeResult:
    blobs_checked: int
    compressed: int
    saved_bytes: int
    reclaimed: int
    reclaimed_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def optimize(content: ContentStore) -> OptimizeResult:
    """Run one optimisation pass over every blob (see the module docstring)."""
    store, db = content._store, content._db
    referenced = await trio.to_thread.run_sync(_referenced, content)
    checked = compressed = saved = reclaimed = reclaimed_bytes = 0
    after = b""
    while True:
        with store.reading() as txn:
            chunk = _chunk(txn, db["blobs"], db["blob_refs"], after)
        if not chunk:
            break
        after = chunk[-1][0]
        for digest, blob, refs in chunk:
            checked += 1
            codec, size, _ = read_header(blob)
            if digest not in referenced and (refs is None or refs[0] <= 0):
                if await store.writer.write(_reclaim_fn(content, digest, blob)):
                    reclaimed += 1
                    reclaimed_bytes += len(blob)
            elif codec is Codec.RAW and size >= content.compress_min_bytes:
                smaller = await trio.to_thread.run_sync(_recompress, content, blob, size)
                if smaller is not None and await store.writer.write(
                        _replace_fn(content, digest, blob, smaller)):
                    compressed += 1
                    saved += len(blob) - len(smaller)
    return OptimizeResult(checked, compressed, saved, reclaimed, reclaimed_bytes)


def _referenced(content: ContentStore) -> set[bytes]:
    with content._store.reading("ucxl_versions") as txn:
        hashes = set()
        for _, raw in txn.cursor():
            record = msgpack.unpackb(raw)
            if not record["d"]:
                hashes.add(bytes.fromhex(record["h"]))
    return hashes


def _chunk(txn: lmdb.Transaction, blobs: Any, refs_db: Any,
           after: bytes) -> list[tuple[bytes, bytes, list[Any] | None]]:
    cursor = txn.cursor(db=blobs)
    found = cursor.set_range(after) if after else cursor.first()
    if found and after and cursor.key() == after:
        found = cursor.next()
    out: list[tuple[bytes, bytes, list[Any] | None]] = []
    while found and len(out) < _CHUNK:
        key = bytes(cursor.key())
        refs = txn.get(key, db=refs_db)
        out.append((key, bytes(cursor.value()), None if refs is None else msgpack.unpackb(refs)))
        found = cursor.next()
    return out


def _recompress(content: ContentStore, blob: bytes, size: int) -> bytes | None:
    payload = decode(blob, max_size=size)
    smaller = encode(payload, codec=content.codec, min_size=content.compress_min_bytes)
    return smaller if smaller[0] != Codec.RAW and len(smaller) < len(blob) else None


def _replace_fn(content: ContentStore, digest: bytes, old: bytes, new: bytes) -> Any:
    db = content._db

    def fn(txn: lmdb.Transaction) -> bool:
        if txn.get(digest, db=db["blobs"]) != old:
            return False  # changed since it was read: leave it for the next run
        txn.put(digest, new, db=db["blobs"])
        refs = txn.get(digest, db=db["blob_refs"])
        if refs is not None:
            count, _, _ = msgpack.unpackb(refs)
            txn.put(digest, msgpack.packb([count, Codec(new[0]).name.lower(), len(new)]),
                    db=db["blob_refs"])
        _adjust(txn, content, raw=0, stored=len(new) - len(old))
        return True

    return fn


def _reclaim_fn(content: ContentStore, digest: bytes, old: bytes) -> Any:
    db = content._db

    def fn(txn: lmdb.Transaction) -> bool:
        refs = txn.get(digest, db=db["blob_refs"])
        if refs is not None and msgpack.unpackb(refs)[0] > 0:
            return False  # referenced again since the snapshot
        if txn.get(digest, db=db["blobs"]) != old:
            return False
        txn.delete(digest, db=db["blobs"])
        if refs is not None:
            txn.delete(digest, db=db["blob_refs"])
        _, size, _ = read_header(old)
        _adjust(txn, content, raw=-size, stored=-len(old))
        return True

    return fn


def _adjust(txn: lmdb.Transaction, content: ContentStore, *, raw: int, stored: int) -> None:
    current = txn.get(STATS_KEY, db=content._db["meta"])
    stats = msgpack.unpackb(current) if current else {"raw": 0, "stored": 0}
    stats["raw"] = max(0, stats["raw"] + raw)
    stats["stored"] = max(0, stats["stored"] + stored)
    txn.put(STATS_KEY, msgpack.packb(stats), db=content._db["meta"])
