"""Checking a whole log from its first entry: the chain, every signature, the signed head.
No I/O.

``verify_log`` takes the entries as the store yields them (``(index it is stored under,
encoded entry)``, in order), so a missing, extra or moved entry is caught by its place as well
as by its content, and stops at the first bad one, naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..errors import DecodeError, SignatureError
from ._chain import BadEntry, LogChain
from ._codec import Decoded, Entry, SignedHead, decode_entry, decode_head
from ._merkle import verify_inclusion

__all__ = ["Verified", "verify_entry", "verify_log"]


@dataclass(frozen=True, slots=True)
class Verified:
    """What a successful check covered."""

    author: bytes
    length: int
    root: bytes
    head_length: int  # the length the signed head vouches for (0: no head)


NodeCheck = Callable[[int, list[tuple[int, int, bytes]]], None]


def verify_log(head: SignedHead, entries: Iterable[tuple[int, bytes]] | Iterable[
        tuple[int, Decoded]], *, check_nodes: NodeCheck | None = None,
               decoded: bool = False) -> Verified:
    """Check every entry against the chain and its signature, then the head against the root.

    ``head`` is the author's signed head (already decoded, so its signature and key hold); the
    entries must be exactly ``head.length`` of them, from index 0. ``check_nodes(index,
    nodes)`` is handed the Merkle nodes each entry completes (to compare with stored ones).
    ``decoded``: the entries come decoded and signature-checked by the head's key, or as the
    error that met them (``(index, Decoded)`` from ``_parallel.decoded``), not encoded.

    Raises:
        BadEntry: the first entry (or the head) that does not hold, by index.
    """
    chain = LogChain(head.author, head.public_key)
    check = chain.check_decoded if decoded else chain.check_next
    for stored_at, item in entries:
        if stored_at != chain.length:
            raise BadEntry(chain.length, f"missing: the next stored entry is {stored_at}")
        nodes = chain.accept(check(item))  # type: ignore[arg-type]
        if check_nodes is not None:
            check_nodes(stored_at, nodes)
    if chain.length < head.length:
        raise BadEntry(chain.length, f"missing: the signed head vouches for {head.length} "
                                     f"entries, {chain.length} are stored")
    if chain.length > head.length:
        raise BadEntry(head.length, f"{chain.length - head.length} entries past the signed "
                                    f"head's {head.length}")
    chain.check_head(head)
    return Verified(head.author, chain.length, chain.root(), head.length)


def verify_entry(encoded_entry: bytes, proof: list[bytes], encoded_head: bytes) -> Entry:
    """Check one entry with nothing but its inclusion proof and a signed head of its log.

    Raises:
        BadEntry: the head or entry is not signed by the author, or the proof does not put
            the entry at its index under the head's root.
    """
    try:
        head = decode_head(encoded_head)
        entry = decode_entry(encoded_entry, head.public_key)
        if entry.author != head.author:
            raise DecodeError("the entry is another author's")
        verify_inclusion(entry.hash, entry.index, head.length, proof, head.root)
    except (DecodeError, SignatureError) as exc:
        raise BadEntry(-1, str(exc)) from None
    return entry
