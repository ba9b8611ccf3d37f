"""Raft in the simulator: seeded chaos runs checked for safety and liveness, failover time,
splits, whole-cluster restarts, and a checker that does catch a broken core.

Every chaos run is a pure function of its seed; a failing one is named in the assertion with
the line that replays it. ``BZZZ_RAFT_SEEDS=N`` runs N seeds per scenario instead of the
default (thousands by hand; ``benchmarks/bench_raft_sim.py`` does the same with statistics).
"""

from __future__ import annotations

import os
import statistics

import pytest

from bzzz_edge.consensus import LeaderLost, Propose, State, lan
from bzzz_edge.consensus import _log as raft_log
from bzzz_edge.sim import NetworkConfig, RaftCluster
from bzzz_edge.sim._raft import chaos_run

SEEDS = int(os.environ.get("BZZZ_RAFT_SEEDS", "80"))
BATCH = 20
SCENARIOS = {
    "5-voters": {"n": 5},
    "5-nodes-3-voters-reconfigured": {"n": 5, "voters": 3, "reconfigure": True},
    "3-voters-raw": {"n": 3, "encode": False},
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("start", range(0, SEEDS, BATCH))
def test_chaos_runs_keep_every_safety_property_and_recover(scenario: str, start: int) -> None:
    kwargs = SCENARIOS[scenario]
    for seed in range(start, min(start + BATCH, SEEDS)):
        result = chaos_run(seed, **kwargs)  # type: ignore[arg-type]
        replay = f"replay: chaos_run({seed}, **{kwargs!r})"
        assert result.violations == (), f"seed {seed}: {result.violations[:3]}; {replay}"
        assert result.recovered, \
            f"seed {seed}: no commit within {result.recovery:g} s of healing; {replay}"
        assert result.committed > 0, f"seed {seed}: nothing committed at all; {replay}"


def test_a_seed_replays_identically() -> None:
    first, again = chaos_run(11, reconfigure=True), chaos_run(11, reconfigure=True)
    assert first == again and len(first.faults) > 3


def test_the_checker_catches_a_core_that_votes_for_stale_logs(monkeypatch) -> None:
    # Break the election restriction (section 3.6.1): vote for any log. The checker must
    # report lost committed entries within a few seeds (17 of the first 60 seeds do).
    monkeypatch.setattr(raft_log.RaftLog, "is_up_to_date", lambda self, index, term: True)
    found = [seed for seed in range(12) if chaos_run(seed).violations]
    assert found, "the checker missed a broken election restriction"


def _failover(seed: int, *, silent: bool = False, hint_after: float | None = None) -> float:
    """Seconds from the leader's death to a new leader: a kill -9 (its connections close), or
    a ``silent`` death (a power cut: nothing closes), with membership's verdict ``hint_after``
    the death where given."""
    cluster = RaftCluster(5, seed=seed, network=NetworkConfig(latency=0.0003, jitter=0.0004))
    cluster.start()
    assert cluster.sim.run_until_true(lambda: cluster.stable_leader() is not None, timeout=3)
    cluster.sim.run_for(0.5 + (seed % 10) * 0.0137)  # kill at different heartbeat phases
    old = cluster.leader()
    assert old is not None
    if silent:
        cluster.sim.kill(old)
    else:
        cluster.kill(old)
    killed = cluster.sim.now
    if hint_after is not None:  # membership declares it dead that long after the death
        for node in cluster.running():
            cluster.sim.inject(node, LeaderLost(old), at=killed + hint_after)
    assert cluster.sim.run_until_true(lambda: cluster.leader() not in (None, old), timeout=5,
                                      every=0.001)
    return cluster.sim.now - killed


def test_failover_after_a_kill_is_within_a_heartbeat_interval_at_lan_settings() -> None:
    # The closed connections start the election: no timeout is waited out.
    times = [_failover(seed) for seed in range(20)]
    assert statistics.median(times) < lan().heartbeat_interval, times
    assert max(times) < 1.0, times


def test_a_silent_death_is_noticed_within_the_election_timeout() -> None:
    times = [_failover(seed, silent=True) for seed in range(20)]
    # The followers' timers started at the last heartbeat, up to an interval before the death.
    earliest = lan().election_timeout_min - lan().heartbeat_interval
    assert earliest < statistics.median(times) < lan().election_timeout_max, times
    assert max(times) < 2 * lan().election_timeout_max, times


def test_membership_declaring_a_silent_leader_dead_speeds_failover() -> None:
    times = [_failover(seed, silent=True, hint_after=0.15) for seed in range(10)]
    assert max(times) < 0.15 + lan().heartbeat_interval + 0.1, times


def test_the_minority_side_of_a_split_decides_nothing_and_both_converge() -> None:
    cluster = RaftCluster(5, seed=3)
    cluster.start()
    sim = cluster.sim
    assert sim.run_until_true(lambda: cluster.stable_leader() is not None, timeout=3)
    sim.run_for(0.2)  # acknowledgements in flight when the split starts would still count
    leader = cluster.leader()
    assert leader is not None
    minority = [leader, *[n for n in cluster.ids if n != leader][:1]]
    majority = [n for n in cluster.ids if n not in minority]
    sim.partition([minority, majority])
    decided = cluster.core(leader).commit_index
    for ref in range(20):
        sim.inject(leader, Propose(ref, b"minority-%d" % ref))
        sim.run_for(0.05)
    sim.run_for(cluster.config.election_timeout_max)  # check-quorum's window, and more
    assert all(cluster.core(n).commit_index <= decided for n in minority)
    assert cluster.core(leader).state is not State.LEADER  # check-quorum deposed it
    new = cluster.leader()
    assert new in majority
    cluster.propose(b"majority")
    sim.run_for(0.3)
    index = cluster.checker.command_index[b"majority"]
    sim.heal()
    assert sim.run_until_true(lambda: cluster.all_applied(index), timeout=2)
    assert not any(c.startswith(b"minority") for c in cluster.checker.command_index)
    assert cluster.check() == []


def test_everything_committed_survives_a_restart_of_the_whole_cluster() -> None:
    cluster = RaftCluster(5, seed=5, config=lan(snapshot_threshold=30, snapshot_trailing=5))
    cluster.start()
    sim = cluster.sim
    assert sim.run_until_true(lambda: cluster.stable_leader() is not None, timeout=3)
    for _ in range(100):
        cluster.propose()
        sim.run_for(0.003)
    sim.run_for(0.5)
    committed = cluster.checker.max_applied
    for node in cluster.ids:
        cluster.kill(node)
    for node in cluster.ids:
        cluster.restart(node)
    assert sim.run_until_true(lambda: cluster.stable_leader() is not None, timeout=3)
    cluster.propose(b"after")
    assert sim.run_until_true(lambda: b"after" in cluster.checker.command_index, timeout=2)
    assert cluster.checker.command_index[b"after"] > committed
    assert sim.run_until_true(lambda: cluster.all_applied(committed + 1), timeout=2)
    assert cluster.check() == []


def test_a_stale_uncommitted_configuration_does_not_block_the_election() -> None:
    # Seed 154 once ended with two voters that each held a configuration the other was not
    # a voter in; refusing votes on the word of one's own latest configuration deadlocked it.
    result = chaos_run(154, n=5, voters=3, reconfigure=True)
    assert result.violations == () and result.recovered
