# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""UCXL address parser and model, compiled: the twin of ``bzzz_edge/ucxl/_pure.py``. No I/O.

The grammar is in shared/ucxl/SPEC.md. ``parse`` scans the characters of the str at C level
(the 1-byte data of the str itself, or a narrowed copy of its head for wider strings), checks
the grammar in one left-to-right pass and reports the first character at which it fails, the
same one the pure scanner reports. An input that is already canonical becomes the canonical
string as is; otherwise the canonical form is written into a stack buffer. ``Address`` keeps
only the canonical string and the offsets of its parts, and slices the parts on demand.
Exceptions and their wording come from ``bzzz_edge.ucxl._errors``, shared with the pure twin.
"""

import hashlib

from cpython.unicode cimport (
    PyUnicode_1BYTE_DATA,
    PyUnicode_1BYTE_KIND,
    PyUnicode_GET_LENGTH,
    PyUnicode_KIND,
    PyUnicode_READ,
    PyUnicode_DATA,
)
from libc.string cimport memcmp, memcpy

__all__ = ["Address", "NoSuchVersion", "UCXLError", "parse"]

cdef extern from "Python.h":
    object PyUnicode_FromKindAndData(int kind, const void *buffer, Py_ssize_t size)
    bint PyUnicode_CheckExact(object o)
    int PyUnicode_READY(object o) except -1

cdef class Address

cdef enum:
    MAX_NAME = 64
    MAX_PATH = 1024
    MAX_DIGITS = 9
    # The furthest a scan ever reads: scheme, four names and separators, "~~" and 9 digits,
    # then MAX_PATH path characters (278 + 1024). Wide strs are narrowed up to this length.
    SCAN_WINDOW = 1312
    # A canonical form is at most one character longer than its input ("~~" -> "~~1").
    CANON_MAX = SCAN_WINDOW + 8
    END = -1

cdef enum:  # character classes (bits)
    C_NAME_START = 1
    C_NAME = 2
    C_DIGIT = 4
    C_HEX = 8
    C_PCHAR = 16
    C_UPPER = 32
    C_UNRESERVED = 64

cdef enum:  # temporal kinds, indexes into _KIND_NAMES
    K_LATEST, K_FIRST, K_VERSION, K_BACK, K_FORWARD

cdef enum:  # error codes, indexes into _EXPECTED; the per-field ones take 4 codes each
    ERR_NONE
    ERR_SCHEME
    ERR_NAME
    ERR_SEPARATOR = ERR_NAME + 4
    ERR_SHORT_NAME = ERR_SEPARATOR + 4
    ERR_TEMPORAL = ERR_SHORT_NAME + 4
    ERR_AFTER_STAR
    ERR_TILDE
    ERR_CARET
    ERR_NONZERO
    ERR_SHORT_NUMBER
    ERR_AFTER_TEMPORAL
    ERR_SEGMENT
    ERR_PCHAR
    ERR_NO_QUERY
    ERR_NO_FRAGMENT
    ERR_HEX
    ERR_NO_DOTS
    ERR_SHORT_PATH

_FIELDS = ("agent", "role", "project", "task")
_KIND_NAMES = ("latest", "first", "version", "back", "forward")
cdef const char *SCHEME = b"ucxl://"
cdef unsigned char CLASS[256]
cdef unsigned char SEPARATORS[4]
SEPARATORS[:] = [58, 64, 58, 47]  # : @ : /


cdef void _init_classes():
    cdef int c
    for c in range(256):
        CLASS[c] = 0
    for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
        CLASS[c] |= C_NAME_START | C_NAME | C_UNRESERVED | C_PCHAR
    for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        CLASS[c] |= C_UPPER
    for c in b"0123456789":
        CLASS[c] |= C_DIGIT
    for c in b"0123456789abcdefABCDEF":
        CLASS[c] |= C_HEX
    for c in b"-_.":
        CLASS[c] |= C_NAME | C_UNRESERVED | C_PCHAR
    CLASS[126] |= C_UNRESERVED | C_PCHAR  # ~
    for c in b"!$&'()*+,;=:@":
        CLASS[c] |= C_PCHAR


_init_classes()


cdef struct Scan:
    Py_ssize_t ends[4]      # index of the separator after each name
    Py_ssize_t path         # where the path (or the end) starts
    int wild                # bit f set: name f is "*" or "any"
    int kind
    long count              # 0 when the kind has no count
    bint dirty              # the input is not already canonical
    bint lone_slash         # the path is a lone "/"
    int err
    Py_ssize_t err_pos
    Py_ssize_t err_end      # end of the offending segment, for ERR_NO_DOTS


cdef inline int _hex_value(unsigned char c) noexcept nogil:
    if c <= 57:  # '9'
        return c - 48
    return (c | 0x20) - 87


cdef inline int _fail(Scan *r, int code, Py_ssize_t pos) noexcept nogil:
    r.err = code
    r.err_pos = pos
    return -1


cdef int _scan_name(const unsigned char *s, Py_ssize_t n, Py_ssize_t i, int f,
                    Scan *r) noexcept nogil:
    cdef Py_ssize_t end
    cdef unsigned char c, seen
    if i >= n:
        return _fail(r, ERR_NAME + f, i)
    c = s[i]
    if c == 42:  # '*'
        end = i + 1
        r.wild |= 1 << f
    elif CLASS[c] & C_NAME_START:
        end = i + 1
        seen = CLASS[c]
        while end < n and end - i < MAX_NAME and CLASS[s[end]] & C_NAME:
            seen |= CLASS[s[end]]
            end += 1
        if end - i == MAX_NAME and end < n and CLASS[s[end]] & C_NAME:
            return _fail(r, ERR_SHORT_NAME + f, end)
        if end - i == 3 and (s[i] | 0x20) == 97 and (s[i + 1] | 0x20) == 110 \
                and (s[i + 2] | 0x20) == 121:  # "any"
            r.wild |= 1 << f
            r.dirty = True
        elif seen & C_UPPER:
            r.dirty = True
    else:
        return _fail(r, ERR_NAME + f, i)
    if end >= n or s[end] != SEPARATORS[f]:
        return _fail(r, ERR_SEPARATOR + f, end)
    r.ends[f] = end
    return 0


cdef Py_ssize_t _scan_number(const unsigned char *s, Py_ssize_t n, Py_ssize_t i,
                             Scan *r) noexcept nogil:
    """End of the number starting at i (a digit), its value in r.count; -1 on error."""
    cdef Py_ssize_t end = i + 1
    cdef long value
    if s[i] == 48:  # '0'
        return _fail(r, ERR_NONZERO, i)
    value = s[i] - 48
    while end < n and end - i < MAX_DIGITS and CLASS[s[end]] & C_DIGIT:
        value = value * 10 + (s[end] - 48)
        end += 1
    if end < n and CLASS[s[end]] & C_DIGIT:
        return _fail(r, ERR_SHORT_NUMBER, end)
    r.count = value
    return end


cdef Py_ssize_t _scan_temporal(const unsigned char *s, Py_ssize_t n, Py_ssize_t i,
                               Scan *r) noexcept nogil:
    """End of the temporal segment starting at i; -1 on error."""
    cdef int c = s[i] if i < n else END
    cdef int d = s[i + 1] if i + 1 < n else END
    if c == 42:  # '*'
        if d == 94:  # '^'
            r.kind = K_LATEST
            return i + 2
        if d == 126:  # '~'
            r.kind = K_FIRST
            return i + 2
        if d != END and CLASS[d] & C_DIGIT:
            r.kind = K_VERSION
            return _scan_number(s, n, i + 1, r)
        return _fail(r, ERR_AFTER_STAR, i + 1)
    if c == 126 or c == 94:  # '~' or '^'
        if d != c:
            return _fail(r, ERR_TILDE if c == 126 else ERR_CARET, i + 1)
        r.kind = K_BACK if c == 126 else K_FORWARD
        if i + 2 < n and CLASS[s[i + 2]] & C_DIGIT:
            return _scan_number(s, n, i + 2, r)
        r.count = 1
        r.dirty = True
        return i + 2
    return _fail(r, ERR_TEMPORAL, i)


cdef int _scan_path(const unsigned char *s, Py_ssize_t n, Py_ssize_t start,
                    Scan *r) noexcept nogil:
    # Reading any index >= limit while the input goes on is the length error, so the error is
    # still the leftmost one and the scan never looks further than the limit.
    cdef Py_ssize_t limit = start + MAX_PATH
    cdef Py_ssize_t i = start, seg, j
    cdef int c, dots, value
    cdef bint only_dots
    while i < n:  # s[i] == '/'
        i += 1
        if i == n:
            if i - 1 == start:
                r.lone_slash = True
                r.dirty = True
            return 0
        seg = i
        only_dots = True
        dots = 0
        while True:
            if i == n:
                c = END
            elif i >= limit:
                return _fail(r, ERR_SHORT_PATH, i)
            else:
                c = s[i]
            if c == 47 or c == END:  # '/'
                if i == seg:
                    return _fail(r, ERR_SEGMENT, i)
                if only_dots and dots <= 2:
                    r.err_end = i
                    return _fail(r, ERR_NO_DOTS, seg)
                break
            if c == 37:  # '%'
                for j in range(i + 1, i + 3):
                    if j < n and j >= limit:
                        return _fail(r, ERR_SHORT_PATH, j)
                    if j >= n or not CLASS[s[j]] & C_HEX:
                        return _fail(r, ERR_HEX, j)
                value = _hex_value(s[i + 1]) * 16 + _hex_value(s[i + 2])
                if value == 46:  # '.'
                    dots += 1
                else:
                    only_dots = False
                # decoded unreserved characters and lowercase hex are not canonical
                if CLASS[value] & C_UNRESERVED or s[i + 1] >= 97 or s[i + 2] >= 97:
                    r.dirty = True
                i += 3
            elif CLASS[c] & C_PCHAR:
                if c == 46:
                    dots += 1
                else:
                    only_dots = False
                i += 1
            elif c == 63:
                return _fail(r, ERR_NO_QUERY, i)
            elif c == 35:
                return _fail(r, ERR_NO_FRAGMENT, i)
            else:
                return _fail(r, ERR_PCHAR, i)
    return 0


cdef int _scan(const unsigned char *s, Py_ssize_t n, Scan *r) noexcept nogil:
    cdef Py_ssize_t i
    cdef int f
    cdef unsigned char c
    for i in range(7):
        if i >= n:
            return _fail(r, ERR_SCHEME, i)
        c = s[i]
        if i < 4:
            if (c | 0x20) != SCHEME[i]:
                return _fail(r, ERR_SCHEME, i)
            if CLASS[c] & C_UPPER:
                r.dirty = True
        elif c != SCHEME[i]:
            return _fail(r, ERR_SCHEME, i)
    i = 7
    for f in range(4):
        if _scan_name(s, n, i, f, r) < 0:
            return -1
        i = r.ends[f] + 1
    i = _scan_temporal(s, n, i, r)
    if i < 0:
        return -1
    r.path = i
    if i < n and s[i] != 47:
        return _fail(r, ERR_AFTER_TEMPORAL, i)
    return _scan_path(s, n, i, r)


cdef Py_ssize_t _write_count(char *out, long value) noexcept nogil:
    cdef char digits[12]
    cdef int k = 0, m
    while True:
        digits[k] = <char>(48 + value % 10)
        k += 1
        value //= 10
        if value == 0:
            break
    for m in range(k):
        out[m] = digits[k - 1 - m]
    return k


cdef Py_ssize_t _canonicalise(const unsigned char *s, Py_ssize_t n, Scan *r,
                              char *out) noexcept nogil:
    """Write the canonical form into out; leave r.ends and r.path indexing it."""
    cdef Py_ssize_t o = 7, i, start = 7
    cdef int f, value
    cdef unsigned char c
    memcpy(out, SCHEME, 7)
    for f in range(4):
        if r.wild & (1 << f):
            out[o] = 42
            o += 1
        else:
            for i in range(start, r.ends[f]):
                c = s[i]
                out[o] = (c | 0x20) if CLASS[c] & C_UPPER else c
                o += 1
        start = r.ends[f] + 1
        r.ends[f] = o
        out[o] = SEPARATORS[f]
        o += 1
    # temporal: start indexes it in the input
    if r.kind == K_LATEST or r.kind == K_FIRST:
        memcpy(out + o, s + start, 2)
        o += 2
    else:
        if r.kind == K_VERSION:
            out[o] = 42
            o += 1
        else:
            out[o] = s[start]
            out[o + 1] = s[start]
            o += 2
        o += _write_count(out + o, r.count)
    i = r.path
    r.path = o
    if r.lone_slash:
        return o
    while i < n:
        c = s[i]
        if c == 37:  # '%'
            value = _hex_value(s[i + 1]) * 16 + _hex_value(s[i + 2])
            if CLASS[value] & C_UNRESERVED:
                out[o] = value
                o += 1
            else:
                out[o] = 37
                out[o + 1] = s[i + 1] & ~0x20 if s[i + 1] >= 97 else s[i + 1]
                out[o + 2] = s[i + 2] & ~0x20 if s[i + 2] >= 97 else s[i + 2]
                o += 3
            i += 3
        else:
            out[o] = c
            o += 1
            i += 1
    return o


cdef object _error(str text, Scan *r):
    cdef int code = r.err
    if code == ERR_NO_DOTS:
        return E.parse_error(text, r.err_pos, _EXPECTED[code], repr(text[r.err_pos:r.err_end]))
    if code == ERR_SHORT_PATH:
        return E.parse_error(text, r.err_pos, _EXPECTED[code], "a longer path")
    return E.parse_error(text, r.err_pos, _EXPECTED[code])


cpdef Address parse(text):
    """Parse a UCXL address into its canonical :class:`Address`.

    Raises:
        UCXLError: ``text`` is not a well-formed address; ``.position`` says where.
        TypeError: ``text`` is not a str.
    """
    cdef Scan r
    cdef const unsigned char *s
    cdef unsigned char narrow[SCAN_WINDOW]
    cdef char out[CANON_MAX]
    cdef Py_ssize_t n, i, length
    cdef Py_UCS4 ch
    cdef int kind
    cdef void *data
    cdef Address address
    if not PyUnicode_CheckExact(text):
        if not isinstance(text, str):
            raise TypeError(f"a UCXL address must be a str, not {type(text).__name__}")
        text = str.__str__(text)  # the characters, whatever the subclass's __str__ says
    PyUnicode_READY(text)
    n = PyUnicode_GET_LENGTH(text)
    kind = PyUnicode_KIND(text)
    if kind == PyUnicode_1BYTE_KIND:
        s = PyUnicode_1BYTE_DATA(text)
    else:
        # Anything past 0x7E is an error wherever it is, so narrow it to one such byte; the
        # message reads the real character back from the str.
        data = PyUnicode_DATA(text)
        for i in range(min(n, SCAN_WINDOW)):
            ch = PyUnicode_READ(kind, data, i)
            narrow[i] = <unsigned char>ch if ch < 0x80 else 0x80
        s = narrow
    r.wild = 0
    r.count = 0
    r.dirty = False
    r.lone_slash = False
    r.err = ERR_NONE
    if _scan(s, n, &r) < 0:
        raise _error(text, &r)
    if kind != PyUnicode_1BYTE_KIND:
        r.dirty = True  # a valid address is ASCII: give it the 1-byte str that matches() needs
    address = Address.__new__(Address)
    if r.dirty:
        length = _canonicalise(s, n, &r, out)
        address._canonical = PyUnicode_FromKindAndData(PyUnicode_1BYTE_KIND, out, length)
    else:
        address._canonical = text
    for i in range(4):
        address._ends[i] = r.ends[i]
    address._path = r.path
    address._kind = r.kind
    address._count = r.count
    address._wild = r.wild
    return address


cdef inline bint _same(const char *a, Py_ssize_t a0, Py_ssize_t a1,
                       const char *b, Py_ssize_t b0, Py_ssize_t b1) noexcept:
    return a1 - a0 == b1 - b0 and memcmp(a + a0, b + b0, a1 - a0) == 0


cdef class Address:
    """A parsed UCXL address: immutable, compared and hashed by its canonical form.

    ``Address(text)`` is the same as ``parse(text)``.
    """

    cdef str _canonical
    cdef Py_ssize_t _ends[4]  # index of the separator after each name in the canonical form
    cdef Py_ssize_t _path     # where the path starts in the canonical form
    cdef int _kind
    cdef long _count
    cdef int _wild
    cdef object _key

    def __init__(self, text):
        cdef Address parsed
        if self._canonical is not None:
            raise AttributeError("Address is immutable; cannot initialise it again")
        parsed = parse(text)
        self._canonical = parsed._canonical
        self._ends = parsed._ends
        self._path = parsed._path
        self._kind = parsed._kind
        self._count = parsed._count
        self._wild = parsed._wild

    def __setattr__(self, name, value):
        raise AttributeError(f"Address is immutable; cannot set {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"Address is immutable; cannot delete {name!r}")

    def __reduce__(self):
        return (parse, (self._canonical,))

    def __str__(self):
        return self._canonical

    def __repr__(self):
        return f"Address({self._canonical!r})"

    def __eq__(self, other):
        if type(other) is not Address:
            return NotImplemented
        return self._canonical == (<Address>other)._canonical

    def __ne__(self, other):
        if type(other) is not Address:
            return NotImplemented
        return self._canonical != (<Address>other)._canonical

    def __hash__(self):
        return hash(self._canonical)

    @property
    def canonical(self):
        """The canonical form (what is hashed, stored and compared)."""
        return self._canonical

    @property
    def agent(self):
        return self._canonical[7:self._ends[0]]

    @property
    def role(self):
        return self._canonical[self._ends[0] + 1:self._ends[1]]

    @property
    def project(self):
        return self._canonical[self._ends[1] + 1:self._ends[2]]

    @property
    def task(self):
        return self._canonical[self._ends[2] + 1:self._ends[3]]

    @property
    def temporal(self):
        """The temporal kind: latest, first, version, back or forward."""
        return _KIND_NAMES[self._kind]

    @property
    def count(self):
        """N of ``*N``, ``~~N``, ``^^N``; None for ``*^`` and ``*~``."""
        return None if self._kind == K_LATEST or self._kind == K_FIRST else self._count

    @property
    def path(self):
        return self._canonical[self._path:]

    @property
    def temporal_segment(self):
        """The canonical temporal segment: ``*^``, ``*~``, ``*N``, ``~~N`` or ``^^N``."""
        return self._canonical[self._ends[3] + 1:self._path]

    @property
    def has_wildcards(self):
        """Whether any of agent, role, project and task is ``*``."""
        return self._wild != 0

    @property
    def content_key(self):
        """SHA-256 of the canonical form with the temporal segment replaced by ``*^``."""
        if self._key is None:
            if self._kind == K_LATEST:
                keyed = self._canonical
            else:
                keyed = self._canonical[:self._ends[3] + 1] + "*^" + self._canonical[self._path:]
            self._key = hashlib.sha256(keyed.encode("ascii")).digest()
        return self._key

    def matches(self, address):
        """Whether this address, used as a pattern, matches ``address`` (SPEC "Matching")."""
        cdef Address other
        cdef const char *p
        cdef const char *a
        cdef Py_ssize_t p_start = 7, a_start = 7, lp, la
        cdef int f
        if type(address) is Address:
            other = <Address>address
        elif isinstance(address, str):
            other = parse(address)
        else:
            raise TypeError(f"matches() takes an Address or a str, not {type(address).__name__}")
        if self._canonical is None or other._canonical is None:
            # only Address.__new__(Address), bypassing parse(), makes one of these
            raise ValueError("matches() on an Address that was never initialised")
        # canonical forms are ASCII, so their 1-byte data is the text
        p = <const char *>PyUnicode_1BYTE_DATA(self._canonical)
        a = <const char *>PyUnicode_1BYTE_DATA(other._canonical)
        for f in range(4):
            if not self._wild & (1 << f) and not _same(
                p, p_start, self._ends[f], a, a_start, other._ends[f]
            ):
                return False
            p_start = self._ends[f] + 1
            a_start = other._ends[f] + 1
        lp = PyUnicode_GET_LENGTH(self._canonical) - self._path
        la = PyUnicode_GET_LENGTH(other._canonical) - other._path
        p += self._path
        a += other._path
        if lp == 0 or (la == lp and memcmp(p, a, lp) == 0):
            return True
        if p[lp - 1] == 47:  # '/'
            return (la >= lp and memcmp(p, a, lp) == 0) or (
                la == lp - 1 and memcmp(p, a, la) == 0
            )
        return False

    def resolve(self, versions):
        """The version (1..versions) this address's temporal segment selects.

        Raises:
            NoSuchVersion: the selection is outside 1..versions (always, when versions is 0).
        """
        if isinstance(versions, bool) or not isinstance(versions, int):
            raise TypeError(f"versions must be an int, not {type(versions).__name__}")
        if versions < 0:
            raise ValueError(f"versions must be >= 0, not {versions}")
        if self._kind == K_LATEST:
            selected = versions
        elif self._kind == K_FIRST:
            selected = 1
        elif self._kind == K_VERSION:
            selected = self._count
        elif self._kind == K_BACK:
            selected = versions - self._count
        else:
            selected = 1 + self._count
        if not 1 <= selected <= versions:
            raise NoSuchVersion(self._canonical, self.temporal_segment, selected, versions)
        return selected

    def check_writable(self):
        """Raise UCXLError unless this is a concrete address a write may use.

        A write needs no wildcards and the temporal segment ``*^``; the error's position
        indexes the canonical form.
        """
        cdef Py_ssize_t start = 7
        cdef int f
        for f in range(4):
            if self._wild & (1 << f):
                raise E.not_writable(self._canonical, start, f"the {_FIELDS[f]} is a wildcard")
            start = self._ends[f] + 1
        if self._kind != K_LATEST:
            raise E.not_writable(
                self._canonical,
                start,
                f"the temporal segment is {self.temporal_segment!r}, not '*^'",
            )


# Imported last, on purpose: importing _errors runs bzzz_edge/ucxl/__init__.py, which loads this
# module and reads parse and Address from it. When this module is imported first, that happens
# while it is still initialising, so everything __init__ reads must already be defined here.
from bzzz_edge.ucxl import _errors as E  # noqa: E402
from bzzz_edge.ucxl._errors import NoSuchVersion, UCXLError  # noqa: E402

_EXPECTED = (
    (None, E.EXPECT_SCHEME)
    + tuple(E.EXPECT_NAME[f] for f in _FIELDS)
    + tuple(E.EXPECT_SEPARATOR[f] for f in _FIELDS)
    + tuple(E.EXPECT_SHORT_NAME[f] for f in _FIELDS)
    + (
        E.EXPECT_TEMPORAL, E.EXPECT_AFTER_STAR, E.EXPECT_TILDE, E.EXPECT_CARET,
        E.EXPECT_NONZERO, E.EXPECT_SHORT_NUMBER, E.EXPECT_AFTER_TEMPORAL, E.EXPECT_SEGMENT,
        E.EXPECT_PCHAR, E.EXPECT_NO_QUERY, E.EXPECT_NO_FRAGMENT, E.EXPECT_HEX,
        E.EXPECT_NO_DOTS, E.EXPECT_SHORT_PATH,
    )
)
assert len(_EXPECTED) == ERR_SHORT_PATH + 1, "error codes and _EXPECTED are out of step"
