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
    if len(body) >= 2 and body[0] == Codec.RAW and body[1] < 0x80:
        # The common case, a short raw body (one size byte): what decode would check, inline.
        if len(body) - 2 != body[1]:
            raise CodecError(f"compression: raw body at offset 2 is {len(body) - 2} bytes, "
                             f"declared {body[1]}")
        if body[1] > max_size:
            raise CodecError(f"compression: declared size {body[1]} exceeds the limit of "
                             f"{max_size} bytes")
        if stats is not None:
            stats.decoded[Codec.RAW].count(body[1], len(body))
        return body[2:]
    return compression.decode(body, max_size=max_size, stats=stats)


def body_check(max_size: int) -> Callable[[GossipMessage], Validation]:
    """A topic validator: a body with an unknown codec, a bad size field, or a declared size
    over ``max_size`` is ignored (neither delivered nor forwarded) before anyone inflates it."""

    def check(message: GossipMessage) -> Validation:
        body = message.body
        if body is None:
            return Validation.ACCEPT
        if len(body) >= 2 and body[0] == Codec.RAW and body[1] < 0x80:  # short raw: inline
            return Validation.ACCEPT if len(body) - 2 == body[1] <= max_size \
                else Validation.IGNORE
        try:
            codec, size, start = compression.read_header(body)
        except CodecError:
            return Validation.IGNORE
        if size > max_size or (codec is Codec.RAW and len(body) - start != size):
            return Validation.IGNORE
        return Validation.ACCEPT

    return check
