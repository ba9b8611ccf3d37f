"""The write-ahead log's file primitives: whole reads and writes at an offset, a record
written streamed in pieces, zero fill, directory syncs. Does I/O."""

from __future__ import annotations

import errno
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import StorageError
from ._wal_record import HEAD_BYTES, MAX_RECORD, head

__all__ = ["read_all", "sync_dir", "write_all", "write_record", "zero_fill"]

_CHUNK = 1 << 20  # a checkpoint is written in pieces of about this size


def read_all(fd: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes | memoryview, at: int) -> None:
    """Write all of ``data`` at offset ``at``. A regular file's write can be short without
    an error (ENOSPC on copy-on-write file systems, quotas, RLIMIT_FSIZE, FUSE, NFS): the
    rest is written again, and what fails then raises.

    Raises:
        OSError: a write failed or wrote nothing.
    """
    view = memoryview(data)
    done = 0
    while done < len(view):
        written = os.pwrite(fd, view[done:], at + done)
        if written <= 0:
            raise OSError(errno.EIO, f"a write at offset {at + done} wrote nothing "
                          f"({len(view) - done} bytes left)")
        done += written


def zero_fill(fd: int, start: int, end: int) -> None:
    """Write zeros over ``start .. end`` (real blocks: a later sync converts no extents)."""
    chunk = bytes(1 << 20)
    at = start
    while at < end:
        length = min(len(chunk), end - at)
        write_all(fd, memoryview(chunk)[:length], at)
        at += length


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``pieces`` joined into chunks of at least ``_CHUNK`` bytes (but the last)."""
    chunk: list[bytes] = []
    held = 0
    for piece in pieces:
        chunk.append(piece)
        held += len(piece)
        if held >= _CHUNK:
            yield b"".join(chunk)  # (one piece: itself, not a copy)
            chunk, held = [], 0
    if chunk:
        yield b"".join(chunk)


def write_record(fd: int, at: int, salt: bytes, pieces: Iterable[bytes]) -> int:
    """Write a record whose payload is ``pieces`` joined, at ``at`` (the payload in chunks of
    about ``_CHUNK``, then the header); the offset after it.

    Raises:
        OSError: a write failed.
        StorageError: the record would be over 2 GiB.
    """
    position = at + HEAD_BYTES
    crc = 0
    for chunk in _chunks(pieces):
        write_all(fd, chunk, position)
        crc = zlib.crc32(chunk, crc)
        position += len(chunk)
    length = position - at - HEAD_BYTES
    if length >= MAX_RECORD:
        raise StorageError("raft log: a record over 2 GiB")
    write_all(fd, head(salt, length, crc), at)
    return position
