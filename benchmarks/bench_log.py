"""Benchmark `log verify`: entries checked per second (hash chain, Ed25519 signature, Merkle
nodes compared with the stored ones, signed root), straight from an LMDB file as the CLI does.

Builds a log of ``--entries`` entries (typical membership and store-write entries, ~200 bytes)
in a temporary store, then times ``verify_stored`` over it ``--runs`` times and reports the
median, next to what its parts cost on their own on this machine (one Ed25519 verify, the
decode and hash of one entry) for scale. Target (issue 12): at least 10,000 entries a second.
With ``--baseline PYTHON`` (another checkout's venv) each run also verifies the same log with
that checkout's code, in turn with this one's, so the two see the same load; each verify runs
in a process of its own.

    python benchmarks/bench_log.py [--runs 5] [--entries 20000] [--baseline PYTHON]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lmdb
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.signedlog import LogChain, decode_entry
from bzzz_edge.signedlog.storage import (
    DATABASES,
    LogDbs,
    LogReader,
    default_workers,
    verify_stored,
    write_entries,
)


def build(path: Path, entries: int) -> tuple[bytes, list[bytes]]:
    env = lmdb.open(str(path), map_size=2**30, max_dbs=64, subdir=True)
    dbs = LogDbs(*(env.open_db(name.encode()) for name in DATABASES))
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    author = hashlib.sha256(public).digest()
    chain = LogChain(author, public)
    sample = []
    for start in range(0, entries, 256):
        batch = []
        for i in range(start, min(entries, start + 256)):
            data = {"address": f"ucxl://agent:role@project:task/notes/{i}.md", "version": i,
                    "hash": hashlib.sha256(i.to_bytes(8, "big")).digest(), "size": 1000 + i}
            batch.append(chain.append(key, "ucxl_put", data, 1_760_000_000_000 + i))
        sample.append(batch[0][0].encoded)
        with env.begin(write=True) as txn:
            write_entries(txn, dbs, batch, chain.sign_head(key, 1))
    env.close()
    return author, sample


def verify_rate(path: Path, author: bytes, workers: int) -> tuple[float, float]:
    """(entries per second, CPU seconds per entry, all threads)."""
    env = lmdb.open(str(path), readonly=True, max_dbs=64, subdir=True)
    dbs = LogDbs(*(env.open_db(name.encode(), create=False) for name in DATABASES))
    try:
        with env.begin() as txn:
            started, cpu = time.perf_counter(), time.process_time()
            result = verify_stored(LogReader(txn, dbs), author, workers=workers)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        env.close()
    return result.length / elapsed, cpu / result.length


def verify_in(python: str, path: Path, author: bytes, workers: int) -> tuple[float, float]:
    """``verify_rate`` in a process of ``python`` (started in the store's directory, so that it
    imports its own checkout's package)."""
    out = subprocess.run([python, os.path.abspath(__file__), "--verify-one", str(path),
                          author.hex(), str(workers)], capture_output=True, text=True,
                         check=True, cwd=path.parent)
    rate, cpu = out.stdout.split()
    return float(rate), float(cpu)


def parts(sample: bytes, key_bytes: bytes) -> tuple[float, float]:
    """(Ed25519 verifies a second, full entry decodes a second) on this machine."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(key_bytes)
    n = 3000
    started = time.perf_counter()
    for _ in range(n):
        decode_entry(sample, key)
    decodes = n / (time.perf_counter() - started)
    body_sig = sample  # the verify alone, on the same message size
    private = Ed25519PrivateKey.generate()
    signature = private.sign(body_sig)
    public = private.public_key()
    started = time.perf_counter()
    for _ in range(n):
        public.verify(signature, body_sig)
    return n / (time.perf_counter() - started), decodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="also verify with this interpreter's checkout, in turn")
    parser.add_argument("--verify-one", nargs=3, metavar=("PATH", "AUTHOR", "WORKERS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_one:
        path, author, workers = args.verify_one
        print(*verify_rate(Path(path), bytes.fromhex(author), int(workers)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        author, sample = build(store, args.entries)
        env = lmdb.open(str(store), readonly=True, max_dbs=64, subdir=True)
        with env.begin(db=env.open_db(b"log_heads", create=False)) as txn:
            from bzzz_edge.signedlog import decode_head
            public = decode_head(bytes(txn.get(author))).public_key
        env.close()
        print(f"log verify, {args.entries} entries, {default_workers()} CPUs (load before: "
              f"{os.getloadavg()[0]:.1f})")
        pythons = {"this": sys.executable, **({"baseline": args.baseline}
                                              if args.baseline else {})}
        for workers in sorted({1, default_workers()}):
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in pythons}
            for _ in range(args.runs):
                for name, python in pythons.items():
                    runs[name].append(verify_rate(store, author, workers) if not args.baseline
                                      else verify_in(python, store, author, workers))
            for name, results in runs.items():
                rates = [r for r, _ in results]
                label = f"[{name}] " if args.baseline else ""
                print(f"  {label}{workers} thread(s): entries/s median "
                      f"{statistics.median(rates):>9,.0f}  CPU/entry "
                      f"{statistics.median(c for _, c in results) * 1e6:.0f} us   runs "
                      + " ".join(f"{r:,.0f}" for r in rates))
        verifies, decodes = parts(sample[0], public)
        print(f"  for scale: Ed25519 verify alone {verifies:,.0f}/s, one entry decoded and "
              f"checked {decodes:,.0f}/s")
        print(f"  load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
