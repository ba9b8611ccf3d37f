"""The message dedup cache this process uses: compiled when built, else the pure twin. No I/O.

``DedupCache(ttl, max_entries, id_size=16)`` remembers message IDs for ``ttl`` seconds after
first sight, holds at most ``max_entries`` (oldest evicted first), and takes the time as an
argument on every call. The rules (expiry, a clock that goes backwards, errors) are in
``bzzz_edge.wire._dedup_pure``; both implementations follow them exactly.
"""

from __future__ import annotations

from bzzz_edge import _native

__all__ = ["DEFAULT_ID_SIZE", "IMPLEMENTATION", "MAX_ENTRIES", "MAX_ID_SIZE", "DedupCache"]

_impl = _native.load("dedup")

DedupCache = _impl.DedupCache
DEFAULT_ID_SIZE: int = _impl.DEFAULT_ID_SIZE
MAX_ID_SIZE: int = _impl.MAX_ID_SIZE
MAX_ENTRIES: int = _impl.MAX_ENTRIES
IMPLEMENTATION: str = _impl.IMPLEMENTATION
