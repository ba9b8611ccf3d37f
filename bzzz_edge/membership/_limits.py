"""Bounds on what peers can make this node hold or build. No I/O.

Two kinds of bound live here, both pure arithmetic:

- encoded sizes: an upper bound of the msgpack size of each record, so the core can budget a
  message (piggybacked news, one chunk of a full-state exchange) before building it, and keep a
  byte count of its member table without encoding anything;
- incarnation plausibility: how far news may raise a member's incarnation. Without a bound, a
  single "dead at 2**63 - 1" claim could never be refuted (there is no higher incarnation), and
  a node that persisted it could not start again. Each accepted claim may now raise a known
  member by at most ``MAX_INCARNATION_JUMP`` (an attacker needs 2**42 refuted claims to run a
  victim out of numbers), an unknown member may appear at most at ``MAX_FIRST_INCARNATION``,
  and a member speaking for itself over its own authenticated connection is believed.
"""

from __future__ import annotations

from typing import Final

from bzzz_edge.membership._messages import (
    MAX_INCARNATION,
    Address,
    AliveUpdate,
    Meta,
    SyncEntry,
    Update,
)

__all__ = [
    "MAX_FIRST_INCARNATION",
    "MAX_INCARNATION_JUMP",
    "MESSAGE_OVERHEAD",
    "entry_size",
    "plausible_incarnation",
    "record_size",
    "start_incarnation",
    "update_size",
]

#: Most a piece of news from a third party may raise a known member's incarnation. A member
#: gains one per refutation, restart or metadata change: even at one a second this is twelve
#: days of news missed.
MAX_INCARNATION_JUMP: Final = 2**20
#: Highest incarnation at which a member we do not know yet may appear (second-resolution wall
#: clocks, used by some nodes as a starting incarnation, stay far below).
MAX_FIRST_INCARNATION: Final = 2**40
#: Upper bound of a message's own fields (kind, version, sequence number, target, list headers).
MESSAGE_OVERHEAD: Final = 64

_NODE = 2 + 32  # bin 8 header + node ID
_INT = 9  # largest msgpack int
_LIST = 5  # largest list or map header
_STR = 5  # largest str or bin header


def _meta_size(meta: Meta) -> int:
    size = _LIST
    for key, value in meta.items():
        size += _STR + len(key.encode("utf-8", "surrogatepass"))
        if isinstance(value, str):
            size += _STR + len(value.encode("utf-8", "surrogatepass"))
        elif isinstance(value, bytes):
            size += _STR + len(value)
        else:
            size += _INT  # int or bool
    return size


def record_size(address: Address, meta: Meta) -> int:
    """Upper bound of the encoded size of one member record (a sync entry or alive news)."""
    host = _STR + len(address.host.encode("utf-8", "surrogatepass"))
    # list header, kind or status, node, incarnation, host, port, metadata
    return _LIST + 1 + _NODE + _INT + host + 3 + _meta_size(meta)


def entry_size(entry: SyncEntry) -> int:
    return record_size(entry.address, entry.meta)


def update_size(update: Update) -> int:
    """Upper bound of the encoded size of one piece of piggybacked news."""
    if isinstance(update, AliveUpdate):
        return record_size(update.address, update.meta)
    return _LIST + 1 + _NODE + _INT + _NODE


def plausible_incarnation(claimed: int, held: int | None) -> bool:
    """Whether third-party news may move a member from ``held`` (None: unknown) to ``claimed``."""
    if held is None:
        return claimed <= MAX_FIRST_INCARNATION
    return claimed <= held + MAX_INCARNATION_JUMP


def start_incarnation(persisted: object) -> int:
    """The incarnation to start at, given the one persisted by the previous run (or None).

    Anything that is not a sane, in-range integer (a corrupt store, a value an attacker had
    made us persist before claims were bounded) starts the node at 0 rather than stopping it;
    a node that starts too low catches up through refutation within one exchange.
    """
    if isinstance(persisted, bool) or not isinstance(persisted, int):
        return 0
    if not 0 <= persisted < MAX_FIRST_INCARNATION:
        return 0
    return min(persisted + 1, MAX_INCARNATION)
