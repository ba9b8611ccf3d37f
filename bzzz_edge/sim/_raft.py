"""Raft cores in the simulator: the wiring, a cluster harness and a safety checker. No I/O.

``RaftCluster`` runs ``n`` Raft cores with a simulated disk each (``DurableState``, the
persistence contract's reference model: a killed node restarts from exactly what it had
persisted) and a toy state machine (a hash chain over the applied commands, so a snapshot is
16 bytes and two nodes that applied different histories disagree on the digest).

``RaftChecker`` watches every action as it happens and records violations of Raft's
guarantees, instead of raising inside the simulator:

- election safety: at most one leader per term;
- leader completeness: a new leader's log holds every entry applied anywhere so far;
- state-machine safety: no index is applied with two different commands (compared by the
  digest after it), a restored snapshot matches the digest there, and no command is applied
  at two different indexes (nothing applied twice);
- log matching (``check_logs``): two logs that agree on an entry's term agree on everything
  up to it.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass

import msgpack

from bzzz_edge.consensus import (
    Accepted,
    Action,
    Apply,
    ChangeMember,
    Configuration,
    DurableState,
    EntryKind,
    Event,
    LeaderLost,
    Persist,
    Propose,
    Raft,
    RaftConfig,
    Received,
    RestoreSnapshot,
    Role,
    RoleChanged,
    Send,
    SnapshotTaken,
    State,
    TakeSnapshot,
    TransferLeadership,
    encode_message,
    lan,
)
from bzzz_edge.sim._membership import sim_node_id
from bzzz_edge.sim._protocols import Outgoing
from bzzz_edge.sim._simulator import NetworkConfig, Simulator

__all__ = ["ChaosResult", "RaftChecker", "RaftCluster", "RaftWiring", "chaos_run"]

_GENESIS = bytes(16)


def _chain(digest: bytes, command: bytes) -> bytes:
    return hashlib.blake2b(digest + command, digest_size=16).digest()


class RaftWiring:
    """Maps Raft ``Send`` actions to simulated messages (msgpack, unless ``encode=False``)."""

    def __init__(self, *, encode: bool = True) -> None:
        self._encode = encode

    def outgoing(self, action: Action) -> Outgoing | None:
        if not isinstance(action, Send):
            return None
        if self._encode:
            return Outgoing(action.to, msgpack.packb(encode_message(action.message)))
        return Outgoing(action.to, action.message)

    def incoming(self, sender: bytes, payload: object) -> Event:
        if self._encode:
            assert isinstance(payload, bytes)
            payload = msgpack.unpackb(payload)
        return Received(sender, payload)

    def connection_lost(self, peer: bytes) -> Event | None:
        return LeaderLost(peer)  # what the service makes of a closed connection


class _Machine:
    """A node's state machine: the applied index and the hash chain up to it."""

    __slots__ = ("applied", "digest")

    def __init__(self, applied: int = 0, digest: bytes = _GENESIS) -> None:
        self.applied = applied
        self.digest = digest


