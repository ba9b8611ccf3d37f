"""Benchmark the LZ4 block codec: compiled vs pure twin vs the ``lz4`` package (lz4.block).

Payloads are generated deterministically: msgpack-encoded gossip-like messages, JSON documents
and markdown text, cut into blocks of 1 KiB, 4 KiB and 64 KiB (``--blocks`` distinct blocks per
size, so one block does not sit in the branch predictor). Reports the median over ``--runs`` of
compress and decompress MB/s (of uncompressed data) and the compression ratio, plus the
compiled module's speed relative to the lz4 package and to the pure twin.

    python benchmarks/bench_lz4.py [--runs 5] [--blocks 16] [--no-pure]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable

import lz4.block
import msgpack

from bzzz_edge import _native

_WORDS = [
    "agent", "task", "claim", "coordinator", "election", "term", "vote", "gossip", "mesh",
    "topic", "peer", "node", "context", "address", "decision", "citation", "escalation",
    "availability", "capacity", "role", "executor", "health", "the", "a", "of", "to", "and",
    "in", "is", "for", "on", "with", "that", "this", "be", "it", "as", "by", "are", "from",
    "we", "should", "when", "after", "before",
]
SIZES = (1024, 4096, 65536)


def gossip_messages(rng: random.Random, n: int) -> bytes:
    origins = [rng.randbytes(32) for _ in range(12)]
    topics = ["bzzz/coordination/v1", "antennae/meta-discussion/v1", "bzzz/context-feedback/v1"]
    out = bytearray()
    seq = 0
    while len(out) < n:
        seq += 1
        body = {"task": f"task-{rng.randint(1, 500)}", "status": rng.choice(["claim", "done"]),
                "note": " ".join(rng.choices(_WORDS, k=rng.randint(4, 24)))}
        out += msgpack.packb({
            "v": 1, "type": "gossip", "origin": rng.choice(origins), "seq": seq,
            "ts": 1_700_000_000.0 + seq * 0.013, "topic": rng.choice(topics),
            "body": msgpack.packb(body), "sig": rng.randbytes(64),
        })
    return bytes(out[:n])


def json_documents(rng: random.Random, n: int) -> bytes:
    docs = []
    size = 0
    while size < n:
        doc = {
            "address": f"ucxl://node-{rng.randint(1, 12)}:developer@bzzz:task-{len(docs)}/notes",
            "version": rng.randint(1, 40), "author": f"node-{rng.randint(1, 12)}",
            "tags": rng.choices(_WORDS, k=3), "confidence": round(rng.random(), 3),
            "summary": " ".join(rng.choices(_WORDS, k=rng.randint(6, 30))),
            "citations": [f"ucxl://node-{rng.randint(1, 12)}:a@b:c/{rng.randint(1, 99)}"
                          for _ in range(rng.randint(0, 3))],
        }
        docs.append(doc)
        size += len(json.dumps(doc)) + 2
    return json.dumps(docs, indent=2).encode()[:n]


def markdown_text(rng: random.Random, n: int) -> bytes:
    lines = []
    size = 0
    while size < n:
        roll = rng.random()
        if roll < 0.08:
            line = "## " + " ".join(rng.choices(_WORDS, k=rng.randint(2, 6))).title()
        elif roll < 0.3:
            line = "- " + " ".join(rng.choices(_WORDS, k=rng.randint(3, 14)))
        else:
            line = " ".join(rng.choices(_WORDS, k=rng.randint(10, 50))).capitalize() + "."
        lines.append(line + "\n\n")
        size += len(lines[-1])
    return "".join(lines).encode()[:n]


PAYLOADS: dict[str, Callable[[random.Random, int], bytes]] = {
    "msgpack": gossip_messages,
    "json": json_documents,
    "markdown": markdown_text,
}


def median_mbps(fn: Callable[[], None], nbytes: int, runs: int, min_time: float) -> float:
    """Median MB/s over `runs`, each repeating `fn` for at least `min_time` seconds."""
    rates = []
    for _ in range(runs):
        reps = 0
        start = time.perf_counter()
        while True:
            fn()
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        rates.append(nbytes * reps / elapsed / 1e6)
    return statistics.median(rates)


def codecs(include_pure: bool) -> dict[str, tuple[Callable, Callable]]:
    found: dict[str, tuple[Callable, Callable]] = {}
    compiled = _native.compiled_module("lz4")
    if compiled is not None:
        found["compiled"] = (compiled.compress, compiled.decompress)
    if include_pure:
        pure = _native.pure_module("lz4")
        found["pure"] = (pure.compress, pure.decompress)
    found["lz4.block"] = (
        lambda data: lz4.block.compress(data, store_size=False),
        lambda data, size: lz4.block.decompress(data, uncompressed_size=size),
    )
    return found


def bench_case(blocks: list[bytes], impls: dict, runs: int) -> dict[str, tuple[float, float]]:
    nbytes = sum(map(len, blocks))
    reference = [lz4.block.compress(b, store_size=False) for b in blocks]
    results = {}
    for name, (compress, decompress) in impls.items():
        outputs = [compress(b) for b in blocks]
        assert outputs == reference or name == "lz4.block", f"{name} output differs"
        min_time = 0.05 if name != "pure" else 0.0
        packed = list(zip(reference, map(len, blocks), strict=True))

        def run_compress(compress: Callable = compress) -> None:
            for block in blocks:
                compress(block)

        def run_decompress(decompress: Callable = decompress, packed: list = packed) -> None:
            for data, size in packed:
                decompress(data, size)

        results[name] = (median_mbps(run_compress, nbytes, runs, min_time),
                         median_mbps(run_decompress, nbytes, runs, min_time))
    results["ratio"] = (sum(map(len, reference)) / nbytes, 0.0)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=16, help="distinct blocks per size")
    parser.add_argument("--no-pure", action="store_true", help="skip the (slow) pure twin")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    impls = codecs(include_pure=not args.no_pure)
    names = [n for n in ("compiled", "pure", "lz4.block") if n in impls]
    print(f"LZ4 block codec, MB/s of uncompressed data, median of {args.runs} runs, "
          f"{args.blocks} distinct blocks per case")
    group = " ".join(f"{n:>10}" for n in names)
    width = len(group)
    print(f"{'':23} | {'compress MB/s':^{width}} | {'decompress MB/s':^{width}} | "
          f"{'compiled vs lz4':^17} | {'compiled vs pure':^17}")
    print(f"{'payload':9} {'block':>6} {'ratio':>6} | {group} | {group} | "
          f"{'comp':>8} {'dec':>8} | {'comp':>8} {'dec':>8}")
    for kind, make in PAYLOADS.items():
        corpus = make(random.Random(f"{args.seed}-{kind}"), max(SIZES) * args.blocks)
        for size in SIZES:
            blocks = [corpus[i * size : (i + 1) * size] for i in range(args.blocks)]
            res = bench_case(blocks, impls, args.runs)
            comp = " ".join(f"{res[n][0]:10.1f}" for n in names)
            dec = " ".join(f"{res[n][1]:10.1f}" for n in names)
            line = f"{kind:9} {size // 1024:>5}K {res['ratio'][0]:6.3f} | {comp} | {dec} |"
            if "compiled" in res:
                c, ref = res["compiled"], res["lz4.block"]
                line += f" {c[0] / ref[0]:7.2f}x {c[1] / ref[1]:7.2f}x |"
                if "pure" in res:
                    line += f" {c[0] / res['pure'][0]:7.0f}x {c[1] / res['pure'][1]:7.0f}x"
            print(line)


if __name__ == "__main__":
    main()
