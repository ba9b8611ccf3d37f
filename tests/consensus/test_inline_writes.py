"""Which Raft writes ``RaftStore.write`` commits in the caller's thread (the event loop's) and
which it hands to the writer's thread, over a real LMDB store: entries of ordinary commands
inline; a snapshot, a compaction or many bytes of entries never (a 16 MiB snapshot with its
compaction took 74 ms of the loop inline, against 15 ms handed over)."""

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
    """How many inline commits writing ``persists`` took, and whether it was handed over; the
    log holds ``logged`` entries before, and recent commits were quick (as on an idle SSD)."""
    async def main() -> tuple[int, bool]:
        store = Store(tmp_path / "s", map_size=2**27, databases=DATABASES)
        raft = RaftStore(store)
        try:
            for first in range(1, logged + 1, 512):
                await _write(raft, [Persist(1, None, _entries(first, min(512, logged + 1 - first),
                                                              200))])
            writer = store.writer
            writer._recent_commit = 0.0
            before = writer.stats.inline_commits
            pending = raft.write(persists)
            inline = writer.stats.inline_commits - before
            if pending is not None:
                await pending.result()
            return inline, pending is not None
        finally:
            store.close()

    return trio.run(main)


def test_a_few_command_entries_are_committed_inline(tmp_path: Path) -> None:
    assert _inline(tmp_path, [Persist(1, None, _entries(1, 4, 200))]) == (1, False)


@pytest.mark.parametrize("what", ["snapshot and compaction", "entries over 256 KiB",
                                  "truncation"])
def test_snapshots_compactions_truncations_and_large_writes_go_to_the_writer(
        tmp_path: Path, what: str) -> None:
    logged = 8192
    if what == "snapshot and compaction":
        snapshot = Snapshot(logged, 1, Configuration(frozenset([b"a" * 32])), b"z" * (16 << 20))
        persists = [Persist(1, None, (), compact_through=logged - 1024, snapshot=snapshot)]
    elif what == "entries over 256 KiB":
        persists = [Persist(1, None, _entries(logged + 1, 40, 8 * 1024))]
    else:
        persists = [Persist(1, None, (), truncate_from=logged - 100)]
    assert _inline(tmp_path, persists, logged=logged) == (0, True)
