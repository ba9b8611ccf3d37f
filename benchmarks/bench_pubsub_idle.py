"""What an idle cluster of real nodes costs, and what wakes it: CPU and wake-ups per node, by task.

Starts ``--nodes`` full nodes (one process each, as ``bench_pubsub.py``'s ``procs`` set-up:
``_pubsub_worker.py``, bootstrapped to the first, every node subscribed to ``bench``), waits
until they are meshed and then ``--settle`` seconds more, and measures ``--seconds`` of quiet:

- CPU per node, exact, from /proc/PID/task/*/schedstat (every thread, first field: ns on CPU),
  as a percentage of one core; and the times a node's threads were scheduled in (third field);
- task steps per node by trio task name (a trio instrument in each worker), a second: which
  component wakes an idle node, and how often.

Medians and maxima over the nodes. Run by hand:

    python benchmarks/bench_pubsub_idle.py [--nodes 10] [--settle 5] [--seconds 20]
        [--load 1000:10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_pubsub import _stop_workers, _Worker


def _schedstat(pid: int) -> tuple[int, int]:
    """(ns on CPU, times scheduled in) over every thread of ``pid``."""
    cpu = slices = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            fields = (task / "schedstat").read_text().split()
            cpu += int(fields[0])
            slices += int(fields[2])
    return cpu, slices


def _component(task_name: str) -> str:
    """A task name without its instance detail (addresses, peer IDs, numbers)."""
    name = re.sub(r"<.*?>|0x[0-9a-f]+|\b[0-9a-f]{8,}\b|\d+", "", task_name)
    return name.strip(" .-:") or task_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--top", type=int, default=15, help="components listed")
    parser.add_argument("--load", metavar="RATE:SECONDS", help="first publish RATE messages "
                        "a second for SECONDS (spread over the nodes, as bench_pubsub's steps), "
                        "then settle and measure: the idle that follows a load")
    args = parser.parse_args()
    from bzzz_edge.cluster import LocalCluster

    with tempfile.TemporaryDirectory(prefix="bench-pubsub-idle-") as base:
        cluster = LocalCluster(Path(base), args.nodes)
        workers = [_Worker(0, args.nodes, cluster.nodes[0].data_dir, None)]
        workers += [_Worker(i, args.nodes, cluster.nodes[i].data_dir, workers[0].port)
                    for i in range(1, args.nodes)]
        try:
            for worker in workers:
                worker.send("mesh")
            for worker in workers:
                worker.expect("meshed")
            if args.load:
                rate, seconds = (float(x) for x in args.load.split(":"))
                start = time.time() + 1.0
                for worker in workers:
                    worker.send(f"run {start} {json.dumps([[rate, seconds]])}")
                for worker in workers:
                    worker.expect("result")
            time.sleep(args.settle)  # an idle cluster: nothing to wait for but time
            for worker in workers:
                worker.send("steps")  # starts counting
                worker.expect("steps")
            load = os.getloadavg()[0]
            before = [_schedstat(w.proc.pid) for w in workers]
            time.sleep(args.seconds)
            after = [_schedstat(w.proc.pid) for w in workers]
            steps: list[Counter[str]] = []
            for worker in workers:
                worker.send("steps")
                counted: Counter[str] = Counter()
                for name, n in json.loads(worker.expect("steps")).items():
                    counted[_component(name)] += n
                steps.append(counted)
        finally:
            _stop_workers(workers)
    cpu = [100 * (a[0] - b[0]) / 1e9 / args.seconds for a, b in zip(after, before, strict=True)]
    slices = [(a[1] - b[1]) / args.seconds for a, b in zip(after, before, strict=True)]
    after_load = f", after {args.load} (rate:seconds)" if args.load else ""
    print(f"{args.nodes} idle nodes, {args.seconds:g} s after {args.settle:g} s settled"
          f"{after_load}, load "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  CPU per node: median {statistics.median(cpu):.2f}%, max {max(cpu):.2f}% of a core"
          f"  ({' '.join(f'{c:.2f}' for c in cpu)})")
    print(f"  scheduled in per node a second: median {statistics.median(slices):.1f}, "
          f"max {max(slices):.1f}")
    total: Counter[str] = Counter()
    for counted in steps:
        total.update(counted)
    print(f"  task steps a second per node (mean over nodes), top {args.top}:")
    for name, n in total.most_common(args.top):
        print(f"    {n / args.nodes / args.seconds:7.2f}  {name}")


if __name__ == "__main__":
    main()
