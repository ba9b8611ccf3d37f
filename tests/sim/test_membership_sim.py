"""Membership cores in the simulator: convergence, failure detection, rejoin, loss, scale."""

from __future__ import annotations

import pytest

from bzzz_edge.membership import (
    Leave,
    Status,
    detection_bound,
    lan,
    local,
    min_suspicion_timeout,
    probe_period,
)
from bzzz_edge.sim import MembershipCluster, NetworkConfig


def started(n: int, seed: int, **kwargs: object) -> MembershipCluster:
    cluster = MembershipCluster(n, seed=seed, **kwargs)  # type: ignore[arg-type]
    cluster.start(spread=0.2)
    assert cluster.sim.run_until_true(cluster.converged, timeout=5.0), "no convergence"
    return cluster


def victim_rto(cluster: MembershipCluster, target: int) -> float:
    """The longest probe timeout any other running node holds for ``target`` right now."""
    node = cluster.ids[target]
    return max(cluster.view(i).probe_timeout(node) for i in cluster.running() if i != target)


def statuses_after(cluster: MembershipCluster, since: float, target: int) -> set[tuple]:
    """Status changes after ``since`` about nodes other than ``target``: should be none."""
    skip = cluster.ids[target]
    return {
        (cluster.ids.index(e.node), e.new_status)
        for t, _, e in cluster.events
        if t >= since and e.node != skip and e.new_status is not Status.ALIVE
    }


