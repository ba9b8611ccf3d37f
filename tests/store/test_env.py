"""The LMDB store: durability markers, batches, growth when full, and use after close."""

from __future__ import annotations

import pytest

from bzzz_edge.errors import StorageError
from bzzz_edge.store import Store


def test_clean_shutdown_marker_and_start_count(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20)
    assert store.previous_clean is True and store.get_meta("starts", 0) == 1
    store.close()
    store = Store(tmp_path / "s", map_size=2**20)
    assert store.previous_clean is True and store.get_meta("starts", 0) == 2
    store.close()  # (an unclean end is tested with kill -9 in tests/lifecycle)


def test_batches_put_and_delete(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20)
    store.write_batch({("peers", b"a"): {"x": 1}, ("peers", b"b"): [2]})
    store.write_batch({("peers", b"a"): None})
    assert dict(store.items("peers")) == {b"b": [2]}
    store.close()


def test_map_grows_when_full(tmp_path):
    store = Store(tmp_path / "s", map_size=64 * 1024)
    for i in range(64):
        store.put("peers", i.to_bytes(4, "big"), b"x" * 4096)
    assert len(list(store.items("peers"))) == 64
    store.close()


def test_closed_store_refuses_with_a_clear_error(tmp_path):
    store = Store(tmp_path / "s", map_size=2**20)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="is closed"):
        store.put("peers", b"k", 1)
