"""Forms of an address the store and the network key things by. No I/O.

The base form is the canonical address with the temporal segment ``*^``: its SHA-256 is the
content key (SPEC "Identity"), the same for every version; a version's own address puts the
version number in that segment.
"""

from __future__ import annotations

from bzzz_edge.ucxl import Address

__all__ = ["base_of", "with_version"]


def base_of(addr: Address) -> str:
    """The canonical form with the temporal segment ``*^`` (what the content key hashes)."""
    return f"ucxl://{addr.agent}:{addr.role}@{addr.project}:{addr.task}/*^{addr.path}"


def with_version(base: str, version: int) -> str:
    """``ucxl://a:r@p:t/*^/path`` -> ``ucxl://a:r@p:t/*N/path``."""
    head, _, tail = base.partition("/*^")
    return f"{head}/*{version}{tail}"
