"""The secure channel between two nodes: a sans-IO Noise handshake and transport. No I/O.

Protocol: ``Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b`` (Noise spec rev 34), prologue
``b"bzzz-edge/1"``, the PSK being the 32-byte network key::

    -> psk, e                  payload: empty (but authenticated, see below)
    <- e, ee, s, es            payload: responder identity (Ed25519 public key || signature)
    -> s, se                   payload: initiator identity (Ed25519 public key || signature)

Why psk0 and not psk3. In XXpsk3 the PSK enters only at message 3, so message 2 is protected by
``ee``/``es`` alone: *anyone* who opens a TCP connection and sends an ephemeral key can decrypt
the responder's static key and message-2 payload. With our identity in that payload, every node
would hand its node ID to any scanner. With psk0 the PSK is mixed in before the first message,
so message 1's (empty) payload carries a MAC under a key derived from the PSK. The responder
checks that MAC before it generates or sends anything and closes the connection on failure, so
a node without the network key receives not one byte. The reverse case holds too: a responder
without the key cannot decrypt message 1 or produce a message 2 the initiator accepts, so the
initiator never sends message 3 and its identity never leaves the box. What a PSK-less party
sees is an X25519 ephemeral key (random). A replayed message 1 makes the responder answer, but
the answer is encrypted under ``ee`` with the original sender's ephemeral secret, useless to
the replayer. Noise allows psk modifiers at any position; ``noiseprotocol`` accepts the name
and is the independent implementation the tests check us against. Forward secrecy and identity
hiding are as in XX; the PSK adds network membership on top.

Identity binding. A node's identity is an Ed25519 key (node ID = SHA-256 of the raw public
key); Noise uses a separate X25519 static key. The identity payload of messages 2 and 3 is the
sender's Ed25519 public key and its signature over ``HANDSHAKE_IDENTITY_DOMAIN`` + the sender's
X25519 static public key. Noise proves possession of the static key (``es``/``se``); the
signature ties it to the identity. The signature is not bound to the session: it is a
long-lived certificate and can be computed once per static key. The initiator may pass
``expected_peer_id``; a different responder fails the handshake before message 3 is sent.

Framing on TCP: every Noise message (handshake and transport) is prefixed with its length as a
2-byte big-endian integer (libp2p-noise style), so a message is at most 65535 bytes.
``SecureStream`` splits larger plaintexts over several messages; application framing (see
``framing.py``) runs on the plaintext byte stream it yields.

Use from the async shell::

    hs = Handshake(initiator=..., static_key=..., identity_key=..., psk=network_key)
    await send_all(hs.start())              # b"" for a responder
    while not hs.complete:
        await send_all(hs.feed(await receive_some()))   # an error here: close the connection
    result = hs.result                      # result.peer_id is authenticated
    stream = SecureStream(result.session)
    chunks = stream.feed(result.leftover)   # bytes that arrived right after the handshake
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bzzz_edge import signatures
from bzzz_edge.errors import LocalProtocolError, RemoteProtocolError
from bzzz_edge.ids import node_id_from_public_key
from bzzz_edge.wire._noise_state import SymmetricState, dh, new_x25519_key
from bzzz_edge.wire._secure import SecureSession, SecureStream
from bzzz_edge.wire.constants import (
    ED25519_PUBLIC_KEY_LEN,
    HANDSHAKE_IDENTITY_DOMAIN,
    HANDSHAKE_IDENTITY_PAYLOAD_LEN,
    HANDSHAKE_MSG1_LEN,
    HANDSHAKE_MSG2_LEN,
    HANDSHAKE_MSG3_LEN,
    NODE_ID_LEN,
    NOISE_DH_LEN,
    NOISE_LENGTH_PREFIX_LEN,
    NOISE_PROLOGUE,
    NOISE_PROTOCOL_NAME,
    NOISE_PSK_LEN,
    NOISE_TAG_LEN,
)

__all__ = [
    "Handshake",
    "HandshakeError",
    "HandshakeResult",
    "PeerIdentityMismatch",
    "SecureSession",
    "SecureStream",
    "identity_payload",
    "new_x25519_key",
]

log = logging.getLogger(__name__)

_STATIC_LEN_ENCRYPTED = NOISE_DH_LEN + NOISE_TAG_LEN


class HandshakeError(RemoteProtocolError):
    """The handshake failed: wrong network key, tampering, bad identity. Close the connection."""


class PeerIdentityMismatch(HandshakeError):
    """The responder authenticated as a different node than ``expected_peer_id``."""

    def __init__(self, message: str, *, expected: bytes, actual: bytes) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


def _raw_public(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def identity_payload(identity_key: Ed25519PrivateKey, static_public_key: bytes) -> bytes:
    """The handshake identity payload: Ed25519 public key || sig(domain || X25519 static key)."""
    signature = identity_key.sign(HANDSHAKE_IDENTITY_DOMAIN + static_public_key)
    return _raw_public(identity_key) + signature


def _verify_identity(payload: bytes, peer_static: bytes) -> bytes:
    """Check a peer's identity payload against its static key; return its Ed25519 public key."""
    if len(payload) != HANDSHAKE_IDENTITY_PAYLOAD_LEN:
        raise HandshakeError(
            f"identity payload has {len(payload)} bytes, expected {HANDSHAKE_IDENTITY_PAYLOAD_LEN}"
        )
    public = payload[:ED25519_PUBLIC_KEY_LEN]
    if not signatures.verify(public, payload[ED25519_PUBLIC_KEY_LEN:],
                             HANDSHAKE_IDENTITY_DOMAIN + peer_static):
        raise HandshakeError("peer's identity signature over its static key is invalid")
    return public


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a completed handshake established."""

    peer_id: bytes  #: SHA-256 of the peer's Ed25519 public key, authenticated
    peer_identity_key: bytes  #: the peer's raw Ed25519 public key
    peer_static_key: bytes  #: the peer's raw X25519 static public key
    session: SecureSession
    leftover: bytes  #: bytes received after the last handshake message: feed them to the stream


class _State(enum.Enum):
    START = "start"  # initiator before start()
    AWAIT_MSG1 = "await-1"
    AWAIT_MSG2 = "await-2"
    AWAIT_MSG3 = "await-3"
    DONE = "done"
    FAILED = "failed"


_EXPECTED_LEN = {
    _State.AWAIT_MSG1: HANDSHAKE_MSG1_LEN,
    _State.AWAIT_MSG2: HANDSHAKE_MSG2_LEN,
    _State.AWAIT_MSG3: HANDSHAKE_MSG3_LEN,
}
_MSG_NUMBER = {_State.AWAIT_MSG1: 1, _State.AWAIT_MSG2: 2, _State.AWAIT_MSG3: 3}


class Handshake:
    """One side of the XXpsk0 handshake, fed bytes from the wire, returning bytes to send.

    Args:
        initiator: True on the side that opened the connection.
        static_key: this node's X25519 static key for Noise.
        identity_key: this node's Ed25519 identity key.
        psk: the 32-byte network key.
        expected_peer_id: initiator only; fail unless the responder has this node ID.
        prologue: bound into the handshake; both sides must use the same.
    """

    def __init__(
        self,
        *,
        initiator: bool,
        static_key: X25519PrivateKey,
        identity_key: Ed25519PrivateKey,
        psk: bytes,
        expected_peer_id: bytes | None = None,
        prologue: bytes = NOISE_PROLOGUE,
    ) -> None:
        if not isinstance(psk, bytes) or len(psk) != NOISE_PSK_LEN:
            raise LocalProtocolError(f"the network key (PSK) must be {NOISE_PSK_LEN} bytes")
        if expected_peer_id is not None:
            if not initiator:
                raise LocalProtocolError("only the initiator can expect a peer ID")
            if len(expected_peer_id) != NODE_ID_LEN:
                raise LocalProtocolError(f"expected_peer_id must be {NODE_ID_LEN} bytes")
        self._initiator = initiator
        self._s = static_key
        self._s_pub = _raw_public(static_key)
        self._payload = identity_payload(identity_key, self._s_pub)
        self._psk = psk
        self._expected_peer_id = expected_peer_id
        self._sym: SymmetricState | None = SymmetricState(NOISE_PROTOCOL_NAME)
        self._sym.mix_hash(prologue)
        self._e: X25519PrivateKey | None = None
        self._re = b""
        self._buffer = bytearray()
        self._result: HandshakeResult | None = None
        self._state = _State.START if initiator else _State.AWAIT_MSG1

    @property
    def initiator(self) -> bool:
        return self._initiator

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    @property
    def result(self) -> HandshakeResult:
        """The outcome; only once ``complete``."""
        if self._result is None:
            raise LocalProtocolError("handshake not complete")
        return self._result

    def start(self) -> bytes:
        """Bytes to send first: message 1 for an initiator, nothing for a responder."""
        if not self._initiator:
            return b""
        if self._state is not _State.START:
            raise LocalProtocolError("handshake already started")
        message = self._write_msg1()
        self._state = _State.AWAIT_MSG2
        return _prefixed(message)

    def feed(self, data: bytes) -> bytes:
        """Take received bytes; return bytes to send (possibly empty).

        Raises:
            HandshakeError: the peer failed the handshake; close the connection.
            PeerIdentityMismatch: the responder is not ``expected_peer_id``.
            LocalProtocolError: called before ``start`` or after completion or failure.
        """
        if self._state not in _EXPECTED_LEN:
            raise LocalProtocolError(f"cannot feed a handshake in state {self._state.value}")
        self._buffer += data
        if len(self._buffer) < NOISE_LENGTH_PREFIX_LEN:
            return b""
        expected = _EXPECTED_LEN[self._state]
        number = _MSG_NUMBER[self._state]
        length = int.from_bytes(self._buffer[:NOISE_LENGTH_PREFIX_LEN], "big")
        if length != expected:
            # refuse before buffering: handshake messages have fixed sizes
            self._fail()
            raise HandshakeError(
                f"handshake message {number} has length {length}, expected {expected}"
            )
        end = NOISE_LENGTH_PREFIX_LEN + length
        if len(self._buffer) < end:
            return b""
        message = bytes(self._buffer[NOISE_LENGTH_PREFIX_LEN:end])
        leftover = bytes(self._buffer[end:])
        self._buffer.clear()
        if leftover and self._state is not _State.AWAIT_MSG3:
            # only after message 3 may transport data follow at once; before that the peer
            # must wait for our reply, so more bytes are a protocol violation
            self._fail()
            raise HandshakeError(f"unexpected bytes after handshake message {number}")
        try:
            reply = self._process(message, leftover)
        except HandshakeError as exc:
            self._fail()
            log.debug("handshake message %d refused: %s", number, exc)
            raise
        except RemoteProtocolError as exc:
            self._fail()
            log.debug("handshake message %d refused: %s", number, exc)
            raise HandshakeError(f"handshake message {number}: {exc}") from exc
        return reply

    def _fail(self) -> None:
        self._state = _State.FAILED
        self._sym = None
        self._e = None
        self._psk = b""
        self._buffer.clear()

    def _process(self, message: bytes, leftover: bytes) -> bytes:
        if self._state is _State.AWAIT_MSG1:
            self._read_msg1(message)
            reply = self._write_msg2()
            self._state = _State.AWAIT_MSG3
            return _prefixed(reply)
        if self._state is _State.AWAIT_MSG2:
            peer_static, peer_identity = self._read_msg2(message)
            reply = self._write_msg3()
            self._finish(peer_static, peer_identity, leftover)
            return _prefixed(reply)
        peer_static, peer_identity = self._read_msg3(message)
        self._finish(peer_static, peer_identity, leftover)
        return b""

    def _sym_state(self) -> SymmetricState:
        assert self._sym is not None  # only None after failure, which feed() refuses
        return self._sym

    def _mix_ephemeral(self, public: bytes) -> None:
        sym = self._sym_state()
        sym.mix_hash(public)
        sym.mix_key(public)  # psk handshakes also MixKey(e) (spec 9.2)

    def _write_msg1(self) -> bytes:  # -> psk, e
        sym = self._sym_state()
        sym.mix_key_and_hash(self._psk)
        self._e = new_x25519_key()
        e_pub = _raw_public(self._e)
        self._mix_ephemeral(e_pub)
        return e_pub + sym.encrypt_and_hash(b"")

    def _read_msg1(self, message: bytes) -> None:
        sym = self._sym_state()
        sym.mix_key_and_hash(self._psk)
        self._re = message[:NOISE_DH_LEN]
        self._mix_ephemeral(self._re)
        try:
            sym.decrypt_and_hash(message[NOISE_DH_LEN:])
        except RemoteProtocolError:
            raise HandshakeError(
                "handshake message 1 failed authentication (wrong network key or tampered)"
            ) from None

    def _write_msg2(self) -> bytes:  # <- e, ee, s, es
        sym = self._sym_state()
        self._e = new_x25519_key()
        e_pub = _raw_public(self._e)
        self._mix_ephemeral(e_pub)
        sym.mix_key(dh(self._e, self._re))
        encrypted_static = sym.encrypt_and_hash(self._s_pub)
        sym.mix_key(dh(self._s, self._re))
        return e_pub + encrypted_static + sym.encrypt_and_hash(self._payload)

    def _read_msg2(self, message: bytes) -> tuple[bytes, bytes]:
        sym = self._sym_state()
        assert self._e is not None
        self._re = message[:NOISE_DH_LEN]
        self._mix_ephemeral(self._re)
        sym.mix_key(dh(self._e, self._re))
        static_end = NOISE_DH_LEN + _STATIC_LEN_ENCRYPTED
        peer_static = sym.decrypt_and_hash(message[NOISE_DH_LEN:static_end])
        sym.mix_key(dh(self._e, peer_static))
        peer_identity = _verify_identity(sym.decrypt_and_hash(message[static_end:]), peer_static)
        actual = node_id_from_public_key(peer_identity)
        if self._expected_peer_id is not None and actual != self._expected_peer_id:
            raise PeerIdentityMismatch(
                f"responder is node {actual.hex()[:16]}..., "
                f"expected {self._expected_peer_id.hex()[:16]}...",
                expected=self._expected_peer_id,
                actual=actual,
            )
        return peer_static, peer_identity

    def _write_msg3(self) -> bytes:  # -> s, se
        sym = self._sym_state()
        encrypted_static = sym.encrypt_and_hash(self._s_pub)
        sym.mix_key(dh(self._s, self._re))
        return encrypted_static + sym.encrypt_and_hash(self._payload)

    def _read_msg3(self, message: bytes) -> tuple[bytes, bytes]:
        sym = self._sym_state()
        assert self._e is not None
        peer_static = sym.decrypt_and_hash(message[:_STATIC_LEN_ENCRYPTED])
        sym.mix_key(dh(self._e, peer_static))
        payload = sym.decrypt_and_hash(message[_STATIC_LEN_ENCRYPTED:])
        return peer_static, _verify_identity(payload, peer_static)

    def _finish(self, peer_static: bytes, peer_identity: bytes, leftover: bytes) -> None:
        sym = self._sym_state()
        initiator_to_responder, responder_to_initiator = sym.split()
        if self._initiator:
            session = SecureSession(initiator_to_responder, responder_to_initiator, sym.h)
        else:
            session = SecureSession(responder_to_initiator, initiator_to_responder, sym.h)
        self._result = HandshakeResult(
            peer_id=node_id_from_public_key(peer_identity),
            peer_identity_key=peer_identity,
            peer_static_key=peer_static,
            session=session,
            leftover=leftover,
        )
        self._state = _State.DONE
        self._sym = None
        self._e = None  # forward secrecy: drop the ephemeral secret as soon as we can
        self._psk = b""


def _prefixed(message: bytes) -> bytes:
    return len(message).to_bytes(NOISE_LENGTH_PREFIX_LEN, "big") + message
