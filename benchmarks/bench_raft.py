"""Coordination on real node processes: commit latency, throughput, failover, idle cost; and
pysyncobj 0.3.17 side by side in the same run. Does I/O (processes, sockets, HTTP).

For bzzz-edge (``LocalCluster``, durable commits: LMDB synced on every batch, default ``lan``
timings, ``coordination.voters`` 5):

- commit latency with 3, 5 and 10 node processes: sequential proposals from one client over a
  kept-alive HTTP connection to the coordinator's API (``POST /api/v1/coordination/propose``),
  p50/p99 per run, median of ``--runs`` runs; also the coordinator's own proposal-to-commit
  figure (``commit_latency_ms`` of its status: no HTTP) and the HTTP round trip of a GET
  (what the client path adds); one proposer as a task in the coordinator's process
  (``POST /api/v1/coordination/bench`` with 1 proposer: no HTTP at all); and how long after
  the coordinator answers every follower knows the commit (a poller thread per follower GETs
  its status until its commit index gets there: an upper bound, polling included);
- commits per second under 32 concurrent proposers, 5 nodes: as HTTP clients (threads,
  kept-alive connections to the coordinator; the client shares the 2 cores), the same as 32
  connections of one light client (one thread over raw sockets: about 25 us of the shared
  cores per commit, against about 110 us for the http.client threads), and as tasks in the
  coordinator's process (``POST /api/v1/coordination/bench``, what a component such as task
  claims does);
- failover after ``kill -9`` of the coordinator, 5 nodes, ``--kills`` times: from the kill to
  the first survivor's log line naming a new coordinator (median, max); the killed node is
  restarted and rejoins before the next kill;
- idle CPU (percent of one core, over 10 s) and RSS per node, 5 nodes.

For pysyncobj (``_raft_pysyncobj.py`` in its own venv, ``--pysyncobj-venv``, installed on
first use; pip must reach PyPI): the same process counts, latency of ``incr(sync=True)``
measured inside the leader process (no client hop: in its favour) with batching on (its
default) and off, failover with its defaults; its journal is written through mmap, not synced.

    python benchmarks/bench_raft.py [--runs 5] [--kills 20] [--only ours|pysyncobj]
        [--sizes 3,5,10] [--no-throughput] [--idle-seconds 10]

The machine is shared: report the load average with the figures (printed at the end).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import re
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bzzz_edge.cluster import ClusterNode, LocalCluster  # noqa: E402

PYSYNCOBJ_VERSION = "0.3.17"


def _harness() -> Any:
    import importlib.util

    path = HERE.parent / "tests" / "_harness" / "raft_cluster.py"
    spec = importlib.util.spec_from_file_location("_bzzz_test_harness_raft_cluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


H = _harness()


def _timed_proposals(client: Any, commands: Iterable[str]) -> list[float]:
    """Propose each command over HTTP, one at a time; the seconds each took to commit."""
    samples = []
    for command in commands:
        began = time.perf_counter()
        status, answer = client.call("POST", "/api/v1/coordination/propose", {"data": command})
        samples.append(time.perf_counter() - began)
        assert status == 200, answer
    return samples


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _wanted(n: int) -> int:
    wanted = min(5, n)
    return wanted if wanted % 2 else wanted - 1


class _Client:
    """A kept-alive HTTP connection to one node's API."""

    def __init__(self, node: ClusterNode) -> None:
        host, port = node.api.split("//")[1].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        self.conn.request(method, path, data, {"content-type": "application/json"})
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())


def _leader(cluster: LocalCluster, n: int) -> ClusterNode:
    status = H.wait_for_coordinator(cluster, voters=_wanted(n), timeout=60)
    return H.node_of(cluster, status["leader"])  # type: ignore[no-any-return]