class RaftChecker:
    """Records every violation of Raft's safety properties it sees (see the module docstring)."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.leaders: dict[int, bytes] = {}
        self.digests: dict[int, bytes] = {0: _GENESIS}
        self.entry_terms: dict[int, int] = {}
        self.command_index: dict[bytes, int] = {}
        self.max_applied = 0

    def _fail(self, text: str) -> None:
        if len(self.violations) < 100:
            self.violations.append(text)

    def on_leader(self, node: bytes, term: int, core: Raft) -> None:
        other = self.leaders.setdefault(term, node)
        if other != node:
            self._fail(f"two leaders in term {term}: {other.hex()[:8]} and {node.hex()[:8]}")
        held = {e.index: e.term for e in core.log_entries()}
        for index in range(core.snapshot_index + 1, self.max_applied + 1):
            if index in self.entry_terms and held.get(index) != self.entry_terms[index]:
                self._fail(f"leader {node.hex()[:8]} of term {term} lacks committed {index}")
                break

    def on_apply(self, node: bytes, machine: _Machine, apply: Apply) -> None:
        for entry in apply.entries:
            if entry.index != machine.applied + 1:
                self._fail(f"{node.hex()[:8]} applied {entry.index} after {machine.applied}")
            machine.applied = entry.index
            if entry.kind is EntryKind.COMMAND:
                machine.digest = _chain(machine.digest, entry.data)
                first = self.command_index.setdefault(entry.data, entry.index)
                if first != entry.index:
                    self._fail(f"command applied at {first} and {entry.index}")
            known = self.digests.setdefault(entry.index, machine.digest)
            self.entry_terms.setdefault(entry.index, entry.term)
            if known != machine.digest or self.entry_terms[entry.index] != entry.term:
                self._fail(f"{node.hex()[:8]} applied a different entry at {entry.index}")
            self.max_applied = max(self.max_applied, entry.index)

    def on_restore(self, node: bytes, machine: _Machine, index: int, data: bytes) -> None:
        known = self.digests.get(index)
        if known is not None and known != data:
            self._fail(f"{node.hex()[:8]} restored a snapshot at {index} that differs")
        machine.applied, machine.digest = index, data

    def check_logs(self, cores: list[Raft]) -> None:
        """Log matching between every pair of logs (call at the end of a run)."""
        logs = [{e.index: e for e in core.log_entries()} for core in cores]
        for a in range(len(logs)):
            for b in range(a + 1, len(logs)):
                common = sorted(set(logs[a]) & set(logs[b]), reverse=True)
                agreed = False
                for index in common:
                    ea, eb = logs[a][index], logs[b][index]
                    if ea.term == eb.term:
                        agreed = True
                        if ea != eb:
                            self._fail(f"logs differ at {index} in the same term {ea.term}")
                    elif agreed:
                        self._fail(f"logs agree above {index} but differ at it")
                        break


class RaftCluster:
    """``n`` simulated Raft nodes; the first ``voters`` are voters, the rest learners."""

    def __init__(self, n: int, *, seed: int = 0, voters: int | None = None,
                 config: RaftConfig | None = None, network: NetworkConfig | None = None,
                 encode: bool = True) -> None:
        self.config = config if config is not None else lan()
        self.sim: Simulator[Event, Action] = Simulator(
            RaftWiring(encode=encode), seed=seed, network=network)
        self.ids = [sim_node_id(i) for i in range(n)]
        k = n if voters is None else voters
        self.bootstrap = Configuration(frozenset(self.ids[:k]), frozenset(self.ids[k:]))
        self.disks = {node: DurableState() for node in self.ids}
        self.machines = {node: _Machine() for node in self.ids}
        self.checker = RaftChecker()
        self.accepted: dict[int, tuple[int, int]] = {}
        self.stats: Counter[str] = Counter()
        self.reconfigure = False
        self._ref = 0
        self.sim.observe(self._observe)

    def _new_core(self, node: bytes) -> Raft:
        stored = self.disks[node].stored()
        snap = stored.snapshot
        self.machines[node] = _Machine(snap.index, snap.data) if snap else _Machine()
        return Raft(node, now=self.sim.now, config=self.config, stored=stored,
                    bootstrap=self.bootstrap, rng=self.sim.derive_rng())

    def start(self) -> None:
        for node in self.ids:
            self.sim.add_node(node, self._new_core(node))

    def _observe(self, node: bytes, action: Action, now: float) -> None:
        if isinstance(action, Persist):
            self.disks[node].apply(action)
        elif isinstance(action, Apply):
            self.checker.on_apply(node, self.machines[node], action)
        elif isinstance(action, RestoreSnapshot):
            snap = action.snapshot
            self.checker.on_restore(node, self.machines[node], snap.index, snap.data)
        elif isinstance(action, TakeSnapshot):
            machine = self.machines[node]
            if machine.applied != action.index:
                self.checker.violations.append(f"snapshot asked at {action.index}, applied "
                                               f"{machine.applied}")
            self.sim.inject(node, SnapshotTaken(action.index, machine.digest))
        elif isinstance(action, RoleChanged) and action.state is State.LEADER:
            self.stats["elections"] += 1
            self.checker.on_leader(node, action.term, self.core(node))
        elif isinstance(action, Accepted):
            self.accepted[action.ref] = (action.index, action.term)

    # --- views ----------------------------------------------------------------------------------

    def core(self, node: bytes) -> Raft:
        core = self.sim.core(node)
        assert isinstance(core, Raft)
        return core

    def running(self) -> list[bytes]:
        return self.sim.running_nodes()

    def leader(self) -> bytes | None:
        """The running leader with the highest term, if any."""
        leaders = [n for n in self.running() if self.core(n).state is State.LEADER]
        return max(leaders, key=lambda n: self.core(n).term) if leaders else None

    def stable_leader(self) -> bytes | None:
        """A leader that every running member follows in its term."""
        leader = self.leader()
        if leader is None:
            return None
        term = self.core(leader).term
        members = self.core(leader).configuration.members
        for node in self.running():
            core = self.core(node)
            if node in members and (core.term != term or core.leader != leader):
                return None
        return leader

    # --- script ---------------------------------------------------------------------------------

    def propose(self, command: bytes | None = None) -> int | None:
        """Propose to the current leader; returns the ref, or None without a leader."""
        leader = self.leader()
        if leader is None:
            return None
        self._ref += 1
        data = command if command is not None else b"cmd-%d" % self._ref
        self.sim.inject(leader, Propose(self._ref, data))
        return self._ref

    def kill(self, node: bytes) -> None:
        """A kill -9: the node stops and its peers' connections to it close."""
        self.sim.kill(node, notify_peers=True)

    def restart(self, node: bytes) -> None:
        self.sim.restart(node, self._new_core(node))

    def all_applied(self, index: int) -> bool:
        return all(self.machines[n].applied >= index for n in self.running())

    def check(self) -> list[str]:
        """Every violation seen, after the final log-matching check."""
        self.checker.check_logs([self.core(n) for n in self.running()])
        return list(self.checker.violations)


# --- seeded chaos runs ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChaosResult:
    """One seeded run: what the checker found, and whether the cluster recovered in time."""

    seed: int
    violations: tuple[str, ...]
    recovered: bool
    recovery: float
    committed: int
    faults: tuple[str, ...]


