"""Typed, versioned msgpack envelopes and origin-signed gossip messages."""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.errors import (
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    SignatureError,
)
from bzzz_edge.wire.constants import GOSSIP_SIGNATURE_DOMAIN
from bzzz_edge.wire.envelope import (
    DirectMessage,
    GossipMessage,
    StaleMessageError,
    UnknownMessage,
    check_timestamp,
    decode_envelope,
    encode_envelope,
    message_id,
    sign_gossip,
    unpack_strict,
    verify_gossip,
)

NET = b"network-id-0001"
NOW = 1_700_000_000_000
KEY = Ed25519PrivateKey.generate()
KNOWN = frozenset({("dht.find_node", 1), ("swim.ping", 2)})
FUZZ = settings(max_examples=300, deadline=None)


def _gossip(key: Ed25519PrivateKey = KEY, **fields: object) -> GossipMessage:
    values: dict[str, object] = {
        "network_id": NET,
        "seq": 7,
        "timestamp_ms": NOW,
        "topic": "bzzz/coordination/v1",
        "body": b"\x04\x22compressed",
    }
    values.update(fields)
    return sign_gossip(key, **values)  # type: ignore[arg-type]


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _fields(message: GossipMessage) -> list[object]:
    return ["gossip", 1, *(getattr(message, f.name) for f in dataclasses.fields(message))]


def _pack(items: object) -> bytes:
    return msgpack.packb(items, use_bin_type=True)


# --- gossip round trip ------------------------------------------------------------------------


def test_gossip_sign_encode_decode_verify_roundtrip() -> None:
    message = _gossip()
    decoded = decode_envelope(encode_envelope(message))
    assert decoded == message
    assert isinstance(decoded, GossipMessage)
    verify_gossip(decoded, NET)
    check_timestamp(decoded, now_ms=NOW)
    assert decoded.origin == hashlib.sha256(_raw(KEY)).digest()
    assert decoded.origin_key == _raw(KEY)


def test_signature_covers_the_documented_canonical_encoding() -> None:
    message = _gossip(body=None)
    signed = GOSSIP_SIGNATURE_DOMAIN + _pack(
        [NET, message.origin, message.seq, message.timestamp_ms, message.topic, None]
    )
    Ed25519PublicKey.from_public_bytes(_raw(KEY)).verify(message.signature, signed)


def test_message_id_is_blake2b_of_origin_big_endian_seq_and_topic() -> None:
    message = _gossip(seq=2**40 + 5)
    expected = hashlib.blake2b(
        message.origin + (2**40 + 5).to_bytes(8, "big") + message.topic.encode(), digest_size=16
    ).digest()
    assert message.msg_id == expected == message_id(message.origin, 2**40 + 5, message.topic)
    assert _gossip(seq=2**40 + 5, body=b"other", timestamp_ms=NOW + 1).msg_id == expected
    assert _gossip(seq=2**40 + 6).msg_id != expected
    # Sequence numbers count per topic, so the same number on another topic is another message.
    assert _gossip(seq=2**40 + 5, topic="other/topic").msg_id != expected


def test_hops_lie_outside_the_signature_and_roundtrip() -> None:
    message = dataclasses.replace(_gossip(), hops=7)
    verify_gossip(message, NET)
    decoded = decode_envelope(encode_envelope(message))
    assert isinstance(decoded, GossipMessage) and decoded.hops == 7
    with pytest.raises(LocalProtocolError, match="'hops': 256 outside"):
        encode_envelope(dataclasses.replace(message, hops=256))


def test_gossip_without_body_roundtrips_and_differs_from_empty_body() -> None:
    no_body, empty = _gossip(body=None), _gossip(body=b"")
    assert decode_envelope(encode_envelope(no_body)) == no_body
    swapped = dataclasses.replace(no_body, body=b"")
    with pytest.raises(SignatureError):
        verify_gossip(swapped, NET)
    verify_gossip(empty, NET)


