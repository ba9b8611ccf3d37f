"""Kademlia cores in the simulator: lookups and gets under churn and 5% loss at 200 and 1,000
nodes, cost growing like log N, and every value still found after 20% of the nodes die."""

from __future__ import annotations

import hashlib
import math
import statistics

import pytest

from bzzz_edge.dht import DhtConfig
from bzzz_edge.sim import DhtCluster, NetworkConfig

LOSSY = NetworkConfig(latency=0.002, jitter=0.002, loss=0.05)
CONFIG = DhtConfig(k=8, rpc_timeout=0.2, lookup_deadline=5.0, replicate_interval=20.0,
                   republish_interval=40.0, refresh_interval=30.0)


def cluster(n: int, seed: int) -> DhtCluster:
    c = DhtCluster(n, seed=seed, config=CONFIG, network=LOSSY)
    c.start(spread=1.0, settle=2.0)
    return c


def key(i: int) -> bytes:
    return hashlib.sha256(b"value %d" % i).digest()


def publish(c: DhtCluster, count: int) -> dict[bytes, bytes]:
    values = {}
    for i in range(count):
        publisher = c.rng.choice(c.running())
        value = b"value %d from %d" % (i, publisher)
        done = c.put(publisher, c.record(publisher, key(i), value))
        assert done is not None and done.stored >= CONFIG.k // 2, f"put {i} stored too few"
        values[key(i)] = value
    return values


def churn(c: DhtCluster, seconds: float, every: float = 0.5) -> None:
    """Each ``every`` seconds one random node dies and one dead node comes back empty."""
    for _ in range(int(seconds / every)):
        dead = [i for i in range(len(c.ids)) if i not in set(c.running())]
        c.kill(c.rng.choice(c.running()[1:]))
        if dead:
            c.restart(c.rng.choice(dead))
        c.sim.run_for(every)


def found(c: DhtCluster, values: dict[bytes, bytes], asks: int = 1) -> int:
    hits = 0
    for k, value in values.items():
        for _ in range(asks):
            done = c.get(c.rng.choice(c.running()), k)
            hits += done is not None and value in [r.value for r in done.records]
    return hits


def lookup_stats(c: DhtCluster, lookups: int) -> tuple[float, float, float]:
    """Fraction of lookups for a running node that find it; median hops and messages."""
    hits, hops, msgs = 0, [], []
    for _ in range(lookups):
        source, target = c.rng.sample(c.running(), 2)
        done = c.find(source, c.ids[target])
        assert done is not None
        hits += c.ids[target] in [x.node for x in done.result.closest]
        hops.append(done.result.hops)
        msgs.append(done.result.queried)
    return hits / lookups, statistics.median(hops), statistics.median(msgs)


def test_200_nodes_with_churn_and_loss_find_every_value_and_node() -> None:
    c = cluster(200, seed=11)
    values = publish(c, 20)
    churn(c, 10.0)
    assert found(c, values, asks=2) == 2 * len(values)
    share, hops, _ = lookup_stats(c, 40)
    assert share >= 0.95 and hops <= 4


@pytest.fixture(scope="module")
def big() -> DhtCluster:
    return cluster(1000, seed=5)


def test_1000_nodes_with_churn_and_loss_find_every_value_and_node(big: DhtCluster) -> None:
    values = publish(big, 10)
    churn(big, 5.0)
    assert found(big, values) == len(values)
    share, hops, _ = lookup_stats(big, 30)
    assert share >= 0.95 and hops <= 5


def test_hops_and_messages_grow_like_log_n(big: DhtCluster) -> None:
    small = cluster(50, seed=5)
    _, hops_50, msgs_50 = lookup_stats(small, 30)
    _, hops_1000, msgs_1000 = lookup_stats(big, 30)
    log_ratio = math.log(1000) / math.log(50)  # 1.77; a linear cost would grow 20-fold
    assert msgs_1000 <= 2 * log_ratio * msgs_50
    assert hops_1000 <= hops_50 + 3


def test_every_value_survives_20_percent_of_nodes_dying_at_once() -> None:
    c = cluster(200, seed=3)
    values = publish(c, 30)
    for victim in c.rng.sample(c.running()[1:], 40):
        c.kill(victim)
    c.sim.run_for(10.0)
    assert found(c, values) == len(values)


def test_re_replication_outlives_the_death_of_every_original_holder() -> None:
    c = cluster(200, seed=4)
    values = publish(c, 5)
    holders = {k: sorted(c.holders(k), key=lambda i: int.from_bytes(c.ids[i], "big")
                         ^ int.from_bytes(k, "big")) for k in values}
    publishers = {i for i in range(200) if c.core(i).own_records()}
    first = {i for h in holders.values() for i in h[: len(h) // 2]} - publishers
    for victim in first:
        c.kill(victim)
    c.sim.run_for(5.0)  # the survivors re-replicate to the new k closest
    second = {i for h in holders.values() for i in h} - first - publishers
    for victim in second:
        c.kill(victim)
    assert len(first | second) <= 40  # within the 20% the issue allows
    c.sim.run_for(2.0)
    for k, value in values.items():
        assert not set(c.holders(k)) & (set(holders[k]) - publishers), "an original holder lives"
        done = c.get(c.rng.choice(c.running()), k)
        assert done is not None and value in [r.value for r in done.records]
