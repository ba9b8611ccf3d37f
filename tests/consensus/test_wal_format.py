"""The Raft write-ahead log's on-disk formats: a log written by format 1 (``BzRw``, main
5a02428, deployed) opens with what that version read from it and is rewritten as format 2
(salted records); a segment's salt keeps any command's bytes from passing for its records."""

from __future__ import annotations

import logging
from pathlib import Path

import msgpack
import pytest

from bzzz_edge.consensus import Configuration, Entry, EntryKind, Persist
from bzzz_edge.consensus._messages import Snapshot, _encode_entry
from bzzz_edge.consensus._wal import RaftWal
from bzzz_edge.consensus._wal_record import MAGIC, frame
from bzzz_edge.errors import StorageError

from . import wal_v1_log as v1
from .conftest import node_id

SMALL = 64 * 1024


def _v1_entry(index: int, term: int) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, b"v1 command %d " % index * 20)


_V1_ENTRIES = tuple(_v1_entry(i, 1 if i < 38 else 2 if i < 40 else 3) for i in range(21, 51))
_V1_SNAPSHOT = Snapshot(25, 1, Configuration(frozenset({node_id(1)})), b"machine at 25")


def _v1_log(directory: Path, segment: bytes = v1.SEGMENT) -> Path:
    """The format-1 log, as that version left it (its segment preallocated with zeros)."""
    directory.mkdir(mode=0o700)
    (directory / "snapshot").write_bytes(v1.SNAPSHOT)
    path = directory / v1.SEGMENT_NAME
    path.write_bytes(segment + bytes(16 * 1024 - len(segment)))
    return path


def test_a_format_1_log_opens_as_it_was_and_is_rewritten_as_format_2(tmp_path, caplog) -> None:
    directory = tmp_path / "w"
    old = _v1_log(directory)
    with caplog.at_level(logging.INFO):
        wal = RaftWal(directory, segment_bytes=SMALL)
    stored = wal.stored()
    assert (stored.term, stored.vote, stored.snapshot) == (3, node_id(3), _V1_SNAPSHOT)
    assert stored.entries == _V1_ENTRIES
    assert any("rewritten from format 1" in r.getMessage() for r in caplog.records)
    (segment,) = directory.glob("*.wal")
    assert segment != old and segment.read_bytes()[:4] == MAGIC  # format 1 is gone
    with wal.lock:
        wal.append([Persist(4, None, (_v1_entry(51, 4),))])
    wal.close()
    again = RaftWal(directory, segment_bytes=SMALL)
    try:
        stored = again.stored()
        assert (stored.term, stored.vote, stored.snapshot) == (4, None, _V1_SNAPSHOT)
        assert stored.entries == (*_V1_ENTRIES, _v1_entry(51, 4))
    finally:
        again.close()


@pytest.mark.parametrize("cut", [1, 7, 12, 40, -1])
def test_a_format_1_log_with_a_torn_last_record_loses_only_it(tmp_path, caplog, cut) -> None:
    """Format 1's rule for a torn tail holds while it is read: its last record (entry 50),
    cut anywhere, is zeroed with a warning; everything before it is there."""
    directory = tmp_path / "w"
    at = v1.LAST_RECORD_AT + (cut if cut > 0 else len(v1.SEGMENT) - v1.LAST_RECORD_AT + cut)
    _v1_log(directory, v1.SEGMENT[:at])
    with caplog.at_level(logging.WARNING):
        wal = RaftWal(directory, segment_bytes=SMALL)
    try:
        assert wal.stored().entries == _V1_ENTRIES[:-1]
        assert wal.stored().term == 3
    finally:
        wal.close()
    assert any(f"torn or corrupt record at offset {v1.LAST_RECORD_AT}" in r.getMessage()
               for r in caplog.records)


def test_a_format_1_log_with_corruption_before_synced_records_is_refused(tmp_path) -> None:
    directory = tmp_path / "w"
    broken = bytearray(v1.SEGMENT)
    broken[v1.LAST_RECORD_AT - 300] ^= 0x55  # inside entry 49's record (entry 50's follows)
    segment = _v1_log(directory, bytes(broken))
    before = segment.read_bytes()
    with pytest.raises(StorageError, match=r"written after it follows.*refusing"):
        RaftWal(directory, segment_bytes=SMALL)
    assert segment.read_bytes() == before and len(list(directory.glob("*.wal"))) == 1


