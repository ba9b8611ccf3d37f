"""Task commands nobody can forge or replay, the coordinator's authority, and the expiry of
finished tasks: every refusal has its counted reason, is the same on every replica, and leaves
the state as it was; the replay state travels in snapshots and the store."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.consensus import Configuration, Entry, EntryKind
from bzzz_edge.consensus.storage import DATABASES as RAFT_DATABASES
from bzzz_edge.identity import Identity
from bzzz_edge.store import Store
from bzzz_edge.tasks import Profile, Reason, State, TaskMachine, sign
from bzzz_edge.tasks._commands import signed_bytes
from bzzz_edge.tasks._decisions import TaskDecisionLog
from bzzz_edge.tasks.service import TaskService
from bzzz_edge.tasks.storage import DATABASES, TaskStore

NET = b"A" * 16
OTHER_NET = b"B" * 16
IDS = [Identity(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"auth %d" % i).digest()))
       for i in range(6)]
COORD, VOTER, OUTSIDER = 0, 4, 5  # nodes 0 and 4 vote; 1-3 and 5 do not
_SEQ = itertools.count(1)
_PROFILE = Profile({}, frozenset(), 10)


def node(i: int) -> bytes:
    return IDS[i].node_id


def cmd(op: str, by: int, body: dict[str, object], *, at: float = 1000.0,
        seq: int | None = None, net: bytes = NET) -> bytes:
    return sign(IDS[by], net, op, at, body, seq=next(_SEQ) if seq is None else seq)


def announce(task_id: str, by: int = 1, at: float = 1000.0) -> bytes:
    return cmd("announce", by, {"id": task_id, "title": task_id, "description": "",
                                "role": "", "capabilities": [], "priority": 0, "scopes": [],
                                "deadline": None, "address": "ucxl://a:b@p:t/*^/"}, at=at)


def claim(task_id: str, by: int, gen: int = 0, at: float = 1001.0) -> bytes:
    return cmd("claim", by, {"id": task_id, "profile": _PROFILE, "gen": gen}, at=at)


def release(task_id: str, by: int, owner: int, why: str, gen: int = 1) -> bytes:
    return cmd("release", by, {"id": task_id, "owner": node(owner), "why": why, "gen": gen})


def expire(before: float, by: int = COORD, at: float | None = None) -> bytes:
    return cmd("expire", by, {"before": before}, at=before if at is None else at)


class Replicas:
    """Several nodes' decision logs fed the same committed entries."""

    def __init__(self, count: int = 3) -> None:
        self.logs = []
        for _ in range(count):
            machine = TaskMachine(network_id=NET)
            machine.founders = lambda: frozenset({node(COORD), node(VOTER)})
            self.logs.append(TaskDecisionLog(machine, lambda index, outcome: None))
        self.index = 0
        self.term = 1

    @property
    def machines(self) -> list[TaskMachine]:
        return [log.tasks for log in self.logs]

    def entry(self, kind: EntryKind, data: bytes = b"",
              config: Configuration | None = None) -> None:
        self.index += 1
        for log in self.logs:
            log.apply(Entry(self.term, self.index, kind, data, config))

    def __call__(self, data: bytes):  # type: ignore[no-untyped-def]
        """Apply a command on every replica; the outcome (the same on each, checked)."""
        self.index += 1
        outcomes = [log.tasks.apply(self.index, data, self.term) for log in self.logs]
        for log in self.logs:
            log.applied = self.index
        first = outcomes[0]
        assert all((o.ok, o.reason, o.winner, o.task) == (first.ok, first.reason, first.winner,
                                                          first.task) for o in outcomes)
        return first

    def snapshots(self) -> set[bytes]:
        return {msgpack.packb([[t.encode() for t in m.tasks.values()], m.meta()])
                for m in self.machines}


def _flip(data: bytes, where: int) -> bytes:
    return data[:where] + bytes([data[where] ^ 1]) + data[where + 1:]


