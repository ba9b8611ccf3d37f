"""The Raft log's latest snapshot, in the file ``snapshot`` beside the write-ahead log's
segments: one record in the format-1 frame (``_wal_v1``; a whole file, never scanned),
replaced by rename. Does I/O."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgpack

from ..errors import DecodeError, StorageError
from ._messages import Snapshot, decode_configuration
from ._wal_files import sync_dir, write_all
from ._wal_record import newer_format, newer_message
from ._wal_steps import pack
from ._wal_v1 import frame, parse

__all__ = ["SNAPSHOT", "decode_snapshot", "read_snapshot", "write_snapshot"]

SNAPSHOT = "snapshot"  # the file's name


def write_snapshot(directory: Path, snap: Snapshot) -> None:
    """Store ``snap`` in ``directory``, synced, in place of the one there.

    Raises:
        OSError: a write or sync failed (the snapshot there before is still in force).
    """
    final = directory / SNAPSHOT
    temp = final.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, frame(pack([snap.index, snap.term, snap.config.encode(), snap.data])), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            temp.unlink()  # a snapshot cut short is never renamed into place
        raise
    os.close(fd)
    os.rename(temp, final)
    sync_dir(directory)


def read_snapshot(directory: Path) -> Snapshot | None:
    """The snapshot stored in ``directory`` (None: none).

    Raises:
        StorageError: the file is corrupt, does not decode, or is of a later format.
        OSError: it cannot be read.
    """
    path = directory / SNAPSHOT
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    parsed = parse(data, 0)
    if parsed is None or parsed[1] != len(data):
        if (newer := newer_format(data)) is not None:
            raise StorageError(newer_message(f"raft log: the snapshot {path}", newer))
        raise StorageError(f"raft log: the snapshot {path} is corrupt (it was renamed into "
                           "place only once synced); refusing to start")
    try:
        return decode_snapshot(msgpack.unpackb(parsed[0]))
    except (DecodeError, ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StorageError(f"raft log: the snapshot {path} does not decode: {exc}") from None


def decode_snapshot(value: object) -> Snapshot:
    if not isinstance(value, list) or len(value) != 4:
        raise DecodeError("raft store: snapshot is not [index, term, config, data]")
    index, term, config, data = value
    if not isinstance(index, int) or not isinstance(term, int) or not isinstance(data, bytes):
        raise DecodeError("raft store: snapshot fields have the wrong types")
    return Snapshot(index, term, decode_configuration(config, "snapshot.config"), data)
