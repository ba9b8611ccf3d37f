"""Which Raft writes ``RaftStore.write`` makes in the caller's thread (the event loop's) and
which it hands to the log's thread, over a real write-ahead log: entries of ordinary commands
and truncations inline (one record, one sync); a snapshot (with its compaction), many bytes
of entries, or a write behind one handed over, never (a 16 MiB snapshot held the loop
74 ms when it was written inline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bzzz_edge.consensus import Configuration, Entry, EntryKind, Persist
from bzzz_edge.consensus._messages import Snapshot
from bzzz_edge.consensus.storage import DATABASES, RaftStore
from bzzz_edge.store import Store


async def _write(raft: RaftStore, persists: list[Persist]) -> None:
    pending = raft.write(persists)
    if pending is not None:
        await pending.result()


def _entries(first: int, count: int, size: int) -> tuple[Entry, ...]:
    return tuple(Entry(1, i, EntryKind.COMMAND, b"x" * size) for i in range(first, first + count))


def _inline(tmp_path: Path, persists: list[Persist], *, logged: int = 0) -> tuple[int, bool]:
    """How many inline writes writing ``persists`` took, and whether it was handed over; the
    log holds ``logged`` entries before, and recent syncs were quick (as on an idle SSD).
    The log reopened afterwards holds what was written."""
    async def main() -> tuple[int, bool]:
        store = Store(tmp_path / "s", map_size=2**27, databases=DATABASES)
        raft = RaftStore(store)
        try:
            for first in range(1, logged + 1, 512):
                await _write(raft, [Persist(1, None, _entries(first, min(512, logged + 1 - first),
                                                              200))])
            raft._recent_sync = 0.0
            before = raft.inline_writes
            pending = raft.write(persists)
            inline = raft.inline_writes - before
            if pending is not None:
                await pending.result()
            wanted = raft.load()
            raft.close()
            assert RaftStore(store).load() == wanted
            return inline, pending is not None
        finally:
            raft.close()
            store.close()

    return trio.run(main)


def test_a_few_command_entries_are_written_inline(tmp_path: Path) -> None:
    assert _inline(tmp_path, [Persist(1, None, _entries(1, 4, 200))]) == (1, False)


def test_a_truncation_is_written_inline(tmp_path: Path) -> None:
    assert _inline(tmp_path, [Persist(1, None, (), truncate_from=8000)], logged=8192) == (1, False)


@pytest.mark.parametrize("what", ["snapshot and compaction", "entries over 256 KiB"])
def test_snapshots_and_large_writes_go_to_the_logs_thread(tmp_path: Path, what: str) -> None:
    logged = 8192
    if what == "snapshot and compaction":
        snapshot = Snapshot(logged, 1, Configuration(frozenset([b"a" * 32])), b"z" * (16 << 20))
        persists = [Persist(1, None, (), compact_through=logged - 1024, snapshot=snapshot)]
    else:
        persists = [Persist(1, None, _entries(logged + 1, 40, 8 * 1024))]
    assert _inline(tmp_path, persists, logged=logged) == (0, True)


def test_a_write_behind_one_handed_over_is_handed_over_too(tmp_path: Path) -> None:
    """Inline, it would overtake the one still in the log's thread."""
    async def main() -> None:
        store = Store(tmp_path / "s", map_size=2**24, databases=DATABASES)
        raft = RaftStore(store)
        try:
            first = raft.start([Persist(1, None, _entries(1, 1, 10))])
            second = raft.write([Persist(1, None, _entries(2, 1, 10))])
            assert second is not None
            await first.result()
            await second.result()
            assert [e.index for e in raft.load().entries] == [1, 2]
        finally:
            raft.close()
            store.close()

    trio.run(main)