def _forgeries() -> dict[str, bytes]:
    """Claims of task t1 in node 1's name that node 1 did not make."""
    body = {"id": "t1", "profile": _PROFILE.encode(), "gen": 0}
    inner = msgpack.packb(["claim", node(1), 1001.0, 7, body], use_bin_type=True)

    def wrap(inner_bytes: bytes, key: bytes, sig: bytes) -> bytes:
        return msgpack.packb(["bzzz.task", 2, inner_bytes, key, sig], use_bin_type=True)

    by2 = IDS[2].private_key.sign(signed_bytes(NET, inner))
    good = IDS[1].private_key.sign(signed_bytes(NET, inner))
    return {
        # node 2 signs with its own key, naming node 1: the key is not node 1's
        "wrong_key": wrap(inner, IDS[2].public_key_bytes, by2),
        # node 1's public key, node 2's signature
        "key_of_another_node": wrap(inner, IDS[1].public_key_bytes, by2),
        "bad_signature": wrap(inner, IDS[1].public_key_bytes, _flip(good, 10)),
        "tampered_body": wrap(inner.replace(b"t1", b"t2"), IDS[1].public_key_bytes, good),
        "another_network": cmd("claim", 1, body, net=OTHER_NET),
        "short_key": wrap(inner, IDS[1].public_key_bytes[:31], good),
        "no_signature": wrap(inner, IDS[1].public_key_bytes, b""),
    }


@pytest.mark.parametrize("kind", sorted(_forgeries()))
def test_forged_commands_refused_on_every_node_and_nothing_changes(kind: str) -> None:
    log = Replicas()
    log(announce("t1"))
    log(announce("t2"))
    before = log.snapshots()
    out = log(_forgeries()[kind])
    assert not out.ok and out.reason is Reason.FORGED
    assert all(m.counters["refused_forged"] == 1 for m in log.machines)
    assert log.snapshots() == before and len(before) == 1
    assert all(m.tasks["t1"].state is State.ANNOUNCED for m in log.machines)
    assert log(claim("t1", 1)).ok  # node 1's own claim still wins


def test_losing_claims_cost_no_verification_and_a_forgery_among_them_changes_nothing() -> None:
    """Of concurrent claims only the one that wins is verified: the others are refused
    (``owned``) whoever made them, so a forged one among them changes nothing either."""
    log = Replicas()
    log(announce("t1"))
    assert log(claim("t1", 3)).ok
    assert log(_forgeries()["bad_signature"]).reason is Reason.OWNED
    for by in (1, 2, 4):
        assert log(claim("t1", by)).reason is Reason.OWNED
    assert all(m.counters["verified"] == 2 for m in log.machines)  # the announce, the win
    assert log.machines[0].tasks["t1"].owner == node(3)


def test_a_genuine_command_verifies_and_only_for_its_own_network() -> None:
    data = announce("t1")
    assert TaskMachine(network_id=NET).apply(1, data).ok
    assert TaskMachine(network_id=OTHER_NET).apply(1, data).reason is Reason.FORGED


def test_a_replayed_progress_is_refused_and_the_history_unchanged() -> None:
    log = Replicas()
    log(announce("t1"))
    log(claim("t1", 1))
    report = cmd("progress", 1, {"id": "t1", "text": "half"})
    assert log(report).ok
    history = log.machines[0].tasks["t1"].history
    out = log(report)
    assert not out.ok and out.reason is Reason.REPLAY
    assert log.machines[0].tasks["t1"].history == history
    assert log.machines[0].counters["refused_replay"] == 1
    older = cmd("progress", 1, {"id": "t1", "text": "older"}, seq=1)  # a lower seq
    assert log(older).reason is Reason.REPLAY


def test_a_replayed_claim_after_a_release_is_stale_and_does_not_take_the_task() -> None:
    log = Replicas()
    log(announce("t1"))
    first = claim("t1", 1)
    assert log(first).ok
    assert log(release("t1", 1, 1, "given_up")).ok
    out = log(first)
    assert not out.ok and out.reason is Reason.STALE
    assert log.machines[0].tasks["t1"].state is State.REASSIGNED
    assert log(claim("t1", 2, gen=1)).winner == node(2)


