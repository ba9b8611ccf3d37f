"""Topic names and message bodies: what may be published, how bodies are compressed and read."""

from __future__ import annotations

import os
import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bzzz_edge.errors import CodecError
from bzzz_edge.gossip.bodies import MessageTooLarge, decode_body, encode_body, preferred_codec
from bzzz_edge.gossip.topics import STANDARD_TOPICS, TopicError, check_topic, issue_topic
from bzzz_edge.wire import compression
from bzzz_edge.wire.compression import Codec, CompressionStats


def test_standard_and_issue_topics_are_valid_names():
    assert STANDARD_TOPICS == ("bzzz/coordination/v1", "antennae/meta-discussion/v1",
                               "bzzz/context-feedback/v1")
    for topic in STANDARD_TOPICS:
        assert check_topic(topic) == topic
    assert issue_topic(42) == "bzzz/meta/issue/42"


@pytest.mark.parametrize("bad, why", [
    ("", "empty"), ("a b", "spaces"), ("a\nb", "control"), ("x" * 257, "at most 256"),
    (b"bytes", "expected a string"), ("tab\there", "control"),
])
def test_bad_topic_names_are_refused_saying_why(bad, why):
    with pytest.raises(TopicError, match=why):
        check_topic(bad)


def test_large_bodies_are_compressed_with_the_codec_marked_small_ones_stay_raw():
    text = b"claim task 42 on node alpha; " * 100
    for codec in (Codec.LZ4, Codec.ZLIB):
        blob = encode_body(text, max_size=1 << 20, min_size=1024, codec=codec)
        assert compression.read_header(blob)[0] is codec and len(blob) < len(text) // 4
        assert decode_body(blob, max_size=1 << 20) == text
    small = encode_body(b"hi", max_size=1 << 20, min_size=1024, codec=Codec.LZ4)
    assert compression.read_header(small)[0] is Codec.RAW and small[-2:] == b"hi"


def test_the_preferred_codec_follows_the_implementation():
    from bzzz_edge import _native
    expected = Codec.LZ4 if _native.implementations()["lz4"] == "compiled" else Codec.ZLIB
    assert preferred_codec() is expected
    if os.environ.get("BZZZ_EDGE_PURE") == "1":
        assert expected is Codec.ZLIB


def test_a_message_over_the_maximum_is_refused_at_publish_naming_the_key():
    with pytest.raises(MessageTooLarge, match=r"1025 bytes exceeds the maximum of 1024 bytes "
                                              r"\(gossip.max_message_size\)"):
        encode_body(b"x" * 1025, max_size=1024, min_size=0, codec=Codec.LZ4)


def test_a_bomb_declaring_more_than_the_maximum_is_refused_before_inflating():
    bomb = bytes([Codec.ZLIB]) + compression._header(Codec.ZLIB, 10**9)[1:] + \
        zlib.compress(b"\0" * 10**6)
    stats = CompressionStats()
    with pytest.raises(CodecError, match="exceeds the limit"):
        decode_body(bomb, max_size=1 << 20, stats=stats)
    assert stats.rejected == 1
    with pytest.raises(CodecError, match="empty"):
        decode_body(b"", max_size=10)
    assert decode_body(None, max_size=10) == b""


@given(st.binary(max_size=4096), st.sampled_from(list(Codec)), st.integers(0, 2048))
def test_any_body_round_trips(data, codec, min_size):
    blob = encode_body(data, max_size=4096, min_size=min_size, codec=codec)
    assert decode_body(blob, max_size=4096) == data


@pytest.mark.parametrize("blob", [bytes([0, 5]) + b"abc", bytes([0, 2]) + b"abcd",
                                  bytes([0, 0x7F])])
def test_short_raw_bodies_are_checked_like_any_other(blob):
    with pytest.raises(CodecError) as fast:
        decode_body(blob, max_size=1 << 20)
    with pytest.raises(CodecError) as general:
        compression.decode(blob, max_size=1 << 20)
    assert str(fast.value) == str(general.value)
    with pytest.raises(CodecError, match="exceeds the limit of 2 bytes"):
        decode_body(bytes([0, 3]) + b"abc", max_size=2)