def test_fake_headers_in_a_torn_command_are_truncated_with_it(tmp_path: Path) -> None:
    """review18 W5: a command full of fake headers (a peer's; any salt but the segment's),
    in the torn last record: truncated like any torn tail, and none of them is parsed (they
    do not carry the segment's salt)."""
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=4 * 1024 * 1024)
    with wal.lock:
        wal.append([Persist(1, None, (Entry(1, 1, EntryKind.COMMAND, b"one"),))])
    start = wal._offset
    fake = frame(msgpack.packb([[3, _encode_entry(Entry(1, 9, EntryKind.COMMAND, b"x"))]]),
                 bytes(8))
    with wal.lock:
        wal.append([Persist(1, None, (Entry(1, 2, EntryKind.COMMAND, fake * 20_000),))])
    end = wal._offset
    wal.close()
    (segment,) = directory.glob("*.wal")
    data = bytearray(segment.read_bytes())
    data[start + 30] ^= 0xFF  # the record fails its CRC: torn
    segment.write_bytes(bytes(data))
    assert data.count(MAGIC, start + 1, end) >= 20_000
    reopened = RaftWal(directory, segment_bytes=4 * 1024 * 1024)
    try:
        assert [e.index for e in reopened.stored().entries] == [1]
    finally:
        reopened.close()


def test_a_checkpoint_written_in_pieces_rebuilds_the_log(tmp_path: Path) -> None:
    """review18 W6: a roll wrote its checkpoint as one bytes object (a copy of the live log,
    twice) into a segment twice its size. It is streamed in pieces of about 1 MiB now (here
    over several), and the segment holds the body and as much again (``segment_bytes`` when
    that is more)."""
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=SMALL)
    entries = [Entry(2, i, EntryKind.COMMAND, bytes([i]) * 300_000) for i in range(1, 12)]
    for entry in entries:
        with wal.lock:
            wal.append([Persist(2, node_id(4), (entry,))])  # each rolls (over SMALL)
    with wal.lock:
        wal.append([Persist(2, node_id(4), (), compact_through=1)])
        wal._roll([])
    body = wal._offset
    wal.close()
    (segment,) = directory.glob("*.wal")
    assert body > 2 * 2**20 and segment.stat().st_size == body + max(body, SMALL)
    reopened = RaftWal(directory, segment_bytes=SMALL)
    try:
        stored = reopened.stored()
        assert stored.entries == tuple(entries[1:])
        assert (stored.term, stored.vote) == (2, node_id(4))
    finally:
        reopened.close()


@pytest.mark.parametrize("version", [3, 9])
def test_a_segment_of_a_newer_format_is_refused_as_such(tmp_path: Path, version: int) -> None:
    """A segment whose records carry a later format's marker (``BzR`` and its digit) was
    written by a newer bzzz-edge: refused, saying so and naming the file, not taken for a
    corrupt checkpoint, and left as it was."""
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=SMALL)
    with wal.lock:
        wal.append([Persist(1, node_id(1), (Entry(1, 1, EntryKind.COMMAND, b"one"),))])
    wal.close()
    (segment,) = directory.glob("*.wal")
    data = bytearray(segment.read_bytes())
    marker = b"BzR%d" % version
    data[:4] = marker  # (a newer header's other fields are whatever that version puts there)
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageError) as refused:
        RaftWal(directory, segment_bytes=SMALL)
    message = str(refused.value)
    assert str(segment) in message
    assert f"written by a newer bzzz-edge (format {version})" in message
    assert "this version reads formats 1-2: upgrade, or restore" in message
    assert "checkpoint" not in message and "corrupt" not in message
    assert segment.read_bytes() == bytes(data)  # nothing zeroed or rolled


def test_a_snapshot_file_of_a_newer_format_is_refused_as_such(tmp_path: Path) -> None:
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=SMALL)
    with wal.lock:
        wal.append([Persist(1, None, (), snapshot=_V1_SNAPSHOT)])
    wal.close()
    snapshot = directory / "snapshot"
    newer = b"BzR3" + snapshot.read_bytes()[4:]
    snapshot.write_bytes(newer)
    with pytest.raises(StorageError, match=r"the snapshot .*snapshot: written by a newer "
                                           r"bzzz-edge \(format 3\); this version reads "
                                           r"formats 1-2: upgrade, or restore") as refused:
        RaftWal(directory, segment_bytes=SMALL)
    assert "corrupt" not in str(refused.value)
    assert snapshot.read_bytes() == newer


@pytest.mark.parametrize("marker", [b"BzR0", b"BzRx", b"BzQ3"])
def test_a_marker_of_no_later_format_is_still_a_corrupt_checkpoint(tmp_path: Path,
                                                                    marker: bytes) -> None:
    """Only ``BzR`` and a digit above 2 names a later format: other bytes there are damage."""
    directory = tmp_path / "w"
    RaftWal(directory, segment_bytes=SMALL).close()
    (segment,) = directory.glob("*.wal")
    data = bytearray(segment.read_bytes())
    data[:4] = marker
    segment.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"no checkpoint.*format this version does not read"):
        RaftWal(directory, segment_bytes=SMALL)
