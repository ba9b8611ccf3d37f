"""Pub/sub router cores in the deterministic simulator: copies, hops and time per delivery.

For each network size N it starts N routers (``lan()`` profile; links 2 ms +- 3 ms; a ring plus
three random links per node, so about eight links a node: a sparse network; N=10 is also run
fully connected, the home-lab case), subscribes every node to one topic, lets meshes form, then
publishes ``--messages`` messages from random origins, 50 ms apart, and runs until every live
node has every message (or 10 virtual seconds). Reported, as medians over ``--runs`` seeds:

- delivered: the share of (message, live subscriber) pairs delivered (must be 100%);
- copies/delivery: gossip messages sent per remote delivery (1.0 would be a perfect tree);
- control/delivery: control messages (subscriptions, GRAFT/PRUNE, IHAVE/IWANT) per delivery,
  heartbeat traffic over the measured period included;
- hops: mean and maximum links crossed per delivery, and the mean over log2(N), which stays
  flat when hops grow like log N;
- t_all: virtual seconds from publication until the last subscriber had it (p50 and max);
- wall: real seconds per run (the simulator's own cost).

Run: .venv/bin/python benchmarks/bench_pubsub_sim.py [--quick] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass

from bzzz_edge.sim import NetworkConfig, PubsubCluster


@dataclass
class Run:
    delivered: float
    copies: float
    control: float
    hops_mean: float
    hops_max: int
    t_all_p50: float
    t_all_max: float
    wall: float


def one_run(n: int, seed: int, *, loss: float, messages: int, full: bool) -> Run:
    started = time.perf_counter()
    network = NetworkConfig(latency=0.002, jitter=0.003, loss=loss)
    cluster = PubsubCluster(n, seed=seed, network=network, encode=n <= 100,
                            extra_links=n - 1 if full else 3)
    cluster.start()
    cluster.sim.run_for(1.0)
    counts_before = dict(cluster.wiring.counts)
    rng = random.Random(seed)
    published = []
    for _ in range(messages):
        published.append((cluster.sim.now, cluster.publish(rng.randrange(n))))
        cluster.sim.run_for(0.05)
    cluster.sim.run_until_true(lambda: cluster.all_delivered([m for _, m in published]),
                               timeout=10.0, every=0.05)
    remote = [d for d in cluster.deliveries if d.hops > 0]
    wanted = sum(len(cluster.expected(m)) - 1 for _, m in published)
    t_all = []
    for at, m in published:
        times = [d.at for d in remote if d.origin == m.origin and d.seq == m.seq]
        t_all.append(max(times) - at if times else math.inf)
    gossip = cluster.wiring.counts["gossip"] - counts_before.get("gossip", 0)
    control = cluster.wiring.counts["control"] - counts_before.get("control", 0)
    hops = [d.hops for d in remote]
    return Run(
        delivered=len(remote) / wanted, copies=gossip / len(remote), control=control / len(remote),
        hops_mean=statistics.mean(hops), hops_max=max(hops), t_all_p50=statistics.median(t_all),
        t_all_max=max(t_all), wall=time.perf_counter() - started)


def report(label: str, n: int, runs: list[Run]) -> None:
    def med(field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs)

    print(f"{label:<22} {100 * med('delivered'):7.2f}% {med('copies'):7.2f} "
          f"{med('control'):8.2f} {med('hops_mean'):6.2f} {med('hops_max'):5.0f} "
          f"{med('hops_mean') / math.log2(n):7.3f} {1000 * med('t_all_p50'):8.1f} "
          f"{1000 * med('t_all_max'):8.1f} {med('wall'):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10,30,100,300,1000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 runs, 10 messages")
    args = parser.parse_args()
    runs, messages = (3, 10) if args.quick else (args.runs, args.messages)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"medians of {runs} runs, {messages} messages each; virtual times in ms")
    print(f"{'case':<22} {'deliv':>8} {'copies':>7} {'control':>8} {'hops':>6} {'max':>5} "
          f"{'h/log2N':>7} {'t_all50':>8} {'t_allmx':>8} {'wall_s':>7}")
    for loss in (0.0, 0.05):
        for n in sizes:
            cases = [(False, f"N={n} sparse")] + ([(True, f"N={n} full mesh")] if n <= 10 else [])
            for full, label in cases:
                results = [one_run(n, seed, loss=loss, messages=messages, full=full)
                           for seed in range(runs)]
                report(f"{label} loss {int(100 * loss)}%", n, results)


if __name__ == "__main__":
    main()
