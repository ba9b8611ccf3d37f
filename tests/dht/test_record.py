"""Records and messages: signatures bind every field to the publisher and the network; the
decoder refuses malformed input and names the field."""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge import ucxl
from bzzz_edge.dht import (
    MAX_RECORD_VALUE,
    Contact,
    FindNode,
    FindValue,
    Kind,
    Nodes,
    Store,
    Stored,
    Values,
    Verdict,
    decode_message,
    decode_record,
    encode_message,
    encode_record,
    sign_record,
    verify_record,
)
from bzzz_edge.errors import DecodeError, LocalProtocolError, SignatureError

NET = b"test network"
KEY_A = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_B = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
ADDRESS = "ucxl://alice:dev@proj:task1/*^/notes.md"
CONTENT_KEY = ucxl.parse(ADDRESS).content_key


def record(key=KEY_A, **fields):
    base = dict(network_id=NET, kind=Kind.VALUE, key=CONTENT_KEY, version=3,
                timestamp_ms=1_700_000_000_000, address=ADDRESS, value=b"hello")
    base.update(fields)
    return sign_record(key, **base)


def test_signed_record_verifies_and_round_trips() -> None:
    r = record()
    verify_record(r, NET)
    wire = msgpack.unpackb(msgpack.packb(encode_record(r), use_bin_type=True), raw=False)
    assert decode_record(wire) == r
    assert r.publisher == hashlib.sha256(r.publisher_key).digest()


@pytest.mark.parametrize("change", [
    {"value": b"hellO"}, {"version": 4}, {"timestamp_ms": 1}, {"kind": Kind.PROVIDER,
                                                                 "value": b""},
])
def test_altered_record_does_not_verify(change: dict) -> None:
    altered = dataclasses.replace(record(), **change)
    with pytest.raises(SignatureError):
        verify_record(altered, NET)


def test_forged_publisher_and_other_network_do_not_verify() -> None:
    genuine = record()
    forged = dataclasses.replace(record(KEY_B), publisher_key=genuine.publisher_key)
    with pytest.raises(SignatureError):
        verify_record(forged, NET)
    with pytest.raises(SignatureError):
        verify_record(genuine, b"another network")
    with pytest.raises(SignatureError):
        verify_record(dataclasses.replace(genuine, publisher_key=b"\xff" * 32), NET)


def test_record_under_a_key_its_address_does_not_name_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="content key"):
        record(key=KEY_A, address="ucxl://alice:dev@proj:task1/*^/other.md")
    with pytest.raises(LocalProtocolError, match="canonical, concrete"):
        record(address="ucxl://ALICE:dev@proj:task1/*^/notes.md")


@pytest.mark.parametrize(("index", "value", "field"), [
    (0, 9, "kind"), (1, b"x" * 31, "key"), (2, "str", "publisher_key"), (3, -1, "version"),
    (6, b"x" * (MAX_RECORD_VALUE + 1), "value"), (7, b"x", "content_hash"),
    (8, b"x" * 63, "signature"), (5, 17, "address"),
])
def test_malformed_record_field_is_named(index: int, value: object, field: str) -> None:
    items = encode_record(record())
    items[index] = value
    with pytest.raises(DecodeError, match=field):
        decode_record(items)


def test_provider_record_carries_no_value() -> None:
    with pytest.raises(LocalProtocolError, match="provider"):
        record(kind=Kind.PROVIDER, value=b"x")
    provider = record(kind=Kind.PROVIDER, value=b"", content_hash=b"\x01" * 32)
    verify_record(provider, NET)


CONTACTS = (Contact(b"\x01" * 32, "10.0.0.1", 7947), Contact(b"\x02" * 32, "::1", 1))


@pytest.mark.parametrize("message", [
    FindNode(1, b"\x03" * 32), FindValue(2, b"\x04" * 32, Kind.PROVIDER), Store(3, record()),
    Nodes(4, CONTACTS), Values(5, (record(),), CONTACTS), Stored(6, Verdict.STALE_VERSION),
])
def test_messages_round_trip_through_msgpack(message: object) -> None:
    packed = msgpack.packb(encode_message(message), use_bin_type=True)  # type: ignore[arg-type]
    assert decode_message(msgpack.unpackb(packed, raw=False)) == message


