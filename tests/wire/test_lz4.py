"""LZ4 block codec: interop with the ``lz4`` package both ways, identical output from both
implementations (and from the ``lz4`` package where that is defined: see conftest.py), and clean
CodecErrors (with offsets) for truncated, corrupt and lying input."""

from __future__ import annotations

import functools
import json
import os
import platform
import random
import struct

import lz4.block
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bzzz_edge import _native
from bzzz_edge.errors import CodecError

KIB = 1024
MIB = 1024 * KIB
_fixture_ok = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- deterministic payloads ----------------------------------------------------------------------

_WORDS = [
    "agent",
    "task",
    "claim",
    "coordinator",
    "election",
    "term",
    "vote",
    "gossip",
    "mesh",
    "topic",
    "peer",
    "node",
    "context",
    "address",
    "decision",
    "citation",
    "escalation",
    "availability",
    "capacity",
    "role",
    "executor",
    "health",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "on",
    "with",
    "that",
    "this",
    "be",
    "it",
    "as",
    "by",
    "are",
    "from",
]


def _markdown(rng: random.Random, n: int) -> bytes:
    parts: list[str] = []
    size = 0
    while size < n:
        roll = rng.random()
        if roll < 0.1:
            line = "## " + " ".join(rng.choices(_WORDS, k=rng.randint(2, 6))).title()
        elif roll < 0.3:
            line = "- " + " ".join(rng.choices(_WORDS, k=rng.randint(3, 12)))
        elif roll < 0.35:
            line = f"```\nucxl://node-{rng.randint(1, 40)}:dev@proj:task/{rng.randint(1, 999)}\n```"
        else:
            line = " ".join(rng.choices(_WORDS, k=rng.randint(8, 40))).capitalize() + "."
        parts.append(line + "\n\n")
        size += len(parts[-1])
    return "".join(parts).encode()


def _gossip(rng: random.Random, n: int) -> bytes:
    origins = [rng.randbytes(32) for _ in range(10)]
    out = bytearray()
    seq = 0
    while len(out) < n:
        seq += 1
        out += msgpack.packb(
            {
                "v": 1,
                "origin": rng.choice(origins),
                "seq": seq,
                "ts": 1_700_000_000.0 + seq / 7,
                "topic": rng.choice(["bzzz/coordination/v1", "antennae/meta-discussion/v1"]),
                "body": " ".join(rng.choices(_WORDS, k=rng.randint(5, 30))).encode(),
                "sig": rng.randbytes(64),
            }
        )
    return bytes(out)


def _json(rng: random.Random, n: int) -> bytes:
    docs = []
    size = 0
    while size < n:
        doc = {
            "id": len(docs),
            "address": f"ucxl://n{rng.randint(1, 9)}:dev@p:t/{len(docs)}",
            "tags": rng.choices(_WORDS, k=3),
            "score": round(rng.random(), 4),
            "summary": " ".join(rng.choices(_WORDS, k=rng.randint(4, 16))),
        }
        docs.append(doc)
        size += 120
    return json.dumps(docs, indent=1).encode()


