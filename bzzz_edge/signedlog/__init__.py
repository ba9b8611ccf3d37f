"""The signed append-only log, one per node, in the manner of Hypercore. No I/O.

Entries are signed by their author and hash-chained; a Merkle tree over them has a signed root
(a head), so a peer can check one entry with an inclusion proof and the head, without the
rest. This package's ``__init__`` and private modules are the sans-IO core: encoding and
signatures (``_codec``), the tree (``_merkle``), the chain and fork evidence (``_chain``).
``storage`` keeps logs in LMDB and ``service`` appends and replicates them (both do I/O;
import them by name).
"""

from ._chain import BadEntry, Fork, LogChain
from ._codec import (
    MAX_ENTRY_BYTES,
    ZERO_HASH,
    Entry,
    SignedHead,
    canonical_pack,
    decode_entry,
    decode_head,
    entry_hash,
)
from ._merkle import inclusion_proof, peaks, root, root_from_peaks, verify_inclusion
from ._types import ENTRY_TYPES, MEMBER_JOINED, MEMBER_LEFT, STORE_TYPES
from ._verify import Verified, verify_entry, verify_log

__all__ = [
    "ENTRY_TYPES",
    "MAX_ENTRY_BYTES",
    "MEMBER_JOINED",
    "MEMBER_LEFT",
    "STORE_TYPES",
    "ZERO_HASH",
    "BadEntry",
    "Entry",
    "Fork",
    "LogChain",
    "SignedHead",
    "Verified",
    "canonical_pack",
    "decode_entry",
    "decode_head",
    "entry_hash",
    "inclusion_proof",
    "peaks",
    "root",
    "root_from_peaks",
    "verify_entry",
    "verify_inclusion",
    "verify_log",
]
