"""What one durable Raft append costs on this disk: an LMDB synced commit (what the log store
did before ``consensus/_wal``) against write + fdatasync on a preallocated file (a
write-ahead log; ``wal`` preallocated with fallocate, ``wal-zeroed`` with zeros written),
alone and with several processes syncing at once (a cluster's nodes on one disk).

    python benchmarks/bench_raft_sync.py [--writes 2000] [--procs 1,5] [--rounds 3]

Each process appends records of ``--size`` bytes (a small command's entry plus the hard
state) one at a time, each made durable before the next, and reports the median, p90 and
p99 time of one durable append. Modes alternate round by round, so load changes hit both.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

PREALLOC = 64 * 1024 * 1024


def _lmdb_worker(path: str, writes: int, size: int, start: float,
                 out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import lmdb

    env = lmdb.open(path, map_size=256 * 1024 * 1024, max_dbs=4, sync=True, metasync=True)
    meta, log = env.open_db(b"raft"), env.open_db(b"raft_log")
    payload = os.urandom(size)
    while time.time() < start:
        time.sleep(0.001)
    took = []
    for i in range(1, writes + 1):
        t0 = time.perf_counter()
        with env.begin(write=True) as txn:
            txn.put(struct.pack(">Q", i), payload, db=log)
            txn.put(b"hard", b"\x92\x05\xc4\x20" + bytes(32), db=meta)
        took.append(time.perf_counter() - t0)
    env.close()
    out.put(took)


def _wal_worker(path: str, writes: int, size: int, start: float, out: multiprocessing.Queue,  # type: ignore[type-arg]
                zero_fill: bool = False) -> None:
    import zlib

    name = os.path.join(path, "wal")
    fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o600)
    if zero_fill:  # written blocks: a sync need not convert unwritten extents (a journal commit)
        chunk = bytes(1 << 20)
        for at in range(0, PREALLOC, len(chunk)):
            os.pwrite(fd, chunk, at)
    else:
        os.posix_fallocate(fd, 0, PREALLOC)
    os.fsync(fd)  # the size and the extents are durable before the timing starts
    d = os.open(path, os.O_RDONLY)
    os.fsync(d)
    os.close(d)
    payload = os.urandom(size)
    header = struct.Struct("<II")
    offset = 0
    while time.time() < start:
        time.sleep(0.001)
    took = []
    for _ in range(writes):
        t0 = time.perf_counter()
        record = header.pack(len(payload), zlib.crc32(payload)) + payload
        os.pwrite(fd, record, offset)
        os.fdatasync(fd)
        offset += len(record)
        took.append(time.perf_counter() - t0)
    os.close(fd)
    out.put(took)


def run(mode: str, procs: int, writes: int, size: int) -> list[float]:
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    target = _lmdb_worker if mode == "lmdb" else _wal_worker
    extra = (True,) if mode == "wal-zeroed" else ()
    where = os.environ.get("BENCH_DIR", "/tmp")
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=where) as tmp:
        start = time.time() + 0.3
        workers = []
        for n in range(procs):
            path = Path(tmp, str(n))
            path.mkdir()
            p = ctx.Process(target=target, args=(str(path), writes, size, start, out, *extra))
            p.start()
            workers.append(p)
        took: list[float] = []
        for _ in workers:
            took += out.get()
        for p in workers:
            p.join()
    return took


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--size", type=int, default=120)
    parser.add_argument("--procs", default="1,5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):
        for procs in (int(p) for p in args.procs.split(",")):
            for mode in ("lmdb", "wal", "wal-zeroed"):
                took = run(mode, procs, args.writes, args.size)
                row = results.setdefault(f"{mode} x{procs}", {"p50": [], "p90": [], "p99": []})
                for q, key in ((0.5, "p50"), (0.9, "p90"), (0.99, "p99")):
                    row[key].append(pct(took, q) * 1000)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    summary = {k: {q: round(statistics.median(v), 3) for q, v in row.items()}
               for k, row in results.items()}
    if args.json:
        print(json.dumps({"load": load, "results": summary}))
        return
    print(f"durable append of {args.size} bytes, medians of {args.rounds} rounds, "
          f"load {' '.join(load)} (ms per append, each process)")
    for key, row in summary.items():
        print(f"  {key:14s} p50 {row['p50']:.3f}  p90 {row['p90']:.3f}  p99 {row['p99']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
