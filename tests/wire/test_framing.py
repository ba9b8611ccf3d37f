"""Length-prefixed application frames with a hard size limit."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.errors import LocalProtocolError, RemoteProtocolError
from bzzz_edge.wire.constants import DEFAULT_MAX_FRAME_SIZE
from bzzz_edge.wire.framing import FrameDecoder, encode_frame

FUZZ = settings(max_examples=300, deadline=None)


def _header(length: int) -> bytes:
    return length.to_bytes(4, "big")


def test_encode_frame_prefixes_big_endian_length() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_default_maximum_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_FRAME_SIZE == 1_048_576
    assert FrameDecoder().max_frame_size == 1_048_576


def test_frames_split_at_every_position_reassemble() -> None:
    wire = encode_frame(b"first") + encode_frame(b"") + encode_frame(b"third frame")
    for cut in range(len(wire) + 1):
        decoder = FrameDecoder()
        frames = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert frames == [b"first", b"", b"third frame"]
        assert decoder.buffered == 0


def test_frames_fed_one_byte_at_a_time() -> None:
    payloads = [bytes([i]) * i for i in range(20)]
    wire = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder()
    out = [f for i in range(len(wire)) for f in decoder.feed(wire[i : i + 1])]
    assert out == payloads


def test_frame_of_exactly_the_maximum_is_accepted_one_more_is_refused() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    assert decoder.feed(encode_frame(b"x" * 100, 100)) == [b"x" * 100]
    with pytest.raises(RemoteProtocolError, match="declares 101 bytes, over the maximum of 100"):
        decoder.feed(_header(101))
    with pytest.raises(LocalProtocolError, match="exceeds the maximum of 100"):
        encode_frame(b"x" * 101, 100)


def test_oversized_header_is_refused_before_any_body_arrives() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(_header(2**32 - 1)[:3]) == []
    with pytest.raises(RemoteProtocolError, match="4294967295"):
        decoder.feed(_header(2**32 - 1)[3:])
    with pytest.raises(LocalProtocolError, match="already failed"):
        decoder.feed(b"")


def test_oversized_header_allocates_nothing_of_its_size() -> None:
    decoder = FrameDecoder(max_frame_size=2**32 - 1)
    tracemalloc.start()
    try:
        decoder.feed(_header(2**32 - 1) + b"only a little")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.buffered == 4 + len(b"only a little")
    assert peak < 64 * 1024  # buffering grows with what arrived, not with what was declared


def test_oversized_header_after_good_frames_in_the_same_chunk_raises() -> None:
    decoder = FrameDecoder(max_frame_size=10)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(encode_frame(b"ok", 10) + _header(11) + b"x" * 11)


@pytest.mark.parametrize("bad", [0, -1, 2**32, 1.5, True])
def test_invalid_maximum_is_a_local_error(bad: object) -> None:
    with pytest.raises(LocalProtocolError, match="max_frame_size"):
        FrameDecoder(max_frame_size=bad)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="max_frame_size"):
        encode_frame(b"", bad)  # type: ignore[arg-type]


@FUZZ
@given(
    payloads=st.lists(st.binary(max_size=600), max_size=8),
    cuts=st.lists(st.integers(0, 5000), max_size=6),
)
def test_fuzz_roundtrip_any_chunking(payloads: list[bytes], cuts: list[int]) -> None:
    wire = b"".join(encode_frame(p, 600) for p in payloads)
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    decoder = FrameDecoder(600)
    out = [f for a, b in itertools.pairwise(points) for f in decoder.feed(wire[a:b])]
    assert out == payloads
    assert decoder.buffered == 0


@FUZZ
@given(payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=5), cut=st.integers(1, 50))
def test_fuzz_truncated_stream_yields_a_prefix_and_waits(payloads: list[bytes], cut: int) -> None:
    wire = b"".join(encode_frame(p) for p in payloads)
    truncated = wire[: max(0, len(wire) - cut)]
    decoder = FrameDecoder()
    out = decoder.feed(truncated)
    assert out == payloads[: len(out)]
    assert len(out) < len(payloads)
    assert decoder.buffered == len(truncated) - sum(4 + len(p) for p in out)


@FUZZ
@given(chunks=st.lists(st.binary(max_size=200), max_size=10), limit=st.integers(1, 1000))
def test_fuzz_random_bytes_only_remote_errors_and_bounded_buffer(
    chunks: list[bytes], limit: int
) -> None:
    decoder = FrameDecoder(limit)
    try:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                assert len(frame) <= limit
            assert decoder.buffered <= 4 + limit
    except RemoteProtocolError as exc:
        assert "over the maximum" in str(exc)


@FUZZ
@given(length=st.integers(0, 2**32 - 1), limit=st.integers(1, 2**20))
def test_fuzz_any_declared_length_over_limit_is_refused(length: int, limit: int) -> None:
    decoder = FrameDecoder(limit)
    if length > limit:
        with pytest.raises(RemoteProtocolError):
            decoder.feed(_header(length))
    else:
        assert decoder.feed(_header(length)) == ([b""] if length == 0 else [])
