"""The persistence contract's reference model, and the log it rebuilds."""

from __future__ import annotations

import pytest

from bzzz_edge.consensus import (
    Configuration,
    DurableState,
    Entry,
    EntryKind,
    Persist,
    Raft,
    Snapshot,
    Stored,
)
from bzzz_edge.errors import StorageError

from .conftest import node_id

ME = node_id(0)
CONFIG = Configuration(frozenset({ME}))


def entries(first: int, last: int, term: int = 1) -> tuple[Entry, ...]:
    return tuple(Entry(term, i, EntryKind.COMMAND, b"%d" % i) for i in range(first, last + 1))


def test_persist_applies_snapshot_truncate_compact_append_in_that_order() -> None:
    disk = DurableState()
    disk.apply(Persist(1, ME, entries(1, 10)))
    disk.apply(Persist(2, None, entries(8, 9, term=2), truncate_from=8))
    assert [e.term for e in disk.stored().entries] == [1] * 7 + [2, 2]
    snap = Snapshot(6, 1, CONFIG, b"state")
    disk.apply(Persist(2, None, snapshot=snap, compact_through=4))
    stored = disk.stored()
    assert stored.snapshot == snap and [e.index for e in stored.entries] == [5, 6, 7, 8, 9]
    assert (stored.term, stored.vote) == (2, None)


def test_a_gap_in_the_log_is_refused() -> None:
    disk = DurableState()
    disk.apply(Persist(1, None, entries(1, 3)))
    with pytest.raises(StorageError, match="gap"):
        disk.apply(Persist(1, None, entries(5, 5)))


def test_a_core_rebuilds_from_a_snapshot_and_the_entries_after_it() -> None:
    snap = Snapshot(6, 1, CONFIG, b"state")
    core = Raft(ME, now=0.0, stored=Stored(3, ME, snap, entries(4, 12)))
    assert (core.term, core.snapshot_index, core.last_index) == (3, 6, 12)
    assert core.commit_index == 6 and core.configuration == CONFIG
    assert [e.index for e in core.log_entries()] == list(range(7, 13))


def test_a_stored_log_with_a_hole_is_refused() -> None:
    with pytest.raises(StorageError):
        Raft(ME, now=0.0, stored=Stored(1, None, None, entries(1, 2) + entries(4, 4)))
