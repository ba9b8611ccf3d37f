"""Fixtures for the store tests: a real LMDB store with the UCXL databases, in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bzzz_edge.store import Store
from bzzz_edge.store.content import DATABASES, ContentStore


@pytest.fixture
def content(tmp_path: Path) -> Iterator[ContentStore]:
    store = Store(tmp_path / "store", map_size=2**22, databases=DATABASES)
    yield ContentStore(store, author="node-a", max_content_bytes=2**20, compress_min_bytes=128)
    store.close()
