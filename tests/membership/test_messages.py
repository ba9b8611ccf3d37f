"""Membership wire format: exact round trips, and strict rejection of anything else."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.errors import DecodeError
from bzzz_edge.membership import (
    Ack,
    Address,
    AliveUpdate,
    DeadUpdate,
    Gossip,
    Nack,
    Ping,
    PingReq,
    Status,
    SuspectUpdate,
    Sync,
    SyncEntry,
    UnknownMessage,
    decode_message,
    encode_message,
)

from .conftest import nid

ADDR = Address("pi-4.local", 7946)
UPDATES = (
    AliveUpdate(nid(1), 3, ADDR, {"proto": 1, "role": "qa", "flag": True, "blob": b"\x00"}),
    SuspectUpdate(nid(2), 0, nid(3)),
    DeadUpdate(nid(4), 2**63 - 1, nid(4)),
)
MESSAGES = [
    Ping(0, nid(1), UPDATES),
    PingReq(2**32 - 1, nid(2)),
    Ack(17, UPDATES[:1]),
    Nack(18),
    Gossip(UPDATES),
    Sync(False, (SyncEntry(nid(1), 1, Status.SUSPECT, ADDR, {}),)),
    Sync(True, tuple(SyncEntry(nid(i), i, Status(1 + i % 4), ADDR, {"i": i}) for i in range(8))),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_msgpack(message: object) -> None:
    wire = msgpack.unpackb(msgpack.packb(encode_message(message)))  # type: ignore[arg-type]
    assert decode_message(wire) == message


def test_dead_update_from_the_node_itself_is_a_leave() -> None:
    assert DeadUpdate(nid(1), 0, nid(1)).left
    assert not DeadUpdate(nid(1), 0, nid(2)).left


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"kind": 1}, "message: expected a list"),
        ([1], "at least kind and version"),
        (["1", 1], "message.kind"),
        ([1, 1, 0, nid(1)], "ping: expected 5 fields"),
        ([1, 1, 2**32, nid(1), []], "ping.seq"),
        ([2, 1, 0, nid(1)[:31], []], "ping_req.target: expected a node ID of 32 bytes"),
        ([3, 1, 0, [[1, nid(1), 0, "", 1, {}]]], "ack.updates[0].address.host"),
        ([4, 1, 0, [[], []]], "nack.updates[0]: empty update"),
        ([5, 1, [[2, nid(1), -1, nid(2)]]], "gossip.updates[0].incarnation"),
        ([5, 1, [[3, nid(1), 0, "x" * 32]]], "gossip.updates[0].source"),
        ([5, 1, [[1, nid(1), 0, "h", 1, {"k": 1.5}]]], "gossip.updates[0].meta['k']"),
        ([5, 1, [[1, nid(1), 0, "h", 1, {"": 1}]]], "gossip.updates[0].meta key"),
        ([5, 1, [[1, nid(1), 0, "h", 1, {"k": "v" * 257}]]], "at most 256"),
        ([5, 1, [[1, nid(1), 0, "h", 1, {str(i): i for i in range(17)}]]], "at most 16"),
        ([5, 1, [[1, nid(1), 0, "h", True, {}]]], "address.port"),
        ([5, 1, [[2, nid(1), 0, nid(2)]] * 257], "at most 256 items"),
        ([6, 1, 0, []], "sync.reply: expected a bool"),
        ([6, 1, True, [[nid(1), 0, 5, "h", 1, {}]]], "sync.entries[0].status"),
    ],
)
def test_malformed_messages_name_the_offending_field(value: object, where: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_message(value)
    assert where in str(info.value)


def test_unknown_kinds_and_versions_decode_to_unknown_message() -> None:
    assert decode_message([42, 1, "anything"]) == UnknownMessage(42, 1)
    assert decode_message([1, 2]) == UnknownMessage(1, 2)


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.binary(max_size=40),
    st.text(max_size=8),
    st.sampled_from([nid(1), nid(2), 0, 1, 2, 3, 4, 5, 6]),
)
_values = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=30,
)
_near_valid = st.builds(
    lambda kind, rest: [kind, 1, *rest],
    st.integers(min_value=0, max_value=7),
    st.lists(_values, max_size=5),
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_values, _near_valid))
def test_decoding_arbitrary_values_raises_only_decode_error(value: object) -> None:
    try:
        decoded = decode_message(value)
    except DecodeError:
        return
    # Whatever decodes must encode back to an equivalent message.
    if not isinstance(decoded, UnknownMessage):
        assert decode_message(encode_message(decoded)) == decoded
