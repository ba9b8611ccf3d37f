"""LZ4 block format, pure-Python twin of ``_native/lz4.pyx``. No I/O.

The compressor is the LZ4 "fast" algorithm as the reference library (lz4 1.9.x) runs it for
the ``lz4`` Python package's ``lz4.block.compress``: a fresh stream, one hash table of 4096 u32
positions indexed by a hash of the 5 bytes at each position, match search with skip
acceleration, backward extension of each match, and the block's end rules (the last 5 bytes
are literals, the last match starts at least 12 bytes before the end, inputs under 13 bytes
are all literals). The compiled twin, this module and
``lz4.block.compress(data, store_size=False, mode="fast", acceleration=a)`` therefore produce
the same bytes for the same input on 64-bit little-endian machines. The two twins give the same
bytes everywhere; the C library does not: its ``LZ4_hashPosition`` hashes 5 bytes only where
``sizeof(reg_t) == 8`` (64-bit, or x32) and 4 bytes elsewhere (32-bit ARM, i386), and reads the
word big-endian on big-endian machines. Its blocks there differ from ours, are as valid, and
each side decodes the other's (tests/wire/conftest.py).

The block format does not store the decompressed size, so ``decompress`` takes the size the
framing layer declared and insists on it exactly: the output may not exceed it and may not end
short of it. The declared size is checked against ``max_size`` and against the largest output
``len(data)`` compressed bytes can possibly describe before anything is allocated. Every
malformed input raises :class:`bzzz_edge.errors.CodecError` naming the problem and the input
offset where it was found; the compiled twin raises the same messages. Whatever the reference
decoder decodes to the declared size, this one decodes identically, with one deliberate
exception: a match offset of 0, which the format calls corrupt but lz4 1.9.4 accepts (copying
whatever its buffer held), is rejected here.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import Any

from bzzz_edge.errors import CodecError

__all__ = [
    "DEFAULT_MAX_SIZE",
    "IMPLEMENTATION",
    "MAX_ACCELERATION",
    "MAX_INPUT_SIZE",
    "compress",
    "compress_bound",
    "decompress",
]

IMPLEMENTATION = "pure"

MAX_INPUT_SIZE = 0x7E000000  # LZ4_MAX_INPUT_SIZE: larger inputs are not representable
MAX_ACCELERATION = 65537  # LZ4_ACCELERATION_MAX
DEFAULT_MAX_SIZE = 64 * 1024 * 1024  # decompress refuses to allocate more unless told to
# Worst case ratio of the format: every output byte costs at least 1/255 of an input byte.
MAX_EXPANSION = 255

_MINMATCH = 4
_LASTLITERALS = 5
_MFLIMIT = 12
_MIN_LENGTH = _MFLIMIT + 1
_SKIP_TRIGGER = 6
_MAX_DISTANCE = 65535

_U32 = Struct("<I")
_U64 = Struct("<Q")
_PRIME5 = 889523592379
_MASK40 = (1 << 40) - 1


def compress_bound(size: int) -> int:
    """Largest compressed size of ``size`` input bytes (LZ4_compressBound)."""
    return size + size // 255 + 16


def _as_bytes(data: object, what: str) -> bytes:
    if type(data) is bytes:
        return data
    try:
        return memoryview(data).tobytes()  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"lz4: {what} must be bytes-like, not {type(data).__name__}") from None


def _check_acceleration(acceleration: object) -> int:
    if not isinstance(acceleration, int) or isinstance(acceleration, bool):
        raise TypeError(f"lz4: acceleration must be an int, not {type(acceleration).__name__}")
    if acceleration < 1:
        raise ValueError(f"lz4: acceleration must be >= 1, got {acceleration}")
    return min(int(acceleration), MAX_ACCELERATION)


def _common_length(src: bytes, a: int, b: int, limit: int) -> int:
    """Number of equal bytes at src[a:] and src[b:] (b < a), counting only up to ``limit``."""
    most = limit - a
    if most <= 0 or src[a] != src[b]:
        return 0
    # Gallop with slices (compared in C), then bisect the last window.
    low, step = 1, 8
    while low < most:
        high = min(low + step, most)
        if src[a + low : a + high] != src[b + low : b + high]:
            break
        low, step = high, step * 2
    else:
        return most
    high = min(low + step, most)  # src[a:a+low] matches; src[a:a+high] does not
    while high - low > 1:
        mid = (low + high) // 2
        if src[a + low : a + mid] == src[b + low : b + mid]:
            low = mid
        else:
            high = mid
    return low


def _write_length(out: bytearray, length: int) -> None:
    """Append the 255-run extension bytes of a length whose nibble was saturated at 15."""
    while length >= 255:
        out.append(255)
        length -= 255
    out.append(length)


def compress(data: object, acceleration: int = 1) -> bytes:
    """Compress ``data`` into one LZ4 block (no size header, no frame).

    Args:
        data: a bytes-like object of at most ``MAX_INPUT_SIZE`` bytes.
        acceleration: 1 (best ratio) and up; larger values skip faster over data that does
            not compress, trading ratio for speed. Values above 65537 act as 65537.

    Raises:
        TypeError: ``data`` is not bytes-like.
        ValueError: ``data`` is too large or ``acceleration`` is below 1.
    """
    src = _as_bytes(data, "data")
    accel = _check_acceleration(acceleration)
    n = len(src)
    if n > MAX_INPUT_SIZE:
        raise ValueError(f"lz4: input of {n} bytes exceeds the maximum of {MAX_INPUT_SIZE}")
    out = bytearray()
    anchor = 0
    if n >= _MIN_LENGTH:
        anchor = _compress_sequences(src, out, accel)
    last = n - anchor
    if last >= 15:
        out.append(0xF0)
        _write_length(out, last - 15)
    else:
        out.append(last << 4)
    out += src[anchor:]
    return bytes(out)


def _emit_literals(out: bytearray, src: bytes, anchor: int, ip: int) -> int:
    """Append a sequence token and the literals src[anchor:ip]; returns the token's index."""
    token = len(out)
    lit = ip - anchor
    if lit >= 15:
        out.append(0xF0)
        _write_length(out, lit - 15)
    else:
        out.append(lit << 4)
    out += src[anchor:ip]
    return token


