"""Records of the versioned UCXL store, their keys and errors. No I/O.

Databases (declared by ``content.DATABASES``), keys and values:

    ucxl_keys       content key (32 bytes)          -> msgpack {"a": base address, "n": versions}
    ucxl_versions   content key + version (4, BE)   -> msgpack version record (``Version``)
    ucxl_index      sort key (see ``sort_key``)     -> content key
    ucxl_announced  content key                     -> msgpack {"v": version, "ts": seconds}
    blobs           SHA-256 of the content          -> compression-framed blob (wire/compression)
    blob_refs       SHA-256 of the content          -> reference count (8 bytes, BE)

The base address is the canonical form with the temporal segment ``*^``, whose SHA-256 is the
content key (SPEC "Identity"). A deletion is a version too (a tombstone): history is kept.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import BzzzError
from ..ucxl import Address, UCXLError, parse
from ..ucxl.forms import with_version
from ..wire.compression import Codec, decode

__all__ = [
    "Conflict",
    "ContentTooLarge",
    "NotFound",
    "StoreChange",
    "Version",
    "address_of",
    "concrete",
    "payload",
    "sort_key",
    "version_key",
]

_VERSION = struct.Struct(">I")


class NotFound(BzzzError, LookupError):
    """No content at an address: never written, or its selected version is a tombstone.

    Attributes:
        address: the canonical address asked for.
        versions: how many versions exist (tombstones included).
        deleted: whether the selected version is a tombstone.
    """

    def __init__(self, message: str, *, address: str, versions: int, deleted: bool) -> None:
        super().__init__(message)
        self.address, self.versions, self.deleted = address, versions, deleted


class ContentTooLarge(BzzzError):
    """Content above ``storage.max_content_bytes``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"content of {size} bytes exceeds the limit of {limit} bytes "
                         "(storage.max_content_bytes)")
        self.size, self.limit = size, limit


class Conflict(BzzzError):
    """The address changed between reading its latest version and writing the next."""


@dataclass(frozen=True, slots=True)
class Version:
    """One stored version of an address (a tombstone when ``deleted``)."""

    address: str  # canonical, with the temporal segment *N of this version
    version: int
    author: str  # display ID of the node that wrote it
    timestamp: float  # wall-clock seconds
    hash: str  # hex SHA-256 of the content ("" for a tombstone)
    size: int  # content bytes
    media_type: str
    codec: str  # how its blob is stored: raw, lz4 or zlib
    stored: int  # bytes its blob takes in the store (shared by every version with that hash)
    deleted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pack(self) -> dict[str, Any]:
        """The stored record (the address is rebuilt from the key and version)."""
        return {"au": self.author, "ts": self.timestamp, "h": self.hash, "s": self.size,
                "t": self.media_type, "c": self.codec, "st": self.stored, "d": self.deleted}

    @classmethod
    def unpack(cls, base: str, version: int, raw: dict[str, Any]) -> Version:
        return cls(address=with_version(base, version), version=version, author=raw["au"],
                   timestamp=raw["ts"], hash=raw["h"], size=raw["s"], media_type=raw["t"],
                   codec=raw["c"], stored=raw["st"], deleted=raw["d"])


@dataclass(frozen=True, slots=True)
class StoreChange:
    """What a write did, for the ``changes`` feed and the in-transaction hooks (the log).

    ``kind`` is ``put`` (a new version, by PUT or POST), ``delete`` (a tombstone) or
    ``announce``; ``version`` is the version written, or the one announced.
    """

    kind: str
    version: Version


def version_key(content_key: bytes, version: int) -> bytes:
    return content_key + _VERSION.pack(version)


def sort_key(project: str, task: str, agent: str, role: str, path: str) -> bytes:
    """Index order: project, task, agent, role, path (patterns name projects most often)."""
    return "\0".join((project, task, agent, role, path)).encode("ascii")


def scan_prefix(project: str, task: str, agent: str, role: str, path: str) -> bytes:
    """The longest index prefix every match of a pattern shares."""
    parts: list[str] = []
    for name in (project, task, agent, role):
        if name == "*":
            return "\0".join(parts).encode("ascii") + (b"\0" if parts else b"")
        parts.append(name)
    prefix = "\0".join(parts) + "\0"
    if path.endswith("/"):
        prefix += path[:-1]
    elif path:
        prefix += path
    return prefix.encode("ascii")


_PARSED: dict[str, Address] = {}  # recent address texts, parsed (their content key cached)
_PARSED_MAX = 4096
CODEC_NAMES = {int(c): c.name.lower() for c in Codec}


def address_of(address: Address | str) -> Address:
    if isinstance(address, Address):
        return address
    parsed = _PARSED.get(address)
    if parsed is None:
        parsed = parse(address)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()  # bounded; a cache miss only costs a parse
        _PARSED[address] = parsed
    return parsed


def payload(blob: bytes, size: int) -> bytes:
    """The content of a blob: raw blobs sliced directly (the hot path), others decoded."""
    if blob[0] == Codec.RAW:
        start = 1 + max(1, (size.bit_length() + 6) // 7)  # codec byte + LEB128 size
        if len(blob) == start + size:
            return blob[start:]
    return decode(blob, max_size=size)  # compressed, or a raw blob that does not add up


def concrete(addr: Address) -> Address:
    """``addr``, unless it has a wildcard (a read of one address needs a concrete one)."""
    if addr.has_wildcards:
        raise UCXLError(f"{addr.canonical} has a wildcard: it names many addresses; list them "
                        "instead", addr.canonical.index("*"))
    return addr
