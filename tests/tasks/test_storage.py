"""Task state in real LMDB across restarts, and how it combines with the decision log's
snapshots: the store ahead of a snapshot is kept, behind one is replaced, replays skip what
the store holds, and a restarted node ends where one that never stopped did."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.consensus import Entry, EntryKind
from bzzz_edge.consensus.storage import DATABASES as RAFT_DATABASES
from bzzz_edge.identity import Identity
from bzzz_edge.store import Store
from bzzz_edge.tasks import Profile, State, TaskMachine, sign
from bzzz_edge.tasks._decisions import TaskDecisionLog
from bzzz_edge.tasks.storage import DATABASES, TaskStore

NET = b"N" * 16
_WHO = b"storage"
GROUP = b"g" * 40


def ident(i: int) -> Identity:
    return Identity(Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"%s test node %d" % (_WHO, i)).digest()))


IDS = [ident(i) for i in range(5)]
_SEQ = itertools.count(1)


def node(i: int) -> bytes:
    return IDS[i].node_id


def encode(op: str, by: int, at: float, body: dict[str, object]) -> bytes:
    return sign(IDS[by], NET, op, at, body, seq=next(_SEQ))


def _log() -> list[Entry]:
    """A decision log: a config entry, tasks announced, claimed and finished, other commands."""
    prof = Profile({}, frozenset(), 5)
    datas: list[bytes] = []
    for t in range(4):
        datas.append(encode("announce", 0, 1.0, {
            "id": f"t{t}", "title": f"task {t}", "description": "", "role": "",
            "capabilities": [], "priority": t, "scopes": [], "deadline": 60.0,
            "address": f"ucxl://a:b@p:t{t}/*^/"}))
        datas.append(b"some other component's command")
        datas.append(encode("claim", t % 2 + 1, 2.0, {"id": f"t{t}", "profile": prof,
                                                      "gen": 0}))
        datas.append(encode("claim", 3, 2.0, {"id": f"t{t}", "profile": prof, "gen": 0}))
    datas.append(encode("complete", 1, 3.0, {"id": "t0", "result": None}))
    datas.append(encode("release", 2, 3.0, {"id": "t1", "owner": node(2), "why": "given_up",
                                            "gen": 1}))
    entries = [Entry(1, 1, EntryKind.NOOP)]
    entries += [Entry(1, i, EntryKind.COMMAND, d) for i, d in enumerate(datas, 2)]
    return entries


def _applied(entries: list[Entry]) -> TaskDecisionLog:
    log = TaskDecisionLog(TaskMachine(network_id=NET), lambda index, outcome: None)
    for entry in entries:
        log.apply(entry)
    return log


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store", map_size=2**24, databases=(*DATABASES, *RAFT_DATABASES))
    yield s
    s.close()


def _save(store: Store, machine: TaskMachine, *, replace: bool = False) -> None:
    replaced, changed = machine.take_changes()
    tasks = list(machine.tasks.values()) if replaced or replace else changed
    store.writer.write_sync(TaskStore(store).save_fn(
        machine.applied, GROUP, tasks, replace=replaced or replace,
        removed=machine.take_removed(), meta=machine.meta()))


def test_store_round_trip_in_lmdb_and_another_group_reads_nothing(store: Store) -> None:
    full = _applied(_log()).tasks
    _save(store, full, replace=True)
    applied, tasks, _ = TaskStore(store).load(GROUP)
    assert applied == full.applied and {t.id: t for t in tasks} == full.tasks
    assert TaskStore(store).load(b"x" * 40) == (0, [], None)
    assert TaskStore(store).load(None) == (0, [], None)


def test_incremental_saves_equal_the_state_at_their_index(store: Store) -> None:
    entries = _log()
    machine = TaskMachine(network_id=NET)
    log = TaskDecisionLog(machine, lambda index, outcome: None)
    for entry in entries:
        log.apply(entry)
        if entry.index % 3 == 0:
            _save(store, machine)
    _save(store, machine)
    applied, tasks, _ = TaskStore(store).load(GROUP)
    assert applied == entries[-1].index and {t.id: t for t in tasks} == machine.tasks


def test_restart_with_store_ahead_of_the_snapshot_keeps_it_and_skips_replays(
        store: Store) -> None:
    entries = _log()
    reference = _applied(entries)
    snap_at = 6
    snapshot = _applied(entries[:snap_at]).snapshot()
    _save(store, _applied(entries[:12]).tasks, replace=True)  # the store got further

    restarted = TaskMachine(network_id=NET)
    restarted.load(*TaskStore(store).load(GROUP))
    seen: list[int] = []
    log = TaskDecisionLog(restarted, lambda index, outcome: seen.append(index) if outcome
                          else None)
    log.restore(snap_at, snapshot)  # as _start_core does
    assert restarted.applied == 12
    for entry in entries[snap_at:]:  # the core replays from the snapshot on
        log.apply(entry)
    assert restarted.tasks == reference.tasks.tasks
    assert log.digest == reference.digest and log.applied == reference.applied
    assert min(seen) > 12  # nothing at or below the stored index was applied twice


def test_restart_with_store_behind_a_compacted_snapshot_takes_the_snapshot(
        store: Store) -> None:
    """The entries between the store's index and the snapshot are compacted away: only the
    snapshot can carry the tasks over them."""
    entries = _log()
    reference = _applied(entries)
    _save(store, _applied(entries[:3]).tasks, replace=True)
    snap_at = 14
    snapshot = _applied(entries[:snap_at]).snapshot()

    restarted = TaskMachine(network_id=NET)
    restarted.load(*TaskStore(store).load(GROUP))
    log = TaskDecisionLog(restarted, lambda index, outcome: None)
    log.restore(snap_at, snapshot)
    assert restarted.applied == snap_at
    assert restarted.take_changes()[0] is True  # the shell rewrites the whole state
    for entry in entries[snap_at:]:
        log.apply(entry)
    assert restarted.tasks == reference.tasks.tasks
    assert restarted.tasks["t0"].state is State.COMPLETED
    assert restarted.tasks["t1"].state is State.REASSIGNED


def test_a_snapshot_without_tasks_restores_the_log_and_no_tasks() -> None:
    from bzzz_edge.consensus._machine import DecisionLog

    base = DecisionLog()
    for entry in _log()[:5]:
        base.apply(entry)
    log = TaskDecisionLog(TaskMachine(network_id=NET), lambda index, outcome: None)
    log.restore(5, base.snapshot())
    assert log.applied == 5 and log.digest == base.digest and not log.tasks.tasks
