"""Where the C LZ4 library's compressed bytes are defined to equal ours.

Our compressor (both twins) always hashes the 5 bytes at a position with LZ4's 64-bit hash
(``LZ4_hash5``: the low 5 bytes, little-endian, shifted left 24, times 889523592379, top 12
bits). lz4.c (1.9.x, which ``lz4.block.compress`` runs through ``LZ4_compress_fast_continue``)
chooses its hash in ``LZ4_hashPosition``: ``LZ4_hash5`` only when ``sizeof(reg_t) == 8``, where
``reg_t`` is ``size_t``, or ``U64`` on any ``__x86_64__`` build (x32 included); otherwise
``LZ4_hash4`` (4 bytes times 2654435761). And on a big-endian machine its ``LZ4_hash5`` reads
the word big-endian and multiplies ``sequence >> 24`` by another prime. A different hash puts
positions in different table slots, so the compressor finds different match candidates and
writes different, equally valid blocks (the C library decodes ours and we decode its). So byte
identity with the C library holds on 64-bit little-endian builds (x86-64, aarch64, ppc64le,
riscv64...) and on x32, and is not defined on 32-bit ARM (armv7l/armv6l, Raspberry Pi OS),
i386 or big-endian machines. There, tests compare bytes between our two twins instead and check
that each library decodes the other's output.
"""

from __future__ import annotations

import struct
import sys
import sysconfig
from dataclasses import dataclass

import pytest


@dataclass(frozen=True, slots=True)
class CLz4:
    """Whether ``lz4.block.compress`` is defined to give our bytes here, and why (or why not)."""

    matches_ours: bool
    why: str


def _c_lz4_hashes_like_us() -> tuple[bool, str]:
    size_t = struct.calcsize("N")
    x32 = (sysconfig.get_config_var("MULTIARCH") or "").endswith("-linux-gnux32")
    if sys.byteorder != "little":
        return False, f"a {sys.byteorder}-endian machine, where lz4.c hashes big-endian words"
    if size_t == 8 or x32:
        return True, "64-bit little-endian: lz4.c hashes 5 bytes, as we do"
    return False, f"a {size_t * 8}-bit build, where lz4.c hashes 4 bytes (sizeof(reg_t) == 4)"


@pytest.fixture(scope="session")
def c_lz4() -> CLz4:
    return CLz4(*_c_lz4_hashes_like_us())
