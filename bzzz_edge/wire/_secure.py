"""The transport phase of the secure channel: Noise messages after the handshake. No I/O.

``SecureSession`` holds the two CipherStates a completed handshake (``noise.py``) produced;
``SecureStream`` puts them on a byte stream: each Noise message carries a 2-byte big-endian
length prefix (libp2p-noise style), so a message is at most 65535 bytes and a larger plaintext
is split over several. Application framing (``framing.py``) runs on the plaintext it yields.
"""

from __future__ import annotations

from bzzz_edge.errors import LocalProtocolError, RemoteProtocolError
from bzzz_edge.wire._noise_state import CipherState, _Bytes
from bzzz_edge.wire.constants import (
    NOISE_LENGTH_PREFIX_LEN,
    NOISE_MAX_MESSAGE_LEN,
    NOISE_MAX_PLAINTEXT_LEN,
    NOISE_TAG_LEN,
)

__all__ = ["SecureSession", "SecureStream"]


class SecureSession:
    """The two transport CipherStates of a completed handshake (one Noise message at a time)."""

    __slots__ = ("_recv", "_send", "handshake_hash")

    def __init__(self, send: CipherState, recv: CipherState, handshake_hash: bytes) -> None:
        self._send = send
        self._recv = recv
        #: Unique to this session and equal on both sides; usable for channel binding.
        self.handshake_hash = handshake_hash

    @property
    def send_nonce(self) -> int:
        return self._send.nonce

    @property
    def recv_nonce(self) -> int:
        return self._recv.nonce

    def encrypt(self, plaintext: _Bytes) -> bytes:
        """Encrypt one transport message (at most 65519 bytes of plaintext).

        Raises:
            LocalProtocolError: plaintext too long, or the send nonce is exhausted.
        """
        if len(plaintext) > NOISE_MAX_PLAINTEXT_LEN:
            raise LocalProtocolError(
                f"plaintext of {len(plaintext)} bytes exceeds {NOISE_MAX_PLAINTEXT_LEN}"
            )
        return self._send.encrypt_with_ad(b"", plaintext)

    def decrypt(self, ciphertext: _Bytes) -> bytes:
        """Decrypt the next transport message; replayed, reordered or altered ones fail.

        Raises:
            RemoteProtocolError: authentication failed, too long, or receive nonce exhausted.
        """
        if len(ciphertext) > NOISE_MAX_MESSAGE_LEN:
            raise RemoteProtocolError(
                f"Noise message of {len(ciphertext)} bytes exceeds {NOISE_MAX_MESSAGE_LEN}"
            )
        return self._recv.decrypt_with_ad(b"", ciphertext)


class SecureStream:
    """Length-prefixed Noise transport messages over a byte stream, sans-IO.

    ``send`` turns plaintext of any size into wire bytes; ``feed`` turns received wire bytes into
    plaintext chunks. Chunk boundaries carry no meaning: run a ``FrameDecoder`` over them. After
    a failure the stream is dead (the implicit nonces cannot resynchronise): close the connection.
    """

    __slots__ = ("_buffer", "_failed", "_session")

    def __init__(self, session: SecureSession) -> None:
        self._session = session
        self._buffer = bytearray()
        self._failed = False

    @property
    def session(self) -> SecureSession:
        return self._session

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decrypted (at most one partial message)."""
        return len(self._buffer)

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` into one or more length-prefixed Noise messages."""
        if self._failed:
            raise LocalProtocolError("secure stream already failed")
        if 0 < len(plaintext) <= NOISE_MAX_PLAINTEXT_LEN:  # one message: most writes
            # (the length checked here is what ``SecureSession.encrypt`` would check)
            ciphertext = self._session._send.encrypt_with_ad(b"", plaintext)
            return len(ciphertext).to_bytes(NOISE_LENGTH_PREFIX_LEN, "big") + ciphertext
        view = memoryview(plaintext)
        parts: list[bytes] = []
        for offset in range(0, len(view), NOISE_MAX_PLAINTEXT_LEN):
            ciphertext = self._session.encrypt(view[offset : offset + NOISE_MAX_PLAINTEXT_LEN])
            parts.append(len(ciphertext).to_bytes(NOISE_LENGTH_PREFIX_LEN, "big"))
            parts.append(ciphertext)
        return b"".join(parts)

    def feed(self, data: bytes) -> list[bytes]:
        """Take received bytes; return the plaintext of every complete message, in order.

        Raises:
            RemoteProtocolError: a message is too short to hold a tag or fails authentication.
                Plaintext decrypted earlier in the same call is dropped with it.
            LocalProtocolError: the stream failed before.
        """
        if self._failed:
            raise LocalProtocolError("secure stream already failed")
        buffer = self._buffer
        if buffer:  # a partial message is pending: one copy joins it to the new bytes
            buffer += data
            view = memoryview(bytes(buffer))
            buffer.clear()
        else:  # the common case: decrypt straight out of the caller's bytes
            view = memoryview(data)
        chunks: list[bytes] = []
        pos = 0
        # The receive CipherState itself: a 2-byte length never exceeds the Noise maximum that
        # ``SecureSession.decrypt`` checks, so its call is skipped for every message.
        recv = self._session._recv
        try:
            while len(view) - pos >= NOISE_LENGTH_PREFIX_LEN:
                length = (view[pos] << 8) | view[pos + 1]
                if length < NOISE_TAG_LEN:
                    raise RemoteProtocolError(
                        f"Noise message length {length} is below the {NOISE_TAG_LEN}-byte tag size"
                    )
                end = pos + NOISE_LENGTH_PREFIX_LEN + length
                if end > len(view):
                    break
                plaintext = recv.decrypt_with_ad(b"", view[pos + NOISE_LENGTH_PREFIX_LEN : end])
                pos = end
                if plaintext:
                    chunks.append(plaintext)
        except RemoteProtocolError:
            self._failed = True
            raise
        buffer += view[pos:]
        return chunks
