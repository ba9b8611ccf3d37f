"""Shared test fixtures.

A test that takes ``ucxl_impl``, ``dedup_impl`` or ``lz4_impl`` runs once against the pure-Python
twin and once against the compiled module. Where the compiled module was not built the compiled
run is skipped, unless BZZZ_EDGE_REQUIRE_NATIVE=1 (CI), where it fails.
"""

from __future__ import annotations

import os

import pytest

from bzzz_edge import _native

REQUIRE_NATIVE = os.environ.get("BZZZ_EDGE_REQUIRE_NATIVE") == "1"
_IMPL_FIXTURES = {f"{name}_impl": name for name in _native.PURE_MODULES}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, name in _IMPL_FIXTURES.items():
        if fixture in metafunc.fixturenames:
            metafunc.parametrize(fixture, ["pure", "compiled"], indirect=True)


def _impl(request: pytest.FixtureRequest, name: str):
    if request.param == "pure":
        return _native.pure_module(name)
    module = _native.compiled_module(name)
    if module is None:
        if REQUIRE_NATIVE:
            pytest.fail(f"compiled module for {name!r} is missing but BZZZ_EDGE_REQUIRE_NATIVE=1")
        pytest.skip(f"compiled module for {name!r} was not built (no C compiler at install?)")
    return module


@pytest.fixture
def ucxl_impl(request: pytest.FixtureRequest):
    return _impl(request, "ucxl")


@pytest.fixture
def dedup_impl(request: pytest.FixtureRequest):
    return _impl(request, "dedup")


@pytest.fixture
def lz4_impl(request: pytest.FixtureRequest):
    return _impl(request, "lz4")
