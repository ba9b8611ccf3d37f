"""Drop the store's file pages from this process's resident set, not from the page cache.
Does I/O (``/proc/self/maps``, ``madvise``).

LMDB reads through a read-only shared map of ``data.mdb``. Every page a lookup or a commit's
B-tree walk touches is mapped in, and the kernel maps its neighbours with it (fault-around:
64 KiB a fault, whatever LMDB's readahead flag says), so after a burst of rounds a node's RSS
holds most of a small database: 0.16 MiB at start, 0.9 MiB after 150 rounds, more as the
database grows. ``MADV_DONTNEED`` on a shared file map only unmaps: the pages stay in the page
cache with their contents, and the next read maps them again with a minor fault (no disk
read). The caller must hold the store's gate, so the map cannot move or close meanwhile (a
range that became anonymous memory would be zeroed).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

__all__ = ["forget_mapped_pages"]

log = logging.getLogger(__name__)

_MADV_DONTNEED = 4


def _madvise() -> ctypes._NamedFuncPointer | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_MADVISE = _madvise()


def _ranges(path: str) -> list[tuple[int, int]]:
    """The address ranges of this process's maps of ``path`` (already resolved)."""
    found = []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].rstrip("\n") == path:
                    start, end = fields[0].split("-")
                    found.append((int(start, 16), int(end, 16)))
    except (OSError, ValueError):
        return []
    return found


def forget_mapped_pages(file: str) -> int:
    """Unmap the resident pages of this process's maps of ``file`` (kept in the page cache).

    Returns the bytes of map advised (0 where the platform cannot).
    """
    if _MADVISE is None:
        return 0
    advised = 0
    for start, end in _ranges(os.path.realpath(file)):
        if _MADVISE(start, end - start, _MADV_DONTNEED) == 0:
            advised += end - start
        else:
            log.debug("madvise of the store's map failed: %s", os.strerror(ctypes.get_errno()))
    return advised
