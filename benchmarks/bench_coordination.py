"""Coordination latency as users measure it: ``bzzz-edge bench`` and the same claim round on
etcd and on pysyncobj, side by side in one run, medians of ``--runs`` runs. Does I/O
(processes, sockets).

bzzz-edge: ``bzzz-edge bench --nodes 10 --json`` run ``--runs`` times (a fresh local cluster
each time): p50/p90/p99/max of a round at rest (one claimant) and contested (every node claims
at once), the claim round alone (from the announce answered), the failover after kill -9 of the
coordinator, idle CPU and RSS per node.

etcd (Debian's ``etcd-server``, 3.4; ``apt-get install -y etcd-server`` as root, which this
script does itself when run as root and etcd is missing): a 3-member cluster on loopback in a
temporary dir, fresh for each run, default timings, its WAL synced as it does by default. The
contenders are 10 processes of the ``etcd3`` Python client (installed on first use into the
benchmark's own venv, ``--etcd-venv``, like bench_raft.py does for pysyncobj), spread over the
3 members. A contested round: every contender is told the same fresh key at one instant and
claims it as a transaction ``create_revision(key) == 0 ? put(key, me) : get(key)``; the round
ends when every contender has its answer, so all know the winner (and every round must have
exactly one). At rest: one contender's transaction.

pysyncobj 0.3.17 (``_raft_pysyncobj.py claims``, in the venv bench_raft.py installs,
``--pysyncobj-venv``): ``--nodes`` processes that are themselves the contenders, in memory (no
journal), batching off; each claims the fresh key with a replicated ``claim(key, me)`` and the
round ends when every claimant has the winner. At rest: one process claims.

What each round covers differs: etcd's and pysyncobj's are the claim alone (the key needs no
announcing); ours is announce, claim, and the winner known on every node, and "the claim round
alone" row is ours from the announce answered to every claimant answered.

    python benchmarks/bench_coordination.py [--runs 5] [--nodes 10] [--rounds 200]
        [--only ours|etcd|pysyncobj] [--json FILE]

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ETCD3_VERSION = "0.12.0"
# etcd3 0.12's generated protobuf modules predate protobuf 4
PROTOBUF_VERSION = "3.20.3"
_PCTS = (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("max_ms", 100))

CONTENDER = r"""
import sys
import etcd3

host, port, me = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = etcd3.client(host=host, port=port, timeout=30)
client.get("/bench/warm-up")
print("ready", flush=True)
for line in sys.stdin:
    key = "/bench/claims/" + line.strip()
    ok, responses = client.transaction(
        compare=[client.transactions.create(key) == 0],
        success=[client.transactions.put(key, me)],
        failure=[client.transactions.get(key)])
    winner = me if ok else responses[0][0][0].decode()
    sys.stdout.write(winner + "\n")
    sys.stdout.flush()
