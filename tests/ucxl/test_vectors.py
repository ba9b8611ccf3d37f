"""Every vector in vectors.json (a copy of shared/ucxl/vectors.json) on both implementations."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bzzz_edge.ucxl import NoSuchVersion, UCXLError

VECTORS = json.loads(Path(__file__).with_name("vectors.json").read_text(encoding="utf-8"))
FIELDS = ("agent", "role", "project", "task", "temporal", "count", "path")
VALID = [v for v in VECTORS["addresses"] if v["valid"]]
INVALID = [v for v in VECTORS["addresses"] if not v["valid"]]


def _id(text: str) -> str:
    return repr(text) if len(text) < 60 else f"{text[:40]!r}...({len(text)} chars)"


def test_vectors_cover_every_section() -> None:
    assert VALID and INVALID and VECTORS["resolution"] and VECTORS["matching"]


@pytest.mark.parametrize("vector", VALID, ids=[_id(v["input"]) for v in VALID])
def test_valid_vector_parses_to_its_fields_and_canonical_form(
    ucxl_impl: ModuleType, vector: dict[str, Any]
) -> None:
    address = ucxl_impl.parse(vector["input"])
    for field in FIELDS:
        assert getattr(address, field) == vector[field], field
    assert address.canonical == vector["canonical"]
    assert str(address) == vector["canonical"]
    assert ucxl_impl.parse(vector["canonical"]) == address


@pytest.mark.parametrize("vector", INVALID, ids=[_id(v["input"]) for v in INVALID])
def test_invalid_vector_raises_ucxl_error_with_position(
    ucxl_impl: ModuleType, vector: dict[str, Any]
) -> None:
    text = vector["input"]
    with pytest.raises(UCXLError) as info:
        ucxl_impl.parse(text)
    position = info.value.position
    # len(text) means the address ended where more was expected.
    assert 0 <= position <= len(text)
    if "position" in vector:
        assert position == vector["position"]
    assert f"position {position}" in str(info.value)
    assert isinstance(info.value, ValueError)


RESOLUTION = VECTORS["resolution"]


@pytest.mark.parametrize(
    "vector", RESOLUTION, ids=[f"{v['temporal']}-of-{v['versions']}" for v in RESOLUTION]
)
def test_resolution_vector(ucxl_impl: ModuleType, vector: dict[str, Any]) -> None:
    address = ucxl_impl.parse(f"ucxl://a:b@c:d/{vector['temporal']}/doc")
    if vector["selects"] is None:
        with pytest.raises(NoSuchVersion) as info:
            address.resolve(vector["versions"])
        assert info.value.versions == vector["versions"]
        assert f"{vector['versions']} version" in str(info.value)
    else:
        assert address.resolve(vector["versions"]) == vector["selects"]


MATCHING = VECTORS["matching"]


@pytest.mark.parametrize(
    "vector", MATCHING, ids=[f"{v['pattern']}~{v['address']}" for v in MATCHING]
)
def test_matching_vector(ucxl_impl: ModuleType, vector: dict[str, Any]) -> None:
    pattern = ucxl_impl.parse(vector["pattern"])
    assert pattern.matches(ucxl_impl.parse(vector["address"])) is vector["matches"]
    assert pattern.matches(vector["address"]) is vector["matches"]


ALL_INPUTS = [v["input"] for v in VECTORS["addresses"]]


@pytest.mark.parametrize("text", ALL_INPUTS, ids=[_id(text) for text in ALL_INPUTS])
def test_vector_outcome_is_identical_in_both_implementations(
    pure: ModuleType, compiled: ModuleType, outcome: Any, text: str
) -> None:
    assert outcome(pure, text) == outcome(compiled, text)
