"""Targets for the wire decoders: frames, envelopes, the Noise handshake and transport."""

from __future__ import annotations

import contextlib
import functools
import random

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bzzz_edge.errors import DecodeError, LocalProtocolError, RemoteProtocolError, SignatureError
from bzzz_edge.wire.constants import FRAME_HEADER_LEN, HANDSHAKE_MSG2_LEN, NOISE_LENGTH_PREFIX_LEN
from bzzz_edge.wire.envelope import (
    DirectMessage,
    GossipMessage,
    StaleMessageError,
    UnknownMessage,
    check_timestamp,
    decode_envelope,
    encode_envelope,
    sign_gossip,
    unpack_strict,
    verify_gossip,
)
from bzzz_edge.wire.framing import FrameDecoder, encode_frame
from bzzz_edge.wire.noise import Handshake, HandshakeError, SecureStream

from .engine import Reader, Target
from .values import packb, replace_somewhere

__all__ = ["TARGETS"]

NETWORK_ID = b"fuzz-network-id"
PSK = bytes(range(32))
KNOWN_TYPES = frozenset({("swim", 1), ("rpc", 3)})
NOW_MS = 1_700_000_000_000


# --- frames ------------------------------------------------------------------------------------


def _frames(decoder: FrameDecoder, chunks: list[bytes]) -> tuple[list[bytes], bool]:
    frames: list[bytes] = []
    for chunk in chunks:
        try:
            got = decoder.feed(chunk)
        except RemoteProtocolError:
            try:
                decoder.feed(b"")
            except LocalProtocolError:
                return frames, True  # and a failed decoder stays failed
            raise AssertionError("a failed frame decoder accepted more bytes") from None
        assert all(len(f) <= decoder.max_frame_size for f in got)
        assert decoder.buffered <= FRAME_HEADER_LEN + decoder.max_frame_size
        frames += got
    return frames, False


def frames(data: bytes) -> None:
    """Any stream, whole or in pieces: the same frames, or the same refusal."""
    r = Reader(data)
    max_size = 1 + r.byte() * 5
    step = 1 + r.byte() % 9
    stream = r.rest()
    whole, whole_failed = _frames(FrameDecoder(max_size), [stream])
    pieces = [stream[i : i + step] for i in range(0, len(stream), step)]
    split, split_failed = _frames(FrameDecoder(max_size), pieces)
    assert whole_failed == split_failed
    if not whole_failed:
        assert whole == split


@functools.cache
def _frame_seeds() -> list[bytes]:
    body = encode_frame(b"hello") + encode_frame(b"") + encode_frame(bytes(40))
    return [b"\x03\x02" + body, b"\x00\x01" + encode_frame(b"x"), b"\xff\x05" + body * 3]


# --- envelopes ---------------------------------------------------------------------------------


@functools.cache
def _identity() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))


def envelope(data: bytes) -> None:
    """decode_envelope and the receipt steps after it raise only their documented errors."""
    try:
        message = decode_envelope(data, KNOWN_TYPES)
    except DecodeError:
        return
    if isinstance(message, UnknownMessage):
        return
    # What decodes must re-encode (relays re-encode gossip) and decode to the same message.
    assert decode_envelope(encode_envelope(message), KNOWN_TYPES) == message
    if isinstance(message, GossipMessage):
        assert len(message.msg_id) == 16
        with contextlib.suppress(SignatureError):
            verify_gossip(message, NETWORK_ID)
        with contextlib.suppress(StaleMessageError):
            check_timestamp(message, now_ms=NOW_MS)
    else:
        assert isinstance(message, DirectMessage)


@functools.cache
def _envelope_seeds() -> list[bytes]:
    gossip = sign_gossip(_identity(), network_id=NETWORK_ID, seq=7, timestamp_ms=NOW_MS,
                         topic="bzzz/coordination/v1", body=b"payload")
    return [
        encode_envelope(gossip),
        encode_envelope(sign_gossip(_identity(), network_id=NETWORK_ID, seq=2**64 - 1,
                                    timestamp_ms=0, topic="t")),
        encode_envelope(DirectMessage("swim", 1, packb([1, 1, 5, bytes(32), []]))),
        encode_envelope(DirectMessage("rpc", 3, b"")),
        packb(["future-type", 9, b"whatever", 1, 2]),
    ]


