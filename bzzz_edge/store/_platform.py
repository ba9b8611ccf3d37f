"""How large the store's memory map may grow on this platform. No I/O.

LMDB maps the whole database into the process's address space, so the map can never be
larger than the address space left over for it. On a 64-bit system that is vast and the bound
only has to be sane. On 32-bit Linux (armhf Raspberry Pi OS, i386) user space is 3 GiB, and
the Python heap, shared libraries, thread stacks (8 MiB each) and other mappings need room
too: past about 2 GiB py-lmdb's size argument overflows a signed C long
(``OverflowError: Integer argument exceeds limit``), and ``mmap`` of 3 GiB fails outright. So
on 32 bits the map grows to at most **1 GiB**, which leaves 2 GiB for everything else, and then
the store refuses writes with a clear ``StorageError`` (and the ``storage`` health check fails)
rather than letting the process die.

``pointer_bits`` is the probe; tests override it to exercise the 32-bit limit on x86-64.
"""

from __future__ import annotations

import sys

__all__ = ["CEILING_32BIT", "CEILING_64BIT", "MIB", "map_ceiling", "pointer_bits"]

MIB = 2**20
CEILING_32BIT = 1024 * MIB
CEILING_64BIT = 2**40  # 1 TiB: beyond any home-lab disk, but a bound LMDB can always map


def pointer_bits() -> int:
    """32 or 64: the width of this process's address space."""
    return 64 if sys.maxsize > 2**32 else 32


def map_ceiling(bits: int | None = None) -> int:
    """The largest map, in bytes, the store may use with ``bits``-bit pointers (default: ours)."""
    return CEILING_32BIT if (bits or pointer_bits()) == 32 else CEILING_64BIT