def test_a_replayed_give_up_does_not_release_the_owners_next_claim() -> None:
    log = Replicas()
    log(announce("t1"))
    log(claim("t1", 1))
    give_up = release("t1", 1, 1, "given_up", gen=1)
    assert log(give_up).ok
    assert log(claim("t1", 1, gen=1)).ok  # node 1 takes it again
    out = log(give_up)
    assert not out.ok and out.reason is Reason.STALE
    assert log.machines[0].tasks["t1"].owner == node(1)
    same_gen = cmd("release", 1, {"id": "t1", "owner": node(1), "why": "given_up", "gen": 2},
                   seq=1)  # right claim, but older than the owner's last command
    assert log(same_gen).reason is Reason.REPLAY


def test_a_replayed_coordinator_release_does_not_touch_the_next_claim() -> None:
    log = Replicas()
    log(announce("t1"))
    log(claim("t1", 1))
    dead = release("t1", COORD, 1, "owner_dead")
    assert log(dead).ok
    assert log(claim("t1", 1, gen=1)).ok  # node 1 came back
    out = log(dead)
    assert not out.ok and out.reason is Reason.STALE
    assert log.machines[0].tasks["t1"].owner == node(1)


def test_replayed_complete_and_announce_change_nothing() -> None:
    log = Replicas()
    made = announce("t1")
    log(made)
    log(claim("t1", 1))
    done = cmd("complete", 1, {"id": "t1", "result": None})
    assert log(done).ok
    before = log.snapshots()
    assert log(done).reason is Reason.FINISHED
    assert log(made).reason is Reason.DUPLICATE
    assert log.snapshots() == before


def test_releases_by_the_owner_dead_or_deadline_only_from_a_voter() -> None:
    log = Replicas()
    log(announce("t1"))
    log(claim("t1", 1))
    for by in (1, 2, OUTSIDER):  # the owner itself, another node, a node outside the config
        out = log(release("t1", by, 1, "owner_dead"))
        assert not out.ok and out.reason is Reason.NOT_COORDINATOR
    assert log.machines[0].tasks["t1"].owner == node(1)
    assert log.machines[0].counters["refused_not_coordinator"] == 3
    assert log(release("t1", VOTER, 1, "owner_dead")).ok


def test_the_voters_follow_the_logs_configuration_entries() -> None:
    log = Replicas()
    log(announce("t1"))
    log(claim("t1", 1))
    log.entry(EntryKind.CONFIG, config=Configuration(frozenset({node(2), node(3)}),
                                                     frozenset({node(COORD)})))
    assert log(release("t1", COORD, 1, "owner_dead")).reason is Reason.NOT_COORDINATOR
    assert log(release("t1", 2, 1, "owner_dead")).ok


def test_a_term_whose_noop_names_its_leader_takes_releases_from_that_leader_only() -> None:
    log = Replicas()
    log(announce("t1"))
    log(claim("t1", 1))
    log.term = 2
    log.entry(EntryKind.NOOP, node(VOTER))
    assert log(release("t1", COORD, 1, "owner_dead")).reason is Reason.NOT_COORDINATOR
    log.term = 3
    log.entry(EntryKind.NOOP)  # a NOOP without a leader (today's): back to the voters
    assert log(release("t1", COORD, 1, "owner_dead")).ok


def test_expiry_drops_old_finished_tasks_only_and_stops_their_announce_coming_back() -> None:
    log = Replicas()
    old = announce("old", at=100.0)
    log(old)
    log(claim("old", 1, at=110.0))
    log(cmd("fail", 1, {"id": "old", "text": "x"}, at=120.0))
    log(announce("recent", at=100.0))
    log(claim("recent", 2, at=110.0))
    log(cmd("complete", 2, {"id": "recent", "result": None}, at=500.0))
    log(announce("open", at=100.0))
    log(claim("open", 3, at=110.0))
    assert log(expire(300.0, by=OUTSIDER)).reason is Reason.NOT_COORDINATOR
    out = log(expire(300.0))
    assert out.ok and out.changed
    assert all(sorted(m.tasks) == ["open", "recent"] for m in log.machines)
    assert log.machines[0].counters["expired"] == 1
    assert log(old).reason is Reason.REPLAY  # an expired task's announce, replayed
    assert "old" not in log.machines[0].tasks
    assert log(expire(300.0)).reason is Reason.STALE  # the same expiry again
    assert log(expire(600.0, at=599.0)).reason is Reason.STALE  # before after its own time
    assert log(announce("new", at=301.0)).ok
    assert log(expire(600.0)).ok
    assert sorted(log.machines[0].tasks) == ["new", "open"]


