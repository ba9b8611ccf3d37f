"""Contacts and XOR distance over 256-bit IDs. No I/O.

A contact is a node ID with the address it listens on. Distance is the XOR of two IDs read as a
big-endian integer; the bucket of a contact is the length of the prefix its ID shares with ours.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bzzz_edge.dht._config import ID_BITS, ID_LEN, MAX_HOST_LEN
from bzzz_edge.errors import LocalProtocolError

__all__ = ["Contact", "bucket_index", "distance", "id_in_bucket"]


@dataclass(frozen=True, slots=True)
class Contact:
    """A node we can reach: its 32-byte ID and where it listens."""

    node: bytes
    host: str
    port: int

    def __post_init__(self) -> None:
        if type(self.node) is not bytes or len(self.node) != ID_LEN:
            raise LocalProtocolError(f"a contact's node ID is {ID_LEN} bytes")
        if not 0 < len(self.host) <= MAX_HOST_LEN or not 0 <= self.port <= 65535:
            raise LocalProtocolError(f"contact address {self.host!r}:{self.port} is invalid")


def distance(a: bytes, b: bytes) -> int:
    """XOR distance of two IDs, as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def bucket_index(self_id: bytes, other: bytes) -> int:
    """Length of the common prefix of two different IDs: 0 (far half) to 255 (nearest)."""
    d = distance(self_id, other)
    if d == 0:
        raise LocalProtocolError("a node has no bucket for itself")
    return ID_BITS - d.bit_length()


def id_in_bucket(self_id: bytes, index: int, rng: random.Random) -> bytes:
    """A random ID sharing exactly ``index`` leading bits with ``self_id`` (a refresh target)."""
    if not 0 <= index < ID_BITS:
        raise LocalProtocolError(f"bucket index {index} outside [0, {ID_BITS})")
    own = int.from_bytes(self_id, "big")
    flip = 1 << (ID_BITS - 1 - index)
    low = rng.getrandbits(ID_BITS - 1 - index) if index < ID_BITS - 1 else 0
    high = (own >> (ID_BITS - index)) << (ID_BITS - index) if index else 0
    value = high | ((own & flip) ^ flip) | low
    return value.to_bytes(ID_LEN, "big")
