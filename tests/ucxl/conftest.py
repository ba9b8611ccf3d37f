"""Fixtures for the UCXL tests: both implementations side by side, and one way to compare them.

``pure`` and ``compiled`` are the two modules for tests that compare implementations (the
per-implementation tests use ``ucxl_impl`` from tests/conftest.py). As there, the compiled one
is skipped when it was not built, unless BZZZ_EDGE_REQUIRE_NATIVE=1, where that fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest

from bzzz_edge import _native
from bzzz_edge.ucxl import UCXLError

REQUIRE_NATIVE = os.environ.get("BZZZ_EDGE_REQUIRE_NATIVE") == "1"


@pytest.fixture(scope="session")
def pure() -> ModuleType:
    return _native.pure_module("ucxl")


@pytest.fixture(scope="session")
def compiled() -> ModuleType:
    module = _native.compiled_module("ucxl")
    if module is None:
        if REQUIRE_NATIVE:
            pytest.fail("compiled module for 'ucxl' is missing but BZZZ_EDGE_REQUIRE_NATIVE=1")
        pytest.skip("compiled module for 'ucxl' was not built (no C compiler at install?)")
    return module


def _outcome(module: ModuleType, text: Any) -> tuple[Any, ...]:
    """Everything observable about parsing ``text`` with ``module``.

    Only UCXLError is caught: any other exception escapes and fails the test.
    """
    try:
        address = module.parse(text)
    except UCXLError as exc:
        assert 0 <= exc.position <= len(text), (text, exc.position)
        return ("error", type(exc), str(exc), exc.position)
    return (
        "ok",
        address.canonical,
        str(address),
        repr(address),
        address.agent,
        address.role,
        address.project,
        address.task,
        address.temporal,
        address.count,
        address.path,
        address.temporal_segment,
        address.has_wildcards,
        address.content_key,
    )


@pytest.fixture(scope="session")
def outcome() -> Callable[[ModuleType, Any], tuple[Any, ...]]:
    return _outcome
