"""Hops and messages per lookup of the Kademlia cores, measured in the deterministic simulator.

For each network size N and each seed it starts N nodes (sparse bootstrap: each knows three
earlier nodes; k=8, alpha=3, two disjoint paths; 2 ms +- 2 ms links and 5% message loss,
messages in their msgpack wire form), lets them settle, publishes a few values, and then runs
lookups for random running nodes and gets of the values from random nodes. It reports, per N,
the median over seeds of each seed's median hops, RPCs and virtual milliseconds per lookup
(FIND_NODE; the time is rounded up to the harness's 5 ms polling step), hops and RPCs per get
(FIND_VALUE) from a node not holding the value, the worst seed's share of lookups that found
their target and of gets that found the value, and the CPU cost of simulating one seed.

Run: .venv/bin/python benchmarks/bench_dht_sim.py [--sizes 50,200,1000] [--seeds 5] [--loss 0.05]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import statistics
import time

from bzzz_edge.dht import DhtConfig
from bzzz_edge.sim import DhtCluster, NetworkConfig

CONFIG = DhtConfig(k=8, alpha=3, disjoint_paths=2, rpc_timeout=0.2, lookup_deadline=5.0)
NETWORK = NetworkConfig(latency=0.002, jitter=0.002, loss=0.05)


def one_seed(n: int, seed: int, lookups: int, values: int,
             network: NetworkConfig) -> dict[str, float]:
    started = time.process_time()
    c = DhtCluster(n, seed=seed, config=CONFIG, network=network)
    c.start(spread=1.0, settle=2.0)
    keys = []
    for i in range(values):
        key = hashlib.sha256(b"bench value %d" % i).digest()
        publisher = c.rng.choice(c.running())
        c.put(publisher, c.record(publisher, key, b"v%d" % i))
        keys.append(key)
    hops, msgs, hits, took = [], [], 0, []
    for _ in range(lookups):
        source, target = c.rng.sample(c.running(), 2)
        at = c.sim.now
        done = c.find(source, c.ids[target])
        took.append(c.sim.now - at)
        assert done is not None
        hops.append(done.result.hops)
        msgs.append(done.result.queried)
        hits += c.ids[target] in [x.node for x in done.result.closest]
    get_hops, get_msgs, got = [], [], 0
    for key in keys:
        source = c.rng.choice([i for i in c.running() if i not in c.holders(key)])
        done_get = c.get(source, key)
        assert done_get is not None
        got += bool(done_get.records)
        get_hops.append(done_get.result.hops)
        get_msgs.append(done_get.result.queried)
    return {
        "hops": statistics.median(hops), "msgs": statistics.median(msgs),
        "ms": 1000 * statistics.median(took),
        "found": hits / lookups, "get_hops": statistics.median(get_hops),
        "get_msgs": statistics.median(get_msgs), "got": got / len(keys),
        "cpu": time.process_time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="50,200,1000")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=50)
    parser.add_argument("--values", type=int, default=20)
    parser.add_argument("--loss", type=float, default=NETWORK.loss)
    args = parser.parse_args()
    network = dataclasses.replace(NETWORK, loss=args.loss)
    print(f"k={CONFIG.k} alpha={CONFIG.alpha} d={CONFIG.disjoint_paths} loss={network.loss:.0%};"
          f" medians over {args.seeds} seeds of per-seed medians")
    print(f"{'N':>6} {'log2 N':>6} {'hops':>5} {'msgs':>5} {'ms':>5} {'found':>6} "
          f"{'get hops':>8} {'get msgs':>8} {'got':>5} {'cpu s/seed':>10}")
    for n in (int(s) for s in args.sizes.split(",")):
        runs = [one_seed(n, seed, args.lookups, args.values, network)
                for seed in range(args.seeds)]

        def med(field: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[field] for r in runs)

        print(f"{n:>6} {math.log2(n):>6.1f} {med('hops'):>5.1f} {med('msgs'):>5.1f} "
              f"{med('ms'):>5.0f} "
              f"{min(r['found'] for r in runs):>6.0%} {med('get_hops'):>8.1f} "
              f"{med('get_msgs'):>8.1f} {min(r['got'] for r in runs):>5.0%} "
              f"{med('cpu'):>10.1f}", flush=True)


if __name__ == "__main__":
    main()
