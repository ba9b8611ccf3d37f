"""The LZ4 block codec this process uses: compiled when built, else the pure twin. No I/O.

``compress(data, acceleration=1)`` makes one raw LZ4 block (no size header), byte for byte what
``lz4.block.compress(data, store_size=False)`` makes; ``decompress(data, uncompressed_size,
max_size=DEFAULT_MAX_SIZE)`` insists on exactly the declared size and raises
:class:`bzzz_edge.errors.CodecError` for anything malformed. The contract is spelled out in
``bzzz_edge.wire._lz4_pure``; both implementations follow it exactly.
"""

from __future__ import annotations

from bzzz_edge import _native

__all__ = [
    "DEFAULT_MAX_SIZE",
    "IMPLEMENTATION",
    "MAX_ACCELERATION",
    "MAX_INPUT_SIZE",
    "compress",
    "compress_bound",
    "decompress",
]

_impl = _native.load("lz4")

compress = _impl.compress
decompress = _impl.decompress
compress_bound = _impl.compress_bound
DEFAULT_MAX_SIZE: int = _impl.DEFAULT_MAX_SIZE
MAX_ACCELERATION: int = _impl.MAX_ACCELERATION
MAX_INPUT_SIZE: int = _impl.MAX_INPUT_SIZE
IMPLEMENTATION: str = _impl.IMPLEMENTATION
