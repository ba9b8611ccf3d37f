"""Failure modes of the Raft write-ahead log (``_wal``) over real files, found by a review
(review18): a short write, a write refused for a gap, a segment without its checkpoint, and
corruption of synced records behind a torn tail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bzzz_edge.consensus import Entry, EntryKind, Persist
from bzzz_edge.consensus._wal import RaftWal
from bzzz_edge.errors import StorageError

from .conftest import node_id
from .test_wal import _reopened

SMALL = 64 * 1024
ROOT = Path(__file__).resolve().parents[2]


def _entry(index: int, data: bytes = b"", term: int = 1) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, data or b"command %d" % index)


def _segment(directory: Path) -> Path:
    (only,) = sorted(directory.glob("*.wal"))
    return only


def _append(wal: RaftWal, persist: Persist) -> None:
    with wal.lock:
        wal.append([persist])


# A process that appends entry 1, then (with RLIMIT_FSIZE set inside the second record's span:
# the kernel writes only part of it and returns the short count, no error; the next write
# fails with EFBIG, as Python ignores SIGXFSZ) entry 2, and prints what ``append`` did; then,
# with the limit lifted, entry 3 (after a failed write the log must not write after a hole).
# A short write on a regular file also comes with ENOSPC on copy-on-write file systems (btrfs,
# ZFS: overwriting preallocated blocks allocates), quotas, FUSE, NFS.
_SHORT_WRITER = """
import resource, sys
from pathlib import Path
from bzzz_edge.consensus import Entry, EntryKind, Persist
from bzzz_edge.consensus._messages import Snapshot
from bzzz_edge.consensus._wal import RaftWal
from bzzz_edge.consensus import Configuration
wal = RaftWal(Path(sys.argv[1]), segment_bytes=64 * 1024)
with wal.lock:
    wal.append([Persist(1, None, (Entry(1, 1, EntryKind.COMMAND, b"one" * 100),))])
what = sys.argv[2]
if what == "record":
    limit = wal._offset + 100  # inside the next record (about 1 KiB long)
    persist = Persist(1, None, (Entry(1, 2, EntryKind.COMMAND, b"two" * 300),))
elif what == "roll":  # a record over the segment's room: the next segment, cut short
    limit = 100
    persist = Persist(1, None, (Entry(1, 2, EntryKind.COMMAND, b"two" * 30_000),))