def test_ten_nodes_converge_to_full_membership() -> None:
    cluster = MembershipCluster(10, seed=1)
    cluster.start(spread=0.5)
    assert cluster.sim.run_until_true(cluster.converged, timeout=3.0)
    for i in range(10):
        view = cluster.view(i)
        assert len(view.alive_members()) == 10
        assert all(dict(m.meta) == {"proto": 1} for m in view.members())
        assert view.counters["malformed"] == 0 and view.counters["protocol_errors"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_killed_node_is_dead_everywhere_within_the_bound(seed: int) -> None:
    cluster = started(10, seed)
    cluster.sim.run_for(1.0 + seed * 0.037)  # kill at different phases of the probe cycle
    victim = seed % 10
    bound = detection_bound(lan(), 10, victim_rto(cluster, victim))
    t_kill = cluster.kill(victim)
    cluster.sim.run_for(bound)
    detected = cluster.first_time_all(victim, Status.DEAD, t_kill)
    assert detected is not None and detected - t_kill <= bound
    assert statuses_after(cluster, t_kill, victim) == set()  # nobody else was blamed


def test_connection_lost_hints_make_every_node_suspect_at_once() -> None:
    cluster = started(10, seed=3)
    cluster.sim.run_for(1.0)
    rto = victim_rto(cluster, 9)
    t_kill = cluster.kill(9, notify_peers=True)
    cluster.sim.run_for(detection_bound(lan(), 10, rto))
    suspected = cluster.first_time_all(9, Status.SUSPECT, t_kill)
    assert suspected is not None
    # Each peer probes right away, so it suspects within one probe period (plus the hint's
    # delivery), instead of waiting up to n - 1 periods for its turn.
    assert suspected - t_kill <= probe_period(rto) + 0.002
    dead = cluster.first_time_all(9, Status.DEAD, t_kill)
    # Everyone suspects at once, so the suspicion is confirmed down to its minimum, and the
    # closed connections halve that (a stalled node would have kept them open).
    shortest = 0.5 * min_suspicion_timeout(lan(), 10, rto)
    assert dead is not None and dead - t_kill <= probe_period(rto) + shortest + 0.01


@pytest.mark.parametrize("lost_state", [False, True], ids=["persisted", "lost-state"])
def test_restarted_node_rejoins_with_a_higher_incarnation(lost_state: bool) -> None:
    cluster = started(10, seed=4)
    t_kill = cluster.kill(5)
    cluster.sim.run_for(detection_bound(lan(), 10))
    assert cluster.all_see(5, [Status.DEAD])
    dead_at = cluster.view(0).member(cluster.ids[5]).incarnation
    cluster.restart(5, incarnation=0 if lost_state else None)
    t_restart = cluster.sim.now
    assert cluster.sim.run_until_true(cluster.converged, timeout=2.0)
    assert cluster.first_time_all(5, Status.ALIVE, t_restart) is not None
    incarnations = {cluster.view(i).member(cluster.ids[5]).incarnation for i in range(10)}
    assert len(incarnations) == 1 and incarnations.pop() > dead_at
    assert statuses_after(cluster, t_kill, 5) == set()


def test_five_percent_loss_causes_no_false_deaths_in_sixty_seconds() -> None:
    cluster = started(10, seed=5, network=NetworkConfig(loss=0.05))
    since = cluster.sim.now
    cluster.sim.run_for(60.0)
    deaths = [e for t, _, e in cluster.events if t >= since and e.new_status is Status.DEAD]
    assert deaths == []
    assert cluster.converged()
    probes = sum(cluster.view(i).counters["probes"] for i in range(10))
    assert probes > 0.9 * 10 * 60 / lan().probe_interval  # it really was probing all along
    assert cluster.sim.stats["lost"] > 0.04 * cluster.sim.stats["sent"]


def test_partitioned_halves_declare_each_other_dead_and_merge_after_healing() -> None:
    cluster = started(10, seed=6)
    left, right = cluster.ids[:5], cluster.ids[5:]
    cluster.sim.partition([left, right])

    def split() -> bool:
        return all(
            cluster.view(i).status_of(other) is Status.DEAD
            for i in range(10)
            for other in (right if i < 5 else left)
        )

    assert cluster.sim.run_until_true(split, timeout=detection_bound(lan(), 10))
    cluster.sim.run_for(3.0)
    cluster.sim.heal()
    # Reconnect attempts (every reconnect_interval) find the other side; refutations follow.
    assert cluster.sim.run_until_true(cluster.converged, timeout=3 * lan().reconnect_interval)


def test_graceful_leave_reaches_everyone_as_left_not_dead() -> None:
    cluster = started(10, seed=7)
    t_leave = cluster.sim.now
    cluster.sim.inject(cluster.ids[2], Leave())
    cluster.sim.run_for(0.01)
    assert cluster.all_see(2, [Status.LEFT])
    cluster.sim.run_for(5.0)
    assert not [e for t, _, e in cluster.events if t >= t_leave and e.new_status is Status.DEAD]


def test_same_seed_gives_the_same_history() -> None:
    def history(seed: int) -> list:
        cluster = started(8, seed, network=NetworkConfig(loss=0.02))
        cluster.kill(3)
        cluster.sim.run_for(3.0)
        return [(t, obs, e.node, e.new_status, e.incarnation) for t, obs, e in cluster.events]

    assert history(11) == history(11)
    assert history(11) != history(12)


def test_local_profile_detects_within_its_own_bound() -> None:
    cluster = started(10, seed=8, config=local())
    bound = detection_bound(local(), 10, victim_rto(cluster, 0))
    t_kill = cluster.kill(0)
    cluster.sim.run_for(bound)
    detected = cluster.first_time_all(0, Status.DEAD, t_kill)
    assert detected is not None and detected - t_kill <= bound


def test_two_hundred_nodes_converge_and_detect_a_failure() -> None:
    # Typed messages (encode=False) keep this fast; the wire codec is covered at 10 nodes.
    cluster = MembershipCluster(200, seed=9, encode=False)
    cluster.start(spread=0.5)
    assert cluster.sim.run_until_true(cluster.converged, timeout=10.0, every=0.1)
    bound = detection_bound(lan(), 200, victim_rto(cluster, 123))
    t_kill = cluster.kill(123)
    assert cluster.sim.run_until_true(
        lambda: cluster.all_see(123, [Status.DEAD]), timeout=bound, every=0.05
    )
    detected = cluster.first_time_all(123, Status.DEAD, t_kill)
    assert detected is not None and detected - t_kill <= bound
    assert statuses_after(cluster, t_kill, 123) == set()
