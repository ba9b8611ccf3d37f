"""Message envelopes: typed, versioned msgpack arrays; origin-signed gossip messages. No I/O.

Every frame payload is one msgpack array whose first two items are the message type (a short
str) and its version (an int)::

    direct:  [type, version, body: bin]
    gossip:  ["gossip", 1, origin: bin 32, origin_key: bin 32, seq: uint64, timestamp_ms: uint,
              topic: str, body: bin | nil, signature: bin 64, hops: uint8]

Direct messages go point to point over an authenticated secure channel and need no signature;
their body is opaque bytes whose schema belongs to the type (decode it with ``unpack_strict``).
Gossip messages are relayed, so their origin signs them: Ed25519 over
``GOSSIP_SIGNATURE_DOMAIN`` + msgpack ``[network_id, origin, seq, timestamp_ms, topic, body]``.
The network ID is signed but never sent: a message from another network fails verification.
``origin`` is the origin's node ID, which receivers check is SHA-256 of ``origin_key``.
``hops`` counts the relays a message has passed (0 as the origin sends it); it lies outside the
signature because every relay increments it, so it is advisory: a hostile relay can lower it,
which only lets a message travel further under a topic's hop limit. Sequence numbers count per
origin and topic (a subscriber sees every number of the streams it follows, so a gap means a
loss), and the message ID covers the topic.
Timestamps are integer milliseconds of wall-clock time, so encodings are canonical.

A (type, version) the receiver does not know decodes to ``UnknownMessage``, not an error: the
caller ignores and counts it. Anything else malformed raises ``DecodeError`` naming the field.

Receipt pipeline, cheapest first, as separate steps so the dedup check sits before any crypto::

    msg = decode_envelope(frame, known_types)       # DecodeError; no crypto
    if isinstance(msg, GossipMessage):
        msg.msg_id                                  # dedup cache key
        verify_gossip(msg, network_id)              # SignatureError
        check_timestamp(msg, now_ms=now_ms)         # StaleMessageError

The dedup cache must remember IDs for at least twice the replay window, or a message replayed
just inside the window after being forgotten would be delivered twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge import signatures
from bzzz_edge.errors import (
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    SignatureError,
)
from bzzz_edge.ids import node_id_from_public_key
from bzzz_edge.wire.constants import (
    DEFAULT_REPLAY_WINDOW_MS,
    ED25519_PUBLIC_KEY_LEN,
    ED25519_SIGNATURE_LEN,
    GOSSIP_SIGNATURE_DOMAIN,
    GOSSIP_TYPE,
    GOSSIP_VERSION,
    MAX_HOPS,
    MAX_NETWORK_ID_LEN,
    MAX_SEQ,
    MAX_TIMESTAMP_MS,
    MAX_TOPIC_LEN,
    MAX_TYPE_NAME_LEN,
    MAX_TYPE_VERSION,
    MESSAGE_ID_LEN,
    NODE_ID_LEN,
)

__all__ = [
    "DirectMessage",
    "Envelope",
    "GossipMessage",
    "StaleMessageError",
    "UnknownMessage",
    "check_timestamp",
    "decode_envelope",
    "encode_envelope",
    "message_id",
    "sign_gossip",
    "unpack_strict",
    "verify_gossip",
]

_GOSSIP_FIELDS = 10
_GOSSIP_KIND = (GOSSIP_TYPE, GOSSIP_VERSION)
_DIRECT_FIELDS = 3


class StaleMessageError(RemoteProtocolError):
    """A gossip message's timestamp lies outside the replay window."""

    def __init__(self, message: str, *, skew_ms: int) -> None:
        super().__init__(message)
        self.skew_ms = skew_ms  #: receiver's now minus the timestamp; negative if in the future


