"""Two code trees side by side on one noisy machine: commit latency, commits per second and CPU
per commit, 5 node processes each. Does I/O (processes, sockets, HTTP).

Both clusters run at once (an idle cluster costs little); the measurements alternate between
them, round after round, so both see the same load. CPU per commit, per node process, is read
from ``/proc/PID/task/*/schedstat`` (exact, and far steadier than latency on a shared machine).

    python benchmarks/bench_raft_ab.py OLD_TREE NEW_TREE [--rounds 5] [--count 200]
        [--seconds 4] [--nodes 5]

A tree is a checkout of bzzz-edge (its ``bzzz_edge`` package is put first on the nodes'
PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_raft as B  # noqa: E402

from bzzz_edge.cluster import ClusterNode, LocalCluster  # noqa: E402


def _cpu_ns(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def _cpus(cluster: LocalCluster) -> list[int]:
    return [_cpu_ns(n.process.pid) for n in cluster.nodes if n.process is not None]


def _commit_index(leader: ClusterNode) -> int:
    return int(leader.get("/api/v1/coordination")["commit_index"])


class Side:
    def __init__(self, name: str, tree: Path, base: Path, nodes: int) -> None:
        self.name = name
        env = {"PYTHONPATH": str(tree)}
        if os.environ.get("BZZZ_EDGE_PURE"):
            env["BZZZ_EDGE_PURE"] = os.environ["BZZZ_EDGE_PURE"]
        self.cluster = LocalCluster(base / name, nodes, env=env)
        self.nodes = nodes
        self.leader: ClusterNode | None = None
        self.results: dict[str, list[float]] = {}

    def start(self) -> None:
        self.cluster.start()
        self.cluster.wait_for_mesh(timeout=60)
        self.leader = B._leader(self.cluster, self.nodes)
        client = B._Client(self.leader)
        for i in range(50):
            client.call("POST", "/api/v1/coordination/propose", {"data": f"warm-{i}"})

    def record(self, key: str, value: float) -> None:
        self.results.setdefault(key, []).append(value)

    def _cpu_split(self, before: list[int], after: list[int], commits: int, key: str) -> None:
        assert self.leader is not None
        index = self.cluster.nodes.index(self.leader)
        deltas = [a - b for a, b in zip(after, before, strict=True)]
        per = max(commits, 1)
        self.record(f"{key}_leader_us", deltas[index] / per / 1000)
        followers = [d for i, d in enumerate(deltas) if i != index]
        self.record(f"{key}_follower_us", statistics.mean(followers) / per / 1000)
        self.record(f"{key}_total_us", sum(deltas) / per / 1000)

    def latency(self, count: int) -> None:
        assert self.leader is not None
        client = B._Client(self.leader)
        first = _commit_index(self.leader)
        before = _cpus(self.cluster)
        samples = B._timed_proposals(
            client, (f"lat-{i}-{time.monotonic_ns()}" for i in range(count)))
        after = _cpus(self.cluster)
        commits = _commit_index(self.leader) - first
        self.record("http_p50_ms", B._pct(samples, 0.5) * 1000)
        self.record("http_p99_ms", B._pct(samples, 0.99) * 1000)
        inside = client.call("GET", "/api/v1/coordination")[1]["commit_latency_ms"]
        self.record("node_p50_ms", inside["p50"])
        self._cpu_split(before, after, commits, "seq_cpu")
        # One proposer as a task in the coordinator's process: no HTTP, what issue 14 compares
        # with pysyncobj's in-process figure.
        status, answer = client.call("POST", "/api/v1/coordination/bench",
                                     {"proposers": 1, "seconds": 2})
        assert status == 200, answer
        self.record("inproc_p50_ms", answer["p50_ms"])
        self.record("inproc_p99_ms", answer["p99_ms"])

    def throughput(self, seconds: float) -> None:
        assert self.leader is not None
        first = _commit_index(self.leader)
        before, client_before = _cpus(self.cluster), time.process_time()
        rate = B._throughput(self.leader, 32, seconds)
        after, client_after = _cpus(self.cluster), time.process_time()
        commits = _commit_index(self.leader) - first
        self.record("http_commits_per_s", rate)
        self.record("http_client_cpu_us", (client_after - client_before) / commits * 1e6)
        self._cpu_split(before, after, commits, "tput_cpu")
        first = _commit_index(self.leader)
        before = _cpus(self.cluster)
        rate, client_cpu = B._throughput_light(self.leader, 32, seconds)
        after = _cpus(self.cluster)
        commits = _commit_index(self.leader) - first
        self.record("light_commits_per_s", rate)
        self.record("light_client_cpu_us", client_cpu * 1e6)
        self._cpu_split(before, after, commits, "light_cpu")

    def inside(self, seconds: float) -> None:
        assert self.leader is not None
        status, answer = B._Client(self.leader).call(
            "POST", "/api/v1/coordination/bench", {"proposers": 32, "seconds": seconds})
        assert status == 200, answer
        self.record("node_commits_per_s", answer["commits_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench-raft-ab-") as tmp:
        sides = [Side("old", args.old, Path(tmp), args.nodes),
                 Side("new", args.new, Path(tmp), args.nodes)]
        try:
            for side in sides:
                side.start()
            for r in range(args.rounds):
                order = sides if r % 2 == 0 else sides[::-1]
                for side in order:
                    loads.append(os.getloadavg()[0])
                    side.latency(args.count)
                    if not args.no_throughput:
                        side.throughput(args.seconds)
                        side.inside(args.seconds)
                print(f"round {r + 1} done, load {os.getloadavg()[0]:.2f}", flush=True)
        finally:
            for side in sides:
                side.cluster.__exit__(None, None, None)
    keys = list(sides[0].results)
    print(f"{'figure (median of rounds)':<24} {'old':>10} {'new':>10}   runs old | new")
    for key in keys:
        old, new = sides[0].results[key], sides[1].results.get(key, [])
        print(f"{key:<24} {statistics.median(old):>10.2f} {statistics.median(new):>10.2f}   "
              f"{[round(x, 2) for x in old]} | {[round(x, 2) for x in new]}")
    print(f"load average while measuring: median {statistics.median(loads):.2f}, "
          f"max {max(loads):.2f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
