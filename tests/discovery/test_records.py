"""The TXT record format: round trips, and every way a peer's record can be malformed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.discovery import SERVICE_TYPE, Announcement, encode_txt, instance_name, parse_txt
from bzzz_edge.errors import DecodeError, LocalProtocolError
from bzzz_edge.identity import network_fingerprint

NODE = bytes(range(32))
GOOD = Announcement(NODE, 1, network_fingerprint(b"k" * 32), "lab-pi-3")

names = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp", "Cf", "Co", "Cn",
                                                  "Zs")),
                max_size=20).filter(lambda s: len(s.encode()) <= 63)


@settings(max_examples=300)
@given(node_id=st.binary(min_size=32, max_size=32), version=st.integers(1, 0xFFFF),
       key=st.binary(min_size=32, max_size=32), name=names)
def test_txt_round_trip(node_id: bytes, version: int, key: bytes, name: str) -> None:
    announcement = Announcement(node_id, version, network_fingerprint(key), name)
    assert parse_txt(encode_txt(announcement)) == announcement


def test_txt_carries_hex_id_version_and_fingerprint_never_the_key() -> None:
    key = b"secret-network-key-32-bytes-long"
    txt = encode_txt(Announcement(NODE, 3, network_fingerprint(key)))
    assert txt == {b"id": NODE.hex().encode(), b"v": b"3",
                   b"net": network_fingerprint(key).encode()}
    assert all(key not in value and key.hex().encode() not in value for value in txt.values())


def test_every_txt_string_fits_a_dns_character_string() -> None:
    txt = encode_txt(Announcement(NODE, 0xFFFF, "f" * 64, "é" * 31))
    assert all(len(key) + 1 + len(value) <= 255 for key, value in txt.items())


def test_unknown_txt_keys_are_ignored() -> None:
    txt = {**encode_txt(GOOD), b"future": b"feature", b"flag": None}
    assert parse_txt(txt) == GOOD


def _with(**changes: object) -> dict[bytes, bytes | None]:
    """GOOD's TXT with keys replaced, or dropped where the value is ``...``."""
    txt: dict[bytes, bytes | None] = dict(encode_txt(GOOD))
    for key, value in changes.items():
        if value is ...:
            del txt[key.encode()]
        else:
            assert value is None or isinstance(value, bytes)
            txt[key.encode()] = value
    return txt


@pytest.mark.parametrize(("txt", "message"), [
    (_with(id=...), "'id' is missing"),
    (_with(id=None), "'id' is missing or has no value"),
    (_with(id=NODE.hex()[:-2].encode()), "'id' must be 64 lowercase hex"),
    (_with(id=NODE.hex().upper().encode()), "'id' must be 64 lowercase hex"),
    (_with(id="é".encode() * 32), "'id' is not ASCII"),
    (_with(v=...), "'v' is missing"),
    (_with(v=b"one"), "'v' must be a decimal"),
    (_with(v=b"-1"), "'v' must be a decimal"),
    (_with(v=b"65536"), "'v' must be a decimal"),
    (_with(net=...), "'net' is missing"),
    (_with(net=b""), "'net' must be 1-64"),
    (_with(net=b"a b"), "'net' must be 1-64"),
    (_with(net=b"f" * 65), "'net' must be 1-64"),
    (_with(name=b"\xff\xfe"), "'name' is not valid UTF-8"),
    (_with(name=b"x" * 64), "'name' is 64 bytes"),
    (_with(name=b"bell\x07"), "'name' holds control characters"),
    ({}, "'id' is missing"),
])
def test_malformed_txt_is_refused_naming_the_key(txt: dict[bytes, bytes | None],
                                                message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        parse_txt(txt)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from([b"id", b"v", b"net", b"name", b"x"]),
                       st.none() | st.binary(max_size=80)))
def test_arbitrary_txt_parses_or_raises_decode_error(txt: dict[bytes, bytes | None]) -> None:
    try:
        announcement = parse_txt(txt)
    except DecodeError:
        return
    assert parse_txt(encode_txt(announcement)) == announcement


@pytest.mark.parametrize(("announcement", "message"), [
    (Announcement(NODE[:31], 1, "ab"), "node_id must be 32 bytes"),
    (Announcement(NODE, 0, "ab"), "protocol_version must be 1..65535"),
    (Announcement(NODE, 1, ""), "network fingerprint must be"),
    (Announcement(NODE, 1, "ab", "n" * 64), "name must be printable and at most 63 bytes"),
    (Announcement(NODE, 1, "ab", "tab\there"), "name must be printable"),
])
def test_our_own_bad_fields_are_refused_before_announcing(announcement: Announcement,
                                                         message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        encode_txt(announcement)


def test_instance_name_is_a_short_label_derived_from_the_node_id() -> None:
    label = instance_name(NODE)
    assert label == "bzzz-" + NODE.hex()[:32]
    assert len(label.encode()) <= 63
    assert SERVICE_TYPE == "_bzzz._tcp.local."