# --- signature failures -----------------------------------------------------------------------


def test_forged_signature_by_another_key_is_refused() -> None:
    genuine = _gossip()
    forged = _gossip(key=Ed25519PrivateKey.generate())
    claimed = dataclasses.replace(genuine, signature=forged.signature)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_gossip(claimed, NET)
    with pytest.raises(SignatureError):
        verify_gossip(dataclasses.replace(genuine, signature=bytes(64)), NET)


def test_wrong_network_id_fails_verification() -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        verify_gossip(_gossip(), b"another-network")


def test_origin_key_not_matching_origin_is_refused() -> None:
    genuine = _gossip()
    other = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="not the node ID"):
        verify_gossip(dataclasses.replace(genuine, origin_key=_raw(other)), NET)
    # an attacker re-labelling a message as its own, keeping the signature
    relabelled = dataclasses.replace(
        genuine, origin_key=_raw(other), origin=hashlib.sha256(_raw(other)).digest()
    )
    with pytest.raises(SignatureError, match="does not verify"):
        verify_gossip(relabelled, NET)


def test_invalid_origin_key_point_is_a_signature_error() -> None:
    bad_key = b"\xff" * 32  # not a valid Ed25519 point encoding
    message = dataclasses.replace(
        _gossip(), origin_key=bad_key, origin=hashlib.sha256(bad_key).digest()
    )
    with pytest.raises(SignatureError):
        verify_gossip(message, NET)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", 8),
        ("timestamp_ms", NOW + 1),
        ("topic", "bzzz/meta/escalation"),
        ("body", b"\x04\x22compresseD"),
        ("body", None),
    ],
)
def test_tampered_field_fails_verification_after_the_wire(field: str, value: object) -> None:
    tampered = dataclasses.replace(_gossip(), **{field: value})
    decoded = decode_envelope(encode_envelope(tampered))
    assert isinstance(decoded, GossipMessage)
    with pytest.raises(SignatureError):
        verify_gossip(decoded, NET)


# --- timestamps -------------------------------------------------------------------------------


def test_timestamp_window_edges() -> None:
    message = _gossip()
    check_timestamp(message, now_ms=NOW + 60_000)
    check_timestamp(message, now_ms=NOW - 60_000)
    with pytest.raises(StaleMessageError, match="60001 ms in the past") as old:
        check_timestamp(message, now_ms=NOW + 60_001)
    assert old.value.skew_ms == 60_001
    with pytest.raises(StaleMessageError, match="60001 ms in the future") as future:
        check_timestamp(message, now_ms=NOW - 60_001)
    assert future.value.skew_ms == -60_001
    assert isinstance(future.value, RemoteProtocolError)


def test_timestamp_window_is_configurable() -> None:
    message = _gossip()
    check_timestamp(message, now_ms=NOW + 5_000, window_ms=5_000)
    with pytest.raises(StaleMessageError):
        check_timestamp(message, now_ms=NOW + 5_001, window_ms=5_000)
    with pytest.raises(LocalProtocolError, match="window_ms"):
        check_timestamp(message, now_ms=NOW, window_ms=-1)


# --- direct and unknown messages --------------------------------------------------------------


def test_direct_message_roundtrip_for_known_types() -> None:
    message = DirectMessage("dht.find_node", 1, _pack({"target": b"\x01" * 32}))
    decoded = decode_envelope(encode_envelope(message), KNOWN)
    assert decoded == message
    assert isinstance(decoded, DirectMessage)
    assert unpack_strict(decoded.body, what="find_node") == {"target": b"\x01" * 32}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["mystery", 1, b"x"], UnknownMessage("mystery", 1)),
        (["dht.find_node", 2, b"x"], UnknownMessage("dht.find_node", 2)),
        (["swim.ping", 1, "a", "b", "c"], UnknownMessage("swim.ping", 1)),
        (["gossip", 2], UnknownMessage("gossip", 2)),
        (["future", 0, {"anything": [1, 2]}], UnknownMessage("future", 0)),
    ],
)
def test_unknown_type_or_version_is_surfaced_not_fatal(
    items: list[object], expected: object
) -> None:
    assert decode_envelope(_pack(items), KNOWN) == expected


