"""The Raft write-ahead log (``_wal``) over real files: what a crash can leave is recovered
without losing anything that was synced (so acknowledged), and garbage is truncated with a
log line or refused; segments roll by checkpoint; LMDB logs of earlier versions migrate."""

from __future__ import annotations

import logging
from pathlib import Path

import msgpack
import pytest
import trio

from bzzz_edge.consensus import Configuration, DurableState, Entry, EntryKind, Persist
from bzzz_edge.consensus._messages import Snapshot, _encode_entry
from bzzz_edge.consensus._wal import RaftWal
from bzzz_edge.consensus._wal_record import MAGIC, frame
from bzzz_edge.consensus.storage import DATABASES, RaftStore, lmdb_key
from bzzz_edge.errors import StorageError
from bzzz_edge.store import Store

from .conftest import node_id

SMALL = 64 * 1024  # segment bytes: rolls come soon, reopening is cheap


def _entry(index: int, data: bytes = b"", term: int = 1) -> Entry:
    return Entry(term, index, EntryKind.COMMAND, data or b"command %d" % index)


def _segment(directory: Path) -> Path:
    (only,) = sorted(directory.glob("*.wal"))
    return only


def _written(directory: Path, count: int) -> tuple[list[int], bytes]:
    """``count`` appends of one entry each; the offsets where each record ends, and the
    segment's bytes."""
    wal = RaftWal(directory, segment_bytes=SMALL)
    ends = []
    for i in range(1, count + 1):
        with wal.lock:
            wal.append([Persist(1, node_id(1), (_entry(i),))])
        ends.append(wal._offset)
    wal.close()
    return ends, _segment(directory).read_bytes()


def _reopened(directory: Path) -> list[int]:
    wal = RaftWal(directory, segment_bytes=SMALL)
    try:
        return [e.index for e in wal.stored().entries]
    finally:
        wal.close()


