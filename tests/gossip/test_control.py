"""Pub/sub control messages: roundtrip, strict decoding with named fields, bounds."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.errors import DecodeError
from bzzz_edge.gossip import Control, decode_control, encode_control
from bzzz_edge.gossip._control import MAX_CONTROL_IDS, MAX_CONTROL_TOPICS
from bzzz_edge.wire.envelope import decode_envelope, encode_envelope
from bzzz_edge.wire.types import KNOWN_TYPES, PUBSUB_CONTROL

_TOPIC = st.text(min_size=1, max_size=30)
_IDS = st.lists(st.binary(min_size=16, max_size=16), max_size=5).map(tuple)
_CONTROLS = st.builds(
    Control,
    subscriptions=st.lists(st.tuples(_TOPIC, st.booleans()), max_size=4).map(tuple),
    graft=st.lists(_TOPIC, max_size=3).map(tuple),
    prune=st.lists(_TOPIC, max_size=3).map(tuple),
    ihave=st.lists(st.tuples(_TOPIC, _IDS), max_size=3).map(tuple),
    iwant=_IDS,
    neighbours=st.none() | st.lists(st.binary(min_size=32, max_size=32), max_size=4).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(control=_CONTROLS)
def test_control_roundtrips_through_the_envelope(control: Control) -> None:
    envelope = decode_envelope(encode_envelope(encode_control(control)), KNOWN_TYPES)
    assert envelope.kind == PUBSUB_CONTROL.key
    assert decode_control(envelope.body) == control  # type: ignore[union-attr]


def _body(*fields: object) -> bytes:
    packed = msgpack.packb(list(fields), use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\xc1", "malformed msgpack"),
        (_body([], [], []), "3 fields, expected 6"),
        (msgpack.packb({"a": 1}), "'message': expected array, got dict"),
        (_body([["t", 1]], [], [], [], [], None), "expected [topic, bool]"),
        (_body([], [b"t"], [], [], [], None), "'graft': topic must be str"),
        (_body([], [], [""], [], [], None), "'prune': topic length"),
        (_body([], [], [], [["t", [b"short"]]], [], None), "'ihave': expected bin 16"),
        (_body([], [], [], [], [b"x" * 17], None), "'iwant': expected bin 16"),
        (_body([], [], [], [], [], [b"x" * 31]), "'neighbours': expected bin 32"),
        (_body([], ["t"] * (MAX_CONTROL_TOPICS + 1), [], [], [], None), "'graft': 513 items"),
        (_body([], [], [], [["t", [b"x" * 16] * MAX_CONTROL_IDS]], [b"y" * 16], None),
         "'iwant': 1 items, at most 0"),
    ],
)
def test_malformed_control_names_the_field(body: bytes, error: str) -> None:
    with pytest.raises(DecodeError, match=f"pubsub control.*{__import__('re').escape(error)}"):
        decode_control(body)


def test_empty_control_is_falsy_and_neighbours_alone_is_not() -> None:
    assert not Control()
    assert Control(neighbours=())
