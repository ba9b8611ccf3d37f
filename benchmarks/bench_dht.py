"""The DHT on real nodes: get latency and hops; bmuller's ``kademlia`` in the same run.

Three set-ups, medians of ``--runs`` runs (default 5):

- ``procs``: a local cluster of ``--nodes`` (20) ``bzzz-edge run`` processes (bootstrapped
  from the first; ``dht.k`` = ``--procs-k``, 4: with the default 20 every node would hold
  every record), once per ``--procs-profile`` (both by default, one cluster after the other):
  ``lan``, the timings every node runs unless told otherwise, and ``local``, the tests' fast
  ones (membership probes every 50 ms instead of 500 and gossips every 20 ms, the pub/sub
  heartbeat every 50 ms instead of 200). A get here is one RPC and a few tenths of a
  millisecond of work in the two processes; the rest of a slow get is the wait for the OS to
  run the reader, or the holder, again (traced: no dial, retry, long task step or garbage
  collection in the slowest 5%). With ``local``, 20 idle nodes keep most of a core of the 2
  busy probing each other (20 machines' worth of membership on one), and the gets wait
  behind that too. ``idle_cpu_pct`` (the nodes' CPU with nobody asking them anything,
  after the rounds, in % of one core, all nodes together) and ``runq_wait_ms`` (the nodes'
  mean wait in the run queue per time slice during the gets) say what each was measured
  under. ``--keys`` small values are written, each on a random node (``PUT ?publish=wait``);
  then each is read on another random node that does not hold it in its content store,
  through the HTTP API (``GET``, one keep-alive connection per node: ``http_get``, timed by
  this script), and looked up with ``/api/v1/dht/find`` for the hops.
  Each of those reads and lookups is one DHT get (``DhtService.get``: node to node over the
  transport's RPC) that the reading node times itself; ``get`` is those figures, collected from
  the nodes' ``/api/v1/dht`` status (``recent_get_ms``), so HTTP and UCXI are not in them. A
  reader that is one of the k nodes holding the record answers from its own store. The
  repetitions run in one cluster, with fresh keys.
- ``inprocess``: ``--nodes`` DHT services in this process, each over its own connection
  manager (TCP, Noise, RPC) and LMDB store, fully connected, with k=4 like the reference: the
  same puts and gets as calls on the services. Signatures are checked as always: every key is
  new, so every record a get receives is verified once. A node that holds the record answers
  from its own store, as ``kademlia``'s does.
- ``kademlia``: bmuller's ``kademlia`` 2.2.3 (asyncio over UDP, unsigned records, k=4), the same
  workload (_dht_kademlia.py), installed by this script into its own virtual environment
  (``--kademlia-venv``, default /tmp/bzzz-bench-kademlia; pip must reach PyPI). It runs
  alternately with ``inprocess``, run by run (``--only inprocess`` runs both; ``ours`` or
  ``kademlia`` one alone), so load that drifts on a shared machine weighs on both alike; the
  load average before and after is printed. Both draw their node IDs (and ours its keys and
  names) from the run's seed: run i has the same layout each time, so figures of two commits
  differ by the code, not by which nodes happened to be near which keys.

Run by hand:

    python benchmarks/bench_dht.py [--runs 5] [--nodes 20] [--keys 200] [--only procs|...]

Hops and messages per lookup at 200 and 1,000 nodes come from the simulator
(benchmarks/bench_dht_sim.py).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).parent
KADEMLIA_VERSION = "2.2.3"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _report(name: str, runs: list[dict[str, float]]) -> dict[str, float]:
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"{name}: " + ", ".join(f"{k}={v:.3g}" for k, v in medians.items())
          + f"  (medians of {len(runs)})", flush=True)
    return medians


# --- one process per node ------------------------------------------------------------------------

class _Http:
    """One keep-alive HTTP connection per node API."""

    def __init__(self, api: str) -> None:
        url = urllib.parse.urlsplit(api)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        try:
            self.conn.request(method, path, body=body)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the connection while it was idle (keep-alive timeout): the
            # request was not taken; send it again on a new one.
            self.conn.close()
            self.conn.request(method, path, body=body)
            response = self.conn.getresponse()
        return response.status, response.read()


def _timed_gets(clients: list[_Http]) -> list[tuple[int, list[float], int]]:
    """Per node: gets counted so far, the last gets' durations, dials so far (its DHT
    status)."""
    out = []
    for client in clients:
        status, body = client.call("GET", "/api/v1/dht")
        assert status == 200, body
        answer = json.loads(body)
        # A build from before the nodes timed their gets: none (reported as nan).
        out.append((answer["counters"].get("gets", 0), answer.get("recent_get_ms", []),
                    answer["counters"].get("dials", 0)))
    return out


def _schedstat(pids: list[int]) -> tuple[int, int, int]:
    """CPU time (ns), time waiting in the run queue (ns) and time slices of every thread of
    ``pids``, summed (/proc/PID/task/*/schedstat; zeros where there is none)."""
    totals = [0, 0, 0]
    for pid in pids:
        for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                fields = [int(f) for f in path.read_text().split()[:3]]
            except (OSError, ValueError):  # a thread that just ended
                continue
            totals = [a + b for a, b in zip(totals, fields, strict=True)]
    return totals[0], totals[1], totals[2]


def _idle_cpu_pct(pids: list[int], seconds: float = 3.0) -> float:
    """The nodes' CPU while nobody asks them anything, in % of one core (all together)."""
    before = _schedstat(pids)
    time.sleep(seconds)  # (a measuring window, not a wait for something to happen)
    return (_schedstat(pids)[0] - before[0]) / 1e9 / seconds * 100


def _procs_round(cluster: Any, clients: list[_Http], keys: int, seed: int,
                 rng: random.Random, pids: list[int] | None = None) -> dict[str, float]:
    n = len(clients)
    written: list[tuple[str, int]] = []
    for i in range(keys):
        address = f"ucxl://bench:dht@bench:r{seed}/*^/k{i}"
        writer = rng.randrange(n)
        status, body = clients[writer].call(
            "PUT", f"/ucxi/v1/{urllib.parse.quote(address, safe='')}?publish=wait",
            b"v" * 64)
        assert status == 201 and json.loads(body)["published"], body
        written.append((address, writer))
    gets: list[float] = []
    hops: list[int] = []
    queried: list[int] = []
    pings: list[float] = []  # the machine's floor: an HTTP request answered at once
    before = _timed_gets(clients)
    sched_before = _schedstat(pids or [])
    for address, writer in written:
        reader = rng.choice([i for i in range(n) if i != writer])
        path = f"/ucxi/v1/{urllib.parse.quote(address, safe='')}"
        began = time.perf_counter()
        status, _ = clients[reader].call("GET", "/health/live")
        pings.append((time.perf_counter() - began) * 1000)
        assert status == 200
        began = time.perf_counter()
        status, body = clients[reader].call("GET", path)
        gets.append((time.perf_counter() - began) * 1000)
        assert status == 200 and body == b"v" * 64, (status, body)
        status, body = clients[reader].call(
            "GET", f"/api/v1/dht/find?address={urllib.parse.quote(address, safe='')}")
        found = json.loads(body)
        hops.append(found["hops"])
        queried.append(found["queried"])
    _, waited, slices = (a - b for a, b in zip(_schedstat(pids or []), sched_before,
                                                strict=True))
    inside: list[float] = []  # each get as the reading node timed it: the DHT alone
    after = _timed_gets(clients)
    for (count, _, _), (now, recent, _) in zip(before, after, strict=True):
        assert now - count <= len(recent), "more gets than a node's status keeps"
        inside += recent[len(recent) - (now - count):] if now > count else []
    assert not inside or len(inside) == 2 * keys, (len(inside), keys)
    return {"get_p50_ms": _pct(inside, 0.5), "get_p99_ms": _pct(inside, 0.99),
            "http_get_p50_ms": _pct(gets, 0.5), "http_get_p99_ms": _pct(gets, 0.99),
            "hops_mean": statistics.mean(hops), "hops_max": max(hops),
            "rpcs_mean": statistics.mean(queried),
            "dials": sum(a[2] - b[2] for a, b in zip(after, before, strict=True)),
            "http_ping_p50_ms": _pct(pings, 0.5),
            "runq_wait_ms": waited / 1e6 / slices if slices else float("nan")}


def _wait_all_alive(cluster: Any, timeout: float) -> None:
    began, size = time.monotonic(), len(cluster.nodes)
    while True:
        lacking = [n for n in cluster.nodes
                   if sum(p["status"] == "alive" for p in n.peers().values()) < size - 1]
        if not lacking:
            return
        remaining = timeout - (time.monotonic() - began)
        if remaining <= 0:
            raise SystemExit(f"node{lacking[0].index} does not see every node alive")
        lacking[0].wait_for_new_log(timeout=min(remaining, 1.0))


def bench_procs(nodes: int, keys: int, runs: int, k: int, profile: str) -> dict[str, float]:
    from bzzz_edge.cluster import LocalCluster

    rng = random.Random(1)
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    with tempfile.TemporaryDirectory(prefix="bzzz-bench-dht-") as base, \
            LocalCluster(Path(base), nodes, extra_args=["--set", f"node.profile={profile}",
                                                        "--set", f"dht.k={k}",
                                                        "--set", "dht.peer_rate=100000",
                                                        "--set", "dht.peer_burst=100000"]
                         ) as cluster:
        cluster.start(timeout=120)
        _wait_all_alive(cluster, timeout=300)  # no full mesh of 20: the DHT dials as it asks
        clients = [_Http(node.api) for node in cluster.nodes]
        pids = [node.process.pid for node in cluster.nodes if node.process is not None]
        figures = []
        for run in range(runs):
            try:
                figures.append(_procs_round(cluster, clients, keys, run, rng, pids))
            except OSError as exc:  # a node went away: say which and why, keep what we have
                for node in cluster.nodes:
                    if not node.running:
                        code = node.process.poll() if node.process is not None else None
                        print(f"node{node.index} exited ({code}); its last log lines:\n  "
                              + "\n  ".join(node.messages[-15:]), file=sys.stderr, flush=True)
                print(f"round {run + 1} failed: {exc!r}", file=sys.stderr, flush=True)
                break
        if not figures:
            raise SystemExit("no round completed")
        idle = _idle_cpu_pct(pids)  # after the rounds: start-up's work is long over
        for figure in figures:
            figure["idle_cpu_pct"] = idle
    print("load average after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    return _report(f"bzzz-edge, {nodes} processes, k={k}, node.profile={profile} (get: the "
                   "DHT get timed in the reading node; http_get: the UCXI GET timed by the "
                   "client)", figures)


# --- all nodes in this process -------------------------------------------------------------------

class _NoMembership:
    core = None

    def __init__(self) -> None:
        from bzzz_edge.feed import Feed

        self.changes: Any = Feed("none")


async def _inprocess_run(nodes: int, keys: int, k: int, seed: int) -> dict[str, float]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bzzz_edge.config import load_config
    from bzzz_edge.dht import DhtConfig, Kind
    from bzzz_edge.dht.service import DhtService
    from bzzz_edge.dht.storage import DATABASES
    from bzzz_edge.identity import Identity, network_id
    from bzzz_edge.net import ConnectionManager, NetLimits, Source
    from bzzz_edge.store import Store

    config = load_config(environ={}, flags={})
    key = secrets.token_bytes(32)
    rng = random.Random(seed)
    dht_config = DhtConfig(k=k, peer_rate=1e6, peer_burst=10**6)
    with tempfile.TemporaryDirectory(prefix="bzzz-bench-dht-") as base:
        peers = []
        for i in range(nodes):  # node IDs and keys from the seed: run i is the same every time
            identity = Identity(Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)))
            manager = ConnectionManager(identity, key, listen=("127.0.0.1", 0),
                                        limits=NetLimits.from_settings(config.settings.network))
            store = Store(Path(base) / f"n{i}", map_size=64 * 2**20, databases=DATABASES)
            service = DhtService(manager, _NoMembership(), store, identity,
                                 network_id=network_id(key), config=dht_config,
                                 max_value_bytes=16384)
            peers.append((identity.node_id, manager, service, store))
        sets, gets, hops = [], [], []
        async with trio.open_nursery() as nursery:
            ports = [await nursery.start(manager.run) for _, manager, _, _ in peers]
            for i, (_, manager, _, _) in enumerate(peers):
                for j in range(i):
                    manager.want(("127.0.0.1", ports[j]), Source.BOOTSTRAP)
            with trio.fail_after(60):
                while any(len(m.connections) < nodes - 1 for _, m, _, _ in peers):
                    await trio.sleep(0.05)
            for _, _, service, _ in peers:
                await nursery.start(service.run)
            for i, (_, _, service, _) in enumerate(peers):
                for j, (node, _, _, _) in enumerate(peers):
                    if i != j:
                        service.discover(node, "127.0.0.1", ports[j])
            names = [rng.randbytes(32) for _ in range(keys)]
            for name in names:
                service = peers[rng.randrange(nodes)][2]
                record = service.sign(Kind.VALUE, name, value=b"v" * 64)
                began = time.perf_counter()
                await service.put(record)
                sets.append((time.perf_counter() - began) * 1000)
            found = 0
            for name in names:
                service = peers[rng.randrange(nodes)][2]
                began = time.perf_counter()
                done = await service.get(name)
                gets.append((time.perf_counter() - began) * 1000)
                found += bool(done.records)
                hops.append(done.result.hops)
            nursery.cancel_scope.cancel()
        for *_, store in peers:
            store.close()
    return {"get_p50_ms": _pct(gets, 0.5), "get_p99_ms": _pct(gets, 0.99),
            "set_p50_ms": _pct(sets, 0.5), "found": found / keys,
            "hops_mean": statistics.mean(hops)}


def bench_inprocess(nodes: int, keys: int, runs: int, k: int) -> dict[str, float]:
    figures = [trio.run(_inprocess_run, nodes, keys, k, run) for run in range(runs)]
    return _report(f"bzzz-edge, {nodes} nodes in one process, k={k}", figures)


def bench_compare(nodes: int, keys: int, runs: int, k: int,
                  venv: Path) -> dict[str, dict[str, float]]:
    """The in-process runs and ``kademlia``'s, alternated run by run, so that a machine whose
    load drifts weighs on both alike; the load average is shown before and after."""
    python = _kademlia_python(venv)
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    ours, theirs = [], []
    for run in range(runs):
        ours.append(trio.run(_inprocess_run, nodes, keys, k, run))
        theirs.append(_kademlia_run(python, nodes, keys, k, run))
    print("load average after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    return {"inprocess": _report(f"bzzz-edge, {nodes} nodes in one process, k={k}", ours),
            "kademlia": _report(f"kademlia {KADEMLIA_VERSION}, {nodes} nodes in one process, "
                                f"k={k}", theirs)}


# --- bmuller's kademlia --------------------------------------------------------------------------

def _kademlia_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    check = subprocess.run([str(python), "-c", "import kademlia; print(kademlia.__version__)"],
                           capture_output=True, text=True) if python.exists() else None
    if check is None or check.returncode != 0 or check.stdout.strip() != KADEMLIA_VERSION:
        print(f"installing kademlia {KADEMLIA_VERSION} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q",
                        f"kademlia=={KADEMLIA_VERSION}"], check=True)
    return python


def _kademlia_run(python: Path, nodes: int, keys: int, k: int, run: int) -> dict[str, float]:
    out = subprocess.run([str(python), str(HERE / "_dht_kademlia.py"), str(nodes), str(keys),
                          str(k), str(run)], capture_output=True, text=True, check=True,
                         timeout=600)
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def bench_kademlia(nodes: int, keys: int, runs: int, k: int, venv: Path) -> dict[str, float]:
    python = _kademlia_python(venv)
    figures = [_kademlia_run(python, nodes, keys, k, run) for run in range(runs)]
    return _report(f"kademlia {KADEMLIA_VERSION}, {nodes} nodes in one process, k={k}", figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--k", type=int, default=4, help="k of the in-process comparison")
    parser.add_argument("--procs-k", type=int, default=4,
                        help="dht.k of the processes (the default 20 puts every record on "
                             "all 20 nodes, so every get would be answered from the reader's "
                             "own store)")
    parser.add_argument("--procs-profile", choices=["lan", "local", "both"], default="both",
                        help="node.profile of the processes: lan (the default of every node), "
                             "local (the tests' fast timings, much more idle CPU), or both, "
                             "one cluster after the other")
    parser.add_argument("--only", choices=["procs", "inprocess", "ours", "kademlia"],
                        help="inprocess: ours and kademlia's, alternated run by run; ours, "
                             "kademlia: one of them alone")
    parser.add_argument("--kademlia-venv", type=Path, default=Path("/tmp/bzzz-bench-kademlia"))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.only in (None, "inprocess"):  # both in-process set-ups, run by run
        results.update(bench_compare(args.nodes, args.keys, args.runs, args.k,
                                     args.kademlia_venv))
    if args.only == "ours":
        results["inprocess"] = bench_inprocess(args.nodes, args.keys, args.runs, args.k)
    if args.only == "kademlia":
        results["kademlia"] = bench_kademlia(args.nodes, args.keys, args.runs, args.k,
                                             args.kademlia_venv)
    if args.only in (None, "procs"):
        for profile in ("lan", "local"):
            if args.procs_profile in (profile, "both"):
                results["procs" if profile == "lan" else f"procs_{profile}"] = bench_procs(
                    args.nodes, args.keys, args.runs, args.procs_k, profile)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
