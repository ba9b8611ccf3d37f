"""Application frames: a 4-byte big-endian length, then that many bytes of payload. No I/O.

Frames run over the plaintext stream of a ``SecureStream``. Every frame has a hard maximum size
(1 MiB unless configured otherwise): a header declaring more is a protocol error raised as soon
as the four header bytes are in, before anything of that size is buffered or allocated, and the
connection should be closed. A decoder that raised stays failed.
"""

from __future__ import annotations

import struct

from bzzz_edge.errors import LocalProtocolError, RemoteProtocolError
from bzzz_edge.wire.constants import DEFAULT_MAX_FRAME_SIZE, FRAME_HEADER_LEN, FRAME_SIZE_LIMIT

__all__ = ["FrameDecoder", "encode_frame"]

_HEADER = struct.Struct(">I")
assert _HEADER.size == FRAME_HEADER_LEN


def _check_max(max_frame_size: int) -> None:
    if type(max_frame_size) is not int or not 0 < max_frame_size <= FRAME_SIZE_LIMIT:
        raise LocalProtocolError(
            f"max_frame_size must be an int in [1, {FRAME_SIZE_LIMIT}], got {max_frame_size!r}"
        )


def encode_frame(payload: bytes, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Prefix ``payload`` with its length.

    Raises:
        LocalProtocolError: the payload is larger than ``max_frame_size``.
    """
    _check_max(max_frame_size)
    if len(payload) > max_frame_size:
        raise LocalProtocolError(
            f"frame payload of {len(payload)} bytes exceeds the maximum of {max_frame_size}"
        )
    return len(payload).to_bytes(FRAME_HEADER_LEN, "big") + payload


class FrameDecoder:
    """Reassembles frames from stream chunks of any size, sans-IO.

    Args:
        max_frame_size: largest payload accepted; a larger declared length is refused.
    """

    __slots__ = ("_buffer", "_failed", "_max")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        _check_max(max_frame_size)
        self._max = max_frame_size
        self._buffer = bytearray()
        self._failed = False

    @property
    def max_frame_size(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete frame (never more than header + maximum)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Take stream bytes; return the payload of every frame they complete, in order.

        Raises:
            RemoteProtocolError: a header declares more than ``max_frame_size``. Frames completed
                earlier in the same call are dropped with it: the connection is going away.
            LocalProtocolError: the decoder failed before.
        """
        if self._failed:
            raise LocalProtocolError("frame decoder already failed")
        buffer = self._buffer
        if not buffer and len(data) >= FRAME_HEADER_LEN:
            # The common case, one Noise message holding one whole frame: no view, no loop.
            length = _HEADER.unpack_from(data)[0]
            if length + FRAME_HEADER_LEN == len(data) and length <= self._max:
                return [bytes(data[FRAME_HEADER_LEN:])]
        frames: list[bytes] = []
        view = memoryview(data)
        pos = 0
        while True:
            if not buffer and len(view) - pos >= FRAME_HEADER_LEN:
                # fast path: whole frames straight from the input, no staging copy
                length = self._check(_HEADER.unpack_from(view, pos)[0])
                end = pos + FRAME_HEADER_LEN + length
                if end <= len(view):
                    frames.append(bytes(view[pos + FRAME_HEADER_LEN : end]))
                    pos = end
                    continue
            if len(buffer) < FRAME_HEADER_LEN:
                # top up the header alone, so that a bad length is caught before the body
                take = min(FRAME_HEADER_LEN - len(buffer), len(view) - pos)
                buffer += view[pos : pos + take]
                pos += take
                if len(buffer) < FRAME_HEADER_LEN:
                    break
                length = self._check(int.from_bytes(buffer[:FRAME_HEADER_LEN], "big"))
            else:
                length = int.from_bytes(buffer[:FRAME_HEADER_LEN], "big")
            missing = FRAME_HEADER_LEN + length - len(buffer)
            take = min(missing, len(view) - pos)
            buffer += view[pos : pos + take]
            pos += take
            if take < missing:
                break
            frames.append(bytes(buffer[FRAME_HEADER_LEN:]))
            buffer.clear()
        return frames

    def _check(self, length: int) -> int:
        if length > self._max:
            self._failed = True
            self._buffer.clear()
            raise RemoteProtocolError(
                f"frame declares {length} bytes, over the maximum of {self._max}"
            )
        return length