def message_id(origin: bytes, seq: int, topic: str) -> bytes:
    """The 16-byte ID the dedup cache keys on: BLAKE2b(origin || seq as u64 big-endian || topic
    as UTF-8)."""
    data = origin + seq.to_bytes(8, "big") + topic.encode("utf-8")
    return hashlib.blake2b(data, digest_size=MESSAGE_ID_LEN).digest()


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """A relayed message signed by its origin (``verify_gossip`` before trusting any field)."""

    origin: bytes
    origin_key: bytes
    seq: int
    timestamp_ms: int
    topic: str
    body: bytes | None
    signature: bytes
    hops: int = 0

    @property
    def msg_id(self) -> bytes:
        return message_id(self.origin, self.seq, self.topic)

    @property
    def kind(self) -> tuple[str, int]:
        return _GOSSIP_KIND  # (one tuple, not one per message looked up)


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A point-to-point message; the secure channel authenticates its sender."""

    type: str
    version: int
    body: bytes

    @property
    def kind(self) -> tuple[str, int]:
        return self.type, self.version


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A well-formed envelope of a (type, version) this node does not handle."""

    type: str
    version: int

    @property
    def kind(self) -> tuple[str, int]:
        return self.type, self.version


Envelope = GossipMessage | DirectMessage | UnknownMessage


def unpack_strict(data: bytes, *, what: str) -> Any:
    """msgpack-decode ``data`` (str as UTF-8, bin as bytes, str or bytes map keys).

    Raises:
        DecodeError: not exactly one valid msgpack object; the message starts with ``what``.
    """
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise DecodeError(f"{what}: malformed msgpack ({type(exc).__name__}: {exc})") from None


def _describe(value: object) -> str:
    return type(value).__name__


def _check_bytes(value: object, what: str, size: int | None = None) -> bytes:
    if type(value) is not bytes:
        raise DecodeError(f"{what}: expected bin, got {_describe(value)}")
    if size is not None and len(value) != size:
        raise DecodeError(f"{what}: expected {size} bytes, got {len(value)}")
    return value


def _check_int(value: object, what: str, maximum: int) -> int:
    if type(value) is not int:  # bool is an int subclass; refuse it
        raise DecodeError(f"{what}: expected int, got {_describe(value)}")
    if not 0 <= value <= maximum:
        raise DecodeError(f"{what}: {value} outside [0, {maximum}]")
    return value


