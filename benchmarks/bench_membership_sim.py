"""Failure detection time of the SWIM membership core, measured in the deterministic simulator.

For each cluster size N it starts N nodes (default ``lan()`` profile, 0.5 ms +- 0.5 ms links,
messages in their msgpack wire form), lets them converge, kills one node at a random moment and
measures, in virtual seconds, how long until every other node has marked it dead. Two cases:

- silent: the node vanishes without a trace (power cut, cable pulled): only probes find it;
- hinted: the process died and its TCP connections were reset, so every peer gets a
  "connection lost" hint at once and probes it right away.

It also reports the wall-clock cost of simulating: seconds of CPU per virtual second of the
whole cluster, and delivered messages per wall-clock second.

With ``--rtts`` it prints instead the README's table: six nodes, killed ten seconds after they
converged, detection by round-trip time (one-way latency half the round trip, jitter a quarter
of it), 20 seeds each.

Run: python benchmarks/bench_membership_sim.py [--quick] [--sizes 5,10,50,200] [--rtts]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass

from bzzz_edge.membership import Status, detection_bound, lan
from bzzz_edge.sim import MembershipCluster, NetworkConfig


@dataclass
class Run:
    bound: float
    detect: float
    first_suspect: float
    wall: float
    virtual: float
    delivered: int


def one_run(n: int, seed: int, *, hinted: bool, encode: bool,
            network: NetworkConfig | None = None, settle: float = 1.0) -> Run:
    started = time.perf_counter()
    cluster = MembershipCluster(n, seed=seed, encode=encode,
                                network=network or NetworkConfig())
    cluster.start(spread=0.5)
    if not cluster.sim.run_until_true(cluster.converged, timeout=30.0, every=0.05):
        raise RuntimeError(f"N={n} seed={seed}: no convergence in 30 virtual seconds")
    rng = random.Random(seed)
    cluster.sim.run_for(settle + rng.uniform(0, 1.0))
    victim = rng.randrange(n)
    node = cluster.ids[victim]
    rto = max(cluster.view(i).probe_timeout(node) for i in range(n) if i != victim)
    t_kill = cluster.kill(victim, notify_peers=hinted)
    bound = detection_bound(lan(), n, rto)
    done = cluster.sim.run_until_true(
        lambda: cluster.all_see(victim, [Status.DEAD]), timeout=bound + 1.0, every=0.01
    )
    if not done:
        raise RuntimeError(f"N={n} seed={seed}: not detected within the bound")
    detected = cluster.first_time_all(victim, Status.DEAD, t_kill)
    suspected = min(
        t for t, _, e in cluster.events if t >= t_kill and e.node == cluster.ids[victim]
    )
    assert detected is not None
    return Run(
        bound=bound,
        detect=detected - t_kill,
        first_suspect=suspected - t_kill,
        wall=time.perf_counter() - started,
        virtual=cluster.sim.now,
        delivered=cluster.sim.stats["delivered"],
    )


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def report(n: int, seeds: int, *, hinted: bool, encode: bool) -> None:
    runs = [one_run(n, seed, hinted=hinted, encode=encode) for seed in range(seeds)]
    detect = [r.detect for r in runs]
    wall = sum(r.wall for r in runs)
    virtual = sum(r.virtual for r in runs)
    delivered = sum(r.delivered for r in runs)
    print(
        f"{n:>4} {'hinted' if hinted else 'silent':>6} {seeds:>5}"
        f" {statistics.median(detect):>8.3f} {p99(detect):>8.3f} {max(detect):>8.3f}"
        f" {max(r.bound for r in runs):>8.2f}"
        f" {statistics.median(r.first_suspect for r in runs):>8.3f}"
        f" {wall / virtual:>10.4f} {delivered / wall:>10.0f}"
    )


def rtt_table(seeds: int) -> None:
    """Six nodes by round trip: kill -9 (hinted) median, silent failure median and max."""
    print("| round trip | probe timeout | kill -9 (median) | silent failure (median / max)"
          " | bound |")
    print("|---|---|---|---|---|")
    for rtt in (0.001, 0.01, 0.04, 0.1, 0.4, 1.0):
        network = NetworkConfig(latency=rtt / 2, jitter=rtt / 4)
        # Killed ten seconds after convergence: every node has measured the victim's round
        # trip (a node probes each of five others every 2.5 s), as in a cluster that has run
        # a while; right after a start, unmeasured peers have the initial 0.5 s timeout.
        rows = {hinted: [one_run(6, seed, hinted=hinted, encode=False, network=network,
                                 settle=10.0)
                         for seed in range(seeds)] for hinted in (True, False)}
        rto = statistics.median(r.bound for r in rows[False])
        cluster = MembershipCluster(6, seed=0, encode=False, network=network)
        cluster.start(spread=0.5)
        cluster.sim.run_for(5.0)
        timeout = max(cluster.view(i).probe_timeout(cluster.ids[0]) for i in range(1, 6))
        kill = statistics.median(r.detect for r in rows[True])
        silent = [r.detect for r in rows[False]]
        label = f"{rtt * 1000:g} ms" if rtt < 1 else f"{rtt:g} s"
        print(f"| {label} | {timeout:.2f} s | {kill:.1f} s | {statistics.median(silent):.1f} s"
              f" / {max(silent):.1f} s | {rto:.1f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,10,50,200")
    parser.add_argument("--quick", action="store_true", help="fewer seeds")
    parser.add_argument("--typed", action="store_true", help="skip the wire codec (faster)")
    parser.add_argument("--rtts", action="store_true",
                        help="the README's table: six nodes, detection by round-trip time")
    args = parser.parse_args()
    if args.rtts:
        rtt_table(5 if args.quick else 20)
        return
    seeds = {5: 50, 10: 50, 50: 20, 200: 8}
    if args.quick:
        seeds = {5: 10, 10: 10, 50: 5, 200: 2}
    cfg = lan()
    print(
        f"profile lan(): probe {cfg.probe_interval}s, timeout"
        f" {cfg.probe_timeout_min}..{cfg.probe_timeout_max}s from measured RTT,"
        f" suspicion x{cfg.suspicion_mult} (max x{cfg.suspicion_max_timeout_mult}),"
        f" gossip {cfg.gossip_interval}s to {cfg.gossip_nodes};"
        f" wire codec {'off' if args.typed else 'on'}"
    )
    print("detection = kill until every other node marks it dead, virtual seconds")
    print(
        f"{'N':>4} {'kill':>6} {'seeds':>5} {'median':>8} {'p99':>8} {'max':>8} {'bound':>8}"
        f" {'suspect':>8} {'cpu/vsec':>10} {'msgs/s':>10}"
    )
    for n in (int(x) for x in args.sizes.split(",")):
        for hinted in (False, True):
            report(n, seeds.get(n, 10), hinted=hinted, encode=not args.typed)


if __name__ == "__main__":
    main()
