"""The read side of the versioned UCXL store: versions, content, history, listing, figures.
Does I/O (LMDB read transactions).

``ContentReader`` reads the content databases (``DATABASES``; their keys and values are in
``_records``) straight from the map, never through the writer: ``get`` resolves the temporal
segment exactly per SPEC (``NoSuchVersion`` with the count that exists), ``history`` lists
versions, ``list`` matches a pattern (wildcards, path prefixes) a page at a time. The writes
are ``content.ContentStore``'s, a ``ContentReader`` with the writes added.

Bounds: ``list`` returns at most ``MAX_PAGE`` (1,000) items and scans at most ``MAX_SCAN``
index entries per call (a page token continues); ``history`` at most ``MAX_PAGE``.
"""

from __future__ import annotations

from typing import Any

import lmdb
import msgpack

from ..errors import StorageError
from ..ucxl import Address
from ..ucxl.forms import base_of, with_version
from ..wire.compression import decode
from ._env import Store
from ._records import (
    CODEC_NAMES,
    NotFound,
    Version,
    address_of,
    concrete,
    payload,
    scan_prefix,
    version_key,
)

__all__ = ["DATABASES", "MAX_PAGE", "MAX_SCAN", "STATS_KEY", "ContentReader"]

DATABASES = ("ucxl_keys", "ucxl_versions", "ucxl_index", "ucxl_announced", "blobs", "blob_refs")
MAX_SCAN = 10_000
MAX_PAGE = 1_000
STATS_KEY = b"ucxl_stats"  # in "meta": raw and stored bytes of every blob


class ContentReader:
    """Reads versioned content under UCXL addresses in ``store`` (opened with ``DATABASES``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._db = {name: store.db(name) for name in (*DATABASES, "meta")}

    def get(self, address: Address | str) -> tuple[Version, bytes]:
        """The version ``address`` selects and its content.

        Raises:
            UCXLError: malformed, or a wildcard address (use ``list``).
            NoSuchVersion: the temporal segment selects no existing version (count included;
                0 when nothing was ever stored there).
            NotFound: the selected version is a tombstone.
        """
        # The hot read path: one read transaction, no context-manager generator.
        addr = concrete(address_of(address))
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
        record["c"], record["st"] = CODEC_NAMES[blob[0]], len(blob)
        assert keys is not None
        return Version.unpack(keys["a"], selected, record), payload(blob, record["s"])

    def meta(self, address: Address | str) -> Version:
        """The version ``address`` selects (raises like ``get``), without reading content."""
        addr = concrete(address_of(address))
        with self._store.reading() as txn:
            n, _ = self._latest_in(txn, addr, record=False)
            selected = addr.resolve(n)  # NoSuchVersion with 0 versions when never written
            version = self._version_in(txn, addr.content_key, base_of(addr), selected)
        if version.deleted:
            raise self._tombstone(addr, selected, n)
        return version

    def _tombstone(self, addr: Address, selected: int, n: int) -> NotFound:
        return NotFound(f"{with_version(base_of(addr), selected)} is a deletion (tombstone); "
                        "earlier versions are kept", address=addr.canonical, versions=n,
                        deleted=True)

    def history(self, address: Address | str, *, start: int = 1,
                limit: int = MAX_PAGE) -> list[Version]:
        """Versions ``start``.. (at most ``limit``, at most 1,000) of an address, oldest first;
        an empty list when nothing was stored."""
        addr = concrete(address_of(address))
        limit = max(1, min(limit, MAX_PAGE))
        with self._store.reading() as txn:
            n, _ = self._latest_in(txn, addr, record=False)
            return [self._version_in(txn, addr.content_key, base_of(addr), v)
                    for v in range(max(1, start), min(n, max(1, start) + limit - 1) + 1)]

    def list(self, pattern: Address | str, *, limit: int = 100, after: bytes = b"",
             deleted: bool = False) -> tuple[list[Version], bytes | None]:
        """The latest version of each address ``pattern`` matches, in index order.

        Returns (versions, token): pass ``after=token`` for the next page; the token is None
        when the listing is complete. Deleted addresses are left out unless ``deleted``.
        """
        pat = address_of(pattern)
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
        addr = address_of(address)
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
            raw = txn.get(STATS_KEY, db=self._db["meta"])
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
        return n, self._version_in(txn, addr.content_key, base_of(addr), n)

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
        return NotFound(f"{base_of(addr)} {what}", address=addr.canonical, versions=n,
                        deleted=deleted)