else:  # a snapshot (stored before its record): cut short inside the snapshot's file
    limit = 100
    config = Configuration(frozenset({bytes(32)}))
    persist = Persist(1, None, (), snapshot=Snapshot(1, 1, config, b"state" * 1000))
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
for attempt in (persist, Persist(1, None, (Entry(1, 2, EntryKind.COMMAND, b"three"),))):
    try:
        with wal.lock:
            wal.append([attempt])
    except Exception as exc:
        print("refused", type(exc).__name__, exc, flush=True)
    else:
        print("acknowledged", flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
"""


@pytest.mark.parametrize("what", ["record", "roll", "snapshot"])
def test_a_short_write_is_never_acknowledged(tmp_path: Path, what: str) -> None:
    """review18 W1: ``os.pwrite``'s count was not checked; a record cut short was
    acknowledged after its sync and truncated as a torn tail on reopening (an acknowledged
    entry lost), a snapshot cut short was renamed into place, and a segment cut short
    could be (its sync succeeding)."""
    directory = tmp_path / "w"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _SHORT_WRITER, str(directory), what],
                          capture_output=True, text=True, env=env, timeout=60, check=True)
    first, second = done.stdout.splitlines()
    assert first.startswith("refused StorageError") and str(directory) in first, first
    assert {"record": "writing a record", "roll": "rolling into segment",
            "snapshot": "storing a snapshot"}[what] in first, first
    # Refused again once the disk has room: nothing is written after what may be a hole.
    assert second.startswith("refused StorageError") and "earlier failure" in second, second
    assert _reopened(directory) == [1]
    assert not (directory / "snapshot").exists()  # the one cut short never took its name
    assert not list(directory.glob("*.tmp"))
    # Reopened, the log takes writes again, where the torn record was.
    wal = RaftWal(directory, segment_bytes=SMALL)
    _append(wal, Persist(1, None, (_entry(2),)))
    wal.close()
    assert _reopened(directory) == [1, 2]


@pytest.mark.parametrize("gap", ["after the last", "before the first", "after a truncation",
                                 "after a compaction"])
def test_a_write_refused_for_a_gap_writes_nothing_and_leaves_the_log_openable(tmp_path, gap):
    """review18 W2: a Persist that leaves a gap was written and synced before the state
    refused it: every later open then refused the log. Refused now before anything is
    written (as ``DurableState``, the reference model, stores nothing)."""
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=SMALL)
    _append(wal, Persist(1, node_id(1), tuple(_entry(i) for i in range(3, 6))))
    before = _segment(directory).read_bytes()
    offset = wal._offset
    refused = {
        "after the last": [Persist(1, node_id(1), (_entry(7),))],
        "before the first": [Persist(1, node_id(1), (_entry(1),))],
        # (entries 3..4 left: 6 is a gap; 5 would not be)
        "after a truncation": [Persist(1, None, (), truncate_from=5),
                               Persist(1, None, (_entry(6),))],
        # (entry 5 left: 4 is below it, 7 a gap)
        "after a compaction": [Persist(1, None, (), compact_through=4),
                               Persist(2, None, (_entry(7),))],
    }[gap]
    with pytest.raises(StorageError, match="gap"), wal.lock:  # (a bug in the core, say)
        wal.append(refused)
    assert _segment(directory).read_bytes() == before and wal._offset == offset
    assert [e.index for e in wal.stored().entries] == [3, 4, 5]
    _append(wal, Persist(2, node_id(2), (_entry(6, term=2),)))  # not broken: it goes on
    wal.close()
    reopened = RaftWal(directory, segment_bytes=SMALL)
    try:
        stored = reopened.stored()
        assert [e.index for e in stored.entries] == [3, 4, 5, 6]
        assert (stored.term, stored.vote) == (2, node_id(2))
    finally:
        reopened.close()


@pytest.mark.parametrize("how", ["zeroed", "emptied", "no reset step"])
def test_a_segment_without_its_checkpoint_is_refused(tmp_path: Path, how: str) -> None:
    """review18 W3: a segment without its checkpoint opened as a blank log (term 0, no
    vote), so a voter could vote twice in a term. A segment starts with a checkpoint,
    synced before the file was named: without it, the file was damaged, and opening refuses
    (naming the file, what is wrong, and what the operator can do)."""
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=SMALL)
    _append(wal, Persist(7, node_id(2), tuple(_entry(i, term=7) for i in range(1, 4))))
    wal.close()
    segment = _segment(directory)
    data = segment.read_bytes()
    if how == "zeroed":
        damaged = bytes(len(data))
    elif how == "emptied":
        damaged = b""
    else:  # a valid record first, but not a checkpoint (another log's second record)
        wal = RaftWal(tmp_path / "v", segment_bytes=SMALL)
        start = wal._offset
        _append(wal, Persist(7, node_id(2), (_entry(1, term=7),)))
        end = wal._offset
        wal.close()
        record = _segment(tmp_path / "v").read_bytes()[start:end]
        damaged = record + bytes(len(data) - len(record))
    segment.write_bytes(damaged)
    with pytest.raises(StorageError, match=r"checkpoint.*refusing to start.*restore") as raised:
        RaftWal(directory, segment_bytes=SMALL).close()
    assert str(segment) in str(raised.value)
    assert segment.read_bytes() == damaged  # left as it was, for the operator


def test_corruption_before_synced_records_is_refused_even_with_a_torn_tail(tmp_path: Path):
    """review18 W4: bit rot in a synced record, then records synced after it, then the
    crash's torn write: the valid records after the bad one did not run up to the zeros, so
    the bad record and every acknowledged one after it were zeroed with a warning. A record
    of the segment (its salt) after the bad one now proves it was synced."""
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=SMALL)
    ends = []
    for i in range(1, 7):
        _append(wal, Persist(1, node_id(1), (_entry(i, b"payload %d" % i * 30),)))
        ends.append(wal._offset)
    wal.close()
    data = bytearray(_segment(directory).read_bytes())
    data[ends[1] + 24] ^= 0x55  # bit rot in record 3 (synced, acknowledged long ago)
    torn = ends[4] + (ends[5] - ends[4]) // 2
    data[torn:ends[5]] = bytes(ends[5] - torn)  # record 6: the crash's torn write
    _segment(directory).write_bytes(bytes(data))
    # Records 4 and 5 were synced after the bad one: opening must refuse, not drop 3..5.
    with pytest.raises(StorageError, match=f"offset {ends[1]}.*refusing to start"):
        RaftWal(directory, segment_bytes=SMALL).close()
    assert _segment(directory).read_bytes() == bytes(data)


def test_corruption_before_a_torn_write_whose_header_never_reached_the_disk_is_refused(
        tmp_path: Path) -> None:
    """review19 W1: bit rot in the last synced record, then the crash's write torn so that
    its first sector (its header) never reached the disk but later ones did: no later header
    to find, so the acknowledged record was zeroed as a tail. A torn write never reaches past
    its own extent: bytes after the bad record's extent prove it was synced."""
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=SMALL)
    ends = []
    for i, size in ((1, 100), (2, 100), (3, 9000)):  # the last spans several sectors
        _append(wal, Persist(1, node_id(1), (_entry(i, bytes([i]) * size),)))
        ends.append(wal._offset)
    wal.close()
    data = bytearray(_segment(directory).read_bytes())
    data[ends[1] - 10] ^= 0x55  # bit rot in record 2 (synced, acknowledged)
    data[ends[1]:ends[1] + 4096] = bytes(4096)  # record 3 torn: its first sector lost
    _segment(directory).write_bytes(bytes(data))
    with pytest.raises(StorageError, match=f"offset {ends[0]}.*refusing to start"):
        RaftWal(directory, segment_bytes=SMALL).close()
    assert _segment(directory).read_bytes() == bytes(data)