def ours_latency(n: int, runs: int, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-raft-") as tmp, \
            LocalCluster(Path(tmp), n) as cluster:
        cluster.start()
        cluster.wait_for_mesh(timeout=60)
        leader = _leader(cluster, n)
        client = _Client(leader)
        for i in range(50):  # warm-up
            client.call("POST", "/api/v1/coordination/propose", {"data": f"warm-{i}"})
        p50s, p99s, gets, inside50, inside99 = [], [], [], [], []
        for run in range(runs):
            samples = _timed_proposals(client, (f"r{run}-{i}" for i in range(count)))
            p50s.append(_pct(samples, 0.5))
            p99s.append(_pct(samples, 0.99))
            began = time.perf_counter()
            for _ in range(50):
                client.call("GET", "/api/v1/coordination")
            gets.append((time.perf_counter() - began) / 50)
            inside = client.call("GET", "/api/v1/coordination")[1]["commit_latency_ms"]
            inside50.append(inside["p50"] / 1000)
            inside99.append(inside["p99"] / 1000)
        seq50, seq99 = [], []
        for _ in range(runs):  # one proposer on the coordinator itself: no HTTP per proposal
            status, answer = client.call("POST", "/api/v1/coordination/bench",
                                         {"proposers": 1, "seconds": 2})
            assert status == 200, answer
            seq50.append(answer["p50_ms"] / 1000)
            seq99.append(answer["p99_ms"] / 1000)
        learn = _follower_learning(cluster, leader, client, runs, count)
        return {"p50": statistics.median(p50s), "p99": statistics.median(p99s),
                "http_get": statistics.median(gets), "node_p50": statistics.median(inside50),
                "node_p99": statistics.median(inside99), "seq_p50": statistics.median(seq50),
                "seq_p99": statistics.median(seq99), **learn}


def _follower_learning(cluster: LocalCluster, leader: ClusterNode, client: _Client, runs: int,
                       count: int) -> dict[str, float]:
    """How long after the coordinator answers a proposal every follower knows it is committed.

    One poller thread per follower GETs its status (kept-alive connection) until its commit
    index reaches the proposal's; the figure is the last follower's time after the answer
    (an upper bound: it includes up to one GET round trip of polling).
    """
    followers = [n for n in cluster.nodes if n.running and n is not leader]
    if not followers:
        return {}
    target = [0]
    seen = [0.0] * len(followers)
    go = [threading.Event() for _ in followers]
    done = [threading.Event() for _ in followers]
    stop = threading.Event()

    def poll(k: int) -> None:
        poller = _Client(followers[k])
        while True:
            go[k].wait()
            go[k].clear()
            if stop.is_set():
                return
            while poller.call("GET", "/api/v1/coordination")[1]["commit_index"] < target[0]:
                pass
            seen[k] = time.perf_counter()
            done[k].set()

    threads = [threading.Thread(target=poll, args=(k,), daemon=True)
               for k in range(len(followers))]
    for t in threads:
        t.start()
    p50s, p99s = [], []
    try:
        for run in range(runs):
            after = []
            for i in range(max(count // 4, 20)):
                status, answer = client.call("POST", "/api/v1/coordination/propose",
                                             {"data": f"learn{run}-{i}"})
                answered = time.perf_counter()
                assert status == 200, answer
                target[0] = answer["index"]
                for k in range(len(followers)):
                    done[k].clear()
                    go[k].set()
                for k in range(len(followers)):
                    done[k].wait(30)
                after.append(max(seen) - answered)
            p50s.append(_pct(after, 0.5))
            p99s.append(_pct(after, 0.99))
    finally:
        stop.set()
        for event in go:
            event.set()
    return {"learn_p50": statistics.median(p50s), "learn_p99": statistics.median(p99s)}


def ours_throughput_failover_idle(runs: int, kills: int, seconds: float,
                                  idle_seconds: float = 10.0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-raft-") as tmp, \
            LocalCluster(Path(tmp), 5) as cluster:
        cluster.start()
        cluster.wait_for_mesh(timeout=60)
        leader = _leader(cluster, 5)
        time.sleep(2.0)  # settle before measuring the idle cost
        procs = [psutil.Process(n.process.pid) for n in cluster.nodes if n.process]
        before = [p.cpu_times() for p in procs]
        time.sleep(idle_seconds)
        after = [p.cpu_times() for p in procs]
        out["idle_cpu_percent"] = statistics.mean(
            (a.user + a.system - b.user - b.system) / idle_seconds * 100 for a, b in
            zip(after, before, strict=True))
        out["rss_mb"] = statistics.mean(p.memory_info().rss / 2**20 for p in procs)
        rates, inside, light = [], [], []
        for _ in range(runs):
            rates.append(_throughput(leader, 32, seconds))
            light.append(_throughput_light(leader, 32, seconds)[0])
            status, answer = _Client(leader).call("POST", "/api/v1/coordination/bench",
                                                  {"proposers": 32, "seconds": seconds})
            assert status == 200, answer
            inside.append(answer["commits_per_s"])
        out["commits_per_s"] = statistics.median(rates)
        out["commits_per_s_runs"] = rates
        out["light_commits_per_s"] = statistics.median(light)
        out["light_commits_per_s_runs"] = light
        out["node_commits_per_s"] = statistics.median(inside)
        out["node_commits_per_s_runs"] = inside
        out["failover"] = _failovers(cluster, kills) if kills else []
    return out


def _throughput(leader: ClusterNode, workers: int, seconds: float) -> float:
    """Commits per second with ``workers`` proposers as threads, each an ``http.client``
    connection (the client of earlier figures; see ``_throughput_light`` for a cheaper one)."""
    done = [0] * workers
    stop = threading.Event()

    def work(k: int) -> None:
        client = _Client(leader)
        i = 0
        while not stop.is_set():
            status, _ = client.call("POST", "/api/v1/coordination/propose",
                                    {"data": f"t{k}-{i}-{time.monotonic_ns()}"})
            i += 1
            if status == 200:
                done[k] += 1

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(workers)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # ramp up
    start_count, began = sum(done), time.perf_counter()
    time.sleep(seconds)
    rate = (sum(done) - start_count) / (time.perf_counter() - began)
    stop.set()
    for t in threads:
        t.join(30)
    return rate


def _throughput_light(leader: ClusterNode, workers: int, seconds: float) -> tuple[float, float]:
    """Commits per second with ``workers`` proposers as kept-alive connections driven by one
    thread over raw sockets (a load generator in the manner of wrk: each proposer sends its
    next proposal as soon as the answer to the last arrives); and the client's CPU seconds
    per commit. Python's ``http.client`` parses every answer's headers with the email
    package and 32 threads take turns at the GIL: about 110 us of CPU per commit on the two
    cores the nodes share, against about 25 us here (bench_raft_ab.py measures both)."""
    host, port = leader.api.split("//")[1].rsplit(":", 1)
    selector = selectors.DefaultSelector()
    counter = itertools.count()
    ok = failed = 0

    def send(sock: socket.socket, k: int) -> None:
        body = b'{"data":"L%d-%d-%d"}' % (k, next(counter), time.monotonic_ns())
        sock.sendall(b"POST /api/v1/coordination/propose HTTP/1.1\r\nHost: %s\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (host.encode(), len(body), body))

    buffers: dict[int, bytearray] = {}
    for k in range(workers):
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffers[k] = bytearray()
        selector.register(sock, selectors.EVENT_READ, k)
        send(sock, k)
    counted_from = time.perf_counter() + 1.0  # ramp up
    ends = counted_from + seconds
    cpu_from = None
    try:
        while (now := time.perf_counter()) < ends:
            if cpu_from is None and now >= counted_from:
                cpu_from, ok, failed = time.process_time(), 0, 0
            for key, _ in selector.select(timeout=1.0):
                sock, k = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the node closed a proposer's connection")
                buf = buffers[k]
                buf += data
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    continue
                length = int(re.search(rb"(?i)content-length: *(\d+)", buf[:head_end]
                                       ).group(1))  # type: ignore[union-attr]
                if len(buf) < head_end + 4 + length:
                    continue
                if buf.startswith(b"HTTP/1.1 200"):
                    ok += 1
                else:
                    failed += 1
                del buf[:head_end + 4 + length]
                send(sock, k)
        cpu = time.process_time() - (cpu_from or time.process_time())
        elapsed = time.perf_counter() - counted_from
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()
    if failed:
        print(f"light client: {failed} proposals failed", flush=True)
    return ok / elapsed, cpu / max(ok, 1)


def _watch(node: ClusterNode, pattern: str, start: int, seen: list[float]) -> None:
    node.wait_for_log(pattern, timeout=30, start=start)
    seen.append(time.monotonic())  # list.append is atomic


def _failovers(cluster: LocalCluster, kills: int) -> list[float]:
    times = []
    for _ in range(kills):
        status = H.wait_for_coordinator(cluster, voters=5, timeout=60)
        victim = H.node_of(cluster, status["leader"])
        pattern = rf"^coordinator: (?!none\b)(?!{re.escape(victim.short_id)})\S+ in term"
        survivors = [n for n in cluster.nodes if n.running and n is not victim]
        seen: list[float] = []
        watchers = [threading.Thread(target=_watch, args=(n, pattern, len(n.messages), seen),
                                     daemon=True) for n in survivors]
        killed = time.monotonic()
        cluster.kill(victim)
        for w in watchers:
            w.start()
        for w in watchers:
            w.join(35)
        times.append(min(seen) - killed)
        cluster.start_node(victim, seed=survivors[0])
    return times


def _pysyncobj_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('pysyncobj'))"]
    if python.exists() and subprocess.run(check, capture_output=True, text=True
                                          ).stdout.strip() == PYSYNCOBJ_VERSION:
        return python
    print(f"installing pysyncobj {PYSYNCOBJ_VERSION} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q",
                    f"pysyncobj=={PYSYNCOBJ_VERSION}"], check=True)
    return python


def pysyncobj(venv: Path, n: int, batch: str, latency: int, kills: int) -> dict[str, Any]:
    python = _pysyncobj_python(venv)
    with tempfile.TemporaryDirectory(prefix="bench-pysyncobj-") as tmp:
        result = subprocess.run(
            [str(python), str(HERE / "_raft_pysyncobj.py"), "bench", str(n), tmp, "--batch",
             batch, "--latency", str(latency), "--failover", str(kills)],
            capture_output=True, text=True, timeout=1800)
    lines = result.stdout.strip().splitlines()
    out: dict[str, Any] = json.loads(lines[-1]) if lines else {
        "error": f"exit {result.returncode}: {result.stderr.strip()[-300:]}"}
    out["diverged_warnings"] = result.stderr.count("state machine may have diverged")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--kills", type=int, default=20, help="0: no failover runs")
    parser.add_argument("--count", type=int, default=200, help="proposals per latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="per throughput run")
    parser.add_argument("--sizes", default="3,5,10")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--no-throughput", action="store_true",
                        help="latency only, ours and pysyncobj's (quick comparisons)")
    parser.add_argument("--only", choices=["ours", "pysyncobj"])
    parser.add_argument("--pysyncobj-venv", type=Path, default=Path("/tmp/bzzz-bench-pysyncobj"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]  # (empty: no latency runs)
    ours, theirs = args.only in (None, "ours"), args.only in (None, "pysyncobj")
    # Per size, ours and then pysyncobj's, back to back: the machine is shared and its load
    # drifts over a run, so figures to compare are measured as close together as they can be.
    for n in sizes:
        if ours:
            _print_ours_latency(n, ours_latency(n, args.runs, args.count))
        if theirs:
            for batch in ("on", "off"):
                _print_pysyncobj_latency(args.pysyncobj_venv, n, batch, args.runs, args.count)
    if not args.no_throughput:
        if ours:
            _print_ours_rest(ours_throughput_failover_idle(args.runs, args.kills, args.seconds,
                                                           args.idle_seconds), args.kills)
        if theirs and args.kills:
            r = pysyncobj(args.pysyncobj_venv, 5, "on", 0, args.kills)
            f = r.get("failover")
            if f:
                print(f"pysyncobj  5 nodes: failover median {statistics.median(f):.3f} s, "
                      f"max {max(f):.3f} s over {len(f)} kills", flush=True)
            else:
                print(f"pysyncobj  5 nodes: failover run failed: {r.get('error')}", flush=True)
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs", flush=True)


MS = 1000.0


def _print_ours_latency(n: int, r: dict[str, float]) -> None:
    ms = MS
    print(f"bzzz-edge {n:>2} nodes: commit p50 {r['p50'] * ms:.2f} ms, p99 "
          f"{r['p99'] * ms:.2f} ms over HTTP (GET round trip {r['http_get'] * ms:.2f} "
          f"ms); on the coordinator p50 {r['node_p50'] * ms:.2f} ms, p99 "
          f"{r['node_p99'] * ms:.2f} ms; one proposer in the coordinator's process p50 "
          f"{r['seq_p50'] * ms:.2f} ms, p99 {r['seq_p99'] * ms:.2f} ms; every follower "
          "knows the commit "
          f"{r['learn_p50'] * ms:.2f} ms (p50), {r['learn_p99'] * ms:.2f} ms (p99) "
          f"after the answer (load {os.getloadavg()[0]:.2f})", flush=True)


def _print_ours_rest(r: dict[str, Any], kills: int) -> None:
    f = r["failover"]
    failover = (f"failover median {statistics.median(f):.3f} s, max {max(f):.3f} s over "
                f"{len(f)} kills" if kills else "no failover runs")
    print(f"bzzz-edge  5 nodes: {r['commits_per_s']:.0f} commits/s under 32 HTTP "
          f"proposers as http.client threads (runs "
          f"{[round(x) for x in r['commits_per_s_runs']]}), "
          f"{r['light_commits_per_s']:.0f} as connections of one light client (runs "
          f"{[round(x) for x in r['light_commits_per_s_runs']]}), "
          f"{r['node_commits_per_s']:.0f} under 32 proposers on the coordinator "
          f"(runs {[round(x) for x in r['node_commits_per_s_runs']]}); {failover}; idle "
          f"CPU {r['idle_cpu_percent']:.2f} % of a core, RSS {r['rss_mb']:.0f} MiB per "
          f"node", flush=True)


def _print_pysyncobj_latency(venv: Path, n: int, batch: str, runs: int, count: int) -> None:
    p50s: list[float] = []
    p99s: list[float] = []
    warned = failed = 0
    for _ in range(runs):
        r = pysyncobj(venv, n, batch, count, 0)
        warned += r["diverged_warnings"]
        if not r.get("latency"):
            failed += 1
            continue
        failed += r.get("failed", 0)
        p50s.append(_pct(r["latency"], 0.5))
        p99s.append(_pct(r["latency"], 0.99))
    if not p50s:
        print(f"pysyncobj {n:>2} nodes, batching {batch}: no run finished", flush=True)
        return
    print(f"pysyncobj {n:>2} nodes, batching {batch:<3}: commit p50 "
          f"{statistics.median(p50s) * MS:.2f} ms, p99 "
          f"{statistics.median(p99s) * MS:.2f} ms (in the leader process); "
          f"'may have diverged' warnings: {warned}; failed calls or runs: {failed} "
          f"(load {os.getloadavg()[0]:.2f})", flush=True)


if __name__ == "__main__":
    main()
