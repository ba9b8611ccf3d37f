"""Fixtures for the pub/sub tests on real node processes (helpers: tests/_harness/pubsub.py).

Does I/O: node processes, HTTP, event streams.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

_HARNESS = Path(__file__).parent.parent / "_harness" / "pubsub.py"


def _harness() -> ModuleType:
    key = "_bzzz_test_harness_pubsub"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, _HARNESS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


@pytest.fixture
def ps() -> ModuleType:
    """The pub/sub test helpers (publish, topics, wait_until, start_cluster...)."""
    return _harness()


@pytest.fixture
def streams() -> Iterator:
    """Open a node's event stream of a topic: ``streams(api, topic)``; closed at the end."""
    open_stream, close_all = _harness().open_streams()
    yield open_stream
    close_all()