@pytest.mark.parametrize("how", ["file cut short", "zeros after the cut"])
def test_a_record_cut_at_any_byte_loses_only_itself(tmp_path: Path, how: str, caplog) -> None:
    ends, data = _written(tmp_path / "w", 6)
    segment = _segment(tmp_path / "w")
    for cut in range(ends[2], ends[5] + 1):  # every offset of the last three records
        segment.write_bytes(data[:cut] if how == "file cut short"
                            else data[:cut] + bytes(len(data) - cut))
        complete = sum(1 for end in ends if end <= cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert _reopened(tmp_path / "w") == list(range(1, complete + 1)), cut
        torn = cut not in ends
        assert any("torn or corrupt record" in r.getMessage() for r in caplog.records) == torn
        # Recovered for good: the next append goes where the torn one was, and survives.
        wal = RaftWal(tmp_path / "w", segment_bytes=SMALL)
        with wal.lock:
            wal.append([Persist(1, None, (_entry(complete + 1),))])
        wal.close()
        assert _reopened(tmp_path / "w") == list(range(1, complete + 2))
        assert segment.stat().st_size >= SMALL  # preallocated again


def test_a_corrupt_crc_in_the_last_record_is_truncated_with_a_log_line(tmp_path, caplog):
    ends, data = _written(tmp_path / "w", 4)
    broken = bytearray(data)
    broken[ends[2] + 17] ^= 0xFF  # the last record's CRC
    _segment(tmp_path / "w").write_bytes(bytes(broken))
    with caplog.at_level(logging.WARNING):
        assert _reopened(tmp_path / "w") == [1, 2, 3]
    assert any(f"at offset {ends[2]}" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("where", ["crc", "payload", "length", "salt", "magic"])
def test_corruption_before_synced_records_is_refused(tmp_path: Path, where: str) -> None:
    ends, data = _written(tmp_path / "w", 4)
    at = ends[1] + {"magic": 0, "salt": 6, "length": 13, "crc": 17, "payload": 24}[where]
    broken = bytearray(data)
    broken[at] ^= 0x55
    _segment(tmp_path / "w").write_bytes(bytes(broken))
    with pytest.raises(StorageError, match=r"written after it follows.*refusing to start"):
        RaftWal(tmp_path / "w", segment_bytes=SMALL)
    assert _segment(tmp_path / "w").read_bytes() == bytes(broken)  # nothing changed


def test_a_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    """The first record was synced before the segment was named: never a torn write."""
    _, data = _written(tmp_path / "w", 2)
    broken = bytearray(data)
    broken[20] ^= 0x01
    _segment(tmp_path / "w").write_bytes(bytes(broken))
    with pytest.raises(StorageError, match="checkpoint"):
        RaftWal(tmp_path / "w", segment_bytes=SMALL)


def test_a_frame_inside_a_torn_records_data_does_not_pass_for_synced_records(tmp_path):
    """A command's bytes may be records (a peer can propose anything), of any salt but the
    segment's (unknown to a peer): inside the torn tail they do not pass for records written
    after it, so it is truncated."""
    directory = tmp_path / "w"
    ends, _ = _written(directory, 2)
    payload = msgpack.packb([[3, _encode_entry(_entry(99))]])
    inner = frame(payload, bytes(8)) + frame(payload, b"a salt!!") * 3
    wal = RaftWal(directory, segment_bytes=SMALL)
    with wal.lock:
        wal.append([Persist(1, None, (_entry(3, b"x" * 40 + inner),))])
    end = wal._offset
    wal.close()
    data = _segment(directory).read_bytes()
    assert data.find(MAGIC, ends[1] + 1) < end
    torn = bytearray(data)
    torn[ends[1] + 20] ^= 0xFF  # the record with the frame inside fails its CRC
    _segment(directory).write_bytes(bytes(torn))
    assert _reopened(directory) == [1, 2]


def test_segments_roll_by_checkpoint_and_keep_the_reference_models_state(tmp_path):
    """Appends, truncations, compactions and snapshots over many rolls: the log and its
    reopening hold what the reference model holds, in one segment."""
    model = DurableState()
    wal = RaftWal(tmp_path / "w", segment_bytes=SMALL)
    config = Configuration(frozenset({node_id(1)}))
    index = 0
    for round_ in range(60):
        batch = [Persist(round_ + 1, node_id(round_ % 3),
                         tuple(_entry(index + k, b"d" * 300, round_ + 1) for k in range(1, 11)))]
        index += 10
        if round_ % 7 == 6:
            index -= 4
            batch.append(Persist(round_ + 1, None, (), truncate_from=index + 1))
        if round_ % 11 == 10:
            snap = Snapshot(index - 2, round_ + 1, config, b"state %d" % index)
            batch.append(Persist(round_ + 1, None, (), compact_through=index - 20, snapshot=snap))
        for p in batch:
            model.apply(p)
        with wal.lock:
            wal.append(batch)
        assert wal.stored().entries == model.stored().entries
    assert wal._seq > 2  # it rolled, twice
    wal.close()
    reopened = RaftWal(tmp_path / "w", segment_bytes=SMALL)
    assert reopened.stored() == model.stored()
    reopened.close()
    assert len(list((tmp_path / "w").glob("*.wal"))) == 1


def test_a_crash_between_a_snapshot_and_its_record_keeps_only_a_log_that_continues_it(tmp_path):
    """The snapshot is renamed into place before the record marking it is written: a log
    that does not continue it (installed from a leader over a diverged log) is dropped."""
    config = Configuration(frozenset({node_id(1)}))
    wal = RaftWal(tmp_path / "w", segment_bytes=SMALL)
    with wal.lock:
        wal.append([Persist(1, None, tuple(_entry(i) for i in range(1, 11)))])
        wal._write_snapshot(Snapshot(8, 2, config, b"s"))  # term 2 at 8: ours says term 1
    wal.close()
    stored = RaftWal(tmp_path / "w", segment_bytes=SMALL).stored()
    assert stored.snapshot is not None and stored.snapshot.index == 8
    assert [e.index for e in stored.entries] == list(range(1, 9))  # the core skips these
    # The same snapshot with the term our entry 8 has: the log continues it and is kept.
    wal = RaftWal(tmp_path / "v", segment_bytes=SMALL)
    with wal.lock:
        wal.append([Persist(1, None, tuple(_entry(i) for i in range(1, 11)))])
        wal._write_snapshot(Snapshot(8, 1, config, b"s"))
    wal.close()
    assert len(RaftWal(tmp_path / "v", segment_bytes=SMALL).stored().entries) == 10


def test_an_lmdb_raft_log_of_an_earlier_version_is_migrated(tmp_path: Path, caplog) -> None:
    store = Store(tmp_path / "store", map_size=2**24, databases=DATABASES)
    try:
        config = Configuration(frozenset({node_id(1)}))
        snapshot = Snapshot(3, 2, config, b"machine")
        entries = [_entry(i, term=2) for i in range(2, 9)]
        meta, log_db = store.db("raft"), store.db("raft_log")

        def old_layout(txn) -> None:
            txn.put(b"hard", msgpack.packb([5, node_id(2)], use_bin_type=True), db=meta)
            txn.put(b"snapshot", msgpack.packb([3, 2, config.encode(), b"machine"],
                                               use_bin_type=True), db=meta)
            for e in entries:
                txn.put(lmdb_key(e.index), msgpack.packb(_encode_entry(e), use_bin_type=True),
                        db=log_db)

        store.writer.write_sync(old_layout)
        raft = RaftStore(store)
        with caplog.at_level(logging.INFO):
            stored = raft.load()
        assert (stored.term, stored.vote, stored.snapshot) == (5, node_id(2), snapshot)
        assert stored.entries == tuple(entries)
        assert any("moved 7 entries and a snapshot" in r.getMessage() for r in caplog.records)
        with store.reading() as txn:  # the old records are gone
            assert txn.get(b"hard", db=meta) is None and not txn.cursor(db=log_db).first()

        async def more() -> None:
            await raft.persist([Persist(6, None, (_entry(9, term=6),))])

        trio.run(more)
        raft.close()
        again = RaftStore(store).load()
        assert (again.term, again.snapshot) == (6, snapshot)
        assert again.entries == (*entries, _entry(9, term=6))
    finally:
        store.close()


_WRITER = """
import sys
from pathlib import Path
from bzzz_edge.consensus import Entry, EntryKind, Persist
from bzzz_edge.consensus._wal import RaftWal
wal = RaftWal(Path(sys.argv[1]), segment_bytes=16 * 1024)
index = wal.last_index
while True:
    index += 1
    entry = Entry(1, index, EntryKind.COMMAND, b"%d" % index * 20)
    with wal.lock:
        wal.append([Persist(index, None, (entry,))])
    print(index, flush=True)  # acknowledged: durable
"""


@pytest.mark.parametrize("after", [40, 333, 1200])
def test_kill9_mid_stream_loses_nothing_acknowledged(tmp_path: Path, after: int) -> None:
    """A real process appending (and rolling a small segment every few dozen records) is
    killed -9 mid-stream, twice: every index it printed after its sync is there, in order."""
    import os
    import signal
    import subprocess
    import sys

    directory = tmp_path / "w"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    acked = 0
    for _ in range(2):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(directory)],
                                  stdout=subprocess.PIPE, text=True, env=env)
        assert writer.stdout is not None
        first = None
        for line in writer.stdout:
            first = first or int(line)
            acked = int(line)
            if acked - first >= after:
                break
        writer.send_signal(signal.SIGKILL)
        rest = writer.stdout.read().split()
        acked = int(rest[-1]) if rest else acked
        assert writer.wait() == -signal.SIGKILL
        indexes = _reopened(directory)
        assert indexes[:acked] == list(range(1, acked + 1))  # everything acknowledged
        assert len(indexes) <= acked + 1  # at most the one it wrote but did not print