def test_body_check_ignores_what_no_subscriber_could_read():
    from dataclasses import replace

    from bzzz_edge.gossip import Validation
    from bzzz_edge.gossip.bodies import body_check
    from bzzz_edge.identity import Identity
    from bzzz_edge.wire.envelope import sign_gossip

    message = sign_gossip(Identity.generate().private_key, network_id=b"n", seq=1,
                          timestamp_ms=1, topic="t", body=None)
    check = body_check(1000)
    good = [None, encode_body(b"hi", max_size=1000, min_size=0, codec=Codec.RAW),
            encode_body(b"a" * 900, max_size=1000, min_size=0, codec=Codec.ZLIB)]
    bad = [b"", b"\x07abc", bytes([0, 5]) + b"abc", compression.encode(b"a" * 1001),
           compression.encode(b"b" * 1001, codec=Codec.LZ4), b"\x01\x80"]
    assert [check(replace(message, body=b)) for b in good] == [Validation.ACCEPT] * 3
    assert [check(replace(message, body=b)) for b in bad] == [Validation.IGNORE] * 6


_RAW_EDGES = st.one_of(
    # Headers around the one- and two-byte size forms, canonical or not, true or false.
    st.tuples(st.sampled_from([0, 1, 2, 3, 7]), st.integers(0, 255), st.integers(0, 255),
              st.integers(0, 300)).map(lambda t: bytes(t[:3]) + os.urandom(t[3])),
    st.integers(0, 20_000).map(lambda n: compression.encode(os.urandom(n), codec=Codec.RAW)),
    st.binary(max_size=6),
)


def _edge_bodies() -> list[bytes]:
    """Raw headers where an inline reading could go wrong, each with the length it declares
    (or one off): non-canonical sizes (a zero last byte), the one/two/three-byte borders.

    The filler bytes come from a seeded generator: every collection of the suite (each xdist
    worker collects it anew) must yield the same parameters."""
    filler = random.Random(20261208)
    out = []
    for header, declared in [((0, 5), 5), ((0, 0x85, 0), 5), ((0, 0x80, 0), 0),
                             ((0, 0x7F), 127), ((0, 0x80, 1), 128), ((0, 0xFF, 0x7F), 16_383),
                             ((0, 0x80, 0x80, 1), 16_384), ((0, 0x80, 0x80, 0), 0)]:
        for length in (declared - 1, declared, declared + 1):
            if length >= 0:
                out.append(bytes(header) + filler.randbytes(length))
    return out


@pytest.mark.parametrize("body", _edge_bodies())
@pytest.mark.parametrize("max_size", [4, 127, 128, 16_383, 1 << 20])
def test_inline_raw_paths_agree_with_compression_at_the_edges(body, max_size):
    test_inline_raw_paths_agree_with_compression.hypothesis.inner_test(body, max_size)


@given(body=_RAW_EDGES, max_size=st.sampled_from([0, 100, 127, 128, 300, 16_383, 1 << 20]))
def test_inline_raw_paths_agree_with_compression(body, max_size):
    """The validator and ``decode_body`` read raw bodies below 16 KiB inline (every message
    received, twice); they must accept, refuse and return exactly what ``compression`` does."""
    from bzzz_edge.gossip import Validation
    from bzzz_edge.gossip.bodies import body_check
    from bzzz_edge.wire.envelope import GossipMessage

    try:
        expected: bytes | None = compression.decode(body, max_size=max_size)
    except CodecError:
        expected = None
    try:
        got: bytes | None = decode_body(body, max_size=max_size)
    except CodecError:
        got = None
    assert got == expected
    try:
        codec, size, start = compression.read_header(body)
        readable = size <= max_size and (codec is not Codec.RAW or len(body) - start == size)
    except CodecError:
        readable = False
    message = GossipMessage(b"o" * 32, b"k" * 32, 1, 1, "t", body, b"s" * 64, 0)
    verdict = body_check(max_size)(message)
    assert verdict is (Validation.ACCEPT if readable else Validation.IGNORE)
