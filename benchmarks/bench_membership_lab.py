"""Membership on a six-node lab of real processes in network namespaces, under faults.

For each network condition (wired; 20 +- 5 ms and 200 +- 50 ms of one-way delay from a
userspace delay switch; 10 % and 30 % frame loss from nftables on the bridge) it:

1. applies the condition and lets round-trip estimates settle (``--settle`` seconds; the false
   suspicions of that switch-over are reported on their own, as "switch susp");
2. watches the running cluster for ``--seconds`` and counts false declarations: every
   ``-> suspect`` and ``-> dead`` a node logs about a live peer, per node-minute;
3. measures the CPU time each node process used meanwhile (percent of one core);
4. kills a node with SIGKILL ``--kills`` times (a different one each time, restarted after) and
   times how long until every other node has logged it dead (node log timestamps).

Needs root, iproute2, nft and ethtool (see tests/_harness/membership_lab.py).

Run: .venv/bin/python benchmarks/bench_membership_lab.py [--seconds 60] [--kills 10]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HARNESS = Path(__file__).resolve().parents[1] / "tests" / "_harness" / "membership_lab.py"

CONDITIONS: dict[str, dict[str, float]] = {
    "wired": {},
    "20+-5ms": {"delay": 0.02, "jitter": 0.005},
    "200+-50ms": {"delay": 0.2, "jitter": 0.05},
    "loss10%": {"loss": 0.1},
    "loss30%": {"loss": 0.3},
}


def load_harness() -> Any:
    key = "_bzzz_test_harness_membership_lab"
    spec = importlib.util.spec_from_file_location(key, HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


def measure(lab: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    lab.set_condition(**CONDITIONS[name], seed=len(name))
    switched = time.time()
    time.sleep(args.settle)  # the settling period is part of the experiment
    since = time.time()
    cpu_before = [node.cpu_seconds() for node in lab.nodes]
    time.sleep(args.seconds)
    until = time.time()
    cpu = [
        (node.cpu_seconds() - before) / (until - since) * 100
        for node, before in zip(lab.nodes, cpu_before, strict=True)
    ]
    node_minutes = len(lab.nodes) * (until - since) / 60
    detections = []
    for k in range(args.kills):
        victim = 1 + k % (len(lab.nodes) - 1)
        t_kill = lab.kill9(victim)
        detections.append(lab.detection(victim, t_kill, timeout=120.0))
        lab.restart(victim, timeout=120.0)
        # A restart is a burst of CPU on two cores: the others' timers run late and Lifeguard
        # stretches their timeouts on purpose for a few seconds. Kill the next one from a
        # steady state (--between 0: back to back, detection while recovering from the last).
        time.sleep(args.between)
    lab.set_condition()
    return {
        "name": name,
        "dead": lab.count("dead", since, until) / node_minutes,
        "suspect": lab.count("suspect", since, until) / node_minutes,
        "switch_suspect": lab.count("suspect", switched, since),
        "switch_dead": lab.count("dead", switched, since),
        "median": statistics.median(detections) if detections else float("nan"),
        "max": max(detections) if detections else float("nan"),
        "cpu": statistics.median(cpu),
        "cpu_max": max(cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="observation per condition")
    parser.add_argument("--settle", type=float, default=10.0, help="after switching condition")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 per condition")
    parser.add_argument("--between", type=float, default=5.0,
                        help="seconds of steady state after a restart before the next kill")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    args = parser.parse_args()
    harness = load_harness()
    reason = harness.unavailable_reason()
    if reason is not None:
        sys.exit(f"lab unavailable: {reason}")
    print(
        f"six nodes, default profile; {args.seconds:g} s per condition after {args.settle:g} s"
        f" to settle; kill -9 x{args.kills}, {args.between:g} s apart after each restart;"
        f" false declarations per node-minute"
    )
    print(
        f"{'condition':<11} {'false dead':>10} {'false susp':>10} {'switch susp':>11}"
        f" {'switch dead':>11} {'kill9 med':>9} {'kill9 max':>9} {'cpu %':>6} {'cpu max':>7}"
    )
    with tempfile.TemporaryDirectory() as workdir, harness.MembershipLab(Path(workdir)) as lab:
        lab.start()
        lab.wait_until(lab.converged, 60, "six nodes converged")
        for name in args.conditions.split(","):
            r = measure(lab, name, args)
            print(
                f"{r['name']:<11} {r['dead']:>10.3f} {r['suspect']:>10.3f}"
                f" {r['switch_suspect']:>11d} {r['switch_dead']:>11d} {r['median']:>9.2f}"
                f" {r['max']:>9.2f} {r['cpu']:>6.2f} {r['cpu_max']:>7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
