"""Benchmark the message dedup cache: compiled vs pure twin, with a plain ``set`` as yardstick.

Steady state with ``--live`` IDs held (default 100,000): the cache is pre-filled, then each
operation is either a duplicate of a recently inserted (still live) ID or a new ID that evicts
the oldest. IDs are blake2b(origin || seq, digest_size=16), as on the wire, generated
deterministically. Every implementation gets the same operations; each run builds a fresh
cache. Reports the median over ``--runs`` of operations per second, one call per ID
(``check_and_insert``) and in batches (``check_and_insert_many``).

    python benchmarks/bench_dedup.py [--runs 5] [--ops 1000000] [--live 100000]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import time
from collections.abc import Callable
from types import ModuleType

from bzzz_edge import _native


def make_ids(count: int, origin: bytes) -> list[bytes]:
    return [
        hashlib.blake2b(origin + seq.to_bytes(8, "big"), digest_size=16).digest()
        for seq in range(count)
    ]


def make_workload(live: int, ops: int, dup_ratio: float, seed: int) -> tuple[list, list]:
    """(prefill IDs, operation IDs): duplicates are drawn from the last `live` inserted."""
    rng = random.Random(seed)
    fresh = iter(make_ids(live + ops, b"origin-%d" % seed))
    prefill = [next(fresh) for _ in range(live)]
    window = list(prefill)  # the IDs currently live, oldest first, as a ring
    head = 0
    sequence = []
    for _ in range(ops):
        if rng.random() < dup_ratio:
            sequence.append(window[(head + rng.randrange(live)) % live])
        else:
            new = next(fresh)
            sequence.append(new)
            window[head] = new  # replaces the oldest, which the cache evicts
            head = (head + 1) % live
    return prefill, sequence


def time_cache(module: ModuleType, prefill: list, sequence: list, live: int, batch: int) -> float:
    cache = module.DedupCache(ttl=3600.0, max_entries=live)
    for msg_id in prefill:
        cache.check_and_insert(msg_id, 0.0)
    if batch > 1:
        many = cache.check_and_insert_many
        chunks = [sequence[i : i + batch] for i in range(0, len(sequence), batch)]
        start = time.perf_counter()
        for chunk in chunks:
            many(chunk, 1.0)
        elapsed = time.perf_counter() - start
    else:
        check = cache.check_and_insert
        start = time.perf_counter()
        for msg_id in sequence:
            check(msg_id, 1.0)
        elapsed = time.perf_counter() - start
    assert len(cache) == live
    return elapsed


def time_set(prefill: list, sequence: list, live: int, batch: int) -> float:
    """Membership + add on a plain set: no TTL, no cap, no eviction. A floor, not a rival."""
    seen = set(prefill)
    start = time.perf_counter()
    for msg_id in sequence:
        if msg_id not in seen:
            seen.add(msg_id)
    return time.perf_counter() - start


def median_rate(fn: Callable[[], float], runs: int, ops: int) -> float:
    return statistics.median(ops / fn() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--dup-ratio", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=64, help="IDs per check_and_insert_many")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    prefill, sequence = make_workload(args.live, args.ops, args.dup_ratio, args.seed)
    pure = _native.pure_module("dedup")
    compiled = _native.compiled_module("dedup")
    rows: list[tuple[str, float]] = []
    for label, module in (("compiled", compiled), ("pure", pure)):
        if module is None:
            print("compiled dedup module not built; showing the pure twin only")
            continue
        for batch in (1, args.batch):
            name = f"{label} {'check_and_insert' if batch == 1 else f'batch of {batch}'}"
            rate = median_rate(
                lambda m=module, b=batch: time_cache(m, prefill, sequence, args.live, b),
                args.runs,
                args.ops,
            )
            rows.append((name, rate))
    rows.append(("python set (in + add)", median_rate(
        lambda: time_set(prefill, sequence, args.live, 1), args.runs, args.ops)))

    rates = dict(rows)
    print(f"dedup: {args.live:,} live IDs, {args.ops:,} ops, {args.dup_ratio:.0%} duplicates, "
          f"median of {args.runs} runs")
    print(f"{'implementation':32} {'ops/s':>14} {'vs pure':>9}")
    for name, rate in rows:
        kind = "check_and_insert" if "batch" not in name else f"batch of {args.batch}"
        base = rates.get(f"pure {kind}", rates.get("pure check_and_insert"))
        ratio = f"{rate / base:8.2f}x" if base else ""
        print(f"{name:32} {rate:14,.0f} {ratio:>9}")


if __name__ == "__main__":
    main()
