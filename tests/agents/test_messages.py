"""The agents topic's messages: what a node sends decodes to the same, and whatever a peer
sends that is malformed or over a bound is refused with a reason, never another exception."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.agents import (
    MAX_MESSAGE_BYTES,
    MAX_TASK_IDS,
    MAX_WANTED,
    Availability,
    Refusal,
    Refused,
    Want,
    decode,
    encode_availability,
    encode_want,
    profile_digest,
)
from bzzz_edge.ids import format_node_id

ROLES = {"backend": ("src/*", "*.py"), "docs": ("docs/*",)}
CAPS = frozenset({"python", "gpu"})


def availability(**changes: Any) -> Availability:
    fields: dict[str, Any] = dict(
        name="node0", load=(0.5, 0.25, 0.125), memory_percent=42.5,
        memory_available=2**30, cpus=4, capacity=4, held=1, tasks=("t1",),
        profile=profile_digest(ROLES, CAPS), roles=ROLES, capabilities=CAPS)
    fields.update(changes)
    return Availability(**fields)


def body(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(encode_availability(availability()))
    raw.update(changes)
    return raw


def refusal(raw: Any) -> Refusal:
    with pytest.raises(Refused) as caught:
        decode(raw if isinstance(raw, bytes) else json.dumps(raw).encode())
    return caught.value.reason


def node(i: int) -> bytes:
    return hashlib.sha256(b"agents message node %d" % i).digest()


def test_availability_with_roles_round_trips() -> None:
    assert decode(encode_availability(availability())) == availability()


def test_availability_without_roles_round_trips_with_none() -> None:
    plain = availability(roles=None, capabilities=None)
    data = encode_availability(plain)
    assert b"roles" not in data and b"capabilities" not in data
    assert decode(data) == plain


def test_want_round_trips_node_ids() -> None:
    nodes = (node(1), node(2))
    assert decode(encode_want(tuple(format_node_id(n) for n in nodes))) == Want(nodes)


def test_profile_digest_is_order_free_and_tells_profiles_apart() -> None:
    same = {"docs": ("docs/*",), "backend": ("src/*", "*.py")}
    assert profile_digest(ROLES, CAPS) == profile_digest(same, frozenset(["gpu", "python"]))
    assert profile_digest(ROLES, CAPS) != profile_digest(ROLES, frozenset({"python"}))
    assert profile_digest(ROLES, CAPS) != profile_digest({"backend": ("src/*",)}, CAPS)


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe not json", Refusal.MALFORMED),
    (b"[1, 2, 3]", Refusal.MALFORMED),
    (b"[" * 100_000, Refusal.TOO_LONG),  # over the byte bound, never parsed
    (b"[" * 50_000 + b"]" * 10, Refusal.MALFORMED),  # nesting past the parser's depth
])
def test_bytes_that_are_no_message_are_refused(raw: bytes, reason: Refusal) -> None:
    assert refusal(raw) is reason


def test_a_message_over_the_byte_bound_is_refused_before_parsing() -> None:
    data = encode_availability(availability()).replace(b'"node0"', b'"' + b"x" * 70_000 + b'"')
    assert len(data) > MAX_MESSAGE_BYTES
    assert refusal(data) is Refusal.TOO_LONG


@pytest.mark.parametrize("changes", [
    {"type": "gossip"}, {"v": 2}, {"v": None},
])
def test_unknown_types_and_versions_are_refused(changes: dict[str, Any]) -> None:
    assert refusal(body(**changes)) is Refusal.UNKNOWN


@pytest.mark.parametrize("changes", [
    {"capacity": True}, {"capacity": -1}, {"capacity": "4"}, {"held": 1.5},
    {"load": [1, 2]}, {"load": [1, 2, "x"]}, {"load": [1, 2, -1]},
    {"memory_percent": 101}, {"memory_percent": None}, {"cpus": 10**6},
    {"name": 5}, {"tasks": "t1"}, {"tasks": [1]}, {"profile": 7},
    {"roles": ["backend"]}, {"capabilities": "python"},
    {"capabilities": ["gpu", "gpu", "python"]},
    {"memory_available": -5},
])
def test_fields_of_the_wrong_type_or_range_are_malformed(changes: dict[str, Any]) -> None:
    assert refusal(body(**changes)) is Refusal.MALFORMED


def test_missing_fields_are_malformed() -> None:
    for key in ("name", "load", "capacity", "held", "tasks", "profile", "memory_percent"):
        raw = body()
        del raw[key]
        assert refusal(raw) is Refusal.MALFORMED, key


def test_roles_without_capabilities_are_malformed() -> None:
    raw = body()
    del raw["capabilities"]
    assert refusal(raw) is Refusal.MALFORMED


@pytest.mark.parametrize("changes", [
    {"name": "n" * 65},
    {"tasks": [f"t{i}" for i in range(MAX_TASK_IDS + 1)]},
    {"tasks": ["t" * 65]},
    {"profile": "0" * 17},
    {"roles": {f"r{i}": ["*"] for i in range(17)}},
    {"roles": {"backend": ["*"] * 65}},
    {"roles": {"backend": ["x" * 257]}},
    {"capabilities": ["c" * 65]},
    {"capabilities": [f"c{i}" for i in range(33)]},
])
def test_over_long_fields_are_refused_as_too_long(changes: dict[str, Any]) -> None:
    assert refusal(body(**changes)) is Refusal.TOO_LONG


def test_roles_that_do_not_match_their_digest_are_refused() -> None:
    assert refusal(body(roles={"devops": ["deploy/*"]})) is Refusal.DIGEST


def test_wants_with_bad_node_ids_or_too_many_are_refused() -> None:
    good = format_node_id(node(1))
    assert refusal({"type": "want", "v": 1, "nodes": [good[:-1] + "A"]}) is Refusal.MALFORMED
    assert refusal({"type": "want", "v": 1, "nodes": "x"}) is Refusal.MALFORMED
    assert refusal({"type": "want", "v": 1, "nodes": [3]}) is Refusal.MALFORMED
    assert refusal({"type": "want", "v": 1,
                    "nodes": [good] * (MAX_WANTED + 1)}) is Refusal.TOO_LONG


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_decode_or_are_refused(data: bytes) -> None:
    with contextlib.suppress(Refused):
        decode(data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "load", "memory_percent", "memory_available",
                                        "cpus", "capacity", "held", "tasks", "profile",
                                        "roles", "capabilities", "nodes"]), _json),
       st.sampled_from(["availability", "want"]))
def test_any_fields_of_a_known_type_decode_or_are_refused(fields: dict[str, Any],
                                                          kind: str) -> None:
    raw = {**body(), **fields} if kind == "availability" else fields
    with contextlib.suppress(Refused):
        decode(json.dumps({**raw, "type": kind, "v": 1}).encode())