@pytest.mark.parametrize(("items", "what"), [
    ("nope", "expected an array"), ([9, 1, b""], "unknown tag"), ([1, 1], "expected an array"),
    ([1, -1, b"\x00" * 32], "rpc"), ([1, 1, b"\x00" * 31], "target"),
    ([4, 1, [[b"\x00" * 32, "h", 70000]]], "port"), ([4, 1, [[b"\x00" * 32, "", 1]]], "host"),
    ([4, 1, [[b"\x00" * 32, "h", 1]] * 65], "at most 64"), ([6, 1, 99], "verdict"),
    ([2, 1, b"\x00" * 32, 7], "kind"), ([1, 1, b"\x00" * 32, 5], "expected 3"),
])
def test_malformed_messages_are_refused_naming_what(items: object, what: str) -> None:
    with pytest.raises(DecodeError, match=what):
        decode_message(items)


def test_duplicate_contacts_in_a_reply_collapse() -> None:
    items = [4, 1, [[b"\x01" * 32, "a", 1], [b"\x01" * 32, "b", 2]]]
    message = decode_message(items)
    assert isinstance(message, Nodes) and len(message.contacts) == 1


_leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                    st.binary(max_size=40), st.text(max_size=40),
                    st.sampled_from([b"\x00" * 32, b"\x01" * 64, ADDRESS, 1, 2, 3]))
_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=10), max_leaves=40)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_values, st.lists(_values, min_size=3, max_size=4).map(
    lambda items: [1 + abs(hash(repr(items))) % 6, *items[1:]])))
def test_decoding_arbitrary_values_raises_only_decode_error(value: object) -> None:
    try:
        message = decode_message(value)
    except DecodeError:
        return
    assert decode_message(encode_message(message)) == message


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 8), _values)
def test_a_record_with_any_one_field_replaced_decodes_or_raises_decode_error(
        index: int, value: object) -> None:
    items = encode_record(record())
    items[index] = value
    try:
        decoded = decode_record(items)
    except DecodeError:
        return
    assert decode_record(encode_record(decoded)) == decoded


def test_a_record_is_verified_once_by_digest_and_no_altered_copy_passes_for_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import Counter

    from bzzz_edge.dht import DhtConfig, Record, RecordStore, RoutingTable, _serve

    checked: list[Record] = []
    real = _serve.verify_record

    def counting(rec: Record, network_id: bytes, *, signed: bytes | None = None) -> None:
        checked.append(rec)
        real(rec, network_id, signed=signed)

    monkeypatch.setattr(_serve, "verify_record", counting)
    monkeypatch.setattr(_serve, "_VERIFIED_CACHE", 2)
    config = DhtConfig(k=4)
    counters: Counter[str] = Counter()
    server = _serve.Server(config, RoutingTable(b"\x01" * 32, config, 0.0), RecordStore(config),
                           NET, counters)
    good = record()
    assert server.verify(good) and server.verify(dataclasses.replace(good)) and len(checked) == 1
    for change in ({"value": b"hellO"}, {"version": 4}, {"address": None},
                   {"signature": bytes(64)}):
        assert not server.verify(dataclasses.replace(good, **change))  # each checked, refused
    assert len(checked) == 5 and counters["bad_signatures"] == 4
    assert server.verify(good) and len(checked) == 5  # still remembered
    others = [record(version=v) for v in (5, 6)]  # two more fill the bound of two
    assert all(server.verify(r) for r in others) and len(checked) == 7
    assert server.verify(good) and len(checked) == 8  # the oldest was forgotten
    ours = record(version=9)
    server.remember(ours)  # signed by this node: taken as checked
    assert server.verify(ours) and len(checked) == 8
    assert not server.verify(dataclasses.replace(ours, value=b"hellO")) and len(checked) == 9


# --- keys and R values of small order (the list is derived in tests/test_signatures.py) -------


@pytest.mark.parametrize("key", [b"\x01" + bytes(31),  # the identity
                                 bytes.fromhex("ee" + "ff" * 30 + "7f"),  # it, not canonical
                                 bytes.fromhex("ec" + "ff" * 30 + "ff")],  # order 2, x's sign set
                         ids=["identity", "identity-not-canonical", "order-2"])
def test_a_record_under_a_key_of_small_order_is_refused(key: bytes) -> None:
    # With the identity as the key, R the identity and S zero "sign" any message: OpenSSL's
    # check accepts that, so anyone could publish under such a key.
    forged = dataclasses.replace(record(), publisher_key=key,
                                 signature=b"\x01" + bytes(31) + bytes(32))
    with pytest.raises(SignatureError):
        verify_record(forged, NET)
