"""Time for 5 processes in 5 network namespaces to all discover each other over mDNS.

Each namespace (tests/_harness/netns.py, needs root) runs tests/_harness/mdns_probe.py, which
drives MdnsDiscovery and prints what it finds. A run ends when every process has found the
other four. Reported, as medians over --runs runs:

- from spawn: from starting the processes to the full mesh (includes Python start-up and
  imports, which the node pays anyway);
- from run(): for the slowest process, from MdnsDiscovery.run() starting to its last peer.

Both with the default (announce at once) and with RFC 6762 probing (--probe). Run by hand:
`python benchmarks/bench_mdns.py` (as root).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HARNESS = Path(__file__).resolve().parents[1] / "tests" / "_harness"
TIMEOUT = 15.0


def _load_netns() -> Any:
    spec = importlib.util.spec_from_file_location("_bzzz_test_harness_netns",
                                                  HARNESS / "netns.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def one_run(netns: Any, nodes: int, extra: list[str]) -> tuple[float, float]:
    with netns.Lan() as lan:
        hosts = lan.add_hosts(nodes)
        began = time.monotonic()
        readers = []
        for host in hosts:
            proc = host.popen([sys.executable, str(HARNESS / "mdns_probe.py"), "--fingerprint",
                               "benchfp", "--port", str(7000 + host.index), *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            readers.append(netns.LineReader(proc.stdout, host.name))
        mesh_at, slowest = 0.0, 0.0
        for reader in readers:
            run_at = reader.wait_for(lambda item: item["event"] == "run", TIMEOUT)["t"]
            peers: set[str] = set()
            last = run_at
            while len(peers) < nodes - 1:
                item = reader.wait_for(lambda item: item["event"] == "found", TIMEOUT)
                peers.add(item["peer_id"])
                last = item["t"]
            mesh_at = max(mesh_at, last)
            slowest = max(slowest, last - run_at)
        return mesh_at - began, slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=5)
    args = parser.parse_args()
    netns = _load_netns()
    reason = netns.unavailable_reason()
    if reason is not None:
        sys.exit(f"cannot run: {reason}")
    print(f"full mesh of {args.nodes} nodes over mDNS, median of {args.runs} runs")
    for label, extra in (("announce at once (default)", []), ("with probing (--probe)",
                                                              ["--probe"])):
        results = [one_run(netns, args.nodes, extra) for _ in range(args.runs)]
        spawn = statistics.median(r[0] for r in results)
        run = statistics.median(r[1] for r in results)
        worst = max(r[0] for r in results)
        print(f"  {label:28} from spawn {spawn * 1000:6.0f} ms   from run() {run * 1000:6.0f} ms"
              f"   (worst from spawn {worst * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