"""


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]  # nearest rank


def _figures(samples_ms: list[float]) -> dict[str, float]:
    return {key: _pct(samples_ms, q) for key, q in _PCTS}


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}


# --- bzzz-edge ------------------------------------------------------------------------------------

def ours(runs: int, nodes: int, rounds: int, warmup: int) -> dict[str, Any]:
    reports = []
    for run in range(runs):
        result = subprocess.run(
            [sys.executable, "-m", "bzzz_edge", "bench", "--nodes", str(nodes), "--rounds",
             str(rounds), "--warmup", str(warmup), "--idle-seconds", "10", "--json"],
            capture_output=True, text=True, timeout=3600, cwd=HERE.parent)
        if result.returncode != 0:
            raise SystemExit(f"bzzz-edge bench failed (run {run + 1}):\n{result.stderr}")
        reports.append(json.loads(result.stdout))
        print(f"  bzzz-edge run {run + 1}/{runs}: contested p50 "
              f"{reports[-1]['contested']['p50_ms']:.1f} ms", flush=True)
    out: dict[str, Any] = {"implementation": reports[0]["implementation"],
                           "version": reports[0]["version"]}
    for mode in ("rest", "contested"):
        out[mode] = _median_of([{k: r[mode][k] for k, _ in _PCTS} for r in reports])
        out[f"{mode}_claim"] = {"p50_ms": round(statistics.median(
            r[mode]["claim_p50_ms"] for r in reports), 2), "p99_ms": round(statistics.median(
                r[mode]["claim_p99_ms"] for r in reports), 2)}
        out[f"{mode}_lagging_rounds"] = [r[mode]["lagging_rounds"] for r in reports]
    out["failover_ms"] = round(statistics.median(r["failover"]["failover_ms"] for r in reports), 1)
    out["failover_runs_ms"] = [r["failover"]["failover_ms"] for r in reports]
    out["idle_cpu_percent_mean"] = round(statistics.median(
        r["idle"]["cpu_percent_mean"] for r in reports), 2)
    out["idle_cpu_percent_max"] = round(statistics.median(
        r["idle"]["cpu_percent_max"] for r in reports), 2)
    out["idle_rss_mb_mean"] = round(statistics.median(r["idle"]["rss_mb_mean"] for r in reports), 1)
    out["idle_rss_mb_max"] = round(statistics.median(r["idle"]["rss_mb_max"] for r in reports), 1)
    return out


# --- etcd -----------------------------------------------------------------------------------------

def _etcd_binary() -> str:
    found = shutil.which("etcd")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing etcd-server (apt-get) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "etcd-server"], check=True,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("etcd")
    if not found:
        raise SystemExit("etcd is not installed: apt-get install -y etcd-server (as root)")
    return found


def _etcd_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import etcd3"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing etcd3 {ETCD3_VERSION} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"etcd3=={ETCD3_VERSION}",
                    f"protobuf=={PROTOBUF_VERSION}"], check=True)
    return python


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"etcd exited ({proc.returncode}) before it was healthy")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if json.loads(response.read()).get("health") == "true":
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)  # etcd has no readiness notification to wait on
    raise SystemExit(f"etcd at {url} not healthy within {timeout:g}s")


class _Etcd:
    """A 3-member etcd cluster on loopback in ``base``."""

    def __init__(self, binary: str, base: Path) -> None:
        ports = _free_ports(6)
        self.clients = ports[:3]
        peers = ports[3:]
        initial = ",".join(f"m{i}=http://127.0.0.1:{peers[i]}" for i in range(3))
        self.procs = []
        for i in range(3):
            log = (base / f"m{i}.log").open("wb")
            self.procs.append(subprocess.Popen(
                [binary, "--name", f"m{i}", "--data-dir", str(base / f"m{i}"),
                 "--listen-client-urls", f"http://127.0.0.1:{self.clients[i]}",
                 "--advertise-client-urls", f"http://127.0.0.1:{self.clients[i]}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "bzzz-bench", "--logger", "zap",
                 "--log-level", "warn"], stdout=log, stderr=log))
        for port, proc in zip(self.clients, self.procs, strict=True):
            _wait_healthy(f"http://127.0.0.1:{port}", proc)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _contenders(python: Path, ports: list[int], count: int) -> list[subprocess.Popen[str]]:
    procs = [subprocess.Popen([str(python), "-c", CONTENDER, "127.0.0.1",
                               str(ports[i % len(ports)]), f"contender{i}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              bufsize=1) for i in range(count)]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("an etcd3 contender failed to connect")
    return procs


def _etcd_rounds(procs: list[subprocess.Popen[str]], rounds: int, warmup: int, tag: str,
                 contested: bool) -> list[float]:
    samples = []
    for number in range(warmup + rounds):
        key = f"{tag}-{number}"
        claimants = procs if contested else [procs[number % len(procs)]]
        began = time.perf_counter()
        for proc in claimants:
            assert proc.stdin is not None
            proc.stdin.write(key + "\n")
            proc.stdin.flush()
        winners = set()
        for proc in claimants:
            assert proc.stdout is not None
            winners.add(proc.stdout.readline().strip())
        took = (time.perf_counter() - began) * 1000
        if len(winners) != 1:
            raise SystemExit(f"etcd round {key}: contenders told different winners {winners}")
        if number >= warmup:
            samples.append(took)
    return samples


def etcd(runs: int, contenders: int, rounds: int, warmup: int, venv: Path) -> dict[str, Any]:
    binary = _etcd_binary()
    python = _etcd_python(venv)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    rest_runs, contested_runs = [], []
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-etcd-") as tmp:
            cluster = _Etcd(binary, Path(tmp))
            procs: list[subprocess.Popen[str]] = []
            try:
                procs = _contenders(python, cluster.clients, contenders)
                rest_runs.append(_figures(_etcd_rounds(procs, rounds, warmup, f"r{run}", False)))
                contested_runs.append(_figures(_etcd_rounds(procs, rounds, warmup, f"c{run}",
                                                            True)))
            finally:
                for proc in procs:
                    proc.kill()
                    proc.wait()
                cluster.stop()
        print(f"  etcd run {run + 1}/{runs}: contested p50 "
              f"{contested_runs[-1]['p50_ms']:.1f} ms", flush=True)
    return {"version": version.splitlines()[0] if version else "?",
            "rest": _median_of(rest_runs), "contested": _median_of(contested_runs)}


# --- pysyncobj ------------------------------------------------------------------------------------

def pysyncobj(runs: int, nodes: int, rounds: int, warmup: int, venv: Path) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from bench_raft import PYSYNCOBJ_VERSION, _pysyncobj_python

    python = _pysyncobj_python(venv)
    rest_runs, contested_runs = [], []
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-pysyncobj-claims-") as tmp:
            result = subprocess.run(
                [str(python), str(HERE / "_raft_pysyncobj.py"), "claims", str(nodes), tmp,
                 "--rounds", str(rounds), "--warmup", str(warmup)],
                capture_output=True, text=True, timeout=3600)
        if result.returncode != 0:
            raise SystemExit(f"pysyncobj claims failed (run {run + 1}):\n{result.stderr}")
        samples = json.loads(result.stdout.strip().splitlines()[-1])
        rest_runs.append(_figures(samples["rest"]))
        contested_runs.append(_figures(samples["contested"]))
        print(f"  pysyncobj run {run + 1}/{runs}: contested p50 "
              f"{contested_runs[-1]['p50_ms']:.1f} ms", flush=True)
    return {"version": PYSYNCOBJ_VERSION, "rest": _median_of(rest_runs),
            "contested": _median_of(contested_runs)}


# --- report ---------------------------------------------------------------------------------------

def _row(name: str, figures: dict[str, float]) -> str:
    cells = "".join(f"{figures[key]:>9.1f}" if key in figures else f"{'-':>9}"
                    for key, _ in _PCTS)
    return f"  {name:<52}{cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=10, help="bzzz-edge nodes and etcd "
                        "contenders (default 10)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--only", choices=["ours", "etcd", "pysyncobj"])
    parser.add_argument("--etcd-venv", type=Path, default=Path("/tmp/bzzz-bench-etcd3"))
    parser.add_argument("--pysyncobj-venv", type=Path,
                        default=Path("/tmp/bzzz-bench-pysyncobj"))
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, Any] = {"runs": args.runs, "nodes": args.nodes, "rounds": args.rounds}
    if args.only in (None, "ours"):
        results["bzzz_edge"] = ours(args.runs, args.nodes, args.rounds, args.warmup)
    if args.only in (None, "etcd"):
        results["etcd"] = etcd(args.runs, args.nodes, args.rounds, args.warmup, args.etcd_venv)
    if args.only in (None, "pysyncobj"):
        results["pysyncobj"] = pysyncobj(args.runs, args.nodes, args.rounds, args.warmup,
                                         args.pysyncobj_venv)
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(f"\nmedians of {args.runs} runs, {args.rounds} rounds each (ms)")
    print(f"  {'':<52}" + "".join(f"{key[:3]:>9}" for key, _ in _PCTS))
    ours_r = results.get("bzzz_edge")
    if ours_r:
        n = args.nodes
        print(_row(f"bzzz-edge {n} nodes, at rest (announce+claim+known)", ours_r["rest"]))
        print(_row(f"bzzz-edge {n} nodes, all claim (announce+claim+known)",
                   ours_r["contested"]))
        print(_row("bzzz-edge, all claim: the claim round alone", ours_r["contested_claim"]))
        print(_row("bzzz-edge, one claim: the claim round alone", ours_r["rest_claim"]))
    etcd_r = results.get("etcd")
    if etcd_r:
        print(_row(f"etcd 3 members, {args.nodes} clients all claim (txn)", etcd_r["contested"]))
        print(_row("etcd 3 members, one claim (txn)", etcd_r["rest"]))
    sync_r = results.get("pysyncobj")
    if sync_r:
        print(_row(f"pysyncobj {args.nodes} processes all claim (in memory)",
                   sync_r["contested"]))
        print(_row(f"pysyncobj {args.nodes} processes, one claim", sync_r["rest"]))
    if ours_r:
        print(f"  bzzz-edge failover (kill -9 of the coordinator to the winner known on every "
              f"survivor): median {ours_r['failover_ms']:.0f} ms, runs "
              f"{ours_r['failover_runs_ms']}")
        print(f"  bzzz-edge idle per node: CPU mean {ours_r['idle_cpu_percent_mean']:.2f}% "
              f"(max {ours_r['idle_cpu_percent_max']:.2f}%) of a core, RSS mean "
              f"{ours_r['idle_rss_mb_mean']:.1f} MB (max {ours_r['idle_rss_mb_max']:.1f}); "
              f"{ours_r['implementation']}")
    if etcd_r:
        print(f"  {etcd_r['version']}")
    print(f"  load average before {load_before}, after {os.getloadavg()}; "
          f"{os.cpu_count()} CPUs", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
