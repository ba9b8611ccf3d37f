"""Message bodies: the application's bytes, compressed above a threshold, codec marked. No I/O.

A gossip message's (signed) body is a compression blob (``wire.compression``): one codec byte,
the original size, then the bytes raw, LZ4 or zlib. The sender picks LZ4 where the codec is
compiled and zlib (stdlib, C) where it is pure, since the pure LZ4 encoder runs at about 2 MB/s
(issue 12); every node decodes all three, so the choice is the sender's alone. Bodies below
``min_size`` bytes, or that would not shrink by 5 %, are sent raw (two or three bytes of header).

The size limit is on the application's bytes (``gossip.max_message_size``): ``encode_body``
refuses a larger message with ``MessageTooLarge`` at publish time, and ``decode_body`` refuses a
blob that declares more before inflating anything (a peer's compression bomb costs nothing).
"""

from __future__ import annotations

from collections.abc import Callable

from bzzz_edge import _native
from bzzz_edge.errors import BzzzError, CodecError
from bzzz_edge.wire import compression
from bzzz_edge.wire.compression import Codec, CompressionStats
from bzzz_edge.wire.envelope import GossipMessage

from ._events import Validation

__all__ = ["MessageTooLarge", "body_check", "decode_body", "encode_body", "preferred_codec"]


class MessageTooLarge(BzzzError, ValueError):
    """A message above the configured maximum size."""


def preferred_codec() -> Codec:
    """LZ4 where the codec is compiled, zlib where it is the pure twin."""
    return Codec.LZ4 if _native.implementations()["lz4"] == "compiled" else Codec.ZLIB


def encode_body(data: bytes, *, max_size: int, min_size: int, codec: Codec,
                stats: CompressionStats | None = None) -> bytes:
    """The body to sign for ``data``.

    Raises:
        MessageTooLarge: ``data`` is longer than ``max_size`` bytes.
    """
    if len(data) > max_size:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds the maximum of {max_size} "
                              "bytes (gossip.max_message_size)")
    return compression.encode(data, codec=codec, min_size=min_size, stats=stats)


def decode_body(body: bytes | None, *, max_size: int,
                stats: CompressionStats | None = None) -> bytes:
    """The application's bytes of a message body (``None``, from an old sender, is empty).

    Raises:
        CodecError: unknown codec, a declared size above ``max_size``, or a corrupt body.
    """
    if body is None:
        return b""
    if not body:
        raise CodecError("message body: empty, expected at least a codec byte")
    start, size = _raw_size(body)
    if start:
        # The common case, a raw body below 16 KiB: what decode would check, inline.
        if size > max_size:
            raise CodecError(f"compression: declared size {size} exceeds the limit of "
                             f"{max_size} bytes")
        if len(body) - start != size:
            raise CodecError(f"compression: raw body at offset {start} is "
                             f"{len(body) - start} bytes, declared {size}")
        if stats is not None:
            stats.decoded[Codec.RAW].count(size, len(body))
        return body[start:]
    return compression.decode(body, max_size=max_size, stats=stats)


def _raw_size(body: bytes) -> tuple[int, int]:
    """``(offset of the bytes, declared size)`` of a raw body whose size takes one or two
    bytes (below 16 KiB: every message of a coordination network, nearly), in canonical form;
    ``(0, 0)`` for anything else, which ``compression`` reads (and refuses) the long way. It
    runs twice for every message received (the validator, the delivery)."""
    if len(body) >= 3 and body[0] == Codec.RAW:
        first = body[1]
        if first < 0x80:
            return 2, first
        second = body[2]
        if 0 < second < 0x80:  # (0: a non-canonical size, refused by ``compression``)
            return 3, (first & 0x7F) | second << 7
    elif len(body) == 2 and body[0] == Codec.RAW and body[1] < 0x80:
        return 2, body[1]
    return 0, 0


def body_check(max_size: int) -> Callable[[GossipMessage], Validation]:
    """A topic validator: a body with an unknown codec, a bad size field, or a declared size
    over ``max_size`` is ignored (neither delivered nor forwarded) before anyone inflates it."""

    def check(message: GossipMessage) -> Validation:
        body = message.body
        if body is None:
            return Validation.ACCEPT
        start, size = _raw_size(body)
        if start:  # raw, below 16 KiB: the common case
            return Validation.ACCEPT if len(body) - start == size <= max_size \
                else Validation.IGNORE
        try:
            codec, size, start = compression.read_header(body)
        except CodecError:
            return Validation.IGNORE
        if size > max_size or (codec is Codec.RAW and len(body) - start != size):
            return Validation.IGNORE
        return Validation.ACCEPT

    return check
