"""The write-ahead log's file primitives: whole reads and writes at an offset, zero fill,
directory syncs. Does I/O."""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["read_all", "sync_dir", "used", "write_all", "zero_fill"]


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


def used(data: bytes) -> int:
    """The offset after the last byte that is not zero (a segment is preallocated with
    zeros: where what was written ends)."""
    return len(data.rstrip(b"\0"))
