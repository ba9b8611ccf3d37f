#!/usr/bin/env python3
"""Long fuzz runs of the decoder targets, outside the suite.

    python tests/fuzz/run.py --seconds 600                  # every target, 600 s each
    python tests/fuzz/run.py --seconds 60 --target lz4 ucxl
    python tests/fuzz/run.py --engine mutate --seconds 30   # the suite's engine, no atheris
    python tests/fuzz/run.py --target envelope --reproduce 93a1...   # one input, in hex

Engines: ``atheris`` (coverage-guided libFuzzer, one subprocess per target, corpus seeded with
the target's valid inputs; the default when atheris is installed) and ``mutate`` (the seeded
mutation engine the suite uses). Prints, per target, the inputs run and the findings; a
finding's input is written to --artifacts. Exit status 1 if anything was found.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

__all__ = ["atheris_available", "run_atheris"]


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _child(name: str, libfuzzer_args: list[str]) -> None:
    """Inside the atheris subprocess: instrument, load the target, hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["bzzz_edge", "bzzz_fuzz"]):
        from bzzz_fuzz.targets import TARGETS
    target = TARGETS[name]

    def one_input(data: bytes) -> None:
        target.run(data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def run_atheris(name: str, seconds: float, artifacts: Path, *, seed: int = 1) -> tuple[int, str]:
    """Run one target under atheris; returns (inputs run, finding or "")."""
    from bzzz_fuzz.targets import TARGETS

    with tempfile.TemporaryDirectory(prefix=f"fuzz-{name}-") as corpus:
        for i, data in enumerate(TARGETS[name].seeds()):
            Path(corpus, f"seed-{i}").write_bytes(data)
        artifacts.mkdir(parents=True, exist_ok=True)
        args = [f"-max_total_time={max(1, round(seconds))}", f"-seed={seed}", "-max_len=4096",
                f"-artifact_prefix={artifacts}/{name}-", "-print_final_stats=1", corpus]
        proc = subprocess.run([sys.executable, __file__, "--atheris-child", name, "--", *args],
                              capture_output=True, text=True, timeout=seconds + 120)
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
    count = int(runs.group(1)) if runs else 0
    if proc.returncode == 0:
        return count, ""
    tail = "\n".join(proc.stderr.splitlines()[-40:])
    return count, f"atheris exit {proc.returncode}:\n{tail}"


def _run_mutate(names: list[str], seconds: float, artifacts: Path, seed: int) -> int:
    from bzzz_fuzz.engine import fuzz
    from bzzz_fuzz.targets import TARGETS

    found = 0
    for name in names:
        report = fuzz(TARGETS[name], seconds=seconds, seed=seed)
        print(f"{name:14s} {report.inputs:10d} inputs  {len(report.findings)} findings")
        for i, finding in enumerate(report.findings):
            artifacts.mkdir(parents=True, exist_ok=True)
            path = artifacts / f"{name}-mutate-{seed}-{i}"
            path.write_bytes(finding.data)
            print(f"  {finding.error}\n  input: {path}\n{finding.trace}")
        found += len(report.findings)
    return found


def main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[0] == "--atheris-child":
        _child(argv[1], argv[3:] if len(argv) > 2 and argv[2] == "--" else argv[2:])
        return 0
    from bzzz_fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per target")
    parser.add_argument("--target", nargs="*", choices=sorted(TARGETS), default=sorted(TARGETS))
    parser.add_argument("--engine", choices=("atheris", "mutate"),
                        default="atheris" if atheris_available() else "mutate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--artifacts", type=Path, default=Path("fuzz-artifacts"))
    parser.add_argument("--reproduce", metavar="HEX", help="run one input and show the outcome")
    args = parser.parse_args(argv)
    if args.reproduce is not None:
        for name in args.target:
            TARGETS[name].run(bytes.fromhex(args.reproduce))
            print(f"{name}: handled without a finding")
        return 0
    started = time.monotonic()
    if args.engine == "mutate":
        found = _run_mutate(args.target, args.seconds, args.artifacts, args.seed)
    else:
        found = 0
        for name in args.target:
            count, finding = run_atheris(name, args.seconds, args.artifacts, seed=args.seed)
            print(f"{name:14s} {count:10d} inputs  {'FINDING' if finding else 'nothing found'}",
                  flush=True)
            if finding:
                print(finding)
                found += 1
    print(f"{args.engine}: {len(args.target)} targets in {time.monotonic() - started:.0f} s, "
          f"{found} with findings")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