def _envelope_generate(rng: random.Random) -> bytes:
    tree = unpack_strict(rng.choice(_envelope_seeds()), what="seed")
    return packb(replace_somewhere(rng, tree))


# --- the Noise handshake -----------------------------------------------------------------------


@functools.cache
def _keys(side: int) -> tuple[X25519PrivateKey, Ed25519PrivateKey]:
    static = X25519PrivateKey.from_private_bytes(bytes([side + 1]) * 32)
    return static, Ed25519PrivateKey.from_private_bytes(bytes([side + 7]) * 32)


def _handshake(initiator: bool) -> Handshake:
    static, identity = _keys(0 if initiator else 1)
    return Handshake(initiator=initiator, static_key=static, identity_key=identity, psk=PSK)


def _feed_garbage(handshake: Handshake, data: bytes) -> bytes | None:
    """Feed ``data`` in two pieces (the first byte says where to cut); None if refused."""
    cut = data[0] % (len(data) + 1) if data else 0
    reply = b""
    for piece in (data[1:cut], data[max(cut, 1) :]):
        if handshake.complete:
            break
        try:
            reply += handshake.feed(piece)
        except HandshakeError:
            assert not handshake.complete
            return None
    return reply


def noise_msg1(data: bytes) -> None:
    """A responder fed garbage as message 1: refused, or (a replayed valid one) answered."""
    reply = _feed_garbage(_handshake(False), data)
    assert reply in (None, b"") or len(reply) == NOISE_LENGTH_PREFIX_LEN + HANDSHAKE_MSG2_LEN


def noise_msg2(data: bytes) -> None:
    """An initiator fed garbage as message 2 (no PSK-less party can forge one)."""
    initiator = _handshake(True)
    initiator.start()
    assert _feed_garbage(initiator, data) in (None, b"")
    assert not initiator.complete


def noise_msg3(data: bytes) -> None:
    """A responder that answered a valid message 1, fed garbage as message 3."""
    initiator, responder = _handshake(True), _handshake(False)
    responder.feed(initiator.start())
    assert _feed_garbage(responder, data) in (None, b"")
    assert not responder.complete


@functools.cache
def _noise_seeds() -> list[bytes]:
    initiator, responder = _handshake(True), _handshake(False)
    msg1 = initiator.start()
    msg2 = responder.feed(msg1)
    msg3 = initiator.feed(msg2)
    return [b"\x00" + msg1, b"\x10" + msg1, b"\x05" + msg2, b"\x22" + msg3, b"\x01" + msg3 + b"x"]


def secure_stream(data: bytes) -> None:
    """After a real handshake, garbage as transport messages (some as msg 3's leftover)."""
    initiator, responder = _handshake(True), _handshake(False)
    msg2 = responder.feed(initiator.start())
    msg3 = initiator.feed(msg2)
    r = Reader(data)
    as_leftover = r.byte() & 1
    garbage = r.rest()
    responder.feed(msg3 + garbage if as_leftover else msg3)
    stream = SecureStream(responder.result.session)
    try:
        stream.feed(responder.result.leftover if as_leftover else garbage)
    except RemoteProtocolError:
        try:
            stream.feed(b"")
        except LocalProtocolError:
            return
        raise AssertionError("a failed secure stream accepted more bytes") from None
    assert stream.buffered <= len(garbage)


@functools.cache
def _stream_seeds() -> list[bytes]:
    # Well-formed length prefixes with (unauthentic) bodies.
    return [b"\x00" + b"\x00\x10" + bytes(16), b"\x01" + b"\x00\x20" + bytes(40), b"\x00\xff\xff"]


TARGETS = [
    Target("frames", frames, _frame_seeds),
    Target("envelope", envelope, _envelope_seeds, _envelope_generate),
    Target("noise_msg1", noise_msg1, _noise_seeds),
    Target("noise_msg2", noise_msg2, _noise_seeds),
    Target("noise_msg3", noise_msg3, _noise_seeds),
    Target("secure_stream", secure_stream, _stream_seeds),
]
