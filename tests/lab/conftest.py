"""The membership lab (tests/_harness/membership_lab.py): six nodes (``lab``) or five
(``lab5``), one per test module.

Loaded by path, as the other harness files are (tests cannot import each other); skips with
the reason where namespaces, ``nft`` or ``ethtool`` are not available.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HARNESS = Path(__file__).parents[1] / "_harness" / "membership_lab.py"


def _load() -> ModuleType:
    key = "_bzzz_test_harness_membership_lab"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HARNESS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


membership_lab = _load()


def _started(tmp_path_factory: pytest.TempPathFactory, n: int) -> Iterator[Any]:
    """``n`` nodes on a namespace LAN, started and converged (wired); skips where impossible."""
    reason = membership_lab.unavailable_reason()
    if reason is not None:
        pytest.skip(f"membership lab unavailable: {reason}")
    with membership_lab.MembershipLab(tmp_path_factory.mktemp(f"lab{n}"), n) as the_lab:
        the_lab.start()
        the_lab.wait_until(the_lab.converged, 60, f"{n} nodes converged")
        # Membership converges before a node's API is up (it writes node.json once it is).
        the_lab.wait_until(the_lab.serving, 60, f"{n} nodes' APIs up")
        yield the_lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Six nodes: the issue 10 lab."""
    yield from _started(tmp_path_factory, 6)


@pytest.fixture(scope="module")
def lab5(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Five nodes: a 2-3 split's worth."""
    yield from _started(tmp_path_factory, 5)
