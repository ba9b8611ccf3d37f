# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Message dedup cache, compiled twin of ``bzzz_edge.wire._dedup_pure``. No I/O, no clock.

Same rules as the pure twin (see its docstring): TTL from first sighting, oldest evicted first
when full, the clock is the largest ``now`` given, identical errors and counters.

Layout: an open-addressing table (linear probing, at most half full) holds each ID inline with
its ring position and 32 bits of its hash, so a lookup touches one cache line. A ring buffer in
insertion order (which is also time order) holds each ID's insertion time and table slot, so
expiry and eviction both pop the ring's head. Ring and table start small and double as IDs
arrive, up to ``max_entries``: a node's cache is sized for a flood (32,768 IDs, 3.8 MB) but
an idle or quiet node should not hold that memory (the pure twin's dict grows the same way). Deletion shifts the following probe run back
instead of leaving tombstones, so probe lengths never degrade. The hash is keyed with
16 random bytes per cache: IDs are blake2b outputs, but the sequence numbers behind them are
chosen by peers, who could otherwise grind IDs into one probe run.
"""

import os

from libc.math cimport isfinite
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from cpython.object cimport PyObject
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_SIZE, PySequence_Fast_ITEMS

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* 64x64 -> 128-bit multiply folded to 64 bits (the wyhash mixer). */
    static inline uint64_t bz_dedup_mum(uint64_t a, uint64_t b) {
    #if defined(__SIZEOF_INT128__)
        __uint128_t r = (__uint128_t)a * b;
        return (uint64_t)r ^ (uint64_t)(r >> 64);
    #else
        uint64_t ha = a >> 32, la = (uint32_t)a, hb = b >> 32, lb = (uint32_t)b;
        uint64_t rh = ha * hb, rm0 = ha * lb, rm1 = hb * la, rl = la * lb;
        uint64_t t = rl + (rm0 << 32), c = t < rl;
        uint64_t lo = t + (rm1 << 32);
        c += lo < t;
        return lo ^ (rh + (rm0 >> 32) + (rm1 >> 32) + c);
    #endif
    }
    static inline uint64_t bz_dedup_hash(const unsigned char* p, size_t n,
                                         uint64_t k0, uint64_t k1) {
        uint64_t h = k0 ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull), w;
        while (n >= 8) {
            memcpy(&w, p, 8);
            h = bz_dedup_mum(h ^ w, k1 ^ 0xa0761d6478bd642full);
            p += 8;
            n -= 8;
        }
        if (n) {
            w = 0;
            memcpy(&w, p, n);
            h = bz_dedup_mum(h ^ w, k1 ^ 0xe7037ed1a0b428dbull);
        }
        return bz_dedup_mum(h, k0 ^ 0x8ebc6af09c88c6e3ull);
    }
    static inline void bz_dedup_prefetch(const void* p) {
    #if defined(__GNUC__) || defined(__clang__)
        __builtin_prefetch(p);
    #endif
    }
    """
    uint64_t bz_dedup_hash(const uint8_t* p, size_t n, uint64_t k0, uint64_t k1) noexcept nogil
    void bz_dedup_prefetch(const void* p) noexcept nogil

__all__ = ["DEFAULT_ID_SIZE", "IMPLEMENTATION", "MAX_ENTRIES", "MAX_ID_SIZE", "DedupCache"]

IMPLEMENTATION = "compiled"

DEFAULT_ID_SIZE = 16
MAX_ID_SIZE = 64
MAX_ENTRIES = 1 << 26

cdef uint32_t EMPTY = 0xFFFFFFFFu
cdef double INF = float("inf")

cdef enum:
    PREFETCH = 16  # IDs hashed and prefetched ahead in check_and_insert_many
    INITIAL_CAPACITY = 1024  # IDs the ring holds before it first grows

cdef struct SlotHead:  # followed in the table by the ID itself, padded to 8 bytes
    uint32_t ring  # ring position of the ID, or EMPTY
    uint32_t hash  # low 32 bits of its hash: the home slot, and a cheap pre-check


def _check_config(ttl, max_entries, id_size):
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"dedup: ttl must be a number, not {type(ttl).__name__}")
    if not 0.0 < ttl < INF:
        raise ValueError(f"dedup: ttl must be positive and finite, got {ttl!r}")
    for name, value, top in (("max_entries", max_entries, MAX_ENTRIES),
                             ("id_size", id_size, MAX_ID_SIZE)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"dedup: {name} must be an int, not {type(value).__name__}")
        if not 1 <= value <= top:
            raise ValueError(f"dedup: {name} must be between 1 and {top}, got {value}")
    return float(ttl)


