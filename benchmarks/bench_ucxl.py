"""Benchmark: UCXL address parsing, compiled vs pure twin vs urllib.parse.urlsplit. No network.

Builds a seeded, realistic corpus of distinct addresses (with and without paths, wildcards,
every temporal form, uppercase that needs canonicalising, percent-escapes) and times one pass
of each parser over it per run, the parsers interleaved within a run so they share the
machine's state. Reports the median of the runs. ``urlsplit`` only splits a URL and checks
nothing; it is the yardstick for "what parsing a URL costs in the standard library". Its
lru_cache is bypassed (``__wrapped__``) so it does the work on every call, like the others.

    python benchmarks/bench_ucxl.py [--runs 5] [--size 20000] [--passes 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
import urllib.parse
from collections.abc import Callable

from bzzz_edge import _native

AGENTS = ["gpt4", "claude-3", "agent-1", "worker-07", "llama3.1", "mistral_7b", "qa-bot"]
ROLES = ["architect", "backend", "frontend", "devops", "qa", "reviewer", "planner"]
PROJECTS = ["chorus", "bzzz", "home.lab", "nas-box", "pi-cluster", "hmmm"]
TASKS = ["design", "task-42", "deploy_v2", "review.17", "issue-1234", "meta"]
WORDS = ["src", "docs", "notes", "main.go", "README.md", "config.toml", "decisions", "2024",
         "plan.json", "api", "handlers", "v1", "summary.txt", "context"]
ESCAPED = ["spaces%20here", "caf%c3%a9", "%7Euser", "a%2fb", "50%25", "r%C3%A9sum%C3%A9.md"]


def _name(rng: random.Random, pool: list[str]) -> str:
    roll = rng.random()
    if roll < 0.08:
        return "*"
    if roll < 0.12:
        return rng.choice(["any", "ANY"])
    name = rng.choice(pool)
    if rng.random() < 0.1:
        name += str(rng.randrange(1000))  # keeps the corpus varied
    return name


def _temporal(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        return "*^"
    if roll < 0.62:
        return "*~"
    if roll < 0.77:
        return f"*{rng.randint(1, 500)}"
    if roll < 0.90:
        return rng.choice(["~~", f"~~{rng.randint(1, 20)}"])
    return rng.choice(["^^", f"^^{rng.randint(1, 20)}"])


def _path(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(["", "", "", "/"])
    segments = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.15:
        segments[-1] = rng.choice(ESCAPED)
    return "/" + "/".join(segments) + ("/" if rng.random() < 0.1 else "")


def build_corpus(size: int, seed: int) -> list[str]:
    """``size`` distinct addresses in random order; 15% are written in uppercase."""
    rng = random.Random(seed)
    corpus: set[str] = set()
    while len(corpus) < size:
        names = [_name(rng, pool) for pool in (AGENTS, ROLES, PROJECTS, TASKS)]
        scheme = "ucxl"
        if rng.random() < 0.15:
            scheme = "UCXL"
            names = [n.title() for n in names]
        corpus.add(
            f"{scheme}://{names[0]}:{names[1]}@{names[2]}:{names[3]}/{_temporal(rng)}{_path(rng)}"
        )
    return sorted(corpus, key=lambda _: rng.random())


def _time(parse: Callable[[str], object], corpus: list[str], passes: int) -> float:
    """Seconds per pass over corpus."""
    start = time.perf_counter()
    for _ in range(passes):
        for text in corpus:
            parse(text)
    return (time.perf_counter() - start) / passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median reported)")
    parser.add_argument("--size", type=int, default=20_000, help="addresses in the corpus")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed")
    parser.add_argument("--passes", type=int, default=3, help="passes over the corpus per run")
    args = parser.parse_args()

    corpus = build_corpus(args.size, args.seed)
    pure = _native.pure_module("ucxl")
    compiled = _native.compiled_module("ucxl")
    contenders: dict[str, Callable[[str], object]] = {}
    if compiled is not None:
        contenders["compiled (Cython)"] = compiled.parse
    contenders["pure (Python)"] = pure.parse
    contenders["urllib.parse.urlsplit"] = urllib.parse.urlsplit.__wrapped__

    if compiled is not None:  # same answers, or the timing means nothing
        assert all(str(compiled.parse(t)) == str(pure.parse(t)) for t in corpus)
    for parse in contenders.values():  # warm up
        _time(parse, corpus[:2000], 1)

    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.runs):
        for name, parse in contenders.items():
            seconds[name].append(_time(parse, corpus, args.passes))
    rate = {name: len(corpus) / statistics.median(times) for name, times in seconds.items()}

    canonical = sum(str(pure.parse(t)) == t for t in corpus)
    print(f"UCXL parse throughput, Python {platform.python_version()} on {platform.machine()}, "
          f"{len(corpus)} distinct addresses ({len(corpus) - canonical} need canonicalising), "
          f"median of {args.runs} runs")
    print(f"{'parser':<24}{'addresses/s':>14}{'ns/address':>12}")
    for name, value in rate.items():
        print(f"{name:<24}{value:>14,.0f}{1e9 / value:>12,.0f}")
    if compiled is None:
        print("compiled module not built: only the pure twin was measured")
        return
    fast = rate["compiled (Cython)"]
    print(f"compiled/pure:     {fast / rate['pure (Python)']:.1f}x")
    print(f"compiled/urlsplit: {fast / rate['urllib.parse.urlsplit']:.1f}x")


if __name__ == "__main__":
    main()
