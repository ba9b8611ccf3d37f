"""The protocol of one established connection, sans-IO: bytes in, events out. No I/O.

In the manner of h11's ``Connection``: after the Noise handshake, the trio shell
(``net/_connection.py``) feeds whatever the socket delivered to ``receive_data`` and gets
events back; to send, it asks this class for frames and encrypts them with ``seal``, in the
order they reach the wire. Decryption, deframing, envelope decoding, the hello, keepalives and
RPC framing and matching all live here, so they are tested without sockets.

A peer's mistakes are counted: a fatal one (bad MAC, oversized frame, malformed hello) raises
``RemoteProtocolError``; a malformed envelope is reported as ``Malformed`` and, past
``max_malformed`` of them, becomes fatal too.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import msgpack

from bzzz_edge.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from bzzz_edge.wire.envelope import (
    DirectMessage,
    Envelope,
    GossipMessage,
    UnknownMessage,
    decode_envelope,
    encode_envelope,
)
from bzzz_edge.wire.framing import FrameDecoder, encode_frame
from bzzz_edge.wire.noise import SecureStream
from bzzz_edge.wire.types import HELLO, KEEPALIVE, KNOWN_TYPES, RPC_REQUEST, RPC_RESPONSE

__all__ = [
    "EnvelopeReceived",
    "HelloReceived",
    "Malformed",
    "RequestReceived",
    "ResponseReceived",
    "Session",
    "SessionCounters",
    "SessionEvent",
    "Unhandled",
]

_MAX_METHOD_LEN = 128
# The connection's own types, as (name, version) keys made once (``EnvelopeType.key`` builds a
# tuple at every call, and every frame received is compared with them).
_KEEPALIVE, _HELLO = KEEPALIVE.key, HELLO.key
_RPC_REQUEST, _RPC_RESPONSE = RPC_REQUEST.key, RPC_RESPONSE.key
_FRAME_HEADER = 4  # framing.FRAME_HEADER_LEN
# The first buffer of a connection's Packer (see Session); msgpack takes the size from 1.1 on.
_PACKER_START = {"buf_size": 4096} if msgpack.version >= (1, 1) else {}


@dataclass(frozen=True, slots=True)
class HelloReceived:
    hello: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EnvelopeReceived:
    """A service's envelope (gossip, membership...), for the handler registered for its type."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class RequestReceived:
    request_id: int
    method: str
    body: Any


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """The answer to one of our requests (unknown or repeated IDs are dropped before this)."""

    request_id: int
    ok: bool
    payload: Any


@dataclass(frozen=True, slots=True)
class Malformed:
    """An envelope that did not decode; counted, and the peer's strike."""

    error: str


@dataclass(frozen=True, slots=True)
class Unhandled:
    """A well-formed envelope of a type this node does not know; counted and ignored."""

    type: str
    version: int


SessionEvent = (HelloReceived | EnvelopeReceived | RequestReceived | ResponseReceived
                | Malformed | Unhandled)


@dataclass(slots=True)
class SessionCounters:
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    malformed: int = 0
    unknown: int = 0
    stray_responses: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(slots=True)
