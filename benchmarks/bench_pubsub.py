"""Pub/sub on real nodes: latency, sustained rate, copies and CPU per message; py-libp2p too.

Ten nodes on loopback, 256-byte messages, every node subscribed to one topic and publishing
its share of the load (see _pubsub_workload.py). Per run: a low-rate step (5 messages a
second for 6 s: publish-to-delivered-at-all latency p50/p99), then a ladder of rates, 2 s each:
the highest rate delivered to all with no loss, at 90 % of the offered rate at least (over the
time it really took) and a p99 within three times the low-rate one (at least 50 ms): "before
latency or loss blows up"; and the CPU per message at that rate. Three set-ups:

- ``procs``: one process per node, each a full ``bzzz-edge run`` (_pubsub_worker.py), bootstrapped
  to the first; the repetitions run in one cluster; also the copies received per delivery
  (router counters) and the CPU of the idle cluster per node (10 s from 10 s after the last
  run; the first 10 s, while the nodes settle what the ladder's overload left, apart);
- ``inprocess``: all nodes in this process, each a connection manager and the pub/sub service
  (no membership, no HTTP), fully connected, a fresh cluster per run; what set-up made is then
  frozen out of the garbage collector's way (``gc.freeze``), as a node does once started;
- ``libp2p``: py-libp2p 0.8.1 gossipsub, all nodes in one process, same workload (its ladder is
  scaled down, it cannot take ours), installed by this script into its own virtual environment
  (``--libp2p-venv``, default /tmp/bzzz-bench-libp2p; pip must reach PyPI).

CPU per message is the CPU of every node (all processes) over the step, idle work included,
per message published; ``cpu_ms_per_msg_less_idle`` takes off the low-rate step's CPU a second
(what the nodes spend anyway). Each run also records the machine's 1-minute load average before and
after it (``load_before``, ``load_after``): the machine is shared, and ten processes on two
cores feel every other job. Medians of ``--runs`` runs (default 5). Run by hand:

    python benchmarks/bench_pubsub.py [--runs 5] [--nodes 10] [--only inprocess,libp2p]
        [--ladder 100,250,500,1000,1500,2000,3000] [--verbose]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).parent))
import contextlib

import _pubsub_workload as workload

HERE = Path(__file__).parent
LOW = [5, 6]
LADDER = [[250, 2], [500, 2], [1000, 2], [1500, 2], [2000, 2], [3000, 2], [4000, 2]]
LIBP2P_LADDER = [[2, 2], [4, 2], [8, 2], [16, 2], [32, 2]]
LIBP2P_VERSION = "0.8.1"
VERBOSE = "--verbose" in sys.argv


# --- reporting -----------------------------------------------------------------------------------

def _load() -> float:
    """The 1-minute load average: this machine is shared, and a 10-process run feels it."""
    return os.getloadavg()[0]


def _run_figures(steps: list[dict[str, Any]]) -> dict[str, float]:
    low = steps[0]
    extra = {"copies_per_delivery": low["copies_per_delivery"]} \
        if "copies_per_delivery" in low else {}
    at_best = workload.best_step(steps, low["p99_ms"])
    best = at_best["rate_all"] if at_best else 0.0
    # CPU per message at the best rate, else at the first step of the ladder.
    row = at_best or steps[1]
    cpu = row["cpu_s"] / row["messages"] if row["messages"] else math.nan
    # Less the CPU the nodes spend anyway (membership, keepalives, heartbeats), taken as the
    # low-rate step's CPU a second: at 100 messages a second it would be most of the figure.
    busy = row["cpu_s"] - low.get("cpu_s", math.nan) / low["seconds"] * row["seconds"]
    marginal = busy / row["messages"] if row["messages"] else math.nan
    # The most delivered to all a second on any step, loss or not: what still compares when a
    # loaded machine leaves no step clean (best_rate 0).
    peak = max((row["rate_all"] for row in steps[1:]), default=0.0)
    return {"p50_ms": low["p50_ms"], "p99_ms": low["p99_ms"], "delivered_low": low["delivered_all"],
            "best_rate": best, "peak_rate": peak, "cpu_ms_per_msg": 1000 * cpu,
            "cpu_ms_per_msg_less_idle": 1000 * marginal,
            "cpu_ms_per_msg_low": 1000 * low.get("cpu_s", math.nan) / max(1, low["messages"]),
            **extra}


def _report(name: str, runs: list[dict[str, float]]) -> dict[str, float]:
    keys = runs[0].keys()
    medians = {k: workload.median([r[k] for r in runs]) for k in keys}
    print(f"{name}: " + ", ".join(f"{k}={v:.3g}" for k, v in medians.items())
          + f"  (medians of {len(runs)})", flush=True)
    return medians


# --- all nodes in this process -------------------------------------------------------------------

async def _inprocess_run(nodes: int, schedule: list[list[float]]) -> list[dict[str, Any]]:
    from bzzz_edge.config import load_config
    from bzzz_edge.gossip.service import GossipService
    from bzzz_edge.identity import Identity, network_id
    from bzzz_edge.net import ConnectionManager, NetLimits, Source
    from bzzz_edge.peering import gossip_config as _gossip_config

    config = load_config(environ={}, flags={})
    key = secrets.token_bytes(32)
    peers = []
    for _ in range(nodes):
        identity = Identity.generate()
        manager = ConnectionManager(identity, key, listen=("127.0.0.1", 0),
                                    limits=NetLimits.from_settings(config.settings.network))
        service = GossipService(manager, identity, network_id(key),
                                settings=config.settings.gossip, router=_gossip_config(config),
                                standard_topics=(), rng=random.Random())
        peers.append((identity.node_id, manager, service))
    received: list[list[tuple[int, int, int]]] = [[] for _ in range(nodes)]
    published: dict[tuple[int, int], int] = {}
    cpu: list[float] = []
    async with trio.open_nursery() as nursery:
        ports = [await nursery.start(manager.run) for _, manager, _ in peers]
        for _, _, service in peers:
            await nursery.start(service.run)
        for i, (_, manager, _) in enumerate(peers):
            for j in range(i):
                manager.want(("127.0.0.1", ports[j]), Source.BOOTSTRAP)
        # Others' messages only, as an application that only wants those asks for them (its
        # own publications are neither queued for it nor wake it).
        subscriptions = [service.subscribe("bench", buffer=1_000_000, others_only=True)
                         for _, _, service in peers]
        with trio.fail_after(60):
            while any(len(m.connections) < nodes - 1
                      or s.router.topic_stats()["bench"].subscribed_peers < nodes - 1
                      for _, m, s in peers):
                await trio.sleep(0.05)
        # As a node does once started (node.py): what set-up made lives as long as the nodes,
        # frozen, so full collections no longer scan it (nor the last run's leftovers).
        gc.collect()
        gc.freeze()

        async def receive(index: int) -> None:
            async for delivery in subscriptions[index]:
                at = time.time_ns()
                step, k, _ = workload.parse(delivery.data)
                received[index].append((step, k, at))

        for index in range(nodes):
            nursery.start_soon(receive, index)
        start = time.time() + 0.5
        async with trio.open_nursery() as publishers:
            for index, (_, _, service) in enumerate(peers):
                async def publish(data: bytes, service: GossipService = service) -> None:
                    service.publish("bench", data)

                publishers.start_soon(workload.publish_share, publish, index, nodes, schedule,
                                      start, published, cpu if index == 0 else None)
        await trio.sleep(2.0)
        stats = [s.router.topic_stats()["bench"] for _, _, s in peers]
        nursery.cancel_scope.cancel()
    steps = workload.summarize(schedule, nodes, published, received)
    for n, row in enumerate(steps):
        row["cpu_s"] = cpu[2 * n + 1] - cpu[2 * n]
    remote = sum(st.delivered for st in stats) - len(published)
    steps[0]["copies_per_delivery"] = \
        (remote + sum(st.duplicates for st in stats)) / remote if remote else math.nan
    return steps


def bench_inprocess(nodes: int, runs: int) -> dict[str, float]:
    schedule = [LOW, *LADDER]
    figures = []
    for _ in range(runs):
        load = _load()
        steps = trio.run(_inprocess_run, nodes, schedule)
        if VERBOSE:
            for row in steps:
                print("   ", json.dumps(row), flush=True)
        figures.append({**_run_figures(steps), "load_before": load, "load_after": _load()})
    return _report(f"bzzz-edge, {nodes} nodes in one process", figures)


# --- one process per node ------------------------------------------------------------------------

def _stop_workers(workers: list[_Worker]) -> None:
    """Ask every worker to quit, then wait for each (killed after 20 s)."""
    for worker in workers:
        with contextlib.suppress(BrokenPipeError, OSError):
            worker.send("quit")
    for worker in workers:
        try:
            worker.proc.wait(20)
        except subprocess.TimeoutExpired:
            worker.proc.kill()


class _Worker:
    def __init__(self, index: int, nodes: int, data_dir: Path, bootstrap: int | None) -> None:
        args = [sys.executable, str(HERE / "_pubsub_worker.py"), str(index), str(nodes),
                "--data-dir", str(data_dir), "--listen", "127.0.0.1:0",
                "--api-listen", "127.0.0.1:0", "--set", "network.mdns=false",
                "--log-format", "json", "--log-level", "warning"]
        if bootstrap is not None:
            args += ["--set", f"network.bootstrap_peers=127.0.0.1:{bootstrap}"]
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        self.port = int(self.expect("ready"))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, word: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(word):
            raise RuntimeError(f"worker said {line!r}, expected {word}")
        return line[len(word):].strip()


def bench_procs(nodes: int, runs: int) -> dict[str, float]:
    from bzzz_edge.cluster import LocalCluster

    schedule = [LOW, *LADDER]
    with tempfile.TemporaryDirectory(prefix="bench-pubsub-") as base:
        cluster = LocalCluster(Path(base), nodes)  # data dirs and keys; started here
        workers = [_Worker(0, nodes, cluster.nodes[0].data_dir, None)]
        workers += [_Worker(i, nodes, cluster.nodes[i].data_dir, workers[0].port)
                    for i in range(1, nodes)]
        try:
            for worker in workers:
                worker.send("mesh")
            for worker in workers:
                worker.expect("meshed")
            figures, before = [], [dict.fromkeys(("delivered", "duplicates"), 0)] * nodes
            for _ in range(runs):
                load = _load()
                start = time.time() + 1.0
                for worker in workers:
                    worker.send(f"run {start} {json.dumps(schedule)}")
                results = [json.loads(worker.expect("result")) for worker in workers]
                published = {(s, k): t for r in results for s, k, t in r["published"]}
                steps = workload.summarize(schedule, nodes, published,
                                           [r["received"] for r in results])
                for n, row in enumerate(steps):
                    row["cpu_s"] = sum(r["cpu"][2 * n + 1] - r["cpu"][2 * n] for r in results)
                if VERBOSE:
                    for row in steps:
                        print("   ", json.dumps(row), flush=True)
                run = _run_figures(steps)
                remote = sum(r["stats"]["delivered"] - b["delivered"] - len(r["published"])
                             for r, b in zip(results, before, strict=True))
                copies = sum(r["stats"]["delivered"] + r["stats"]["duplicates"]
                             - b["delivered"] - b["duplicates"] - len(r["published"])
                             for r, b in zip(results, before, strict=True))
                run["copies_per_delivery"] = copies / remote if remote else math.nan
                run["load_before"], run["load_after"] = load, _load()
                before = [r["stats"] for r in results]
                if VERBOSE:
                    print("   run:", json.dumps(run), flush=True)
                figures.append(run)
            pids = [w.proc.pid for w in workers]
            # Right after the ladder the nodes still settle what its overload left (repair of
            # messages dropped or never sent, late deliveries, membership and consensus
            # catching up): not an idle cluster yet. Both windows are reported.
            after = _idle_cpu(pids, seconds=10.0)
            idle = _idle_cpu(pids, seconds=10.0)
        finally:
            _stop_workers(workers)
    medians = _report(f"bzzz-edge, {nodes} nodes, one process each", figures)
    print(f"  idle cluster: {max(idle):.2f}% of a core at most per node, median "
          f"{workload.median(idle):.2f}% (10 s, from 10 s after the ladder); in the first 10 s "
          f"after it: {max(after):.2f}% at most, median {workload.median(after):.2f}%",
          flush=True)
    medians["idle_max"], medians["idle_median"] = max(idle), workload.median(idle)
    return medians


def _idle_cpu(pids: list[int], seconds: float) -> list[float]:
    """Each process's CPU over ``seconds``, in % of a core: exact, from the scheduler's
    per-thread accounting."""
    before = [_cpu_ns(pid) for pid in pids]
    time.sleep(seconds)  # measuring an idle cluster: nothing to wait for
    return [100 * (_cpu_ns(pid) - b) / 1e9 / seconds for pid, b in zip(pids, before,
                                                                        strict=True)]


def _cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of every thread of ``pid`` (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


# --- py-libp2p -----------------------------------------------------------------------------------

def _libp2p_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('libp2p'))"]
    if python.exists() and subprocess.run(check, capture_output=True, text=True
                                          ).stdout.strip() == LIBP2P_VERSION:
        return python
    print(f"installing libp2p {LIBP2P_VERSION} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"libp2p=={LIBP2P_VERSION}"],
                   check=True)
    return python


def bench_libp2p(nodes: int, runs: int, venv: Path) -> dict[str, float]:
    python = _libp2p_python(venv)
    schedule = [LOW, *LIBP2P_LADDER]
    figures = []
    for _ in range(runs):
        load = _load()
        out = subprocess.run([str(python), str(HERE / "_pubsub_libp2p.py"), str(nodes),
                              json.dumps(schedule)], capture_output=True, text=True,
                             timeout=600, check=True).stdout
        steps = json.loads(out.strip().splitlines()[-1])["steps"]
        if VERBOSE:
            for row in steps:
                print("   ", json.dumps(row), flush=True)
        figures.append({**_run_figures(steps), "load_before": load, "load_after": _load()})
    return _report(f"py-libp2p {LIBP2P_VERSION} gossipsub, {nodes} nodes in one process",
                   figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--only", help="set-ups to run, comma-separated: procs, inprocess, "
                        "libp2p (default all three)")
    parser.add_argument("--verbose", action="store_true", help="print every step of every run")
    parser.add_argument("--libp2p-venv", type=Path, default=Path("/tmp/bzzz-bench-libp2p"))
    parser.add_argument("--ladder", help="bzzz-edge's rates, comma-separated (2 s each; "
                        f"default {','.join(str(r) for r, _ in LADDER)})")
    args = parser.parse_args()
    if args.ladder:
        LADDER[:] = [[float(rate), 2] for rate in args.ladder.split(",")]
    print(f"{args.nodes} nodes, 256-byte messages, {os.cpu_count()} CPUs; low rate "
          f"{LOW[0]}/s for {LOW[1]} s; ladder {[r for r, _ in LADDER]}/s", flush=True)
    only = set(args.only.split(",")) if args.only else {"procs", "inprocess", "libp2p"}
    if only - {"procs", "inprocess", "libp2p"}:
        parser.error(f"--only: unknown set-up(s) {sorted(only - {'procs', 'inprocess', 'libp2p'})}")
    results = {}
    if "inprocess" in only:
        results["inprocess"] = bench_inprocess(args.nodes, args.runs)
    if "libp2p" in only:
        results["libp2p"] = bench_libp2p(args.nodes, args.runs, args.libp2p_venv)
    if "procs" in only:
        results["procs"] = bench_procs(args.nodes, args.runs)
    if "inprocess" in results and "libp2p" in results:
        ours, theirs = results["inprocess"], results["libp2p"]
        peak = ours["peak_rate"] / max(theirs["peak_rate"], 1e-9)
        print(f"all in one process, same run: p50 {theirs['p50_ms'] / ours['p50_ms']:.0f}x "
              f"lower, rate {ours['best_rate'] / max(theirs['best_rate'], 1e-9):.0f}x higher "
              f"(peak delivered-to-all rate {peak:.0f}x), CPU per message "
              f"{theirs['cpu_ms_per_msg'] / ours['cpu_ms_per_msg']:.0f}x lower "
              "than py-libp2p", flush=True)


if __name__ == "__main__":
    main()
