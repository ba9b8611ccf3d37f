# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""LZ4 block format, compiled twin of ``bzzz_edge.wire._lz4_pure``. No I/O.

Same algorithm, table size and hash as the pure twin (and as ``lz4.block.compress``), so the
compressed bytes are identical; same decompress contract and the same error messages. See the
pure module for the contract. Inputs of 32 KiB and more are processed without the GIL.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject

from bzzz_edge.errors import CodecError

cdef extern from "Python.h":
    PyObject* _new_bytes "PyBytes_FromStringAndSize"(const char* v, Py_ssize_t n)
    char* _bytes_data "PyBytes_AS_STRING"(PyObject* o)
    int _PyBytes_Resize(PyObject** o, Py_ssize_t n)
    void _decref "Py_DECREF"(PyObject* o)

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* Little-endian loads, so the hash and the match counter give the same answers on every
       machine (the pure twin reads little-endian too). */
    static inline uint64_t bz_lz4_read64le(const unsigned char* p) {
        uint64_t v;
        memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        return v;
    }
    static inline uint32_t bz_lz4_read32(const unsigned char* p) {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    static inline unsigned bz_lz4_ctz64(uint64_t v) {
    #if defined(__GNUC__) || defined(__clang__)
        return (unsigned)__builtin_ctzll(v);
    #else
        unsigned n = 0;
        while (!(v & 1)) { v >>= 1; n++; }
        return n;
    #endif
    }
    static inline void bz_lz4_copy16(unsigned char* d, const unsigned char* s) {
        memcpy(d, s, 16);
    }
    """
    uint64_t bz_lz4_read64le(const uint8_t* p) noexcept nogil
    uint32_t bz_lz4_read32(const uint8_t* p) noexcept nogil
    unsigned bz_lz4_ctz64(uint64_t v) noexcept nogil
    void bz_lz4_copy16(uint8_t* d, const uint8_t* s) noexcept nogil

__all__ = [
    "DEFAULT_MAX_SIZE",
    "IMPLEMENTATION",
    "MAX_ACCELERATION",
    "MAX_INPUT_SIZE",
    "compress",
    "compress_bound",
    "decompress",
]

IMPLEMENTATION = "compiled"

MAX_INPUT_SIZE = 0x7E000000
MAX_ACCELERATION = 65537
DEFAULT_MAX_SIZE = 64 * 1024 * 1024
MAX_EXPANSION = 255

cdef enum:
    MINMATCH = 4
    LASTLITERALS = 5  # the last 5 bytes are always literals
    MFLIMIT = 12  # the last match starts at least 12 bytes before the end
    MIN_LENGTH = 13  # shorter inputs are all literals
    SKIP_TRIGGER = 6
    MAX_DISTANCE = 65535
    HASH_ENTRIES = 4096
    NOGIL_THRESHOLD = 32768  # below this, releasing the GIL costs more than it frees


def compress_bound(size):
    """Largest compressed size of ``size`` input bytes (LZ4_compressBound)."""
    return size + size // 255 + 16


cdef inline uint32_t _hash(const uint8_t* p) noexcept nogil:
    # LZ4_hash5: top 12 bits of (low 5 bytes << 24) * prime, within 64 bits.
    return <uint32_t>(((bz_lz4_read64le(p) << 24) * <uint64_t>889523592379ULL) >> 52)


cdef inline Py_ssize_t _count(const uint8_t* p, const uint8_t* m,
                              const uint8_t* limit) noexcept nogil:
    """Equal bytes at p and m, counting only while p < limit (LZ4_count)."""
    cdef const uint8_t* start = p
    cdef uint64_t diff
    while limit - p >= 8:
        diff = bz_lz4_read64le(p) ^ bz_lz4_read64le(m)
        if diff:
            return (p - start) + (bz_lz4_ctz64(diff) >> 3)
        p += 8
        m += 8
    while p < limit and p[0] == m[0]:
        p += 1
        m += 1
    return p - start


cdef inline uint8_t* _write_length(uint8_t* op, Py_ssize_t length) noexcept nogil:
    while length >= 255:
        op[0] = 255
        op += 1
        length -= 255
    op[0] = <uint8_t>length
    return op + 1


cdef inline uint8_t* _emit_literals(uint8_t* op, uint8_t* oend, const uint8_t* src,
                                    Py_ssize_t n, Py_ssize_t anchor,
                                    Py_ssize_t lit) noexcept nogil:
    if lit >= 15:
        op[0] = 0xF0
        op = _write_length(op + 1, lit - 15)
    else:
        op[0] = <uint8_t>(lit << 4)
        op += 1
    if lit <= 16 and anchor + 16 <= n and oend - op >= 16:
        bz_lz4_copy16(op, src + anchor)  # fixed-size copy, the extra bytes get overwritten
    else:
        memcpy(op, src + anchor, lit)
    return op + lit


cdef Py_ssize_t _compress_sequences(const uint8_t* src, Py_ssize_t n, uint8_t** op_ptr,
                                    uint8_t* oend, uint32_t accel) noexcept nogil:
    """Emit every sequence that ends in a match; returns where the last literals start."""
    cdef uint32_t table[HASH_ENTRIES]
    cdef uint8_t* op = op_ptr[0]
    cdef uint8_t* token
    cdef Py_ssize_t mflimit_plus_one = n - MFLIMIT + 1
    cdef const uint8_t* match_limit = src + n - LASTLITERALS
    cdef Py_ssize_t anchor = 0, ip, forward_ip, match, code, offset
    cdef uint32_t h, forward_h
    cdef uint64_t step, search
    memset(table, 0, sizeof(table))
    table[_hash(src)] = 0
    ip = 1
    forward_h = _hash(src + 1)
    while True:
        # Find a match, skipping faster the longer nothing matched.
        forward_ip = ip
        step = 1
        search = (<uint64_t>accel) << SKIP_TRIGGER
        while True:
            h = forward_h
            ip = forward_ip
            match = table[h]
            forward_ip += <Py_ssize_t>step
            step = search >> SKIP_TRIGGER
            search += 1
            if forward_ip > mflimit_plus_one:
                op_ptr[0] = op
                return anchor
            forward_h = _hash(src + forward_ip)
            table[h] = <uint32_t>ip
            if match + MAX_DISTANCE < ip:
                continue
            if bz_lz4_read32(src + match) == bz_lz4_read32(src + ip):
                break
        # Catch up: extend the match backwards over equal bytes.
        while ip > anchor and match > 0 and src[ip - 1] == src[match - 1]:
            ip -= 1
            match -= 1
        token = op
        op = _emit_literals(op, oend, src, n, anchor, ip - anchor)
        while True:  # one match, then as many immediate follow-up matches as there are
            offset = ip - match
            op[0] = <uint8_t>(offset & 0xFF)
            op[1] = <uint8_t>(offset >> 8)
            op += 2
            code = _count(src + ip + MINMATCH, src + match + MINMATCH, match_limit)
            ip += code + MINMATCH
            if code >= 15:
                token[0] += 15
                op = _write_length(op, code - 15)
            else:
                token[0] += <uint8_t>code
            anchor = ip
            if ip >= mflimit_plus_one:
                op_ptr[0] = op
                return anchor
            table[_hash(src + ip - 2)] = <uint32_t>(ip - 2)
            h = _hash(src + ip)
            match = table[h]
            table[h] = <uint32_t>ip
            if (match + MAX_DISTANCE >= ip
                    and bz_lz4_read32(src + match) == bz_lz4_read32(src + ip)):
                token = op
                op[0] = 0
                op += 1
                continue
            break
        ip += 1
        forward_h = _hash(src + ip)


cdef Py_ssize_t _compress_block(const uint8_t* src, Py_ssize_t n, uint8_t* dst,
                                Py_ssize_t capacity, uint32_t accel) noexcept nogil:
    cdef uint8_t* op = dst
    cdef uint8_t* oend = dst + capacity
    cdef Py_ssize_t anchor = 0
    if n >= MIN_LENGTH:
        anchor = _compress_sequences(src, n, &op, oend, accel)
    op = _emit_literals(op, oend, src, n, anchor, n - anchor)
    return op - dst


cdef int _get_buffer(object data, Py_buffer* view) except -1:
    """Borrow a contiguous byte view of ``data`` (copying only non-contiguous views)."""
    try:
        PyObject_GetBuffer(data, view, PyBUF_SIMPLE)
    except BufferError:
        PyObject_GetBuffer(memoryview(data).tobytes(), view, PyBUF_SIMPLE)
    except TypeError:
        raise TypeError(f"lz4: data must be bytes-like, not {type(data).__name__}") from None
    return 0


cdef uint32_t _check_acceleration(object acceleration) except 0:
    if not isinstance(acceleration, int) or isinstance(acceleration, bool):
        raise TypeError(f"lz4: acceleration must be an int, not {type(acceleration).__name__}")
    if acceleration < 1:
        raise ValueError(f"lz4: acceleration must be >= 1, got {acceleration}")
    return <uint32_t>min(acceleration, MAX_ACCELERATION)


def compress(data, acceleration=1):
    """Compress ``data`` into one LZ4 block (no size header, no frame).

    Args:
        data: a bytes-like object of at most ``MAX_INPUT_SIZE`` bytes.
        acceleration: 1 (best ratio) and up; values above 65537 act as 65537.

    Raises:
        TypeError: ``data`` is not bytes-like.
        ValueError: ``data`` is too large or ``acceleration`` is below 1.
    """
    cdef Py_buffer view
    cdef uint32_t accel
    cdef Py_ssize_t n, capacity, written
    cdef PyObject* raw
    cdef uint8_t* dst
    _get_buffer(data, &view)
    try:
        accel = _check_acceleration(acceleration)
        n = view.len
        if n > MAX_INPUT_SIZE:
            raise ValueError(f"lz4: input of {n} bytes exceeds the maximum of {MAX_INPUT_SIZE}")
        capacity = n + n // 255 + 16
        raw = _new_bytes(NULL, capacity)  # allocated once, at the worst case
        if raw == NULL:
            raise MemoryError()
        dst = <uint8_t*>_bytes_data(raw)
        if n >= NOGIL_THRESHOLD:
            with nogil:
                written = _compress_block(<const uint8_t*>view.buf, n, dst, capacity, accel)
        else:
            written = _compress_block(<const uint8_t*>view.buf, n, dst, capacity, accel)
    finally:
        PyBuffer_Release(&view)
    if _PyBytes_Resize(&raw, written) < 0:  # on failure raw is freed and NULL
        raise MemoryError()
    result = <object>raw
    _decref(raw)
    return result


# ---------------------------------------------------------------------------------------------
# Decompression. The core runs without Python objects and reports errors through this struct;
# the messages are formatted afterwards, word for word as the pure twin words them.

cdef enum:
    ERR_NONE = 0
    ERR_TOKEN_TRUNCATED
    ERR_LITERAL_LENGTH_TRUNCATED
    ERR_MATCH_LENGTH_TRUNCATED
    ERR_LITERALS_PAST_INPUT
    ERR_LITERALS_OVERFLOW
    ERR_SHORT_OUTPUT
    ERR_OFFSET_TRUNCATED
    ERR_ZERO_OFFSET
    ERR_OFFSET_BEFORE_START
    ERR_MATCH_OVERFLOW

ctypedef struct DecodeFailure:
    int kind
    Py_ssize_t ip
    Py_ssize_t op
    uint64_t value


cdef inline int _fail(DecodeFailure* err, int kind, Py_ssize_t ip, Py_ssize_t op,
                      uint64_t value) noexcept nogil:
    err.kind = kind
    err.ip = ip
    err.op = op
    err.value = value
    return -1


cdef inline void _copy_match(uint8_t* dst, Py_ssize_t op, Py_ssize_t offset,
                             Py_ssize_t length, Py_ssize_t size) noexcept nogil:
    cdef uint8_t* d = dst + op
    cdef const uint8_t* s = d - offset
    cdef Py_ssize_t i, done, chunk
    if offset >= 16 and size - op - length >= 16:
        # 16-byte strides: each reads only bytes already written, the tail is overwritten later.
        i = 0
        while i < length:
            bz_lz4_copy16(d + i, s + i)
            i += 16
    elif offset >= length:
        memcpy(d, s, length)
    else:
        # Overlap: [s, d + done) repeats with period `offset`; double the copied run each time.
        done = 0
        while done < length:
            chunk = offset + done
            if chunk > length - done:
                chunk = length - done
            memcpy(d + done, s, chunk)
            done += chunk


cdef inline Py_ssize_t _read_length(const uint8_t* src, Py_ssize_t* ip_ptr, Py_ssize_t n,
                                    uint64_t* value) noexcept nogil:
    """Add the 255-run extension at ip to value; returns -1 if the input ends inside it."""
    cdef Py_ssize_t ip = ip_ptr[0]
    cdef uint8_t b
    while True:
        if ip >= n:
            ip_ptr[0] = ip
            return -1
        b = src[ip]
        ip += 1
        value[0] += b
        if b != 255:
            ip_ptr[0] = ip
            return 0


cdef int _decompress_block(const uint8_t* src, Py_ssize_t n, uint8_t* dst, Py_ssize_t size,
                           DecodeFailure* err) noexcept nogil:
    cdef Py_ssize_t ip = 0, op = 0, mpos, offset
    cdef uint64_t lit, length
    cdef uint8_t token
    while True:
        if ip >= n:
            return _fail(err, ERR_TOKEN_TRUNCATED, ip, op, 0)
        token = src[ip]
        ip += 1
        lit = token >> 4
        if lit == 15 and _read_length(src, &ip, n, &lit) < 0:
            return _fail(err, ERR_LITERAL_LENGTH_TRUNCATED, ip, op, 0)
        if lit > <uint64_t>(n - ip):
            return _fail(err, ERR_LITERALS_PAST_INPUT, ip, op, lit)
        if lit > <uint64_t>(size - op):
            return _fail(err, ERR_LITERALS_OVERFLOW, ip, op, lit)
        if lit <= 16 and n - ip >= 16 and size - op >= 16:
            bz_lz4_copy16(dst + op, src + ip)
        else:
            memcpy(dst + op, src + ip, <size_t>lit)
        ip += <Py_ssize_t>lit
        op += <Py_ssize_t>lit
        if ip == n:  # the last sequence is literals only
            if op != size:
                return _fail(err, ERR_SHORT_OUTPUT, ip, op, 0)
            return 0
        if n - ip < 2:
            return _fail(err, ERR_OFFSET_TRUNCATED, ip, op, 0)
        offset = src[ip] | (<Py_ssize_t>src[ip + 1] << 8)
        if offset == 0:
            return _fail(err, ERR_ZERO_OFFSET, ip, op, 0)
        if offset > op:
            return _fail(err, ERR_OFFSET_BEFORE_START, ip, op, <uint64_t>offset)
        mpos = ip
        ip += 2
        length = token & 15
        if length == 15 and _read_length(src, &ip, n, &length) < 0:
            return _fail(err, ERR_MATCH_LENGTH_TRUNCATED, ip, op, 0)
        length += MINMATCH
        if length > <uint64_t>(size - op):
            return _fail(err, ERR_MATCH_OVERFLOW, mpos, op, length)
        _copy_match(dst, op, offset, <Py_ssize_t>length, size)
        op += <Py_ssize_t>length


cdef object _error(DecodeFailure* err, Py_ssize_t n, Py_ssize_t size):
    cdef Py_ssize_t ip = err.ip, op = err.op
    cdef uint64_t value = err.value
    if err.kind == ERR_TOKEN_TRUNCATED:
        msg = f"lz4: input truncated: expected a sequence token at input offset {ip}"
    elif err.kind == ERR_LITERAL_LENGTH_TRUNCATED:
        msg = f"lz4: input truncated in a literal length at input offset {ip}"
    elif err.kind == ERR_MATCH_LENGTH_TRUNCATED:
        msg = f"lz4: input truncated in a match length at input offset {ip}"
    elif err.kind == ERR_LITERALS_PAST_INPUT:
        msg = (f"lz4: input truncated: {value} literal bytes at input offset {ip} run past its "
               f"end ({n} bytes)")
    elif err.kind == ERR_LITERALS_OVERFLOW:
        msg = (f"lz4: {value} literal bytes at input offset {ip} overflow the declared size "
               f"{size} (output at {op})")
    elif err.kind == ERR_SHORT_OUTPUT:
        msg = f"lz4: input ends at offset {ip} after {op} of the declared {size} output bytes"
    elif err.kind == ERR_OFFSET_TRUNCATED:
        msg = f"lz4: input truncated in a match offset at input offset {ip}"
    elif err.kind == ERR_ZERO_OFFSET:
        msg = f"lz4: zero match offset at input offset {ip}"
    elif err.kind == ERR_OFFSET_BEFORE_START:
        msg = (f"lz4: match offset {value} at input offset {ip} reaches before the start of "
               f"the output (output at {op})")
    else:
        msg = (f"lz4: {value}-byte match at input offset {ip} overflows the declared size "
               f"{size} (output at {op})")
    return CodecError(msg)


cdef Py_ssize_t _check_sizes(Py_ssize_t n, object uncompressed_size, object max_size) except -1:
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


def decompress(data, uncompressed_size, max_size=DEFAULT_MAX_SIZE):
    """Decompress one LZ4 block that must decode to exactly ``uncompressed_size`` bytes.

    Raises:
        CodecError: the declared size is negative, above ``max_size`` or impossible for the
            input length, or the block is truncated, corrupt, or decodes to more or fewer
            bytes than declared. The message gives the input offset of the problem.
        TypeError: ``data`` is not bytes-like or the sizes are not ints.
    """
    cdef Py_buffer view
    cdef Py_ssize_t n, size
    cdef DecodeFailure err
    cdef int status
    cdef uint8_t* dst
    _get_buffer(data, &view)
    try:
        n = view.len
        size = _check_sizes(n, uncompressed_size, max_size)
        out = PyBytes_FromStringAndSize(NULL, size)  # bounded by the checks above
        dst = <uint8_t*>PyBytes_AS_STRING(out)
        if n >= NOGIL_THRESHOLD:
            with nogil:
                status = _decompress_block(<const uint8_t*>view.buf, n, dst, size, &err)
        else:
            status = _decompress_block(<const uint8_t*>view.buf, n, dst, size, &err)
    finally:
        PyBuffer_Release(&view)
    if status < 0:
        raise _error(&err, n, size)
    return out
