"""Time from `bzzz-edge run` to ready, and resident memory of an idle node after 30 s.

Starts real node processes (compiled, then pure with BZZZ_EDGE_PURE=1), each in its own
temporary data dir, waits for READY=1 on a notify socket, then measures RSS after --idle
seconds. Prints medians over --runs runs. Run by hand: `python benchmarks/bench_startup.py`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _start(base: Path, index: int, pure: bool) -> tuple[subprocess.Popen, float]:
    data_dir = base / f"node{index}"
    subprocess.run([sys.executable, "-m", "bzzz_edge", "init", "--data-dir", str(data_dir)],
                   check=True, capture_output=True, cwd=base)
    notify_path = base / f"notify{index}.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(1)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    env.pop("BZZZ_EDGE_PURE", None)
    if pure:
        env["BZZZ_EDGE_PURE"] = "1"
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bzzz_edge", "run", "--data-dir", str(data_dir),
         "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--set",
         "network.mdns=false", "--log-format", "json"],
        env=env, cwd=base, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if b"READY=1" in notify.recv(4096).split(b"\n"):
                break
        except TimeoutError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"node {index} did not become ready (exit code {proc.poll()})")
    ready = time.perf_counter() - began
    notify.close()
    return proc, ready


def measure(pure: bool, runs: int, idle: float) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        started = []
        for index in range(runs):
            proc, ready = _start(base, index, pure)
            started.append((proc, ready, time.monotonic()))
        rss = []
        for proc, _, at in started:
            wait = at + idle - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # a benchmark measuring idle memory: idling is the point
            rss.append(psutil.Process(proc.pid).memory_info().rss / 2**20)
        for proc, _, _ in started:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        return [ready for _, ready, _ in started], rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds idle before RSS")
    args = parser.parse_args()
    print(f"{'implementation':<16}{'ready (median)':>16}{'ready (min..max)':>22}"
          f"{'idle RSS (median)':>20}")
    for label, pure in (("compiled", False), ("pure", True)):
        ready, rss = measure(pure, args.runs, args.idle)
        print(f"{label:<16}{statistics.median(ready) * 1000:>13.0f} ms"
              f"{min(ready) * 1000:>12.0f}..{max(ready) * 1000:.0f} ms"
              f"{statistics.median(rss):>16.1f} MiB")


if __name__ == "__main__":
    main()
