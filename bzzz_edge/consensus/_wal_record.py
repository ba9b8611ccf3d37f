"""The write-ahead log's records in a segment file: format 2's frame (salted headers, CRC),
and scanning a segment's records up to where they stop, with the rule for what may follow.
No I/O (the log writes and reads the bytes, ``_wal`` and ``_wal_files``).

A record (format 2): ``MAGIC`` (``BzR2``), the segment's salt (8 random bytes chosen when the
segment is written), the payload's length (u32), CRC-32 of payload, salt and length (u32),
the payload. The zeros after the last record end the log. Each write is synced before the
next is made, so only the last can be torn, and nothing was written after it: a record that
is cut short or fails its CRC with nothing written after it is a torn tail (``check_tear``
lets it be zeroed); a bad record followed by a header of the segment (its magic and salt), or
by bytes past the extent its own header gives it, is corruption of something that was synced
(refused). The salt is what
makes that test exact: no command's bytes (a peer's, inside a torn record) can pass for a
record of the segment, and the scan computes no CRC for them.

Format markers: format N's is ``BzR`` and the digit N (format 1's, ``BzRw``, came before
the rule, ``_wal_v1``). A file whose marker names a later format was written by a newer
bzzz-edge and is refused as such (``newer_format``), never read as damage.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from ..errors import StorageError

if TYPE_CHECKING:  # (pathlib imports urllib: this core names paths, never opens them)
    from pathlib import Path

__all__ = ["FORMAT", "HEAD_BYTES", "MAGIC", "MAX_RECORD", "SALT_BYTES", "Framing", "Salted",
           "check_tear", "frame", "head", "newer_format", "newer_message", "no_checkpoint",
           "records", "used"]

FORMAT = 2  # the newest format this code reads and writes
_MARKER = b"BzR"  # + the format's digit
MAGIC = b"BzR2"  # a record of format 2 (the version is in every header)
_HEAD = struct.Struct("<4s8sII")  # magic, segment salt, payload length, CRC-32
HEAD_BYTES = _HEAD.size
SALT_BYTES = 8
_LEN = struct.Struct("<I")
MAX_RECORD = 1 << 31


class Framing(Protocol):
    """One format's records in a segment (``Salted``, ``_wal_v1.Format1``; which one a
    segment holds: ``_wal_v1.segment_format``)."""

    @property
    def version(self) -> int: ...

    @property
    def head_bytes(self) -> int: ...

    @property
    def salt(self) -> bytes: ...

    def parse(self, data: bytes, at: int) -> tuple[bytes, int] | None:
        """The payload of a valid record at ``at`` and the offset after it; None if not
        valid."""

    def later_record(self, data: bytes, offset: int) -> int | None:
        """Where a record written after the bad one at ``offset`` lies (None: nowhere)."""


def frame(payload: bytes, salt: bytes) -> bytes:
    """One record of the segment salted ``salt`` as it lies in its file."""
    return head(salt, len(payload), zlib.crc32(payload)) + payload


def head(salt: bytes, length: int, payload_crc: int) -> bytes:
    """A record's header (the CRC runs over the payload first: a checkpoint is written
    before its length is known)."""
    return _HEAD.pack(MAGIC, salt, length, zlib.crc32(salt + _LEN.pack(length), payload_crc))


class Salted:
    """The format-2 records of the segment salted ``salt``."""

    __slots__ = ("salt",)
    version = FORMAT
    head_bytes = HEAD_BYTES

    def __init__(self, salt: bytes) -> None:
        self.salt = salt

    def parse(self, data: bytes, at: int) -> tuple[bytes, int] | None:
        if at + _HEAD.size > len(data):
            return None
        magic, got_salt, length, crc = _HEAD.unpack_from(data, at)
        end = at + _HEAD.size + length
        if magic != MAGIC or got_salt != self.salt or end > len(data):
            return None
        payload = data[at + _HEAD.size:end]
        if zlib.crc32(self.salt + _LEN.pack(length), zlib.crc32(payload)) != crc:
            return None
        return payload, end

    def later_record(self, data: bytes, offset: int) -> int | None:
        """Nothing is written after a torn write, and no command's bytes in it carry the
        salt: any header of the segment after ``offset``, even one failing its CRC, was
        written later. So were bytes past the extent its own intact header gives it (a torn
        write's sectors may reach the disk out of order, the header's lost and later ones
        not; nothing of it lands past its end)."""
        at = data.find(MAGIC + self.salt, offset + 1)
        if at >= 0:
            return at
        if offset + _HEAD.size <= len(data):
            magic, salt, length, _ = _HEAD.unpack_from(data, offset)
            end: int = offset + _HEAD.size + length
            if magic == MAGIC and salt == self.salt and end < used(data):
                return end
        return None


def newer_format(data: bytes) -> int | None:
    """The format a file starting with ``data`` says it is in, if later than this code
    reads (None: not a marker of a later format)."""
    digit = data[len(_MARKER):len(_MARKER) + 1]
    if data[:len(_MARKER)] == _MARKER and digit.isdigit() and int(digit) > FORMAT:
        return int(digit)
    return None


def newer_message(what: str, version: int) -> str:
    return (f"{what}: written by a newer bzzz-edge (format {version}); this version reads "
            f"formats 1-{FORMAT}: upgrade, or restore the data dir from a backup made by this "
            "version (or remove it to rejoin as a new member); refusing to start")


def no_checkpoint(path: Path, what: str) -> str:
    return (f"raft log {path}: no checkpoint ({what}; a segment starts with one, synced "
            "before the file was named, so the file was damaged after it was written); "
            "refusing to start: restore the data dir from a backup, or remove it to rejoin as "
            "a new member")


def records(data: bytes, framing: Framing) -> Iterator[tuple[int, bytes, int]]:
    """The valid records at the start of a segment, in order: their offset, payload and
    the offset after them. Stops at the zeros after the last, or at one that is not valid
    (the caller checks what follows with ``check_tear``)."""
    offset = 0
    while offset + framing.head_bytes <= len(data) and \
            any(data[offset:offset + framing.head_bytes]):
        parsed = framing.parse(data, offset)
        if parsed is None:
            return
        yield offset, *parsed
        offset = parsed[1]


def check_tear(path: Path, data: bytes, offset: int, framing: Framing) -> None:
    """Refuse a segment whose records stop at ``offset`` before the end of what was written,
    unless that is a torn tail (the caller zeros it): a record cut short or failing its CRC
    with no record written after it. The first record (the checkpoint) was synced before
    the segment got its name: never torn.

    Raises:
        StorageError: a synced record is corrupt (going on would lose acknowledged entries).
    """
    if offset == 0:
        raise StorageError(no_checkpoint(path, "its checkpoint is corrupt"))
    later = framing.later_record(data, offset)
    if later is not None:
        raise StorageError(
            f"raft log {path}: the record at offset {offset} is corrupt and what was "
            f"written after it follows (from offset {later}), so it was synced and "
            "acknowledged entries would be lost; refusing to start (restore the data "
            "dir from a backup, or remove it to rejoin as a new member)")


def used(data: bytes) -> int:
    """The offset after the last byte that is not zero (a segment is preallocated with
    zeros: where what was written ends)."""
    return len(data.rstrip(b"\0"))