cdef class DedupCache:
    """A TTL- and size-bounded set of message IDs with O(1) check-and-insert.

    Args:
        ttl: seconds an ID stays remembered after it was first seen (> 0, finite).
        max_entries: the most IDs held at once; the oldest is evicted beyond it.
        id_size: the exact length of every ID in bytes (1..64, default 16).
    """

    cdef double _ttl
    cdef double _now
    cdef Py_ssize_t _max_entries
    cdef Py_ssize_t _id_size
    cdef Py_ssize_t _slot_size  # bytes per table slot: SlotHead + the ID, 8-byte aligned
    cdef Py_ssize_t _head  # ring position of the oldest ID
    cdef Py_ssize_t _count
    cdef Py_ssize_t _capacity  # ring size: IDs held before the ring grows (<= _max_entries)
    cdef double* _times  # ring: when each ID was inserted
    cdef uint32_t* _ring_slot  # ring: the table slot that holds each ID
    cdef uint8_t* _table
    cdef uint32_t _mask
    cdef uint64_t _k0, _k1
    cdef uint64_t _hits, _inserts, _evictions, _expirations

    def __cinit__(self, ttl, max_entries, id_size=DEFAULT_ID_SIZE):
        self._ttl = _check_config(ttl, max_entries, id_size)
        self._max_entries = max_entries
        self._id_size = id_size
        self._slot_size = (sizeof(SlotHead) + self._id_size + 7) // 8 * 8
        self._now = -INF
        if not self._resize(min(max_entries, INITIAL_CAPACITY)):
            raise MemoryError(f"dedup: cannot allocate a cache of {max_entries} entries")
        key = os.urandom(16)
        memcpy(&self._k0, PyBytes_AS_STRING(key), 8)
        memcpy(&self._k1, PyBytes_AS_STRING(key) + 8, 8)

    def __dealloc__(self):
        PyMem_RawFree(self._times)
        PyMem_RawFree(self._ring_slot)
        PyMem_RawFree(self._table)

    # -- table primitives ----------------------------------------------------------------------

    cdef bint _resize(self, Py_ssize_t capacity) noexcept:
        """Move to a ring of ``capacity`` IDs (>= count) and a table twice that; False if no memory.

        The IDs keep their order: the oldest goes to ring position 0.
        """
        cdef Py_ssize_t slots = 8
        cdef Py_ssize_t k, r
        cdef uint32_t i, mask
        cdef SlotHead* s
        cdef double* times
        cdef uint32_t* ring_slot
        cdef uint8_t* table
        while slots < 2 * capacity:  # load factor <= 1/2
            slots *= 2
        mask = <uint32_t>(slots - 1)
        times = <double*>PyMem_RawMalloc(capacity * sizeof(double))
        ring_slot = <uint32_t*>PyMem_RawMalloc(capacity * sizeof(uint32_t))
        table = <uint8_t*>PyMem_RawMalloc(slots * self._slot_size)
        if times == NULL or ring_slot == NULL or table == NULL:
            PyMem_RawFree(times)
            PyMem_RawFree(ring_slot)
            PyMem_RawFree(table)
            return False
        for k in range(slots):
            (<SlotHead*>(table + k * self._slot_size)).ring = EMPTY
        for k in range(self._count):  # IDs are distinct: each takes the first free slot
            r = self._head + k
            if r >= self._capacity:
                r -= self._capacity
            s = self._slot(self._ring_slot[r])
            i = s.hash & mask
            while (<SlotHead*>(table + i * self._slot_size)).ring != EMPTY:
                i = (i + 1) & mask
            memcpy(table + i * self._slot_size, s, self._slot_size)
            (<SlotHead*>(table + i * self._slot_size)).ring = <uint32_t>k
            times[k] = self._times[r]
            ring_slot[k] = i
        PyMem_RawFree(self._times)
        PyMem_RawFree(self._ring_slot)
        PyMem_RawFree(self._table)
        self._times = times
        self._ring_slot = ring_slot
        self._table = table
        self._mask = mask
        self._capacity = capacity
        self._head = 0
        return True

    cdef inline SlotHead* _slot(self, uint32_t i) noexcept:
        return <SlotHead*>(self._table + i * self._slot_size)

    cdef inline Py_ssize_t _find(self, const uint8_t* key, uint64_t h) noexcept:
        """The slot holding ``key``, or -(empty slot where it would go) - 1."""
        cdef uint32_t i = <uint32_t>h & self._mask
        cdef uint32_t tag = <uint32_t>h
        cdef SlotHead* s
        while True:
            s = self._slot(i)
            if s.ring == EMPTY:
                return -<Py_ssize_t>i - 1
            if s.hash == tag and memcmp(<uint8_t*>s + sizeof(SlotHead), key,
                                        self._id_size) == 0:
                return i
            i = (i + 1) & self._mask

    cdef void _pop_oldest(self) noexcept:
        """Drop the ring's head from the table (backward-shift deletion) and the ring."""
        cdef uint32_t i = self._ring_slot[self._head]
        cdef uint32_t j = i
        cdef uint32_t home
        cdef SlotHead* s
        while True:
            j = (j + 1) & self._mask
            s = self._slot(j)
            if s.ring == EMPTY:
                break
            home = s.hash & self._mask
            # Move j's entry into the hole unless the hole lies before its home slot.
            if ((j - home) & self._mask) >= ((j - i) & self._mask):
                memcpy(self._slot(i), s, self._slot_size)
                self._ring_slot[s.ring] = i
                i = j
        self._slot(i).ring = EMPTY
        self._head += 1
        if self._head == self._capacity:
            self._head = 0
        self._count -= 1

    cdef void _insert(self, const uint8_t* key, uint64_t h, Py_ssize_t slot) noexcept:
        cdef Py_ssize_t r = self._head + self._count
        cdef SlotHead* s = self._slot(<uint32_t>slot)
        if r >= self._capacity:
            r -= self._capacity
        s.ring = <uint32_t>r
        s.hash = <uint32_t>h
        memcpy(<uint8_t*>s + sizeof(SlotHead), key, self._id_size)
        self._times[r] = self._now
        self._ring_slot[r] = <uint32_t>slot
        self._count += 1

    # -- clock and validation ------------------------------------------------------------------

    cdef int _advance(self, double now) except -1:
        """Move the clock forward to ``now`` if later; drop what expired."""
        cdef double cutoff
        if not isfinite(now):
            raise ValueError(f"dedup: now must be a finite number, got {now!r}")
        if now > self._now:
            self._now = now
            cutoff = now - self._ttl
            while self._count > 0 and self._times[self._head] <= cutoff:
                self._pop_oldest()
                self._expirations += 1
        return 0

    cdef const uint8_t* _key(self, object msg_id) except NULL:
        if type(msg_id) is not bytes:
            raise TypeError(f"dedup: message ID must be bytes, not {type(msg_id).__name__}")
        if PyBytes_GET_SIZE(msg_id) != self._id_size:
            raise ValueError(
                f"dedup: message ID must be {self._id_size} bytes, got {PyBytes_GET_SIZE(msg_id)}"
            )
        return <const uint8_t*>PyBytes_AS_STRING(msg_id)

    # -- public API ----------------------------------------------------------------------------

    def check_and_insert(self, msg_id, now):
        """True if ``msg_id`` was seen within the TTL; otherwise remember it and return False."""
        cdef const uint8_t* key = self._key(msg_id)
        self._advance(now)
        return self._check_insert(key, bz_dedup_hash(key, self._id_size, self._k0, self._k1))

    def check_and_insert_many(self, msg_ids, now):
        """check_and_insert for each ID in order, at one ``now``; the answers in a list."""
        cdef object seq
        cdef Py_ssize_t n, i = 0, k, m, r, valid
        cdef PyObject** items
        cdef list answers
        cdef const uint8_t* keys[PREFETCH]
        cdef uint64_t hashes[PREFETCH]
        cdef PyObject* obj
        self._advance(now)  # first, as the pure twin does
        seq = PySequence_Fast(msg_ids, "dedup: msg_ids must be iterable")
        n = PySequence_Fast_GET_SIZE(seq)
        items = PySequence_Fast_ITEMS(seq)
        answers = [False] * n
        while i < n:
            # Hash a group of IDs and prefetch their home slots before probing any of them,
            # so the cache misses overlap instead of queueing one after another; meanwhile
            # prefetch the next group's ID objects and the slots the coming evictions free.
            m = n - i if n - i < PREFETCH else PREFETCH
            for k in range(i + PREFETCH, min(n, i + 2 * PREFETCH)):
                bz_dedup_prefetch(items[k])
                bz_dedup_prefetch(<char*>items[k] + 48)
            if self._count + m > self._max_entries:
                # At most min(m, count) of the oldest entries can be evicted by this group.
                # Only those ring positions hold slots; k < count <= capacity keeps one
                # subtraction enough to wrap (a batch longer than a small ring once read
                # past the end of _ring_slot here). Prefetches only: the ring may still
                # grow under them in this group.
                for k in range(m if m < self._count else self._count):
                    r = self._head + k
                    if r >= self._capacity:
                        r -= self._capacity
                    bz_dedup_prefetch(self._slot(self._ring_slot[r]))
            valid = m
            for k in range(m):
                obj = items[i + k]
                if (not PyBytes_CheckExact(<object>obj)
                        or PyBytes_GET_SIZE(<object>obj) != self._id_size):
                    valid = k
                    break
                keys[k] = <const uint8_t*>PyBytes_AS_STRING(<object>obj)
                hashes[k] = bz_dedup_hash(keys[k], self._id_size, self._k0, self._k1)
                bz_dedup_prefetch(self._slot(<uint32_t>hashes[k] & self._mask))
            for k in range(valid):
                answers[i + k] = self._check_insert(keys[k], hashes[k])
            if valid < m:
                self._key(<object>items[i + valid])  # raises, after the IDs before it
            i += m
        return answers

    cdef inline bint _check_insert(self, const uint8_t* key, uint64_t h) noexcept:
        cdef Py_ssize_t slot = self._find(key, h)
        if slot >= 0:
            self._hits += 1
            return True
        if self._count >= self._capacity:
            if self._count >= self._max_entries or not self._resize(
                    min(2 * self._capacity, self._max_entries)):
                # Full, or no memory to grow: the oldest makes room, as a full cache does.
                self._pop_oldest()
                self._evictions += 1
            slot = self._find(key, h)  # the shift or the new table moved the free slot
        self._insert(key, h, -slot - 1)
        self._inserts += 1
        return False

    def contains(self, msg_id, now):
        """Whether ``msg_id`` is live at ``now``, without recording anything or moving the clock."""
        cdef const uint8_t* key = self._key(msg_id)
        cdef double t = now
        cdef Py_ssize_t slot
        if not isfinite(t):
            raise ValueError(f"dedup: now must be a finite number, got {now!r}")
        if t < self._now:
            t = self._now
        slot = self._find(key, bz_dedup_hash(key, self._id_size, self._k0, self._k1))
        return slot >= 0 and self._times[self._slot(<uint32_t>slot).ring] > t - self._ttl

    def expire(self, now):
        """Move the clock to ``now`` (if later) and drop expired IDs; returns how many."""
        cdef uint64_t before = self._expirations
        self._advance(now)
        return self._expirations - before

    def __len__(self):
        return self._count

    def __repr__(self):
        return (
            f"DedupCache(ttl={self._ttl}, max_entries={self._max_entries}, "
            f"id_size={self._id_size}, len={self._count}, {IMPLEMENTATION})"
        )

    @property
    def ttl(self):
        return self._ttl

    @property
    def max_entries(self):
        return self._max_entries

    @property
    def id_size(self):
        return self._id_size

    @property
    def hits(self):
        """Calls of check_and_insert that found a live duplicate."""
        return self._hits

    @property
    def inserts(self):
        """IDs recorded by check_and_insert."""
        return self._inserts

    @property
    def evictions(self):
        """Live IDs dropped because the cache was full."""
        return self._evictions

    @property
    def expirations(self):
        """IDs dropped because their TTL ran out."""
        return self._expirations
