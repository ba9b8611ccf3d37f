"""Compressed-or-raw payload framing: one codec byte, the original size, the body. No I/O.

Layout of a blob::

    codec   1 byte      0 = raw, 1 = lz4 (one LZ4 block), 2 = zlib (RFC 1950, with adler32)
    size    1-9 bytes   original (decoded) length, unsigned LEB128, shortest form only
    body    the rest    raw bytes, or the codec's output

The size lets :func:`decode` refuse a blob that claims more than the caller's ``max_size``
before it allocates or decompresses anything, and it is the exact size the LZ4 block format
needs (the block does not store it). A decoded body must come out at exactly the declared size.
:func:`encode` falls back to raw for small payloads and whenever compressing does not save at
least ``min_saving`` of the size, so a blob is never much larger than its payload (header only).
"""

from __future__ import annotations

import enum
import sys
import zlib
from dataclasses import dataclass, field

from bzzz_edge.errors import CodecError
from bzzz_edge.wire import lz4 as _lz4

__all__ = [
    "DEFAULT_MIN_SAVING",
    "DEFAULT_MIN_SIZE",
    "MAX_HEADER_SIZE",
    "Codec",
    "CodecCounters",
    "CompressionStats",
    "decode",
    "encode",
    "read_header",
]

DEFAULT_MIN_SIZE = 128  # below this, compression rarely pays for the CPU and the header
DEFAULT_MIN_SAVING = 0.05  # compress only when the body shrinks by at least 5 %
MAX_HEADER_SIZE = 10  # codec byte + 9 size bytes (sizes below 2**63)
_MAX_SIZE_BYTES = 9
_ZLIB_LEVEL = 6


class Codec(enum.IntEnum):
    """The codec byte at the start of a blob."""

    RAW = 0
    LZ4 = 1
    ZLIB = 2


@dataclass(slots=True)
class CodecCounters:
    """Blobs and bytes that went through one codec."""

    blobs: int = 0
    payload_bytes: int = 0  # uncompressed side
    blob_bytes: int = 0  # encoded side, header included

    def count(self, payload_bytes: int, blob_bytes: int) -> None:
        self.blobs += 1
        self.payload_bytes += payload_bytes
        self.blob_bytes += blob_bytes


@dataclass(slots=True)
class CompressionStats:
    """Counters a caller can pass to :func:`encode` and :func:`decode` (not thread-safe)."""

    encoded: dict[Codec, CodecCounters] = field(
        default_factory=lambda: {c: CodecCounters() for c in Codec}
    )
    decoded: dict[Codec, CodecCounters] = field(
        default_factory=lambda: {c: CodecCounters() for c in Codec}
    )
    rejected: int = 0  # blobs decode refused


_CODECS = tuple(Codec)  # by codec byte (their values are 0, 1, 2)


def _header(codec: Codec, size: int) -> bytes:
    out = bytearray((codec,))
    while size >= 0x80:
        out.append((size & 0x7F) | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out)


def encode(
    data: bytes | bytearray | memoryview,
    *,
    codec: Codec = Codec.LZ4,
    min_size: int = DEFAULT_MIN_SIZE,
    min_saving: float = DEFAULT_MIN_SAVING,
    stats: CompressionStats | None = None,
) -> bytes:
    """Frame ``data`` compressed with ``codec``, or raw when that does not pay.

    Args:
        data: the payload.
        codec: the codec to try (``Codec.RAW`` never compresses).
        min_size: payloads shorter than this are stored raw.
        min_saving: the fraction of the payload's size compression must save (0 to 1).
        stats: counters to update, if given.
    """
    payload = data if isinstance(data, bytes) else bytes(memoryview(data))
    codec = Codec(codec)
    if not 0.0 <= min_saving <= 1.0:
        raise ValueError(f"compression: min_saving must be between 0 and 1, got {min_saving}")
    size = len(payload)
    chosen, body = Codec.RAW, payload
    if codec is not Codec.RAW and size >= min_size:
        compressed = (
            _lz4.compress(payload) if codec is Codec.LZ4 else zlib.compress(payload, _ZLIB_LEVEL)
        )
        if len(compressed) <= size * (1.0 - min_saving):
            chosen, body = codec, compressed
    blob = _header(chosen, size) + body
    if stats is not None:
        stats.encoded[chosen].count(size, len(blob))
    return blob


