"""The Raft core in the deterministic simulator: failover, commit latency, chaos, CPU cost.

Virtual-time figures (the simulator's clock, links of 0.3 ms +- 0.4 ms):

- failover: a 5-voter cluster at ``lan()`` settings; the leader dies at a random phase of its
  heartbeat; time until another node is leader. Three kinds of death: a kill -9 (its
  connections close, which tells the followers at once: ``LeaderLost``), a silent one (a power
  cut: only the election timeout notices), and a silent one that membership declares 150 ms
  after it.
- commit latency: proposals to the leader one at a time; time until the leader applies it.

Wall-clock figures: chaos runs (``chaos_run``, each seed checked for safety and liveness) per
second, and proposals the simulated cluster commits per CPU second (the core's own cost, five
cores in one process, messages in msgpack wire form).

Run: .venv/bin/python benchmarks/bench_raft_sim.py [--seeds 2000] [--first 0] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bzzz_edge.consensus import Apply, LeaderLost, Propose
from bzzz_edge.sim import NetworkConfig
from bzzz_edge.sim._raft import RaftCluster, chaos_run

NET = NetworkConfig(latency=0.0003, jitter=0.0004)


def failover(seed: int, kind: str) -> float:
    cluster = RaftCluster(5, seed=seed, network=NET)
    cluster.start()
    cluster.sim.run_until_true(lambda: cluster.stable_leader() is not None, timeout=3)
    cluster.sim.run_for(0.5 + (seed % 50) * 0.00097)
    old = cluster.leader()
    assert old is not None
    if kind == "kill -9":
        cluster.kill(old)
    else:
        cluster.sim.kill(old)  # nothing closes
    killed = cluster.sim.now
    if kind == "silent, membership at 150 ms":
        for node in cluster.running():
            cluster.sim.inject(node, LeaderLost(old), at=killed + 0.15)
    cluster.sim.run_until_true(lambda: cluster.leader() not in (None, old), timeout=10,
                               every=0.001)
    return cluster.sim.now - killed


def commit_latency(n: int, count: int) -> list[float]:
    cluster = RaftCluster(n, seed=1, network=NET)
    cluster.start()
    sim = cluster.sim
    sim.run_until_true(lambda: cluster.stable_leader() is not None, timeout=3)
    leader = cluster.leader()
    assert leader is not None
    done: dict[bytes, float] = {}
    sim.observe(lambda node, action, now: done.update(
        {e.data: now for e in action.entries} if node == leader and isinstance(action, Apply)
        else {}))
    out = []
    for i in range(count):
        command = b"lat-%d" % i
        start = sim.now
        sim.inject(leader, Propose(i, command))
        sim.run_until_true(lambda c=command: c in done, timeout=1, every=0.0001)  # type: ignore[misc]
        out.append(done[command] - start)
    return out


def throughput(seconds: float) -> tuple[float, int]:
    cluster = RaftCluster(5, seed=2, network=NET)
    cluster.start()
    sim = cluster.sim
    sim.run_until_true(lambda: cluster.stable_leader() is not None, timeout=3)
    started, cpu0 = cluster.checker.max_applied, time.process_time()
    end = sim.now + seconds
    while sim.now < end:
        for _ in range(32):
            cluster.propose()
        sim.run_for(0.002)
    sim.run_for(0.1)
    committed = cluster.checker.max_applied - started
    return committed / (time.process_time() - cpu0), committed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--first", type=int, default=0, help="first chaos seed")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = 20 if args.quick else 100
    for kind in ("kill -9", "silent", "silent, membership at 150 ms"):
        times = [failover(seed, kind) for seed in range(runs)]
        print(f"failover ({kind}, {runs} deaths): "
              f"median {statistics.median(times) * 1000:.0f} ms, "
              f"p99 {pct(times, 0.99) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
    for n in (3, 5):
        lat = commit_latency(n, 200)
        print(f"commit latency, {n} voters (virtual): p50 {pct(lat, 0.5) * 1000:.2f} ms, "
              f"p99 {pct(lat, 0.99) * 1000:.2f} ms")
    rate, committed = throughput(0.5 if args.quick else 2.0)
    print(f"core cost: {rate:,.0f} commits per CPU second for 5 simulated nodes "
          f"({committed} committed)")
    seeds = 30 if args.quick else args.seeds
    started = time.perf_counter()
    bad, recovery = [], []
    for seed in range(args.first, args.first + seeds):
        for kwargs in ({"n": 5}, {"n": 5, "voters": 3, "reconfigure": True}):
            result = chaos_run(seed, **kwargs)  # type: ignore[arg-type]
            recovery.append(result.recovery)
            if result.violations or not result.recovered:
                bad.append((seed, kwargs, result.violations[:2], result.recovered))
    wall = time.perf_counter() - started
    print(f"chaos: {2 * seeds} runs in {wall:.1f} s ({2 * seeds / wall:.1f}/s), "
          f"{len(bad)} failed; recovery after healing median "
          f"{statistics.median(recovery):.2f} s, max {max(recovery):.2f} s")
    for entry in bad[:10]:
        print("  FAILED", entry)


if __name__ == "__main__":
    main()
