"""The log's Merkle tree (RFC 6962 / 9162 shape): roots, inclusion proofs, append steps. No I/O.

Leaves are entry hashes (``_codec.entry_hash``, already ``SHA-256(0x00 + entry)``); an inner
node is ``SHA-256(0x01 + left + right)``. The tree over ``n`` leaves splits at the largest power
of two below ``n``, so every left subtree is perfect. Only perfect subtrees are stored: node
``(level, i)`` covers leaves ``i * 2**level .. (i + 1) * 2**level - 1``. Appending leaf ``n``
completes ``(0, n)`` and one more level for every trailing one bit of ``n``: at most
``log2(n) + 1`` nodes, two on average (``LogChain.accept``). Any root and any proof is then a
short walk over stored nodes, given to these functions as a lookup (``NodeLookup``), so the
tree lives wherever the caller keeps it (a dict in tests, LMDB in the node).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ..errors import DecodeError

__all__ = [
    "EMPTY_ROOT",
    "NodeLookup",
    "inclusion_proof",
    "node_hash",
    "peaks",
    "root",
    "root_from_peaks",
    "verify_inclusion",
]

#: ``lookup(level, index)`` returns the stored hash of that perfect subtree.
NodeLookup = Callable[[int, int], bytes]

EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_PROOF = 64


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def peaks(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` making up a tree of ``size`` leaves, left first."""
    out = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size & (1 << level):
            out.append((level, start >> level))
            start += 1 << level
    return out


def root_from_peaks(hashes: list[bytes]) -> bytes:
    """Fold perfect-subtree hashes (left first) into the root, right to left."""
    if not hashes:
        return EMPTY_ROOT
    current = hashes[-1]
    for left in reversed(hashes[:-1]):
        current = node_hash(left, current)
    return current


def root(size: int, lookup: NodeLookup) -> bytes:
    """The root of the first ``size`` leaves."""
    return root_from_peaks([lookup(level, index) for level, index in peaks(size)])


def _subtree(start: int, size: int, lookup: NodeLookup) -> bytes:
    """The hash of leaves ``start .. start + size - 1`` (start is a multiple of the split)."""
    hashes = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size & (1 << level):
            hashes.append(lookup(level, start >> level))
            start += 1 << level
    return root_from_peaks(hashes)


def inclusion_proof(index: int, size: int, lookup: NodeLookup) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves, leaf side first.

    Raises:
        ValueError: ``index`` is not below ``size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    path: list[bytes] = []
    start = 0
    while size > 1:
        split = 1 << ((size - 1).bit_length() - 1)  # largest power of two below size
        if index - start < split:
            path.append(_subtree(start + split, size - split, lookup))
            size = split
        else:
            path.append(_subtree(start, split, lookup))
            start += split
            size -= split
    path.reverse()
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes],
                     expected_root: bytes) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with that root
    (RFC 9162, 2.1.3.2).

    Raises:
        DecodeError: the proof does not lead to ``expected_root``.
    """
    if not 0 <= index < size or len(proof) > MAX_PROOF:
        raise DecodeError(f"inclusion proof: leaf {index} of {size} is out of range")
    fn, sn = index, size - 1
    current = leaf
    for sibling in proof:
        if not isinstance(sibling, bytes) or len(sibling) != 32 or sn == 0:
            raise DecodeError(f"inclusion proof for leaf {index} is malformed")
        if fn & 1 or fn == sn:
            current = node_hash(sibling, current)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            current = node_hash(current, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or current != expected_root:
        raise DecodeError(f"inclusion proof for leaf {index} does not match the root")