def test_direct_type_is_unknown_without_a_registry() -> None:
    wire = encode_envelope(DirectMessage("swim.ping", 2, b""))
    assert decode_envelope(wire) == UnknownMessage("swim.ping", 2)


def test_encoding_refuses_reserved_or_invalid_direct_messages() -> None:
    with pytest.raises(LocalProtocolError, match="reserved"):
        encode_envelope(DirectMessage("gossip", 2, b""))
    with pytest.raises(LocalProtocolError, match="type"):
        encode_envelope(DirectMessage("", 1, b""))
    with pytest.raises(LocalProtocolError, match="version"):
        encode_envelope(DirectMessage("t", -1, b""))
    with pytest.raises(LocalProtocolError, match="body"):
        encode_envelope(DirectMessage("t", 1, "text"))  # type: ignore[arg-type]


def test_encoding_checks_every_body_and_every_new_kind_after_a_kind_passed() -> None:
    # A kind is checked once; its body, and every other kind, still are at each message.
    assert encode_envelope(DirectMessage("t", 1, b"ok"))
    with pytest.raises(LocalProtocolError, match="body"):
        encode_envelope(DirectMessage("t", 1, None))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="type"):
        encode_envelope(DirectMessage(["t"], 1, b""))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="version"):
        encode_envelope(DirectMessage("t", True, b""))


def test_encoding_is_byte_identical_to_msgpack_packb() -> None:
    # The module's one Packer writes what a fresh ``msgpack.packb`` would, message after
    # message (nothing of one left in the next), after a failed pack too.
    message = _gossip()
    direct = DirectMessage("swim", 1, b"\x00" * 300)
    for _ in range(3):
        assert encode_envelope(direct) == _pack(["swim", 1, b"\x00" * 300])
        assert encode_envelope(message) == _pack(_fields(message))
        with pytest.raises(LocalProtocolError):
            encode_envelope(DirectMessage("t", 1, "text"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"topic": ""}, "topic"),
        ({"topic": "t" * 257}, "topic"),
        ({"seq": -1}, "seq"),
        ({"seq": 2**64}, "seq"),
        ({"timestamp_ms": -5}, "timestamp_ms"),
        ({"body": "not bytes"}, "body"),
        ({"network_id": b""}, "network_id"),
    ],
)
def test_signing_refuses_out_of_range_fields(fields: dict[str, object], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        _gossip(**fields)


# --- strict decoding --------------------------------------------------------------------------


def _replace(index: int, value: object) -> bytes:
    items = _fields(_gossip())
    items[index] = value
    return _pack(items)


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"\xc1", "malformed msgpack"),
        (b"", "malformed msgpack"),
        (_pack([1, 2]) + b"\x00", "malformed msgpack"),  # trailing bytes
        (b"\xa2\xff\xfe", "malformed msgpack"),  # invalid UTF-8 in a str
        (_pack({1: 2}), "malformed msgpack"),  # non-string map key
        (_pack({"type": "gossip"}), "expected array, got dict"),
        (_pack(["gossip"]), "at least type and version"),
        (_pack([1, 1]), "field 'type': expected str, got int"),
        (_pack([b"gossip", 1]), "field 'type': expected str, got bytes"),
        (_pack(["", 1]), "field 'type': length 0"),
        (_pack(["x" * 65, 1]), "field 'type': length 65"),
        (_pack(["gossip", True]), "field 'version': expected int, got bool"),
        (_pack(["gossip", -1]), "field 'version': -1 outside"),
        (_pack(["gossip", 1.0]), "field 'version': expected int, got float"),
        (_pack(["gossip", 1, b"x"]), "gossip v1 envelope has 3 fields, expected 10"),
        (_replace(2, b"\x00" * 31), "'origin': expected 32 bytes, got 31"),
        (_replace(2, "origin"), "'origin': expected bin, got str"),
        (_replace(3, b"\x00" * 33), "'origin_key': expected 32 bytes, got 33"),
        (_replace(4, -1), "'seq': -1 outside"),
        (_replace(4, True), "'seq': expected int, got bool"),
        (_replace(4, b"\x07"), "'seq': expected int, got bytes"),
        (_replace(5, 1.5), "'timestamp_ms': expected int, got float"),
        (_replace(5, -1), "'timestamp_ms': -1 outside"),
        (_replace(6, b"topic"), "'topic': expected str, got bytes"),
        (_replace(6, "t" * 257), "'topic': length 257"),
        (_replace(7, "body"), "'body': expected bin, got str"),
        (_replace(7, [b"a"]), "'body': expected bin, got list"),
        (_replace(8, b"\x00" * 63), "'signature': expected 64 bytes, got 63"),
        (_replace(8, None), "'signature': expected bin, got NoneType"),
        (_pack(["dht.find_node", 1]), "dht.find_node v1 envelope has 2 fields, expected 3"),
        (_pack(["dht.find_node", 1, "str body"]), "dht.find_node v1 body: expected bin"),
        (_pack(["dht.find_node", 1, msgpack.ExtType(5, b"x")]), "body: expected bin, got ExtType"),
    ],
)
def test_malformed_envelopes_raise_decode_error_naming_the_problem(wire: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match.replace("(", r"\(")):
        decode_envelope(wire, KNOWN)