def _repetitive(rng: random.Random, n: int) -> bytes:
    unit = rng.randbytes(rng.randint(1, 7))
    data = bytearray(unit * (n // len(unit) + 1))
    for _ in range(n // 5000):  # a few changes so it is not a single run
        data[rng.randrange(n or 1)] = rng.randrange(256)
    return bytes(data)


_KINDS = {
    "markdown": _markdown,
    "msgpack": _gossip,
    "json": _json,
    "random": lambda rng, n: rng.randbytes(n),
    "repetitive": _repetitive,
    "zeros": lambda rng, n: bytes(n),
}


@functools.cache
def payload(kind: str, size: int) -> bytes:
    return _KINDS[kind](random.Random(f"{kind}-{size}"), size)[:size]


SIZES = [0, 1, 12, 13, 14, 17, 100, 1 * KIB, 4 * KIB, 65535, 65547, 65548, 300 * KIB, 4 * MIB]
# The pure twin compresses about 2 MB/s; keep its big inputs to the quick, long-match kinds.
_PURE_FAST_KINDS = {"repetitive", "zeros"}


def _pure_too_slow(kind: str, size: int) -> bool:
    return size > 65548 and kind not in _PURE_FAST_KINDS


def _skip_slow(impl, kind: str, size: int) -> None:
    if impl.IMPLEMENTATION == "pure" and _pure_too_slow(kind, size):
        pytest.skip("pure compressor on large input: covered by the compiled run and bytes-equal")


def _compiled():
    module = _native.compiled_module("lz4")
    if module is None:
        if os.environ.get("BZZZ_EDGE_REQUIRE_NATIVE") == "1":
            pytest.fail("compiled lz4 module missing but BZZZ_EDGE_REQUIRE_NATIVE=1")
        pytest.skip("compiled lz4 module not built")
    return module


def _reference(data: bytes, acceleration: int = 1) -> bytes:
    return lz4.block.compress(data, store_size=False, mode="fast", acceleration=acceleration)


def _expected(c_lz4, impl, data: bytes, acceleration: int = 1) -> bytes:
    """The bytes ``impl.compress`` must give: the ``lz4`` package's where they are defined to
    equal ours (64-bit little-endian, see conftest.py), the other twin's elsewhere."""
    if c_lz4.matches_ours:
        return _reference(data, acceleration)
    other = _compiled() if impl.IMPLEMENTATION == "pure" else _native.pure_module("lz4")
    return other.compress(data, acceleration)


# -- interop and identical output ----------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_compress_is_byte_identical_to_lz4_package_or_elsewhere_the_twin(
    lz4_impl, c_lz4, kind, size
):
    _skip_slow(lz4_impl, kind, size)
    data = payload(kind, size)
    ours = lz4_impl.compress(data)
    assert lz4.block.decompress(ours, uncompressed_size=size) == data
    assert lz4_impl.decompress(ours, size) == data
    assert len(ours) <= lz4_impl.compress_bound(size)
    if c_lz4.matches_ours or not _pure_too_slow(kind, size):  # the pure twin is too slow there
        assert ours == _expected(c_lz4, lz4_impl, data)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_decompresses_lz4_package_output(lz4_impl, kind, size):
    data = payload(kind, size)
    assert lz4_impl.decompress(_reference(data), size) == data


@pytest.mark.parametrize("acceleration", [1, 2, 7, 100, 65537, 10**6])
def test_acceleration_matches_lz4_package_or_elsewhere_the_twin(lz4_impl, c_lz4, acceleration):
    data = payload("markdown", 64 * KIB) + payload("msgpack", 16 * KIB)
    ours = lz4_impl.compress(data, acceleration)
    assert ours == _expected(c_lz4, lz4_impl, data, acceleration)
    assert lz4_impl.decompress(ours, len(data)) == data
    assert lz4.block.decompress(ours, uncompressed_size=len(data)) == data


def test_byte_identity_with_lz4_package_is_checked_on_64_bit_arm_and_x86(c_lz4):
    # The check above must not switch itself off where CI and most users run.
    if struct.calcsize("P") != 8 or platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"{platform.machine()}, {struct.calcsize('P') * 8}-bit: {c_lz4.why}")
    assert c_lz4.matches_ours, c_lz4.why


_structured = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.tuples(st.binary(min_size=1, max_size=6), st.integers(1, 60)).map(lambda t: t[0] * t[1]),
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=_structured, acceleration=st.sampled_from([1, 1, 2, 9]))
def test_pure_and_compiled_produce_identical_bytes(c_lz4, data, acceleration):
    compiled = _compiled()
    pure = _native.pure_module("lz4")
    out = pure.compress(data, acceleration)
    assert compiled.compress(data, acceleration) == out
    if c_lz4.matches_ours:
        assert out == _reference(data, acceleration)
    assert compiled.decompress(out, len(data)) == pure.decompress(out, len(data)) == data
    assert lz4.block.decompress(out, uncompressed_size=len(data)) == data


def test_accepts_any_bytes_like_input(lz4_impl, c_lz4):
    data = payload("json", 5000)
    expected = _expected(c_lz4, lz4_impl, data)
    strided = memoryview(data + data)[::2]  # not contiguous
    for value in (bytearray(data), memoryview(data), memoryview(bytearray(data))):
        assert lz4_impl.compress(value) == expected
    assert lz4_impl.compress(strided) == _expected(c_lz4, lz4_impl, bytes(strided))
    assert lz4_impl.decompress(bytearray(expected), len(data)) == data
    assert lz4_impl.decompress(memoryview(expected), len(data)) == data


@pytest.mark.parametrize("bad", ["text", 12, None, [1, 2]])
def test_non_bytes_input_is_a_type_error(lz4_impl, bad):
    with pytest.raises(TypeError, match="bytes-like"):
        lz4_impl.compress(bad)
    with pytest.raises(TypeError, match="bytes-like"):
        lz4_impl.decompress(bad, 1)


@pytest.mark.parametrize(
    ("acceleration", "error"),
    [(0, ValueError), (-3, ValueError), (1.5, TypeError), ("1", TypeError)],
)
def test_bad_acceleration_is_rejected(lz4_impl, acceleration, error):
    with pytest.raises(error):
        lz4_impl.compress(b"abc", acceleration)