def chaos_run(seed: int, *, n: int = 5, voters: int | None = None, duration: float = 3.0,
              encode: bool = True, reconfigure: bool = False,
              bound: float | None = None) -> ChaosResult:
    """A run of ``duration`` virtual seconds under a stream of proposals and faults drawn from
    ``seed`` (kills and restarts of any node, the leader included, partitions that heal,
    stalls, loss, false "leader dead" hints, hand-overs, and with ``reconfigure`` membership
    changes); then everything heals, and a leader must commit a last proposal on every member
    within ``bound`` seconds (default: four of the longest election timeouts, at least 5 s:
    room for a timeout, a split vote and a retry). The same seed replays the same run."""
    rng = random.Random(f"{seed}/chaos")
    # Half the runs use tight timers (elections within a few round trips: many split and
    # concurrent elections) and some run without pre-vote, to reach more interleavings.
    timers = rng.choice([{}, {"heartbeat_interval": 0.01, "election_timeout_min": 0.02,
                              "election_timeout_max": 0.04, "transfer_timeout": 0.04}])
    config = lan(**timers, pre_vote=rng.random() < 0.7, check_quorum=rng.random() < 0.8,
                 snapshot_threshold=rng.choice([8, 25, 8192]),
                 snapshot_trailing=rng.choice([0, 4]), max_entries_per_message=rng.choice([4, 64]),
                 max_inflight=rng.choice([2, 16]))
    network = NetworkConfig(latency=rng.uniform(0.0002, 0.005), jitter=rng.uniform(0, 0.005),
                            loss=rng.choice([0.0, 0.01, 0.05]))
    cluster = RaftCluster(n, seed=seed, voters=voters, config=config, network=network,
                          encode=encode)
    cluster.reconfigure = reconfigure
    sim, faults = cluster.sim, []
    cluster.start()
    end = duration + 0.3

    def propose() -> None:
        cluster.propose()
        if sim.now < end:
            sim.call_at(sim.now + rng.uniform(0.005, 0.03), propose)

    sim.call_at(0.3, propose)
    at = 0.3
    while at < end:
        at += rng.uniform(0.1, 0.6)
        sim.run_until(at)
        faults.append(_fault(cluster, rng))
    sim.run_until(end)
    sim.heal()
    sim.set_network(NetworkConfig(latency=network.latency, jitter=network.jitter))
    for node in cluster.ids:
        if not sim.is_running(node):
            cluster.restart(node)
    healed = sim.now
    if bound is None:
        bound = max(5.0, 4 * config.election_timeout_max)
    recovered = _recovers(cluster, seed, bound)
    return ChaosResult(seed, tuple(cluster.check()), recovered, sim.now - healed,
                       cluster.checker.max_applied, tuple(faults))


def _recovers(cluster: RaftCluster, seed: int, bound: float) -> bool:
    """Whether a stable leader commits a proposal on every member within ``bound``."""
    final = [b"final-%d-%d" % (seed, i) for i in range(int(bound / 0.1) + 1)]
    tries = iter(final)

    def final_applied() -> bool:
        leader = cluster.stable_leader()
        if leader is None:
            return False
        members = cluster.core(leader).configuration.members
        for command in final:
            index = cluster.checker.command_index.get(command)
            if index is not None and all(cluster.machines[m].applied >= index for m in members):
                return True
        cluster.propose(next(tries, final[-1]))  # a lost or refused proposal is retried
        return False

    return cluster.sim.run_until_true(final_applied, timeout=bound, every=0.1)


def _fault(cluster: RaftCluster, rng: random.Random) -> str:
    sim, ids = cluster.sim, cluster.ids
    running, leader = cluster.running(), cluster.leader()
    dead = [node for node in ids if node not in running]
    kind = rng.choice(["kill", "kill_leader", "restart", "restart", "partition", "heal", "stall",
                       "leader_dead", "transfer", "change"])
    if kind == "kill_leader" and leader is not None and len(running) > 1:
        cluster.kill(leader)
    elif kind == "kill" and len(running) > 1:
        cluster.kill(rng.choice(running))
    elif kind == "restart" and dead:
        cluster.restart(rng.choice(dead))
    elif kind == "partition":
        shuffled = rng.sample(ids, len(ids))
        cut = rng.randint(1, len(ids) - 1)
        sim.partition([shuffled[:cut], shuffled[cut:]])
    elif kind == "heal":
        sim.heal()
    elif kind == "stall" and running:
        sim.stall(rng.choice(running), rng.uniform(0.05, 1.0))
    elif kind == "leader_dead" and leader is not None and len(running) > 1:
        sim.inject(rng.choice([n for n in running if n != leader]), LeaderLost(leader))
    elif kind == "transfer" and leader is not None:
        sim.inject(leader, TransferLeadership())
    elif kind == "change" and leader is not None and cluster.reconfigure:
        sim.inject(leader, ChangeMember(0, rng.choice(ids), rng.choice(list(Role))))
    else:
        return "none"
    return kind