def _check_str(value: object, what: str, max_bytes: int) -> str:
    if type(value) is not str:
        raise DecodeError(f"{what}: expected str, got {_describe(value)}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise DecodeError(f"{what}: not encodable as UTF-8") from None
    if not 0 < size <= max_bytes:
        raise DecodeError(f"{what}: length {size} bytes outside [1, {max_bytes}]")
    return value


def _valid_gossip(origin: object, origin_key: object, seq: object, timestamp_ms: object,
                  topic: object, body: object, signature: object, hops: object) -> bool:
    """The common, valid case in one expression (an ASCII topic's length is its UTF-8 size);
    False sends the caller through the checks that name what is wrong."""
    return type(origin) is bytes and len(origin) == NODE_ID_LEN \
        and type(origin_key) is bytes and len(origin_key) == ED25519_PUBLIC_KEY_LEN \
        and type(seq) is int and 0 <= seq <= MAX_SEQ \
        and type(timestamp_ms) is int and 0 <= timestamp_ms <= MAX_TIMESTAMP_MS \
        and type(topic) is str and 0 < len(topic) <= MAX_TOPIC_LEN and topic.isascii() \
        and (body is None or type(body) is bytes) \
        and type(signature) is bytes and len(signature) == ED25519_SIGNATURE_LEN \
        and type(hops) is int and 0 <= hops <= MAX_HOPS


def _check_gossip_fields(items: list[Any]) -> GossipMessage:
    if len(items) != _GOSSIP_FIELDS:
        raise DecodeError(f"gossip v1 envelope has {len(items)} fields, expected {_GOSSIP_FIELDS}")
    _, _, origin, origin_key, seq, timestamp_ms, topic, body, signature, hops = items
    # Every gossip message received is checked here.
    if _valid_gossip(origin, origin_key, seq, timestamp_ms, topic, body, signature, hops):
        return GossipMessage(origin, origin_key, seq, timestamp_ms, topic, body, signature, hops)
    if body is not None:
        _check_bytes(body, "gossip field 'body'")
    return GossipMessage(
        origin=_check_bytes(items[2], "gossip field 'origin'", NODE_ID_LEN),
        origin_key=_check_bytes(items[3], "gossip field 'origin_key'", ED25519_PUBLIC_KEY_LEN),
        seq=_check_int(items[4], "gossip field 'seq'", MAX_SEQ),
        timestamp_ms=_check_int(items[5], "gossip field 'timestamp_ms'", MAX_TIMESTAMP_MS),
        topic=_check_str(items[6], "gossip field 'topic'", MAX_TOPIC_LEN),
        body=body,
        signature=_check_bytes(items[8], "gossip field 'signature'", ED25519_SIGNATURE_LEN),
        hops=_check_int(items[9], "gossip field 'hops'", MAX_HOPS),
    )


def decode_envelope(data: bytes, known_types: Container[tuple[str, int]] = frozenset()) -> Envelope:
    """Decode one frame payload, strictly, without any cryptography.

    Args:
        data: the frame payload.
        known_types: the direct (type, version) pairs the caller handles; gossip v1 is built in.

    Raises:
        DecodeError: malformed msgpack, not an array, or a bad field (named in the message).
    """
    items = unpack_strict(data, what="envelope")
    if type(items) is not list:
        raise DecodeError(f"envelope: expected array, got {_describe(items)}")
    if len(items) < 2:
        raise DecodeError(f"envelope: {len(items)} items, expected at least type and version")
    type_, version = items[0], items[1]
    if type_ == GOSSIP_TYPE and version == GOSSIP_VERSION and type(version) is int:
        return _check_gossip_fields(items)  # the common case: the checks below would pass
    type_ = _check_str(type_, "envelope field 'type'", MAX_TYPE_NAME_LEN)
    version = _check_int(version, "envelope field 'version'", MAX_TYPE_VERSION)
    if type_ == GOSSIP_TYPE and version == GOSSIP_VERSION:
        return _check_gossip_fields(items)
    if type_ == GOSSIP_TYPE or (type_, version) not in known_types:
        return UnknownMessage(type_, version)
    if len(items) != _DIRECT_FIELDS:
        raise DecodeError(
            f"{type_} v{version} envelope has {len(items)} fields, expected {_DIRECT_FIELDS}"
        )
    return DirectMessage(type_, version, _check_bytes(items[2], f"{type_} v{version} body"))


def encode_envelope(message: GossipMessage | DirectMessage) -> bytes:
    """Encode a message for a frame (relays re-encode gossip as received; the signature holds).

    Raises:
        LocalProtocolError: a field is invalid, or a direct message uses the reserved gossip type.
    """
    if isinstance(message, GossipMessage):
        return _packb(_validate_local(message))
    kind = (message.type, message.version)
    # A kind's name and version are checked once (exact types first: True == 1, and a list
    # cannot be looked up).
    if not (type(message.type) is str and type(message.version) is int
            and kind in _CHECKED_KINDS):
        if message.type == GOSSIP_TYPE:
            raise LocalProtocolError(
                f"direct messages cannot use the reserved type {GOSSIP_TYPE!r}")
        try:
            _check_str(message.type, "direct message type", MAX_TYPE_NAME_LEN)
            _check_int(message.version, "direct message version", MAX_TYPE_VERSION)
        except DecodeError as exc:
            raise LocalProtocolError(str(exc)) from None
        if len(_CHECKED_KINDS) < _MAX_CHECKED_KINDS:
            _CHECKED_KINDS.add(kind)
    if type(message.body) is not bytes:
        raise LocalProtocolError(
            f"direct message body: expected bin, got {_describe(message.body)}")
    return _packb([message.type, message.version, message.body])


# The (type, version) pairs ``encode_envelope`` found valid: every Raft and membership message
# is encoded here, and their kinds are a handful of constants (bounded all the same).
_CHECKED_KINDS: set[tuple[str, int]] = set()
_MAX_CHECKED_KINDS = 256

# One Packer for the module: ``msgpack.packb`` makes one per call, three times the cost of
# packing a small envelope (every message sent, signed or verified is packed here). The compiled
# Packer packs what is given here (lists of str, int, bytes, None) without running Python code
# or letting go of the GIL, so no other thread's pack can come in between; msgpack's
# pure-Python fallback promises no such thing, and there ``packb`` is kept.
_PACKER = msgpack.Packer(use_bin_type=True) \
    if msgpack.Packer.__module__ == "msgpack._cmsgpack" else None


def _packb(items: list[Any]) -> bytes:
    if _PACKER is not None:
        try:
            return _PACKER.pack(items)  # type: ignore[no-any-return]
        except BaseException:
            _PACKER.reset()  # (msgpack clears it too; nothing half-packed may stay)
            raise
    packed = msgpack.packb(items, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _validate_local(message: GossipMessage) -> list[Any]:
    """The envelope's items, refusing what no receiver would decode (our bug, hence
    LocalProtocolError)."""
    items = [GOSSIP_TYPE, GOSSIP_VERSION, *_gossip_values(message)]
    if _valid_gossip(*items[2:]):  # (no message built only to be thrown away)
        return items
    try:
        _check_gossip_fields(items)
    except DecodeError as exc:
        raise LocalProtocolError(str(exc)) from None
    return items


def _gossip_values(message: GossipMessage) -> list[Any]:
    return [
        message.origin,
        message.origin_key,
        message.seq,
        message.timestamp_ms,
        message.topic,
        message.body,
        message.signature,
        message.hops,
    ]


def _check_network_id(network_id: bytes) -> None:
    if type(network_id) is not bytes or not 0 < len(network_id) <= MAX_NETWORK_ID_LEN:
        raise LocalProtocolError(f"network_id must be 1 to {MAX_NETWORK_ID_LEN} bytes")


def _signed_bytes(
    network_id: bytes, origin: bytes, seq: int, timestamp_ms: int, topic: str, body: bytes | None
) -> bytes:
    return GOSSIP_SIGNATURE_DOMAIN + _packb([network_id, origin, seq, timestamp_ms, topic, body])


def sign_gossip(
    identity_key: Ed25519PrivateKey,
    *,
    network_id: bytes,
    seq: int,
    timestamp_ms: int,
    topic: str,
    body: bytes | None = None,
    origin_key: bytes | None = None,
) -> GossipMessage:
    """Create a gossip message originated and signed by this node.

    ``origin_key``: the raw public key of ``identity_key``, from a caller that keeps it
    (deriving it costs a tenth of a signature).

    Raises:
        LocalProtocolError: a field is out of range (topic too long, negative seq, ...).
    """
    _check_network_id(network_id)
    if origin_key is None:
        origin_key = identity_key.public_key().public_bytes_raw()
    origin = node_id_from_public_key(origin_key)
    unsigned = GossipMessage(
        origin, origin_key, seq, timestamp_ms, topic, body, bytes(ED25519_SIGNATURE_LEN)
    )
    _validate_local(unsigned)
    signature = identity_key.sign(_signed_bytes(network_id, origin, seq, timestamp_ms, topic, body))
    return GossipMessage(origin, origin_key, seq, timestamp_ms, topic, body, signature)


def verify_gossip(message: GossipMessage, network_id: bytes) -> None:
    """Check that ``message`` was signed by its origin for this network.

    Raises:
        SignatureError: the origin is not SHA-256 of the origin key, the key is invalid, or the
            signature does not cover these fields under this network ID.
    """
    _check_network_id(network_id)
    if node_id_from_public_key(message.origin_key) != message.origin:
        raise SignatureError("gossip origin is not the node ID of the origin key")
    data = _signed_bytes(
        network_id,
        message.origin,
        message.seq,
        message.timestamp_ms,
        message.topic,
        message.body,
    )
    if not signatures.verify(message.origin_key, message.signature, data):
        raise SignatureError("gossip signature does not verify")


def check_timestamp(
    message: GossipMessage, *, now_ms: int, window_ms: int = DEFAULT_REPLAY_WINDOW_MS
) -> None:
    """Refuse a message whose timestamp is more than ``window_ms`` from ``now_ms`` either way.

    Args:
        now_ms: the receiver's wall clock in integer milliseconds, passed in by the caller.
        window_ms: the replay window, from the config.

    Raises:
        StaleMessageError: too old (a replay, or a very slow path) or too far in the future.
    """
    if window_ms < 0:
        raise LocalProtocolError(f"window_ms must not be negative, got {window_ms}")
    skew = now_ms - message.timestamp_ms
    if skew > window_ms:
        raise StaleMessageError(
            f"gossip timestamp is {skew} ms in the past, beyond the {window_ms} ms window",
            skew_ms=skew,
        )
    if -skew > window_ms:
        raise StaleMessageError(
            f"gossip timestamp is {-skew} ms in the future, beyond the {window_ms} ms window",
            skew_ms=skew,
        )