def test_msgpack_timestamp_extension_is_refused_as_a_field() -> None:
    items = _fields(_gossip())
    items[5] = msgpack.Timestamp(1, 0)
    with pytest.raises(DecodeError, match="'timestamp_ms': expected int, got Timestamp"):
        decode_envelope(msgpack.packb(items, use_bin_type=True, datetime=False))


# --- fuzz -------------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        decoded = decode_envelope(data, KNOWN)
    except DecodeError:
        return
    assert isinstance(decoded, GossipMessage | DirectMessage | UnknownMessage)


_ENCODED = encode_envelope(_gossip())


@FUZZ
@given(flips=st.lists(st.integers(0, 8 * len(_ENCODED) - 1), min_size=1, max_size=3))
def test_fuzz_bit_flipped_gossip_never_verifies_as_something_else(flips: list[int]) -> None:
    wire = bytearray(_ENCODED)
    for bit in flips:
        wire[bit // 8] ^= 1 << (bit % 8)
    try:
        decoded = decode_envelope(bytes(wire), KNOWN)
        if not isinstance(decoded, GossipMessage):
            return
        verify_gossip(decoded, NET)
    except (DecodeError, SignatureError):
        return
    # Verified only if the flips changed nothing that matters (hops lie outside the signature).
    assert dataclasses.replace(decoded, hops=0) == _gossip()


_TOPICS = st.text(min_size=1, max_size=40).filter(lambda t: len(t.encode()) <= 256)


@FUZZ
@given(
    seq=st.integers(0, 2**64 - 1),
    timestamp_ms=st.integers(0, 2**63 - 1),
    topic=_TOPICS,
    body=st.none() | st.binary(max_size=200),
)
def test_fuzz_valid_gossip_roundtrips_and_verifies(
    seq: int, timestamp_ms: int, topic: str, body: bytes | None
) -> None:
    message = _gossip(seq=seq, timestamp_ms=timestamp_ms, topic=topic, body=body)
    decoded = decode_envelope(encode_envelope(message))
    assert decoded == message
    assert isinstance(decoded, GossipMessage)
    verify_gossip(decoded, NET)
