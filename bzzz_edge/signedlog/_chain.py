"""One author's log as checked so far: the hash chain, the Merkle peaks, and fork evidence.
No I/O.

``LogChain`` is the sans-IO heart of both sides of a log. The author appends to it (``append``:
sign, chain, return what to store); a replica or ``log verify`` feeds it encoded entries in
order (``check_next``: decode, check the signature, the index, the author and the previous
hash; then ``accept``). Either way it keeps the Merkle peaks (at most 64 hashes), so the root
of everything accepted is always at hand (``root``) and a signed head can be checked against
it (``check_head``). Nothing here reads a clock: timestamps come in as arguments.

A fork is two different entries, both signed by the author, for one index; or a signed head
whose root is not the root of the entries the author signed. Either is proof that the author
rewrote its history: ``Fork`` keeps both sides as evidence, and the caller marks the log
corrupt (and says so loudly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import BzzzError, DecodeError, SignatureError
from ._codec import ZERO_HASH, Decoded, Entry, SignedHead, decode_entry, sign_entry, sign_head
from ._merkle import node_hash, root_from_peaks

__all__ = ["BadEntry", "Fork", "LogChain"]


class BadEntry(BzzzError):
    """An entry that does not belong at its place in the log; ``index`` names where."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"entry {index}: {reason}")
        self.index = index
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Fork:
    """Proof that an author signed two histories: two records that cannot both be true."""

    author: bytes
    index: int
    kind: str  # "entry": two entries for one index; "head": a head that disowns our entries
    ours: bytes  # the encoded entry or head we held
    theirs: bytes  # the encoded entry or head that contradicts it

    def as_dict(self) -> dict[str, Any]:
        return {"author": self.author.hex(), "index": self.index, "kind": self.kind,
                "ours": self.ours.hex(), "theirs": self.theirs.hex()}


class LogChain:
    """The verified tip of one author's log: length, last hash, Merkle peaks.

    Args:
        public_key: the author's raw Ed25519 public key (the author is its SHA-256).
        length, tip, peak_hashes: where to resume (a stored log); an empty log by default.
    """

    def __init__(self, author: bytes, public_key: bytes, *, length: int = 0,
                 tip: bytes = ZERO_HASH, peak_hashes: list[bytes] | None = None) -> None:
        self.author = author
        self.public_key = public_key
        self.length = length
        self.tip = tip
        # Perfect subtree hashes, biggest (leftmost) first, one per set bit of ``length``.
        self._peaks: list[bytes] = list(peak_hashes or [])
        if len(self._peaks) != bin(length).count("1"):
            raise ValueError(f"{len(self._peaks)} peaks do not fit a log of {length} entries")

    @property
    def peaks(self) -> list[bytes]:
        return list(self._peaks)

    def root(self) -> bytes:
        return root_from_peaks(self._peaks)

    # --- checking what others send -----------------------------------------------------------

    def check_next(self, encoded: bytes, *, signature: bool = True) -> Entry:
        """Decode the entry at index ``length`` and check that it belongs there.

        ``signature`` False leaves the signature to the caller (checked in parallel).

        Raises:
            BadEntry: malformed, wrongly signed, or not the next link of this chain.
        """
        try:
            entry = decode_entry(encoded, self.public_key if signature else None)
        except (DecodeError, SignatureError) as exc:
            raise BadEntry(self.length, str(exc)) from None
        return self.check_decoded(entry)

    def check_decoded(self, entry: Decoded) -> Entry:
        """``check_next`` of an entry already decoded and signature-checked (by this author's
        key: ``_parallel.decoded``), or of the error that decoding it met.

        Raises:
            BadEntry: the error, or not the next link of this chain.
        """
        index = self.length
        if not isinstance(entry, Entry):
            raise BadEntry(index, str(entry))
        if entry.index != index:
            raise BadEntry(index, f"found index {entry.index} where {index} belongs "
                                  "(an entry removed, added or reordered)")
        if entry.author != self.author:
            raise BadEntry(index, "author is not this log's author")
        if entry.prev != self.tip:
            raise BadEntry(index, "previous hash does not match the entry before it "
                                  "(an entry removed, changed or reordered)")
        return entry

    def check_signed(self, encoded: bytes) -> Entry:
        """Decode an entry of this author at any index, checking its form and signature only.

        Raises:
            BadEntry: malformed, wrongly signed, or another author's.
        """
        try:
            entry = decode_entry(encoded, self.public_key)
        except (DecodeError, SignatureError) as exc:
            raise BadEntry(-1, str(exc)) from None
        if entry.author != self.author:
            raise BadEntry(entry.index, "author is not this log's author")
        return entry

    def accept(self, entry: Entry) -> list[tuple[int, int, bytes]]:
        """Add a checked entry; returns the Merkle nodes ``(level, index, hash)`` it completes."""
        nodes = [(0, entry.index, entry.hash)]
        current, level, index = entry.hash, 0, entry.index
        while index & 1:
            current = node_hash(self._peaks.pop(), current)
            level, index = level + 1, index >> 1
            nodes.append((level, index, current))
        self._peaks.append(current)
        self.length += 1
        self.tip = entry.hash
        return nodes

    def check_head(self, head: SignedHead) -> None:
        """Check a (signature-checked) head for exactly this log's length against our root.

        Raises:
            BadEntry: the head is another author's, or its root is not ours (a fork if both
                are signed: the caller keeps the evidence).
        """
        if head.author != self.author or head.public_key != self.public_key:
            raise BadEntry(head.length, "head is another author's")
        if head.length != self.length:
            raise BadEntry(head.length, f"head is for {head.length} entries, not {self.length}")
        if head.root != self.root():
            raise BadEntry(max(head.length - 1, 0),
                           "the signed head's Merkle root is not the root of these entries")

    @staticmethod
    def fork_of(held: Entry, other: Entry) -> Fork | None:
        """Two checked entries for one index: a fork if they differ."""
        if held.index != other.index or held.encoded == other.encoded:
            return None
        return Fork(held.author, held.index, "entry", held.encoded, other.encoded)

    # --- the author's side -------------------------------------------------------------------

    def append(self, key: Ed25519PrivateKey, type: str, data: Mapping[str, Any],
               now_ms: int) -> tuple[Entry, list[tuple[int, int, bytes]]]:
        """Sign the next entry; returns it and the Merkle nodes to store with it.

        Raises:
            DecodeError: a bad type name, data with no canonical form, or too large.
        """
        entry = sign_entry(key, author=self.author, index=self.length, timestamp_ms=now_ms,
                           type=type, data=data, prev=self.tip)
        return entry, self.accept(entry)

    def sign_head(self, key: Ed25519PrivateKey, now_ms: int) -> SignedHead:
        return sign_head(key, author=self.author, length=self.length, root=self.root(),
                         timestamp_ms=now_ms)