def read_header(blob: bytes | bytearray | memoryview) -> tuple[Codec, int, int]:
    """``(codec, declared size, offset of the body)`` of a blob, without touching the body.

    Raises:
        CodecError: empty blob, unknown codec, truncated or non-canonical size.
    """
    end = len(blob)
    if end == 0:
        raise CodecError("compression: empty blob, expected a codec byte at offset 0")
    first = blob[0]
    if first >= len(_CODECS):  # (a table, not ``Codec(first)``: read for every message)
        raise CodecError(f"compression: unknown codec {first} at offset 0")
    codec = _CODECS[first]
    size = 0
    for i in range(_MAX_SIZE_BYTES):
        pos = 1 + i
        if pos >= end:
            raise CodecError(f"compression: blob truncated in the size at offset {pos}")
        byte = blob[pos]
        size |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if byte == 0 and i > 0:
                raise CodecError(f"compression: non-canonical size encoding at offset {pos}")
            return codec, size, pos + 1
    raise CodecError(f"compression: size longer than {_MAX_SIZE_BYTES} bytes at offset 1")


def decode(
    blob: bytes | bytearray | memoryview,
    *,
    max_size: int,
    stats: CompressionStats | None = None,
) -> bytes:
    """The payload of a blob made by :func:`encode`.

    Args:
        blob: the framed payload.
        max_size: the largest payload the caller accepts; checked against the declared size
            before anything is allocated or decompressed.
        stats: counters to update, if given.

    Raises:
        CodecError: unknown codec, declared size above ``max_size``, truncated or corrupt
            body, or a body that decodes to more or fewer bytes than declared.
    """
    try:
        codec, size, start = read_header(blob)
        if size > max_size:
            raise CodecError(
                f"compression: declared size {size} exceeds the limit of {max_size} bytes"
            )
        body = memoryview(blob)[start:]
        if codec is Codec.RAW:
            if len(body) != size:
                raise CodecError(
                    f"compression: raw body at offset {start} is {len(body)} bytes, "
                    f"declared {size}"
                )
            payload = bytes(body)
        elif codec is Codec.LZ4:
            payload = _decode_lz4(body, size, start)
        else:
            payload = _decode_zlib(body, size, start)
    except CodecError:
        if stats is not None:
            stats.rejected += 1
        raise
    if stats is not None:
        stats.decoded[codec].count(size, len(blob))
    return payload


def _decode_lz4(body: memoryview, size: int, start: int) -> bytes:
    try:
        result: bytes = _lz4.decompress(body, size, max_size=size)
        return result
    except CodecError as exc:
        raise CodecError(f"compression: lz4 body at offset {start}: {exc}") from exc


def _decode_zlib(body: memoryview, size: int, start: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # One byte more than declared is enough to tell "too long" without inflating a bomb.
        # zlib takes at most sys.maxsize; a 9-byte size can say 2**63 - 1, whose + 1 is past it
        # (and no payload that large can exist, so capping loses no check).
        payload = inflater.decompress(body, min(size + 1, sys.maxsize))
    except zlib.error as exc:
        raise CodecError(f"compression: corrupt zlib body at offset {start}: {exc}") from None
    if len(payload) > size:
        raise CodecError(
            f"compression: zlib body at offset {start} inflates past the declared {size} bytes"
        )
    if not inflater.eof:
        raise CodecError(
            f"compression: zlib body at offset {start} is truncated after {len(payload)} "
            f"of {size} bytes"
        )
    if inflater.unused_data:
        raise CodecError(
            f"compression: {len(inflater.unused_data)} bytes of trailing garbage after the "
            f"zlib body at offset {start + len(body) - len(inflater.unused_data)}"
        )
    if len(payload) != size:
        raise CodecError(
            f"compression: zlib body at offset {start} inflates to {len(payload)} bytes, "
            f"declared {size}"
        )
    return payload
