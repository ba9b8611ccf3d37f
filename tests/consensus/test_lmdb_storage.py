"""The store of the Raft state (its write-ahead log, and LMDB for the group) follows the
persistence contract's reference model: the same ``Persist`` sequences (recorded from seeded
chaos runs of the simulator, with snapshots, truncations and compactions) leave the same
``Stored`` record, however they are batched, and again after a reopen (a replay)."""

from __future__ import annotations

import random

import pytest
import trio

from bzzz_edge.consensus import Configuration, DurableState, Entry, EntryKind, Persist
from bzzz_edge.consensus.storage import DATABASES, RaftStore
from bzzz_edge.errors import StorageError
from bzzz_edge.sim import _raft as sim_raft
from bzzz_edge.store import Store

from .conftest import node_id


class _Recording(DurableState):
    made: list[_Recording] = []

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[Persist] = []
        _Recording.made.append(self)

    def apply(self, persist: Persist) -> None:
        self.recorded.append(persist)
        super().apply(persist)


async def _replay(store: Store, raft: RaftStore, recorded: list[Persist],
                  rng: random.Random) -> None:
    """Batches of 1 to 8 actions in one record, as the driver does, written by the log's
    thread or in the driver's thread (``RaftStore.write``)."""
    while recorded:
        size = rng.randint(1, 8)
        batch, recorded = recorded[:size], recorded[size:]
        if rng.random() < 0.3:
            await raft.start(batch).result()
        elif (pending := raft.write(batch)) is not None:
            await pending.result()


@pytest.mark.parametrize("seed", [3, 8, 154, 2024])  # 3, 8, 154: truncations and snapshots
def test_lmdb_store_matches_the_reference_model_on_chaos_runs(tmp_path, monkeypatch, seed):
    _Recording.made = []
    monkeypatch.setattr(sim_raft, "DurableState", _Recording)
    sim_raft.chaos_run(seed, duration=2.0)
    rng = random.Random(seed)
    assert sum(len(d.recorded) for d in _Recording.made) > 20
    compared = inline = 0
    for number, disk in enumerate(_Recording.made):
        store = Store(tmp_path / f"store{number}", map_size=2**24, databases=DATABASES)
        try:
            raft = RaftStore(store)
            raft.inline_max_seconds = 60.0  # inline whatever a loaded disk takes
            trio.run(_replay, store, raft, list(disk.recorded), rng)
            assert raft.load() == disk.stored()
            inline += raft.inline_writes
            raft.close()
            assert RaftStore(store).load() == disk.stored()  # replayed from the file
            compared += 1
        finally:
            store.close()
    assert compared == len(_Recording.made) and inline > 0


def test_stored_group_and_committed_entries_read_back(tmp_path):
    store = Store(tmp_path / "store", map_size=2**24, databases=DATABASES)
    try:
        raft = RaftStore(store)
        assert raft.group() is None and raft.load().entries == ()
        group = node_id(1) + bytes(8)
        trio.run(raft.set_group, group)
        assert raft.group() == group
        entries = tuple(Entry(1, i, EntryKind.COMMAND, b"c%d" % i) for i in range(1, 6))
        config = Entry(1, 6, EntryKind.CONFIG, config=Configuration(frozenset({node_id(1)})))
        raft.persist_sync([Persist(1, node_id(1), (*entries, config))])
        assert raft.entries(3, 2) == list(entries[2:4])
        assert raft.entries(6, 10) == [config]
        assert raft.load().vote == node_id(1)
        raft.close()
        with pytest.raises(StorageError, match="closed"):  # not reopened behind our back
            raft.entries(1, 1)
    finally:
        store.close()


def test_state_of_another_identity_or_network_is_dropped_at_claim(tmp_path):
    store = Store(tmp_path / "store", map_size=2**24, databases=DATABASES)
    try:
        raft = RaftStore(store)
        ours, theirs = node_id(1) + b"net-a", node_id(2) + b"net-a"
        assert raft.claim(ours) is False  # a fresh store: nothing to drop
        group = node_id(1) + bytes(8)
        trio.run(raft.set_group, group)
        entry = Entry(1, 1, EntryKind.COMMAND, b"decision")
        raft.persist_sync([Persist(1, node_id(1), (entry,))])
        assert raft.claim(ours) is False  # the same owner again (a restart): kept
        assert raft.group() == group and raft.load().entries == (entry,)
        assert raft.claim(theirs) is True  # init --force: a new identity over the old state
        assert raft.group() is None
        stored = raft.load()
        assert (stored.term, stored.vote, stored.entries) == (0, None, ())
        assert raft.claim(theirs) is False
        assert raft.claim(node_id(2) + b"net-b") is True  # another network, same identity
        raft.close()
        assert RaftStore(store).load().entries == ()  # dropped on disk too
    finally:
        store.close()
