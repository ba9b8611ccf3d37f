"""Targets for the decoders of the later layers: DHT messages, Raft messages, signed log entries
and heads, pub/sub control messages and gossip message bodies.

Each target feeds its input through the path the node takes for a peer's bytes (msgpack with
the options the service uses, then the decoder) and allows only the decoder's documented error
(``DecodeError``; ``SignatureError`` too where a signature is checked; ``CodecError`` for
bodies). Whatever decodes must encode again to the same value: valid encodings round-trip.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.consensus import _messages as raft
from bzzz_edge.dht import _messages as dht
from bzzz_edge.dht._contact import Contact
from bzzz_edge.dht._record import Kind, Record
from bzzz_edge.errors import CodecError, DecodeError, SignatureError
from bzzz_edge.gossip import _control as control
from bzzz_edge.gossip.bodies import decode_body
from bzzz_edge.signedlog import _codec as log
from bzzz_edge.wire import compression
from bzzz_edge.wire.compression import Codec

from .engine import Reader, Target
from .values import packb, replace_somewhere

__all__ = ["TARGETS"]

_A, _B = bytes(32), bytes(range(32))

# --- DHT messages -------------------------------------------------------------------------------


def _dht_messages() -> list[Any]:
    record = Record(Kind.VALUE, _A, _B, 7, 1_700_000_000_000, None, b"value", None, bytes(64))
    provider = Record(Kind.PROVIDER, _B, _A, 1, 0, None, b"", bytes(32), bytes(64))
    contacts = (Contact(_A, "10.0.0.2", 7946), Contact(_B, "host.lan", 65535))
    return [dht.FindNode(1, _A), dht.FindValue(2**64 - 1, _B, Kind.PROVIDER),
            dht.Store(3, record), dht.Nodes(4, contacts), dht.Values(5, (record, provider), ()),
            dht.Stored(6, dht.Verdict(next(iter(dht.Verdict))))]


def dht_message(data: bytes) -> None:
    """The DHT service's path: unpackb (raw=False, strict_map_key), then decode_message."""
    try:
        payload = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException):
        return  # the service catches exactly these (dht/service.py)
    try:
        message = dht.decode_message(payload)
    except DecodeError:
        return
    again = msgpack.unpackb(packb(dht.encode_message(message)), raw=False, strict_map_key=True)
    assert dht.decode_message(again) == message


@functools.cache
def _dht_seeds() -> list[bytes]:
    return [packb(dht.encode_message(m)) for m in _dht_messages()] + [packb([9, 1, 2])]


def _dht_generate(rng: random.Random) -> bytes:
    return packb(replace_somewhere(rng, dht.encode_message(rng.choice(_dht_messages()))))


# --- Raft messages ------------------------------------------------------------------------------

_LIMITS = raft.Limits(max_entries=8, max_command_bytes=64, max_snapshot_bytes=256)


def _raft_messages() -> list[Any]:
    config = raft.Configuration(frozenset({_A}), frozenset({_B}))
    entries = (raft.Entry(1, 5, raft.EntryKind.COMMAND, b"set x"),
               raft.Entry(1, 6, raft.EntryKind.NOOP),
               raft.Entry(2, 7, raft.EntryKind.CONFIG, b"", config))
    return [raft.RequestVote(3, 10, 2, True, False), raft.VoteResponse(3, True, True),
            raft.AppendEntries(2, 4, 1, 3, entries), raft.AppendResponse(2, False, 4),
            raft.InstallSnapshot(5, raft.Snapshot(9, 4, config, b"state")),
            raft.SnapshotResponse(5, 9), raft.TimeoutNow(2**63 - 1)]


def raft_message(data: bytes) -> None:
    """The consensus service's path: unpackb (use_list), then decode_message with limits."""
    try:
        payload = msgpack.unpackb(data, use_list=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException):
        return
    try:
        message = raft.decode_message(payload, _LIMITS)
    except DecodeError:
        return
    again = msgpack.unpackb(packb(raft.encode_message(message)), use_list=True)
    assert raft.decode_message(again, _LIMITS) == message


@functools.cache
def _raft_seeds() -> list[bytes]:
    return [packb(raft.encode_message(m)) for m in _raft_messages()]


def _raft_generate(rng: random.Random) -> bytes:
    return packb(replace_somewhere(rng, raft.encode_message(rng.choice(_raft_messages()))))


# --- signed log entries and heads --------------------------------------------------------------

_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
_AUTHOR = __import__("hashlib").sha256(_KEY.public_key().public_bytes_raw()).digest()


@functools.cache
def _entries() -> list[log.Entry]:
    data: list[dict[str, Any]] = [{}, {"k": 1, "b": b"\x00", "l": [1, [2, {"x": None}]]},
                                  {"f": 1.5, "t": True, "s": "é" * 20}]
    return [log.sign_entry(_KEY, author=_AUTHOR, index=i, timestamp_ms=1_700_000_000_000 + i,
                           type="task.claim", data=d, prev=log.ZERO_HASH)
            for i, d in enumerate(data)]


