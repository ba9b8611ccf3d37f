"""Claims decided by simulated Raft clusters under loss, partitions that heal, kills and
restarts of any node (the coordinator included), stalls and snapshots: on every seed, every
node applies the same verdict at each index, each task has at most one owner (exactly one when
any claim for it committed), every losing claim names that owner, and all nodes end with the
same tasks. Each node's task machine travels in its snapshots, as in the node."""

from __future__ import annotations

import random

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.consensus import Apply, EntryKind, RestoreSnapshot, SnapshotTaken, TakeSnapshot
from bzzz_edge.consensus import lan as lan_config
from bzzz_edge.identity import Identity
from bzzz_edge.sim._raft import RaftCluster, _fault, _Machine, _recovers
from bzzz_edge.sim._simulator import NetworkConfig
from bzzz_edge.tasks import Outcome, Profile, Reason, State, TaskMachine, sign

SEEDS = 300
TASKS = 6
_PROFILE = Profile({}, frozenset(), 1000)
NET = b"s" * 16
#: Who announces and claims (task commands are signed by their node, not by a Raft node).
SIGNERS = [Identity(Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32)) for i in range(5)]


class TaskCluster(RaftCluster):
    """A ``RaftCluster`` whose nodes also apply task commands; snapshots carry the tasks."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.tasks: dict[bytes, TaskMachine] = {}
        self.verdicts: dict[int, dict[bytes, tuple[bool, Reason | None, bytes | None]]] = {}
        self.outcomes: list[Outcome] = []
        super().__init__(*args, **kwargs)

    def _new_core(self, node: bytes):  # type: ignore[no-untyped-def]
        core = super()._new_core(node)
        snap = self.disks[node].stored().snapshot
        self.tasks[node] = TaskMachine(network_id=NET)
        if snap is not None:
            digest, tasks = msgpack.unpackb(snap.data)
            self.machines[node] = _Machine(snap.index, digest)
            self.tasks[node].restore(snap.index, tasks)
        return core

    def _observe(self, node: bytes, action, now: float) -> None:  # type: ignore[no-untyped-def]
        if isinstance(action, TakeSnapshot):
            machine = self.machines[node]
            data = msgpack.packb([machine.digest, self.tasks[node].snapshot()])
            self.sim.inject(node, SnapshotTaken(action.index, data))
            return
        if isinstance(action, RestoreSnapshot):
            snap = action.snapshot
            digest, tasks = msgpack.unpackb(snap.data)
            self.checker.on_restore(node, self.machines[node], snap.index, digest)
            self.tasks[node] = TaskMachine(network_id=NET)
            self.tasks[node].restore(snap.index, tasks)
            return
        super()._observe(node, action, now)
        if isinstance(action, Apply):
            for entry in action.entries:
                data = entry.data if entry.kind is EntryKind.COMMAND else b""
                out = self.tasks[node].apply(entry.index, data)
                if out is not None:
                    self.outcomes.append(out)
                    self.verdicts.setdefault(entry.index, {})[node] = (out.ok, out.reason,
                                                                       out.winner)


def claims_run(seed: int) -> TaskCluster:
    """Announce ``TASKS`` tasks, then every node claims every task at random moments, under
    faults drawn from ``seed``; then heal and let every node catch up."""
    rng = random.Random(f"{seed}/claims")
    config = lan_config(snapshot_threshold=rng.choice([8, 25, 8192]),
                        snapshot_trailing=rng.choice([0, 4]),
                        max_entries_per_message=rng.choice([4, 64]))
    network = NetworkConfig(latency=rng.uniform(0.0002, 0.005), jitter=rng.uniform(0, 0.005),
                            loss=rng.choice([0.0, 0.05, 0.1]))
    cluster = TaskCluster(5, seed=seed, config=config, network=network)
    sim = cluster.sim
    cluster.start()
    task_ids = [f"t{i}" for i in range(TASKS)]

    def announce(command: bytes) -> None:
        if cluster.propose(command) is None:
            sim.call_at(sim.now + 0.05, lambda: announce(command))

    for i, task_id in enumerate(task_ids):
        announced = sign(SIGNERS[0], NET, "announce", 1.0, {
            "id": task_id, "title": task_id, "description": "", "role": "",
            "capabilities": [], "priority": 0, "scopes": [], "deadline": None,
            "address": "ucxl://a:b@p:t/*^/"})
        # Half the tasks are announced as the task service does (over gossip): every claim
        # carries the announce, and the first committed creates the task. The others are
        # announced through the log, as a node without gossip does.
        carried = i % 2 == 1
        if not carried:
            sim.call_at(0.3 + i * 0.01, lambda c=announced: announce(c))
        for claimant in SIGNERS:
            for attempt in range(2):  # twice: a claim may be lost, or come before its announce
                body = {"id": task_id, "profile": _PROFILE, "gen": 0}
                if carried:
                    body["announce"] = announced
                command = sign(claimant, NET, "claim", 2.0 + attempt, body)
                sim.call_at(rng.uniform(0.35, 2.5), lambda c=command: cluster.propose(c))
    at = 0.3
    while at < 2.6:
        at += rng.uniform(0.1, 0.6)
        sim.run_until(at)
        _fault(cluster, rng)
    sim.heal()
    sim.set_network(NetworkConfig(latency=network.latency))
    for node in cluster.ids:
        if not sim.is_running(node):
            cluster.restart(node)
    assert _recovers(cluster, seed, 10.0), f"claims_run({seed}) did not recover"
    # Retries of the final proposal may have committed after the one seen applied: heartbeats
    # carry their commit to every follower.
    sim.run_for(4 * config.heartbeat_interval)
    return cluster


@pytest.mark.parametrize("start", range(0, SEEDS, 20))
def test_claims_under_faults_one_owner_each_losers_told_all_agree(start: int) -> None:
    decided = carried = 0
    for seed in range(start, start + 20):
        cluster = claims_run(seed)
        replay = f"replay: claims_run({seed})"
        assert cluster.check() == [], replay
        for index, by_node in cluster.verdicts.items():
            assert len(set(by_node.values())) == 1, f"{replay}: verdicts differ at {index}"
        states = [cluster.tasks[n] for n in cluster.ids]
        final = max(cluster.checker.command_index[c] for c in cluster.checker.command_index
                    if c.startswith(b"final-"))
        assert all(m.applied >= final for m in states), replay
        assert all(m.tasks == states[0].tasks for m in states), f"{replay}: nodes disagree"
        for task in states[0].tasks.values():
            claims = [h for h in task.history if h.event == "claimed"]
            assert len(claims) <= 1, replay
            won = [o for o in cluster.outcomes if o.op == "claim" and o.task_id == task.id
                   and o.ok]
            lost = [o for o in cluster.outcomes if o.op == "claim" and o.task_id == task.id
                    and not o.ok]
            if claims:
                decided += 1
                carried += task.history[0].index == claims[0].index  # the claim created it
                assert task.state is State.CLAIMED and task.owner == claims[0].node, replay
                assert {o.node for o in won} == {task.owner}, replay
                won_at = claims[0].index
                assert all(o.reason is Reason.OWNED and o.winner == task.owner
                           for o in lost if o.index > won_at), replay
                assert all(o.reason is Reason.UNKNOWN_TASK  # before its announce committed
                           for o in lost if o.index < won_at), replay
            else:
                assert task.owner is None and not won, replay
    # The runs did decide claims, not only refuse them, of tasks of both kinds.
    assert decided > carried > 0