def test_a_torn_record_alone_is_still_a_tail(tmp_path: Path) -> None:
    """The other side of the rule above: the crash's write torn (its header written, its
    end not) with nothing after it opens, the torn record zeroed, the synced ones kept."""
    directory = tmp_path / "w"
    wal = RaftWal(directory, segment_bytes=SMALL)
    ends = []
    for i, size in ((1, 100), (2, 9000)):
        _append(wal, Persist(1, node_id(1), (_entry(i, bytes([i]) * size),)))
        ends.append(wal._offset)
    wal.close()
    data = bytearray(_segment(directory).read_bytes())
    data[ends[1] - 4096:ends[1]] = bytes(4096)  # record 2's last sectors never written
    _segment(directory).write_bytes(bytes(data))
    reopened = RaftWal(directory, segment_bytes=SMALL)
    try:
        assert reopened._offset == ends[0]
    finally:
        reopened.close()


def test_the_check_before_a_write_refuses_exactly_what_replaying_it_would() -> None:
    """W2's check simulates the steps against the log's first and last index: it must
    refuse what applying them refuses, and nothing else (random logs and steps, seeded)."""
    import random

    from bzzz_edge.consensus._wal_steps import WalState as _State
    from bzzz_edge.consensus._wal_steps import steps_of

    rng = random.Random(18)
    for case in range(3000):
        state = _State()
        start = rng.randint(1, 6)
        for index in range(start, start + rng.randint(0, 6)):
            state._put(_entry(index))
        actions = []
        for _ in range(rng.randint(1, 3)):
            kind = rng.choice(["entries", "truncate", "compact"])
            if kind == "entries":
                first = rng.randint(0, 14)
                entries = tuple(_entry(i) for i in range(first, first + rng.randint(1, 3)))
                actions.append(Persist(1, None, entries))
            elif kind == "truncate":
                actions.append(Persist(1, None, (), truncate_from=rng.randint(0, 14)))
            else:
                actions.append(Persist(1, None, (), compact_through=rng.randint(0, 14)))
        steps = steps_of(actions)
        decoded = [e for p in actions for e in p.entries]
        try:
            state.check(steps, decoded)
            checked = None
        except ValueError as exc:
            checked = exc
        try:
            state.apply_steps(steps, decoded)
            applied = None
        except ValueError as exc:
            applied = exc
        assert (checked is None) == (applied is None), (case, actions, checked, applied)