# -- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "size", "message"),
    [
        (b"", 0, "expected a sequence token at input offset 0"),
        (b"\x10a\x01\x00", 5, "expected a sequence token at input offset 4"),
        (b"\xf0", 15, "truncated in a literal length at input offset 1"),
        (b"\xf0\xff", 300, "truncated in a literal length at input offset 2"),
        (b"\x30ab", 3, "3 literal bytes at input offset 1 run past its end (3 bytes)"),
        (b"\x30abc", 2, "3 literal bytes at input offset 1 overflow the declared size 2"),
        (b"\x10a", 2, "input ends at offset 2 after 1 of the declared 2 output bytes"),
        (b"\x10a\x01", 5, "truncated in a match offset at input offset 2"),
        (b"\x10a\x00\x00\x00", 5, "zero match offset at input offset 2"),
        (b"\x10a\x02\x00\x00", 5, "match offset 2 at input offset 2 reaches before the start"),
        (b"\x1fa\x01\x00", 40, "truncated in a match length at input offset 4"),
        (b"\x10a\x01\x00\x00", 4, "4-byte match at input offset 2 overflows the declared size 4"),
        (b"\x00", 1, "input ends at offset 1 after 0 of the declared 1 output bytes"),
    ],
)
def test_malformed_blocks_name_the_problem_and_offset(lz4_impl, block, size, message):
    with pytest.raises(CodecError) as info:
        lz4_impl.decompress(block, size)
    assert message in str(info.value)


def test_well_formed_tiny_blocks(lz4_impl):
    assert lz4_impl.decompress(b"\x00", 0) == b""
    assert lz4_impl.decompress(b"\x10a", 1) == b"a"
    assert lz4_impl.decompress(b"\x10a\x01\x00\x00", 5) == b"aaaaa"
    assert lz4_impl.decompress(b"\x22ab\x02\x00\x00", 8) == b"abababab"


def test_declared_size_is_checked_before_allocating(lz4_impl):
    with pytest.raises(CodecError, match="exceeds the limit"):
        lz4_impl.decompress(b"\x00", 10**15)
    with pytest.raises(CodecError, match="impossible for 4 compressed bytes"):
        lz4_impl.decompress(b"\x1f\x00\x01\x00", 1021, max_size=10**9)
    with pytest.raises(CodecError, match="negative"):
        lz4_impl.decompress(b"\x00", -1)
    for huge in (2**63 - 1, 2**63, 2**64, 10**30):  # past C's ssize_t: still a CodecError
        with pytest.raises(CodecError, match="impossible for 3 compressed bytes"):
            lz4_impl.decompress(b"\x20ab", huge, max_size=huge)
        with pytest.raises(CodecError, match="negative"):
            lz4_impl.decompress(b"\x20ab", -huge, max_size=huge)
    with pytest.raises(TypeError):
        lz4_impl.decompress(b"\x00", 1.0)


@pytest.mark.parametrize("kind", ["markdown", "msgpack", "repetitive"])
def test_every_truncation_is_rejected(lz4_impl, kind):
    data = payload(kind, 3000)
    block = _reference(data)
    for cut in range(len(block)):
        with pytest.raises(CodecError):
            lz4_impl.decompress(block[:cut], len(data))


@pytest.mark.parametrize("delta", [-1000, -5, -1, 1, 4, 999])
def test_lying_size_is_rejected(lz4_impl, delta):
    data = payload("json", 4096)
    with pytest.raises(CodecError, match="declared"):
        lz4_impl.decompress(_reference(data), len(data) + delta)


_corpus = [payload(k, n) for k in ("markdown", "msgpack", "repetitive") for n in (40, 700)]


@settings(_fixture_ok, max_examples=400)
@given(
    which=st.integers(0, len(_corpus) - 1),
    flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
)
def test_bit_flips_give_codec_error_or_exact_size(lz4_impl, which, flips):
    data = _corpus[which]
    block = bytearray(_reference(data))
    for flip in flips:
        block[flip // 8 % len(block)] ^= 1 << (flip % 8)
    error = ""
    try:
        out = lz4_impl.decompress(bytes(block), len(data))
    except CodecError as exc:
        out, error = None, str(exc)
    if out is not None:
        assert len(out) == len(data)
    try:
        reference = lz4.block.decompress(bytes(block), uncompressed_size=len(data))
    except lz4.block.LZ4BlockError:
        reference = None
    if reference is not None and len(reference) == len(data):
        # Whatever the reference decodes in full, so do we, except a zero match offset: the
        # format calls it corrupt, lz4 1.9.4 copies whatever sits in its buffer.
        assert out == reference or "zero match offset" in error


@settings(_fixture_ok, max_examples=400)
@given(block=st.binary(max_size=64), size=st.integers(0, 400))
def test_garbage_never_crashes(lz4_impl, block, size):
    try:
        out = lz4_impl.decompress(block, size)
    except CodecError:
        return
    assert len(out) == size


@settings(max_examples=400, deadline=None)
@given(block=st.binary(max_size=64), size=st.integers(0, 300))
def test_pure_and_compiled_fail_identically(block, size):
    compiled = _compiled()
    outcomes = []
    for impl in (_native.pure_module("lz4"), compiled):
        try:
            outcomes.append(("ok", impl.decompress(block, size)))
        except CodecError as exc:
            outcomes.append(("error", str(exc)))
    assert outcomes[0] == outcomes[1]


def test_public_module_exports_the_chosen_implementation():
    from bzzz_edge.wire import lz4 as ours

    chosen = _native.load("lz4")
    assert ours.compress is chosen.compress
    assert ours.decompress is chosen.decompress
    assert ours.IMPLEMENTATION == chosen.IMPLEMENTATION
