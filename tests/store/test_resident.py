"""The store's mapped pages leave the resident set after a burst (store/_resident.py): the data
reads the same afterwards, the map's resident pages are gone, and a closed store is left
alone. A real LMDB store in a temporary directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bzzz_edge.store import Store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc/self/smaps and uses madvise")


def _map_resident_kib(store: Store) -> int:
    """Resident KiB of this process's maps of the store's data file."""
    target, total, current = os.path.realpath(store.path / "data.mdb"), 0, ""
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                current = fields[5] if len(fields) > 5 else ""
            elif fields and fields[0] == "Rss:" and current == target:
                total += int(fields[1])
    return total


def test_pages_are_unmapped_and_the_data_reads_the_same(tmp_path: Path) -> None:
    store = Store(tmp_path / "store", map_size=2**24, databases=("x",))
    try:
        db = store.db("x")
        values = {os.urandom(16): os.urandom(900) for _ in range(2000)}
        store.writer.write_sync(lambda txn: [txn.put(k, v, db=db) for k, v in values.items()])
        with store.reading("x") as txn:
            assert dict(txn.cursor()) == values  # every page of the tree read: all mapped
        assert _map_resident_kib(store) > 0
        assert store.forget_resident_pages() > 0
        assert _map_resident_kib(store) == 0
        with store.reading("x") as txn:
            assert dict(txn.cursor()) == values
        store.writer.write_sync(lambda txn: txn.put(b"after", b"forgetting", db=db))
        with store.reading("x") as txn:
            assert txn.get(b"after") == b"forgetting"
    finally:
        store.close()
    assert store.forget_resident_pages() == 0  # closed: nothing mapped, nothing advised
