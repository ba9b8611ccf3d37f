"""Mesh benchmarks with real node processes.

1. Five nodes on five hosts (network namespaces on one bridge, needs root), no static peers:
   seconds from spawning the first node until every node has every other one alive and
   connected, through mDNS alone.
2. Five nodes on loopback (default `lan` timings): kill -9 one, seconds until every other node
   has declared it dead (from the timestamps in their logs).

Medians over --runs runs.  python benchmarks/bench_mesh.py [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bzzz_edge.cli import main as cli
from bzzz_edge.cluster import LocalCluster
from bzzz_edge.identity import Identity

HARNESS = Path(__file__).resolve().parents[1] / "tests" / "_harness" / "netns.py"


def _netns():
    spec = importlib.util.spec_from_file_location("_bzzz_test_harness_netns", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _watch(proc: subprocess.Popen, messages: list[str], cond: threading.Condition) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        try:
            message = json.loads(line)["msg"]
        except (ValueError, KeyError):
            continue
        with cond:
            messages.append(message)
            cond.notify_all()


def mdns_mesh_time(size: int) -> float:
    netns = _netns()
    with tempfile.TemporaryDirectory() as tmp, netns.Lan() as lan:
        base = Path(tmp)
        hosts = lan.add_hosts(size)
        key = base / "network.key"
        dirs = []
        for host in hosts:
            data_dir = base / host.name
            extra = ["--network-key-file", str(key)] if key.exists() else []
            with contextlib.redirect_stdout(io.StringIO()):
                cli(["init", "--data-dir", str(data_dir), *extra])
                if not key.exists():
                    cli(["network-key", "export", "--data-dir", str(data_dir),
                         "--output", str(key)])
            dirs.append(data_dir)
        shorts = [Identity.load(d / "identity.key").display_id[:15] for d in dirs]
        cond = threading.Condition()
        logs: list[list[str]] = [[] for _ in hosts]
        began = time.monotonic()
        procs = []
        for index, (host, data_dir) in enumerate(zip(hosts, dirs, strict=True)):
            proc = host.popen([sys.executable, "-m", "bzzz_edge", "run", "--data-dir",
                               str(data_dir), "--listen", "0.0.0.0:0", "--api-listen",
                               "127.0.0.1:0", "--log-format", "json"],
                              stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                              cwd=base)
            threading.Thread(target=_watch, args=(proc, logs[index], cond), daemon=True).start()
            procs.append(proc)

        def meshed() -> bool:
            for me, messages in enumerate(logs):
                text = "\n".join(messages)
                for other, short in enumerate(shorts):
                    if other != me and not (
                            re.search(rf"^peer {short} \S+ -> alive", text, re.M)
                            and re.search(rf"^connected to {short} ", text, re.M)):
                        return False
            return True

        with cond:
            if not cond.wait_for(meshed, timeout=60):
                raise SystemExit("no full mesh within 60 s")
        took = time.monotonic() - began
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(20)
        return took


def detection_time(size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp), size) as cluster:
        cluster.start()
        cluster.wait_for_mesh(timeout=30)
        victim = cluster.nodes[-1]
        mark = cluster.log_positions()
        killed_at = time.time()
        cluster.kill(victim)
        cluster.wait_for_status(victim, "dead", timeout=30, since=mark)
        latest = 0.0
        for node in cluster.nodes[:-1]:
            for line in node.log_path.read_text().splitlines():
                entry = json.loads(line)
                if entry["msg"].startswith(f"peer {victim.short_id} ") and \
                        entry["msg"].split(" -> ")[1].startswith("dead"):
                    latest = max(latest, entry["ts"])
        return latest - killed_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--skip-netns", action="store_true")
    args = parser.parse_args()
    if not args.skip_netns:
        times = [mdns_mesh_time(args.nodes) for _ in range(args.runs)]
        print(f"mDNS mesh of {args.nodes} in namespaces: median {statistics.median(times):.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f})")
    times = [detection_time(args.nodes) for _ in range(args.runs)]
    print(f"kill -9 detected by all {args.nodes - 1} others: median "
          f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})")


if __name__ == "__main__":
    main()