def test_a_checkpoint_of_written_entries_is_the_bytes_of_one_of_replayed_entries() -> None:
    """A write keeps each entry's checkpoint step packed, a replay does not: over random
    appends, overwrites, truncations and compactions (seeded), both states checkpoint to the
    same bytes, so a roll writes what it wrote when it encoded the whole log again."""
    import random

    from bzzz_edge.consensus._wal_steps import WalState, pack, steps_of

    rng = random.Random(19)
    written, replayed = WalState(), WalState()
    for _ in range(400):
        last = written.last if written.entries else 0
        kind = rng.choice(["entries", "entries", "overwrite", "truncate", "compact"])
        if kind == "entries" or not written.entries:
            first = last + 1
        elif kind == "overwrite":
            first = rng.randint(written.first, last)
        if kind in ("entries", "overwrite") or not written.entries:
            term = rng.randint(1, 9)
            action = Persist(term, None, tuple(_entry(i, bytes([term]) * rng.randint(0, 300),
                                                      term)
                                               for i in range(first, first + rng.randint(1, 5))))
        elif kind == "truncate":
            action = Persist(1, None, (), truncate_from=rng.randint(written.first, last + 1))
        else:
            action = Persist(1, None, (), compact_through=rng.randint(written.first - 1, last))
        steps = steps_of([action])
        written.apply_steps(steps, action.entries)
        replayed.apply_steps(msgpack.unpackb(pack(steps)), None)
        assert b"".join(written.checkpoint()) == b"".join(replayed.checkpoint())
        assert written.packed.keys() <= written.entries.keys()  # (nothing dropped is held)
    assert written.packed and not replayed.packed  # (both ways were taken)
    assert written.ordered() == replayed.ordered()
