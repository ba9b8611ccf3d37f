"""The content RPCs between nodes (``dht.history``, ``dht.chunk``, ``dht.list``): their bounds,
their packing, the versions they carry, and how holders' answers are merged.

Pure functions. No I/O.

- ``dht.history`` ``{"a": address}`` -> ``[[version, timestamp, hash, size, media type,
  deleted], ...]``: the holder's own versions (at most ``MAX_HISTORY``); ``merge_histories``
  orders every holder's versions into the network's history.
- ``dht.chunk`` ``{"a": address, "h": SHA-256, "o": offset}`` -> ``{"s": size, "d": bytes}``:
  at most ``CHUNK`` bytes of the content from ``offset``.
- ``dht.list`` ``{"p": pattern, "l": limit, "d": deleted too}`` -> ``[version dict, ...]``
  (at most ``MAX_LIST``); ``keep_newest`` keeps the newest of each address over the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import BzzzError
from ..ids import format_node_id
from ..ucxl import parse
from ..ucxl.forms import base_of, with_version

__all__ = ["CHUNK", "MAX_HISTORY", "MAX_LIST", "NetworkVersion", "keep_newest",
           "merge_histories", "packb", "unpack_map"]

CHUNK = 256 * 1024
MAX_HISTORY = 1000
MAX_LIST = 1000


@dataclass(frozen=True, slots=True)
class NetworkVersion:
    """One version of an address somewhere in the network."""

    address: str  # with *N: its place in the network's order (or *^ for a latest record)
    version: int
    author: str
    timestamp: float
    hash: str
    size: int
    media_type: str
    deleted: bool
    holders: tuple[bytes, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"address": self.address, "version": self.version, "author": self.author,
                "timestamp": self.timestamp, "hash": self.hash, "size": self.size,
                "media_type": self.media_type, "deleted": self.deleted, "source": "dht"}


def unpack_map(body: bytes) -> dict[str, Any]:
    try:
        request = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException):
        raise BzzzError("request is not msgpack") from None
    if not isinstance(request, dict):
        raise BzzzError("request is not a map")
    return request


def packb(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def merge_histories(base: str, rows: list[tuple[bytes, list[Any]]]) -> list[NetworkVersion]:
    """Each holder's own versions, in one order: time, then author, then its version."""
    entries = []
    for holder, items in rows:
        for item in items:
            if (not isinstance(item, list) or len(item) != 6 or not isinstance(item[0], int)
                    or not isinstance(item[1], int | float) or not isinstance(item[2], str)
                    or not isinstance(item[3], int) or not isinstance(item[4], str)):
                continue
            entries.append((float(item[1]), holder, item[0], item))
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    return [NetworkVersion(address=with_version(base, n), version=n,
                           author=format_node_id(holder), timestamp=ts, hash=item[2],
                           size=item[3], media_type=item[4], deleted=bool(item[5]),
                           holders=(holder,))
            for n, (ts, holder, _, item) in enumerate(entries, start=1)]


def keep_newest(found: dict[str, dict[str, Any]], items: Iterable[Any], holder: bytes) -> None:
    """Into ``found`` (by base address): each well-formed item, unless one as new is there."""
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("address"), str):
            continue
        try:
            addr = parse(item["address"])
        except BzzzError:
            continue
        base = base_of(addr)
        timestamp = item.get("timestamp")
        if not isinstance(timestamp, int | float):
            continue
        held = found.get(base)
        if held is None or timestamp > held["timestamp"]:
            found[base] = {**{k: item.get(k) for k in ("address", "version", "author",
                                                       "timestamp", "hash", "size",
                                                       "media_type", "deleted")},
                           "base": base, "holder": format_node_id(holder)}
