"""The store: local gets/s, durable puts/s by concurrent writers (group commit and one commit
per put), what one durable commit costs, and HTTP GET/PUT per second with a keep-alive client.

Local figures run in this process (the implementation this process loads: run again with
BZZZ_EDGE_PURE=1 for the pure twins); HTTP figures start a real node (`bzzz-edge run`).
Prints the median of --runs runs of each. Run by hand: `python benchmarks/bench_store.py`.
Before and after a change, side by side under the same load: `python benchmarks/bench_store.py
--http-only --baseline ../main/.venv/bin/python` (the two nodes are measured in turn).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import psutil
import trio

from bzzz_edge import _native
from bzzz_edge.store import Store
from bzzz_edge.store.content import DATABASES, ContentStore

BODY = os.urandom(128) * 2  # 256 bytes, like the reference commit


def _content(base: Path, name: str) -> tuple[Store, ContentStore]:
    store = Store(base / name, map_size=2**28, databases=DATABASES)
    return store, ContentStore(store, author="bench", max_content_bytes=2**20,
                               compress_min_bytes=256)


def local_gets(base: Path, n: int) -> float:
    store, content = _content(base, "gets")
    addresses = [f"ucxl://a:b@p:t/*^/doc{i}" for i in range(100)]

    async def fill() -> None:
        for address in addresses:
            await content.put(address, BODY)

    trio.run(fill)
    began = time.perf_counter()
    for i in range(n):
        content.get(addresses[i % 100])
    rate = n / (time.perf_counter() - began)
    store.close()
    return rate


def durable_puts(base: Path, writers: int, total: int, *, per_put: bool) -> tuple[float, float]:
    """(puts per second, mean puts per commit)."""
    store, content = _content(base, f"puts{writers}{per_put}")
    if per_put:
        store.writer.max_batch = 1
    each = max(1, total // writers)

    async def writer(w: int) -> None:
        for i in range(each):
            await content.put(f"ucxl://w{w}:b@p:t/*^/doc{i % 10}", BODY + i.to_bytes(4, "big"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for w in range(writers):
                nursery.start_soon(writer, w)

    commits = store.writer.stats.commits
    began = time.perf_counter()
    trio.run(main)
    elapsed = time.perf_counter() - began
    per_commit = writers * each / max(1, store.writer.stats.commits - commits)
    store.close()
    return writers * each / elapsed, per_commit


def commit_cost(base: Path, n: int) -> float:
    """Median seconds of one durable commit of a 256-byte value (one writer, one at a time)."""
    store = Store(base / "commit", map_size=2**24, databases=("data",))
    db = store.db("data")
    times = []
    for i in range(n):
        began = time.perf_counter()
        store.writer.write_sync(lambda txn, i=i: txn.put(i.to_bytes(4, "big"), BODY, db=db))
        times.append(time.perf_counter() - began)
    store.close()
    return statistics.median(times)


def _node(base: Path, python: str = sys.executable) -> tuple[subprocess.Popen[bytes], str]:
    """A node run by ``python`` (another checkout's interpreter for --baseline: started in
    ``base``, so that the package it imports is its own, not this directory's)."""
    base.mkdir(parents=True, exist_ok=True)
    data_dir = base / "node"
    subprocess.run([python, "-m", "bzzz_edge", "init", "--data-dir", str(data_dir)],
                   check=True, capture_output=True, cwd=base)
    notify_path = base / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(60)
    proc = subprocess.Popen(
        [python, "-m", "bzzz_edge", "run", "--data-dir", str(data_dir),
         "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--set",
         "network.mdns=false", "--log-format", "json"],
        env={**os.environ, "NOTIFY_SOCKET": str(notify_path)}, cwd=base,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        data = notify.recv(4096).decode()
        match = re.search(r"API on (http://[^;\s]+)", data)
        if "READY=1" in data and match:
            notify.close()
            return proc, match.group(1)


def _cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def http_rates(api: str, n: int, pid: int) -> tuple[float, float, float, float]:
    """(GETs per second, PUTs per second, node CPU per GET, per PUT in seconds) over one
    keep-alive connection."""
    host, port = api.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    path = "/ucxi/v1/" + urllib.parse.quote("ucxl://a:b@p:t/*^/http/doc", safe="")
    cpu = _cpu(pid)
    began = time.perf_counter()
    for _ in range(n):
        conn.request("PUT", path, body=BODY, headers={"Content-Type": "text/plain"})
        response = conn.getresponse()
        response.read()
        assert response.status == 201, response.status
    puts = n / (time.perf_counter() - began)
    put_cpu = (_cpu(pid) - cpu) / n
    cpu = _cpu(pid)
    began = time.perf_counter()
    for _ in range(n):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    gets = n / (time.perf_counter() - began)
    get_cpu = (_cpu(pid) - cpu) / n
    conn.close()
    return gets, puts, get_cpu, put_cpu


def _http(base: Path, runs: int, n: int, baseline: str | None) -> None:
    """HTTP figures; with ``baseline`` (another checkout's Python) its node too, the two
    measured in turn in each run, so both see the same load."""
    pythons = {"this": sys.executable, **({"baseline": baseline} if baseline else {})}
    nodes = {name: _node(base / f"node-{name}", python) for name, python in pythons.items()}
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in nodes}
    load = os.getloadavg()[0]
    try:
        for _ in range(runs):
            for name, (proc, api) in nodes.items():
                results[name].append(http_rates(api, n, proc.pid))
    finally:
        for proc, _ in nodes.values():
            proc.terminate()
            proc.wait(20)
    for name, rates in results.items():
        label = "" if baseline is None else f"[{name}: {pythons[name]}] "
        print(f"{label}HTTP GET/s keep-alive: {statistics.median(r[0] for r in rates):,.0f} "
              f"(node CPU {statistics.median(r[2] for r in rates) * 1e6:.0f} us a request; runs "
              + " ".join(f"{r[0]:,.0f}" for r in rates) + ")")
        print(f"{label}HTTP PUT/s keep-alive: {statistics.median(r[1] for r in rates):,.0f} "
              f"(node CPU {statistics.median(r[3] for r in rates) * 1e6:.0f} us a request; runs "
              + " ".join(f"{r[1]:,.0f}" for r in rates) + ")")
    print(f"load average before the HTTP runs: {load:.1f}, after: {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs (the client shares the machine)")


def _local(base: Path, args: argparse.Namespace) -> None:
    rates = [local_gets(base / f"g{r}", args.gets) for r in range(args.runs)]
    print(f"local gets/s (256 B, through ContentStore.get): {statistics.median(rates):,.0f}")
    cost = [commit_cost(base / f"c{r}", 200) for r in range(args.runs)]
    print(f"one durable commit (256 B value, p50): {statistics.median(cost) * 1e3:.3f} ms")
    for per_put in (False, True):
        for writers in (1, 8, 32):
            results = [durable_puts(base / f"p{r}", writers, args.puts if not per_put
                                    else args.puts // 4, per_put=per_put)
                       for r in range(args.runs)]
            label = "one commit per put" if per_put else "group commit"
            print(f"durable puts/s, {writers:>2} writers, {label:<18}: "
                  f"{statistics.median(r[0] for r in results):,.0f} "
                  f"({statistics.median(r[1] for r in results):.1f} puts per commit)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gets", type=int, default=100_000)
    parser.add_argument("--puts", type=int, default=4000)
    parser.add_argument("--http", type=int, default=2000)
    parser.add_argument("--http-only", action="store_true", help="only the HTTP figures")
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="also a node run by this interpreter (another checkout's venv), "
                             "measured in turn with this one")
    args = parser.parse_args()
    impl = _native.implementations()
    print(f"bzzz-edge store benchmark; hot paths: {impl}; medians of {args.runs} runs")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        base = Path(tmp)
        if not args.http_only:
            _local(base, args)
        _http(base, args.runs, args.http, args.baseline)


if __name__ == "__main__":
    main()