def log_entry(data: bytes) -> None:
    """decode_entry, without and with the author's key: DecodeError or SignatureError only;
    what decodes has exactly this encoding (one byte form per entry)."""
    for key in (None, _KEY.public_key()):
        try:
            entry = log.decode_entry(data, key)
        except (DecodeError, SignatureError):
            continue
        assert entry.encoded == data and entry.hash == log.entry_hash(data)
        body, signature = log.entry_signature(data)
        assert signature == entry.signature
        fields = msgpack.unpackb(body, raw=False, strict_map_key=True)
        assert log.canonical_pack(fields) == body


@functools.cache
def _log_entry_seeds() -> list[bytes]:
    return [e.encoded for e in _entries()]


def _log_entry_generate(rng: random.Random) -> bytes:
    body, signature = log.entry_signature(rng.choice(_entries()).encoded)
    fields = msgpack.unpackb(body, raw=False)
    if rng.random() < 0.5:
        body = packb(replace_somewhere(rng, fields))
    else:  # deep nesting in the data, where a recursive check could run out of stack
        deep: Any = None
        for _ in range(rng.choice((10, 63, 64, 65, 200, 600, 1000))):
            deep = [deep]
        fields[5] = {"deep": deep}
        body = packb(fields)
    return packb([body, signature])


def log_head(data: bytes) -> None:
    """decode_head: DecodeError or SignatureError only; what decodes signs exactly this."""
    try:
        head = log.decode_head(data)
    except (DecodeError, SignatureError):
        return
    assert head.encoded == data
    again = log.sign_head(_KEY, author=head.author, length=head.length, root=head.root,
                          timestamp_ms=head.timestamp_ms) if head.author == _AUTHOR else None
    assert again is None or again.encoded[:-66] == data[:-66]  # same body, same key


@functools.cache
def _log_head_seeds() -> list[bytes]:
    return [log.sign_head(_KEY, author=_AUTHOR, length=n, root=bytes([n % 256]) * 32,
                          timestamp_ms=1_700_000_000_000).encoded for n in (0, 1, 2**40)]


def _log_head_generate(rng: random.Random) -> bytes:
    body, signature = log._split(rng.choice(_log_head_seeds()), "log head")
    return packb([packb(replace_somewhere(rng, msgpack.unpackb(body, raw=False))), signature])


# --- pub/sub control ----------------------------------------------------------------------------


def _controls() -> list[control.Control]:
    ids = (bytes(16), bytes(range(16)))
    return [control.Control(), control.Control(subscriptions=(("bzzz/t", True), ("x", False))),
            control.Control(graft=("a",), prune=("b", "c"), ihave=(("a", ids),), iwant=ids,
                            neighbours=(_A, _B)),
            control.Control(neighbours=())]


def pubsub_control(data: bytes) -> None:
    """decode_control on a body: DecodeError only; what decodes round-trips."""
    try:
        message = control.decode_control(data)
    except DecodeError:
        return
    assert control.decode_control(control.encode_control(message).body) == message


@functools.cache
def _control_seeds() -> list[bytes]:
    return [control.encode_control(c).body for c in _controls()]


def _control_generate(rng: random.Random) -> bytes:
    tree = msgpack.unpackb(rng.choice(_control_seeds()), raw=False)
    return packb(replace_somewhere(rng, tree))


# --- gossip bodies ------------------------------------------------------------------------------


def gossip_body(data: bytes) -> None:
    """decode_body: CodecError only, never more than the limit; bodies round-trip."""
    r = Reader(data)
    max_size = (0, 1, 127, 128, 4096, 256 * 1024)[r.byte() % 6]
    body = r.rest()
    try:
        out = decode_body(body, max_size=max_size)
    except CodecError:
        out = None
    if out is not None:
        assert len(out) <= max_size
        assert out == compression.decode(body, max_size=max_size)  # the inline path agrees
    for codec in Codec:
        assert decode_body(compression.encode(body, codec=codec, min_size=0),
                           max_size=len(body)) == body


@functools.cache
def _body_seeds() -> list[bytes]:
    text = b"bzzz-edge gossip body " * 40
    return [bytes([5]) + compression.encode(text, codec=c, min_size=0) for c in Codec] + [
        b"\x00" + bytes([Codec.RAW, 3]) + b"abc", b"\x02" + bytes([Codec.RAW, 0x7f]) + b"x" * 127]


TARGETS = [
    Target("dht", dht_message, _dht_seeds, _dht_generate),
    Target("raft", raft_message, _raft_seeds, _raft_generate),
    Target("log_entry", log_entry, _log_entry_seeds, _log_entry_generate),
    Target("log_head", log_head, _log_head_seeds, _log_head_generate),
    Target("pubsub_control", pubsub_control, _control_seeds, _control_generate),
    Target("gossip_body", gossip_body, _body_seeds),
]