def test_snapshot_and_store_keep_the_replay_state(tmp_path: Path) -> None:
    log = Replicas(1)
    log(announce("t1", at=100.0))
    log(claim("t1", 1))
    report = cmd("progress", 1, {"id": "t1", "text": "x"})
    log(report)
    log(announce("t2", at=100.0))
    log(claim("t2", 2))
    log(cmd("complete", 2, {"id": "t2", "result": None}, at=150.0))
    log.entry(EntryKind.CONFIG, config=Configuration(frozenset({node(COORD), node(3)})))
    log.term = 2
    log.entry(EntryKind.NOOP, node(COORD))
    log(expire(200.0))
    machine = log.machines[0]
    assert machine.meta() == {"voters": sorted({node(COORD), node(3)}),
                              "leader": [2, node(COORD)], "floor": 200.0}

    copy = TaskMachine(network_id=NET)
    copy.restore(machine.applied, machine.snapshot())
    store = Store(tmp_path / "store", map_size=2**24, databases=(*DATABASES, *RAFT_DATABASES))
    try:
        store.writer.write_sync(TaskStore(store).save_fn(
            machine.applied, b"g" * 40, list(machine.tasks.values()), replace=True,
            meta=machine.meta()))
        stored = TaskMachine(network_id=NET)
        stored.load(*TaskStore(store).load(b"g" * 40))
    finally:
        store.close()
    for other in (copy, stored):
        assert other.tasks == machine.tasks and other.meta() == machine.meta()
        assert other.tasks["t1"].seq == machine.tasks["t1"].seq > 0
        index = machine.applied + 1
        assert other.apply(index, report, 2).reason is Reason.REPLAY
        assert other.apply(index + 1, announce("t2", at=100.0), 2).reason is Reason.REPLAY
        assert other.apply(index + 2, release("t1", 3, 1, "owner_dead"),
                           2).reason is Reason.NOT_COORDINATOR  # term 2's leader is node 0


def test_a_version_1_snapshot_restores_with_no_replay_state() -> None:
    log = Replicas(1)
    log(announce("t1"))
    tasks = [t.encode() for t in log.machines[0].tasks.values()]
    machine = TaskMachine(network_id=NET)
    machine.restore(5, msgpack.packb([1, 5, tasks], use_bin_type=True))
    assert "t1" in machine.tasks and machine.voters is None and machine.leader is None


def test_the_store_drops_expired_tasks(tmp_path: Path) -> None:
    log = Replicas(1)
    machine = log.machines[0]
    log(announce("t1", at=100.0))
    log(claim("t1", 1))
    log(cmd("complete", 1, {"id": "t1", "result": None}, at=100.0))
    log(announce("t2", at=100.0))
    store = Store(tmp_path / "store", map_size=2**24, databases=(*DATABASES, *RAFT_DATABASES))
    try:
        tasks = TaskStore(store)
        _, changed = machine.take_changes()
        store.writer.write_sync(tasks.save_fn(machine.applied, b"g" * 40, changed))
        log(expire(200.0))
        _, changed = machine.take_changes()
        removed = machine.take_removed()
        assert removed == ["t1"] and changed == []
        store.writer.write_sync(tasks.save_fn(machine.applied, b"g" * 40, changed,
                                              removed=removed, meta=machine.meta()))
        applied, stored, meta = tasks.load(b"g" * 40)
    finally:
        store.close()
    assert applied == machine.applied and [t.id for t in stored] == ["t2"]
    assert meta is not None and meta["floor"] == 200.0