class Session:
    """Protocol state of one connection after its handshake.

    Args:
        secure: the Noise transport state from the handshake.
        max_frame_size: the largest frame payload accepted or sent.
        known_types: the (type, version) pairs that decode to envelopes; the rest are
            ``Unhandled``.
        max_malformed: malformed envelopes tolerated before the connection fails.
    """

    secure: SecureStream
    max_frame_size: int
    known_types: frozenset[tuple[str, int]] = KNOWN_TYPES
    max_malformed: int = 10
    counters: SessionCounters = field(default_factory=SessionCounters)
    hello: dict[str, Any] | None = None
    _decoder: FrameDecoder = field(init=False)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _pending: set[int] = field(default_factory=set)
    # One packer for this connection's own frames: ``msgpack.packb`` builds a Packer per call,
    # three times the cost of packing a small frame. A session is used by one task at a time.
    _packer: msgpack.Packer = field(init=False)

    def __post_init__(self) -> None:
        self._decoder = FrameDecoder(self.max_frame_size)
        # A page to start with, not msgpack's 256 KiB: that buffer is kept for the connection's
        # life (2.3 MB allocated on a node of a 10-node cluster), most frames are a few hundred
        # bytes, and a larger one grows it (doubling) once.
        self._packer = msgpack.Packer(use_bin_type=True, **_PACKER_START)

    # --- receiving ------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[SessionEvent]:
        """Decrypt and decode what arrived.

        Raises:
            RemoteProtocolError: a fatal error; the connection must close.
        """
        self.counters.bytes_in += len(data)
        events: list[SessionEvent] = []
        for chunk in self.secure.feed(data):
            for frame in self._decoder.feed(chunk):
                self.counters.frames_in += 1
                event = self._frame_event(frame)
                if event is not None:
                    events.append(event)
        return events

    def _frame_event(self, frame: bytes) -> SessionEvent | None:
        try:
            envelope = decode_envelope(frame, self.known_types)
        except DecodeError as exc:
            return self._malformed(str(exc))
        if isinstance(envelope, UnknownMessage):
            self.counters.unknown += 1
            return Unhandled(envelope.type, envelope.version)
        if not isinstance(envelope, DirectMessage):
            return EnvelopeReceived(envelope)
        kind = (envelope.type, envelope.version)
        if kind == _RPC_REQUEST:
            return self._request(envelope.body)
        if kind == _RPC_RESPONSE:
            return self._response(envelope.body)
        if kind == _KEEPALIVE:
            return None
        if kind == _HELLO:
            return self._hello(envelope.body)
        return EnvelopeReceived(envelope)

    def _malformed(self, error: str) -> Malformed:
        self.counters.malformed += 1
        if self.counters.malformed >= self.max_malformed:
            raise RemoteProtocolError(f"{self.counters.malformed} malformed envelopes; "
                                      f"the last: {error}")
        return Malformed(error)

    def _request(self, body: bytes) -> SessionEvent:
        try:
            request_id, method, payload = msgpack.unpackb(body)
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
            return self._malformed(f"RPC request: {type(exc).__name__}")
        if type(request_id) is not int or not isinstance(method, str):
            return self._malformed("RPC request: bad id or method")
        # An overlong name is no method of ours; it is answered "unknown method", cut short.
        return RequestReceived(request_id, method[:_MAX_METHOD_LEN], payload)

    def _response(self, body: bytes) -> SessionEvent | None:
        try:
            request_id, ok, payload = msgpack.unpackb(body)
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
            return self._malformed(f"RPC response: {type(exc).__name__}")
        if type(request_id) is not int or request_id not in self._pending:
            self.counters.stray_responses += 1  # late (timed out) or repeated: ignored
            return None
        self._pending.discard(request_id)
        return ResponseReceived(request_id, bool(ok), payload)

    def _hello(self, body: bytes) -> SessionEvent:
        try:
            hello = msgpack.unpackb(body)
            port = hello.get("port") if isinstance(hello, dict) else None
        except (ValueError, TypeError, OverflowError, msgpack.UnpackException):
            port = None
        if type(port) is not int or not 1 <= port <= 65535:
            raise RemoteProtocolError("malformed hello: no valid port")
        if self.hello is not None:
            raise RemoteProtocolError("a second hello")
        self.hello = hello
        return HelloReceived(hello)

    # --- sending ----------------------------------------------------------------------------

    def frame(self, envelope: DirectMessage | GossipMessage) -> bytes:
        """One frame (not yet encrypted) carrying ``envelope``.

        Raises:
            LocalProtocolError: the envelope is larger than a frame may be.
        """
        return encode_frame(encode_envelope(envelope), self.max_frame_size)

    def frame_payload(self, payload: bytes) -> bytes:
        """One frame carrying an already encoded envelope (e.g. one broadcast to many).

        Raises:
            LocalProtocolError: the payload is larger than a frame may be.
        """
        # encode_frame's work without its check of the maximum, which the session's
        # FrameDecoder made once: this runs for every frame sent.
        if len(payload) > self.max_frame_size:
            raise LocalProtocolError(f"frame payload of {len(payload)} bytes exceeds the "
                                     f"maximum of {self.max_frame_size}")
        return len(payload).to_bytes(_FRAME_HEADER, "big") + payload

    def _own_frame(self, kind: tuple[str, int], body: Any) -> bytes:
        """A frame of one of the connection's own types (constant, valid names and versions,
        so without ``encode_envelope``'s checks): ``[type, version, packed body]``.

        Raises:
            LocalProtocolError: the frame would be too large.
        """
        packer = self._packer
        try:
            return self.frame_payload(packer.pack([*kind, packer.pack(body)]))
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. an unpackable answer
            packer.reset()
            raise LocalProtocolError(f"cannot encode {kind[0]}: {exc}") from None

    def hello_frame(self, fields: dict[str, Any]) -> bytes:
        return self._own_frame(_HELLO, fields)

    def keepalive_frame(self) -> bytes:
        return self.frame(DirectMessage(*_KEEPALIVE, b""))

    def request_frame(self, method: str, body: bytes) -> tuple[int, bytes]:
        """A new request's ID and frame; its response will be matched to the ID."""
        request_id = next(self._ids)
        frame = self._own_frame(_RPC_REQUEST, [request_id, method, body])
        self._pending.add(request_id)
        return request_id, frame

    def cancel_request(self, request_id: int) -> None:
        """Forget a request (timed out): a late answer becomes a stray response."""
        self._pending.discard(request_id)

    def response_frame(self, request_id: int, ok: bool, payload: Any) -> bytes:
        return self._own_frame(_RPC_RESPONSE, [request_id, ok, payload])

    def seal(self, frames: list[bytes]) -> bytes:
        """Encrypt frames for the wire. Call in the order the bytes will be written.

        Raises:
            LocalProtocolError: the secure stream failed before.
        """
        wire = self.secure.send(frames[0] if len(frames) == 1 else b"".join(frames))
        self.counters.frames_out += len(frames)
        self.counters.bytes_out += len(wire)
        return wire

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

