"""The voter policy driving a simulated cluster: a lone founder grows to five voters, dead
voters are replaced, returning nodes are promoted again, and the checker stays quiet."""

from __future__ import annotations

from bzzz_edge.consensus import State, next_change
from bzzz_edge.sim import RaftCluster

DEAD_AFTER = 2.0


class PolicyDriver:
    """What the coordination service will do: every 100 ms, the leader asks the policy."""

    def __init__(self, cluster: RaftCluster) -> None:
        self.cluster = cluster
        self.dead_since: dict[bytes, float] = {}
        self.changes = 0
        cluster.sim.call_at(cluster.sim.now + 0.1, self.step)

    def step(self) -> None:
        cluster, sim = self.cluster, self.cluster.sim
        live = set(cluster.running())
        for node in cluster.ids:
            if node in live:
                self.dead_since.pop(node, None)
            else:
                self.dead_since.setdefault(node, sim.now)  # membership's verdict
        leader = cluster.leader()
        if leader is not None:
            core = cluster.core(leader)
            caught_up = {n for n, p in core.progress().items() if p.match >= core.commit_index}
            change = next_change(core.configuration, leader=leader, live=live,
                                 dead_since=self.dead_since, caught_up=caught_up, now=sim.now,
                                 target=5, dead_after=DEAD_AFTER)
            if change is not None:
                self.changes += 1
                sim.inject(leader, change)
        sim.call_at(sim.now + 0.1, self.step)


def voters(cluster: RaftCluster) -> int:
    leader = cluster.stable_leader()
    return len(cluster.core(leader).configuration.voters) if leader is not None else -1


def test_the_policy_grows_replaces_and_restores_voters() -> None:
    cluster = RaftCluster(7, seed=4, voters=1)  # one founder, six learners
    cluster.start()
    sim = cluster.sim
    driver = PolicyDriver(cluster)
    assert sim.run_until_true(lambda: voters(cluster) == 5, timeout=5)
    for _ in range(20):
        cluster.propose()
        sim.run_for(0.01)
    leader = cluster.leader()
    assert leader is not None
    config = cluster.core(leader).configuration
    victims = sorted(config.voters - {leader})[:2]
    for node in victims:
        cluster.kill(node)

    def replaced() -> bool:
        lead = cluster.stable_leader()
        if lead is None:
            return False
        cfg = cluster.core(lead).configuration
        return len(cfg.voters) == 5 and not cfg.voters & set(victims)

    assert sim.run_until_true(replaced, timeout=DEAD_AFTER + 3)
    for node in victims:
        cluster.restart(node)
    sim.run_for(2.0)
    leader = cluster.stable_leader()
    assert leader is not None and voters(cluster) == 5
    assert cluster.core(leader).state is State.LEADER
    assert driver.changes >= 4 + 2 * 2  # four promotions, two demotions, two promotions
    assert cluster.check() == []


def test_a_lone_node_is_its_own_coordinator_under_the_policy() -> None:
    cluster = RaftCluster(1, seed=1)
    cluster.start()
    PolicyDriver(cluster)
    assert cluster.sim.run_until_true(lambda: cluster.stable_leader() is not None, timeout=2)
    cluster.propose(b"alone")
    cluster.sim.run_for(0.1)
    assert b"alone" in cluster.checker.command_index and voters(cluster) == 1