def test_the_coordinator_proposes_an_expiry_only_when_a_finished_task_is_old_enough(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "store", map_size=2**24, databases=(*DATABASES, *RAFT_DATABASES))
    try:
        service = TaskService(IDS[COORD], store, network_id=NET, profile=_PROFILE,
                              release_after=10.0, finished_retention=100.0)
        for index, data in enumerate([announce("t1", at=1000.0), claim("t1", 1),
                                      cmd("complete", 1, {"id": "t1", "result": None},
                                          at=1050.0)], 1):
            service.decisions.apply(Entry(1, index, EntryKind.COMMAND, data))
        assert service.machine.tasks["t1"].state is State.COMPLETED
        assert service.due_expiry(1150.0) is None  # finished 100 s ago, not more
        assert service.due_expiry(1150.5) == 1050.5
        seqs = [service.next_seq() for _ in range(3)]
        assert seqs == sorted(set(seqs))
    finally:
        store.close()


def test_the_bytes_held_are_bounded_for_announces_and_progress() -> None:
    log = Replicas(2)
    big = "é" * 4000  # two bytes each
    for machine in log.machines:
        machine.limits = type(machine.limits)(max_bytes=17_000)
    made = cmd("announce", 1, {"id": "t1", "title": "t", "description": big, "role": "",
                               "capabilities": [], "priority": 0, "scopes": [],
                               "deadline": None, "address": "ucxl://a:b@p:t/*^/"})
    assert log(made).ok
    task = log.machines[0].tasks["t1"]
    assert task.footprint() >= len(msgpack.packb(task.encode(), use_bin_type=True))
    assert log.machines[0].bytes_held == task.footprint()
    assert log(claim("t1", 1)).ok
    assert log(cmd("progress", 1, {"id": "t1", "text": "x" * 1000})).ok
    second = cmd("announce", 2, {"id": "t2", "title": "t", "description": big, "role": "",
                                 "capabilities": [], "priority": 0, "scopes": [],
                                 "deadline": None, "address": "ucxl://a:b@p:t/*^/"})
    assert log(second).reason is Reason.FULL and "t2" not in log.machines[0].tasks
    for _ in range(8):
        log(cmd("progress", 1, {"id": "t1", "text": "é" * 1000}))
    out = log(cmd("progress", 1, {"id": "t1", "text": "é" * 1000}))
    assert out.reason is Reason.FULL
    assert all(m.bytes_held <= 17_000 for m in log.machines)
    assert log(cmd("complete", 1, {"id": "t1", "result": None})).ok  # finishing still works
    assert log(expire(1500.0)).ok
    again = cmd("announce", 2, {"id": "t2", "title": "t", "description": big, "role": "",
                                "capabilities": [], "priority": 0, "scopes": [],
                                "deadline": None, "address": "ucxl://a:b@p:t/*^/"}, at=2000.0)
    assert log.machines[0].bytes_held == 0 and log(again).ok


def test_before_any_configuration_entry_the_groups_founder_is_the_voter(tmp_path: Path) -> None:
    """The group ID starts with its founder's node ID: the voters of the bootstrap
    configuration, which no log entry states; the service tells its machine so."""
    group = node(COORD) + b"r" * 8
    store = Store(tmp_path / "store", map_size=2**24, databases=(*DATABASES, *RAFT_DATABASES))
    try:
        store.put("raft", b"group", group)
        service = TaskService(IDS[2], store, network_id=NET, profile=_PROFILE,
                              release_after=10.0)
        assert service.machine.current_voters() == {node(COORD)}
        entries = [announce("t1"), claim("t1", 1), release("t1", VOTER, 1, "owner_dead"),
                   release("t1", COORD, 1, "owner_dead")]
        states = []
        for index, data in enumerate(entries, 1):
            service.decisions.apply(Entry(1, index, EntryKind.COMMAND, data))
            states.append(service.machine.tasks["t1"].state)
        assert states[2] is State.CLAIMED  # node 4 is no voter of this group
        assert states[3] is State.REASSIGNED
        assert service.machine.counters["refused_not_coordinator"] == 1
    finally:
        store.close()