def _compress_sequences(src: bytes, out: bytearray, accel: int) -> int:
    """Emit every sequence that ends in a match; returns where the last literals start."""
    n = len(src)
    table = [0] * 4096
    u32 = _U32.unpack_from
    u64: Callable[[Any, int], tuple[int]] = _U64.unpack_from

    def hashpos(p: int) -> int:
        # LZ4_hash5: top 12 bits of (low 5 bytes << 24) * prime, within 64 bits.
        return (((u64(src, p)[0] & _MASK40) * _PRIME5) >> 28) & 0xFFF

    mflimit_plus_one = n - _MFLIMIT + 1
    match_limit = n - _LASTLITERALS
    anchor = 0
    table[hashpos(0)] = 0
    ip = 1
    forward_h = hashpos(1)
    while True:
        # Find a match, skipping faster the longer nothing matched.
        forward_ip = ip
        step = 1
        search = accel << _SKIP_TRIGGER
        while True:
            h = forward_h
            ip = forward_ip
            match = table[h]
            forward_ip += step
            step = search >> _SKIP_TRIGGER
            search += 1
            if forward_ip > mflimit_plus_one:
                return anchor
            forward_h = hashpos(forward_ip)
            table[h] = ip
            if match + _MAX_DISTANCE < ip:
                continue
            if u32(src, match) == u32(src, ip):
                break
        # Catch up: extend the match backwards over equal bytes.
        while ip > anchor and match > 0 and src[ip - 1] == src[match - 1]:
            ip -= 1
            match -= 1
        token = _emit_literals(out, src, anchor, ip)
        while True:  # one match, then as many immediate follow-up matches as there are
            offset = ip - match
            out.append(offset & 0xFF)
            out.append(offset >> 8)
            code = _common_length(src, ip + _MINMATCH, match + _MINMATCH, match_limit)
            ip += code + _MINMATCH
            if code >= 15:
                out[token] += 15
                _write_length(out, code - 15)
            else:
                out[token] += code
            anchor = ip
            if ip >= mflimit_plus_one:
                return anchor
            table[hashpos(ip - 2)] = ip - 2
            h = hashpos(ip)
            match = table[h]
            table[h] = ip
            if match + _MAX_DISTANCE >= ip and u32(src, match) == u32(src, ip):
                token = len(out)
                out.append(0)
                continue
            break
        ip += 1
        forward_h = hashpos(ip)


