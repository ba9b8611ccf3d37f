"""Targets for membership messages, UCXL addresses, LZ4 blocks and compression framing.

UCXL and LZ4 have a compiled twin and a pure one: these targets run both on every input and
insist on the same outcome (same value, or same error type and message). Compression framing
runs the implementation this process loaded and is compared against both LZ4 twins.
"""

from __future__ import annotations

import functools
import json
import random
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack

from bzzz_edge import _native
from bzzz_edge.errors import CodecError, DecodeError
from bzzz_edge.membership import (
    Ack,
    Address,
    AliveUpdate,
    DeadUpdate,
    Gossip,
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
from bzzz_edge.ucxl import NoSuchVersion, UCXLError
from bzzz_edge.wire import compression
from bzzz_edge.wire.compression import Codec

from .engine import Reader, Target
from .values import packb, replace_somewhere

__all__ = ["TARGETS", "twins"]

_VECTORS = Path(__file__).resolve().parents[2] / "ucxl" / "vectors.json"
_TEXT = (b"bzzz-edge coordinates agents on small machines; " * 12) + bytes(range(256))


def twins(name: str) -> list[ModuleType]:
    """The pure twin of hot path ``name``, and the compiled one when it was built."""
    compiled = _native.compiled_module(name)
    return [_native.pure_module(name)] + ([compiled] if compiled is not None else [])


def _outcome(call: Any, *args: Any, errors: tuple[type[Exception], ...]) -> tuple[Any, ...]:
    try:
        return ("ok", call(*args))
    except errors as exc:
        return ("error", type(exc).__name__, str(exc))


def _agree(name: str, outcomes: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    assert all(o == outcomes[0] for o in outcomes), f"{name} twins disagree: {outcomes}"
    return outcomes[0]


# --- membership messages -----------------------------------------------------------------------


def membership(data: bytes) -> None:
    """The mesh's path for a SWIM payload: msgpack.unpackb, then decode_message."""
    try:
        payload = msgpack.unpackb(data)
    except (ValueError, TypeError, msgpack.UnpackException):
        return  # the mesh catches exactly these and counts the payload as malformed
    try:
        message = decode_message(payload)
    except DecodeError:
        return
    if isinstance(message, UnknownMessage):
        return
    # What decodes must encode again, to the same message.
    assert decode_message(msgpack.unpackb(packb(encode_message(message)))) == message


def _membership_messages() -> list[Any]:
    a, b = bytes(32), bytes(range(32))
    alive = AliveUpdate(a, 3, Address("10.0.0.2", 7946), {"role": "gpu", "n": 2, "x": b"\x01"})
    updates = (alive, SuspectUpdate(b, 2**63 - 1, a), DeadUpdate(a, 0, a))
    entry = SyncEntry(b, 1, Status.LEFT, Address("host.lan", 65535), {})
    return [Ping(1, a, updates), PingReq(2**32 - 1, b, ()), Ack(0, updates[:1]),
            Gossip(updates), Sync(True, (entry, entry))]


@functools.cache
def _membership_seeds() -> list[bytes]:
    return [packb(encode_message(m)) for m in _membership_messages()] + [packb([99, 1, 2])]


def _membership_generate(rng: random.Random) -> bytes:
    tree = encode_message(rng.choice(_membership_messages()))
    return packb(replace_somewhere(rng, tree))


# --- UCXL --------------------------------------------------------------------------------------


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _ucxl_outcome(module: ModuleType, text: str) -> tuple[Any, ...]:
    try:
        address = module.parse(text)
    except UCXLError as exc:
        assert 0 <= exc.position <= len(text), (text, exc.position)
        return ("error", str(exc), exc.position)
    fields = (address.canonical, repr(address), address.agent, address.role, address.project,
              address.task, address.temporal, address.count, address.path,
              address.temporal_segment, address.has_wildcards, address.content_key)
    resolved = [_outcome(address.resolve, n, errors=(NoSuchVersion,)) for n in (0, 1, 7)]
    writable = _outcome(address.check_writable, errors=(UCXLError,))
    again = module.parse(address.canonical)  # the canonical form parses to itself
    assert again.canonical == address.canonical and again == address
    return ("ok", fields, resolved, writable, address.matches(address.canonical))


def ucxl(data: bytes) -> None:
    """parse on any text: both twins give the same address, or the same error and position."""
    text = _text(data)
    _agree("ucxl", [_ucxl_outcome(m, text) for m in twins("ucxl")])


@functools.cache
def _ucxl_seeds() -> list[bytes]:
    vectors = json.loads(_VECTORS.read_text())["addresses"]
    return [v["input"].encode("utf-8", "surrogatepass") for v in vectors[:200]]


# --- LZ4 ---------------------------------------------------------------------------------------


def lz4(data: bytes) -> None:
    """First byte even: decompress a block (twins agree); odd: compress and round-trip."""
    r = Reader(data)
    mode = r.byte()
    if mode & 1:
        acceleration = 1 + (mode >> 1) % 4
        payload = r.rest()
        blocks = _agree("lz4", [_outcome(m.compress, payload, acceleration, errors=())
                                for m in twins("lz4")])
        for module in twins("lz4"):
            assert module.decompress(blocks[1], len(payload)) == payload
        return
    size = r.int(2) if mode & 2 else r.int(1)
    max_size = (64, 1 << 16, 1 << 63)[(mode >> 2) % 3]
    block = r.rest()
    got = _agree("lz4", [_outcome(m.decompress, block, size, max_size, errors=(CodecError,))
                         for m in twins("lz4")])
    assert got[0] == "error" or len(got[1]) == size


@functools.cache
def _lz4_seeds() -> list[bytes]:
    block = twins("lz4")[0].compress(_TEXT)
    return [b"\x02" + len(_TEXT).to_bytes(2, "big") + block, b"\x01" + _TEXT[:300],
            b"\x00\x05\x10a\x01\x00\x00", b"\x03" + bytes(40)]


# --- compression framing -----------------------------------------------------------------------


def compression_framing(data: bytes) -> None:
    """decode refuses with CodecError only; its LZ4 bodies decode as both twins decode them."""
    r = Reader(data)
    max_size = (0, 100, 4096, 2**63 - 1, 2**64)[r.byte() % 5]
    blob = r.rest()
    got = _outcome(lambda: compression.decode(blob, max_size=max_size), errors=(CodecError,))
    if got[0] == "ok":
        codec, size, start = compression.read_header(blob)
        assert len(got[1]) == size <= max_size
        if codec is Codec.LZ4:
            for module in twins("lz4"):
                assert module.decompress(blob[start:], size, max_size=size) == got[1]
    elif blob[:1] == bytes([Codec.LZ4]) and got[2].startswith("compression: lz4 body"):
        _, size, start = compression.read_header(blob)
        results = [_outcome(m.decompress, blob[start:], size, size, errors=(CodecError,))
                   for m in twins("lz4")]
        assert all(res[0] == "error" for res in results), results
    for codec in Codec:  # and any payload survives the round trip
        assert compression.decode(compression.encode(blob, codec=codec, min_size=0),
                                  max_size=len(blob)) == blob


@functools.cache
def _compression_seeds() -> list[bytes]:
    return [b"\x02" + compression.encode(_TEXT, codec=c) for c in Codec] + [
        b"\x04" + bytes([Codec.ZLIB]) + b"\xff" * 8 + b"\x7f" + zlib.compress(b"abc"),
    ]


TARGETS = [
    Target("membership", membership, _membership_seeds, _membership_generate),
    Target("ucxl", ucxl, _ucxl_seeds),
    Target("lz4", lz4, _lz4_seeds),
    Target("compression", compression_framing, _compression_seeds),
]
