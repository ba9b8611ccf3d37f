"""The write-ahead log's format 1 (``BzRw``, no salt; segments written up to 5a02428): its
record frame, still the frame of the snapshot's file, and its rule for a torn tail, with
which a segment of that format is read once before it is rolled into format 2 (``_wal``);
and which format a segment is in (1, 2, or a later one, refused). No I/O.

A record: ``MAGIC`` (``BzRw``), the payload's length (u32), CRC-32 of length and payload
(u32), the payload.
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING

from ..errors import StorageError
from ._wal_record import MAGIC as MAGIC_2
from ._wal_record import (
    SALT_BYTES,
    Framing,
    Salted,
    newer_format,
    newer_message,
    no_checkpoint,
    used,
)

if TYPE_CHECKING:  # (pathlib imports urllib: this core names paths, never opens them)
    from pathlib import Path

__all__ = ["MAGIC", "Format1", "frame", "parse", "segment_format"]

MAGIC = b"BzRw"
_HEAD = struct.Struct("<4sII")  # magic, payload length, crc32(length + payload)
_LEN = struct.Struct("<I")


def frame(payload: bytes) -> bytes:
    """A format-1 record (the snapshot's file)."""
    length = _LEN.pack(len(payload))
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload, zlib.crc32(length))) + payload


def parse(data: bytes, at: int) -> tuple[bytes, int] | None:
    """The payload of a valid format-1 record at ``at`` and the offset after it; None if
    not valid."""
    if at + _HEAD.size > len(data):
        return None
    magic, length, crc = _HEAD.unpack_from(data, at)
    end = at + _HEAD.size + length
    if magic != MAGIC or end > len(data):
        return None
    payload = data[at + _HEAD.size:end]
    if zlib.crc32(payload, zlib.crc32(_LEN.pack(length))) != crc:
        return None
    return payload, end


class Format1:
    """A format-1 segment's records, for ``_wal_record.records`` and ``check_tear``."""

    version = 1
    head_bytes = _HEAD.size
    salt = b""  # (none in format 1)

    def parse(self, data: bytes, at: int) -> tuple[bytes, int] | None:
        return parse(data, at)

    def later_record(self, data: bytes, offset: int) -> int | None:
        """Where records written after the bad one at ``offset`` start (None: nowhere).
        Format 1 has no salt, so a command's bytes inside a torn record can be a valid
        record: only valid records that run up to the zeros at the end count, as synced
        records do (a frame inside a torn record is followed by the rest of that record,
        not by zeros)."""
        at = data.find(MAGIC, offset + 1)
        while at >= 0:
            end, valid = at, 0
            while (parsed := parse(data, end)) is not None:
                end = parsed[1]
                valid += 1
            if valid and used(data) <= end:
                return at
            at = data.find(MAGIC, at + 1)
        return None


def segment_format(path: Path, data: bytes) -> Framing:
    """The format of the segment at ``path`` holding ``data``, from its first record.

    Raises:
        StorageError: the segment does not start with a record (damage: it was written with
            its checkpoint and synced before it was named; read as a blank log, it would let
            a voter vote twice in a term), or of a format this version does not read.
    """
    if not data:
        raise StorageError(no_checkpoint(path, "the file is empty"))
    if not any(data[:Salted.head_bytes]):
        what = "the file is all zeros" if not any(data) else "its first record is zeros"
        raise StorageError(no_checkpoint(path, what))
    if data[:len(MAGIC_2)] == MAGIC_2:
        return Salted(data[len(MAGIC_2):len(MAGIC_2) + SALT_BYTES])
    if data[:len(MAGIC)] == MAGIC:
        return Format1()
    if (newer := newer_format(data)) is not None:
        raise StorageError(newer_message(f"raft log {path}", newer))
    raise StorageError(no_checkpoint(path, "its first record is corrupt, or of a format this "
                                           "version does not read"))