def _check_sizes(n: int, uncompressed_size: object, max_size: object) -> int:
    if not isinstance(uncompressed_size, int) or not isinstance(max_size, int):
        raise TypeError("lz4: uncompressed_size and max_size must be ints")
    size = int(uncompressed_size)
    if size < 0:
        raise CodecError(f"lz4: declared size {size} is negative")
    if size > max_size:
        raise CodecError(f"lz4: declared size {size} exceeds the limit of {max_size} bytes")
    if size > n * MAX_EXPANSION:
        raise CodecError(
            f"lz4: declared size {size} is impossible for {n} compressed bytes "
            f"(at most {n * MAX_EXPANSION})"
        )
    return size


def _read_length(src: bytes, ip: int, n: int, what: str) -> tuple[int, int]:
    """Read the 255-run extension of a saturated length nibble; returns (extra, new ip)."""
    extra = 0
    while True:
        if ip >= n:
            raise CodecError(f"lz4: input truncated in a {what} length at input offset {ip}")
        byte = src[ip]
        ip += 1
        extra += byte
        if byte != 255:
            return extra, ip


def decompress(data: object, uncompressed_size: int, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Decompress one LZ4 block that must decode to exactly ``uncompressed_size`` bytes.

    Args:
        data: the compressed block (bytes-like).
        uncompressed_size: the size declared by the framing layer; the output must be exactly
            this long.
        max_size: refuse declared sizes above this before allocating anything.

    Raises:
        CodecError: the declared size is negative, above ``max_size`` or impossible for the
            input length, or the block is truncated, corrupt, or decodes to more or fewer
            bytes than declared. The message gives the input offset of the problem.
        TypeError: ``data`` is not bytes-like or the sizes are not ints.
    """
    src = _as_bytes(data, "data")
    n = len(src)
    size = _check_sizes(n, uncompressed_size, max_size)
    out = bytearray()
    ip = 0
    while True:
        if ip >= n:
            raise CodecError(
                f"lz4: input truncated: expected a sequence token at input offset {ip}"
            )
        token = src[ip]
        ip += 1
        lit = token >> 4
        if lit == 15:
            extra, ip = _read_length(src, ip, n, "literal")
            lit += extra
        op = len(out)
        if lit > n - ip:
            raise CodecError(
                f"lz4: input truncated: {lit} literal bytes at input offset {ip} run past its "
                f"end ({n} bytes)"
            )
        if lit > size - op:
            raise CodecError(
                f"lz4: {lit} literal bytes at input offset {ip} overflow the declared size {size} "
                f"(output at {op})"
            )
        out += src[ip : ip + lit]
        ip += lit
        op += lit
        if ip == n:  # the last sequence is literals only
            if op != size:
                raise CodecError(
                    f"lz4: input ends at offset {ip} after {op} of the declared {size} output bytes"
                )
            return bytes(out)
        ip = _copy_match(src, ip, n, token, out, size)


def _copy_match(src: bytes, ip: int, n: int, token: int, out: bytearray, size: int) -> int:
    """Decode the match part of a sequence at ``ip``, append it; returns the new ip."""
    if n - ip < 2:
        raise CodecError(f"lz4: input truncated in a match offset at input offset {ip}")
    offset = src[ip] | (src[ip + 1] << 8)
    op = len(out)
    if offset == 0:
        raise CodecError(f"lz4: zero match offset at input offset {ip}")
    if offset > op:
        raise CodecError(
            f"lz4: match offset {offset} at input offset {ip} reaches before the start of the "
            f"output (output at {op})"
        )
    length = token & 15
    if length == 15:
        extra, after = _read_length(src, ip + 2, n, "match")
        length += extra
    else:
        after = ip + 2
    length += _MINMATCH
    if length > size - op:
        raise CodecError(
            f"lz4: {length}-byte match at input offset {ip} overflows the declared size {size} "
            f"(output at {op})"
        )
    start = op - offset
    if offset >= length:
        out += out[start : start + length]
    else:  # overlapping copy: the last `offset` bytes repeat
        pattern = out[start:]
        reps, rest = divmod(length, offset)
        out += pattern * reps
        out += pattern[:rest]
    return after
